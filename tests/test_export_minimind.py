"""`export minimind`: MiniMind's half-precision `.pth` files, named for the stage, with the eval_model.py command."""
import json

import pytest
import torch

from course_model import write_course_model
from minimind_core import MiniMindConfig, MiniMindForCausalLM
from minimind_core.checkpoint import latest_checkpoint, load_model, load_tokenizer_for, save_checkpoint
from minimind_core.errors import ExportError
from minimind_core.export_minimind import export_minimind, minimind_state_dict
from minimind_core.lora import adapter_config, apply_lora, load_lora, lora_layers, lora_state_dict
from minimind_core.profiles import get_profile
from minimind_core.tokenizer import load_tokenizer

X = torch.tensor([list(range(3, 50))])


def _minimind2_small_shapes() -> dict:
    """MiniMind2-Small's state dict as MiniMind's files hold it (names and shapes from its model)."""
    h, ffn, kv, vocab = 512, 1408, 2 * 64, 6400
    shapes = {"model.embed_tokens.weight": (vocab, h), "model.norm.weight": (h,), "lm_head.weight": (vocab, h)}
    for i in range(8):
        p = f"model.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                       p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                       p + "mlp.gate_proj.weight": (ffn, h), p + "mlp.up_proj.weight": (ffn, h),
                       p + "mlp.down_proj.weight": (h, ffn), p + "input_layernorm.weight": (h,),
                       p + "post_attention_layernorm.weight": (h,)})
    return shapes


def test_keys_shapes_and_dtype_are_minimind2_smalls():
    with torch.device("meta"):
        meta = MiniMindForCausalLM(MiniMindConfig())
    assert {k: tuple(v.shape) for k, v in meta.state_dict().items()} == _minimind2_small_shapes()
    torch.manual_seed(0)
    small = MiniMindForCausalLM(MiniMindConfig())
    sd = minimind_state_dict(small)
    assert {k: tuple(v.shape) for k, v in sd.items()} == _minimind2_small_shapes()
    assert {v.dtype for v in sd.values()} == {torch.float16}
    assert torch.equal(sd["lm_head.weight"], sd["model.embed_tokens.weight"])     # both tied names
    unique = sum(v.numel() for k, v in sd.items() if k != "lm_head.weight")
    assert unique == 25_829_888                                                    # "25.83M"


def _reload(path, config) -> MiniMindForCausalLM:
    """What MiniMind does with the file: build the model, torch.load, load_state_dict(strict=True)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert {v.dtype for v in state.values()} == {torch.float16}
    model = MiniMindForCausalLM(config).eval()
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model


def _close(a, b):
    with torch.no_grad():
        la, lb = a(X).logits, b(X).logits
    assert (la - lb).abs().max() < 0.02 * la.std()     # fp16 weights: ~3 significant digits


def test_sft_checkpoint_round_trip_and_eval_command(tmp_path):
    run = write_course_model(tmp_path / "run")          # recorded as an sft checkpoint
    exp = export_minimind(run, tmp_path / "out")
    assert exp.weights == tmp_path / "out" / "full_sft_64.pth" and exp.lora is None
    ours = load_model(run).eval()
    _close(_reload(exp.weights, ours.config), ours)
    assert exp.command == "python eval_model.py --load 0 --model_mode 1 --hidden_size 64 --num_hidden_layers 2"
    assert exp.config_edits == {"vocab_size": 2048, "num_attention_heads": 4}
    readme = exp.readme.read_text(encoding="utf-8")
    assert exp.command in readme and "cp full_sft_64.pth out/" in readme
    assert "vocab_size=2048, num_attention_heads=4" in readme and "2048-token tokenizer" in readme
    tok_cfg = json.loads((tmp_path / "out" / "tokenizer" / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast" and "<|im_start|>" in tok_cfg["chat_template"]


@pytest.mark.parametrize("stage, weight, mode", [("pretrain", "pretrain", 0), ("dpo", "rlhf", 2)])
def test_file_is_named_for_the_stage(tmp_path, stage, weight, mode):
    run = write_course_model(tmp_path / "run")
    info = run / "checkpoints" / "step_000001" / "checkpoint.json"
    info.write_text(json.dumps({"step": 1, "stage": stage}))
    exp = export_minimind(run, tmp_path / "out")
    assert exp.weights.name == f"{weight}_64.pth" and f"--model_mode {mode} " in exp.command


def test_a_folder_without_a_stage_needs_weight(tmp_path):
    run = write_course_model(tmp_path / "run")
    folder = tmp_path / "plain"
    load_model(run).save_pretrained(folder)             # a model folder with no training record
    load_tokenizer_for(run).save_pretrained(folder)
    with pytest.raises(ExportError, match="pass --weight NAME"):
        export_minimind(folder, tmp_path / "out")
    exp = export_minimind(folder, tmp_path / "out", weight="full_sft")
    assert exp.weights.name == "full_sft_64.pth"
    with pytest.raises(ExportError, match="--weight '../x'"):
        export_minimind(folder, tmp_path / "out", weight="../x")


def _adapter_run(tmp_path, base_run, targets, rank, alpha):
    """A LoRA run folder as the trainer writes it: adapter weights + config naming the base."""
    base = load_model(base_run).eval()
    torch.manual_seed(3)
    apply_lora(base, rank=rank, alpha=alpha, targets=targets)
    with torch.no_grad():
        for layer in lora_layers(base).values():
            layer.lora_B.normal_(0, 0.3)          # a trained adapter changes the outputs
    cfg = {**adapter_config(base), "base": str(latest_checkpoint(base_run)), "model_type": "minimind-lora"}
    run = tmp_path / "lora_run"
    save_checkpoint(run, 5, adapter=(lora_state_dict(base), cfg), tokenizer=load_tokenizer_for(base_run),
                    info={"stage": "lora"})
    (run / "run.json").write_text(json.dumps({"stage": "lora", "data": "/data/lora_identity.jsonl"}))
    return run, base


def test_minimind_shaped_adapter_is_written_in_minimind_format(tmp_path):
    base_run = write_course_model(tmp_path / "base")
    run, adapted = _adapter_run(tmp_path, base_run, "minimind", rank=4, alpha=8)
    exp = export_minimind(run, tmp_path / "out")
    assert exp.weights.name == "full_sft_64.pth"                       # the base, unmerged
    assert exp.lora == tmp_path / "out" / "lora" / "lora_identity_64.pth"
    assert exp.command.endswith("--lora_name lora_identity")
    state = torch.load(exp.lora, map_location="cpu", weights_only=True)
    assert set(state) == {f"model.layers.{i}.self_attn.{p}_proj.lora.{m}.weight"
                          for i in range(2) for p in ("q", "o") for m in ("A", "B")}
    assert state["model.layers.0.self_attn.q_proj.lora.A.weight"].shape == (8, 64)   # rank 4 padded to 8
    assert state["model.layers.0.self_attn.q_proj.lora.B.weight"].shape == (64, 8)
    base = _reload(exp.weights, adapted.config)
    _close(base, load_model(base_run).eval())                          # base weights, adapter not merged in
    load_lora(base, str(exp.lora))                                     # MiniMind's format, no scaling
    _close(base, adapted)
    assert "mkdir -p out/lora && cp lora/lora_identity_64.pth out/lora/" in exp.readme.read_text(encoding="utf-8")


def test_an_adapter_minimind_cannot_hold_is_merged(tmp_path):
    base_run = write_course_model(tmp_path / "base")
    run, adapted = _adapter_run(tmp_path, base_run, "all", rank=8, alpha=16)
    exp = export_minimind(run, tmp_path / "out", lora_name="x")
    assert exp.lora is None and not (tmp_path / "out" / "lora").exists()
    assert any("merged" in n and "square" in n for n in exp.notes)
    _close(_reload(exp.weights, adapted.config), adapted)


def test_moe_file_name_and_flag(tmp_path):
    torch.manual_seed(0)
    cfg = MiniMindConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                         vocab_size=2048, use_moe=True)
    run = tmp_path / "run"
    save_checkpoint(run, 1, model=MiniMindForCausalLM(cfg), tokenizer=load_tokenizer(get_profile("smoke").tokenizer),
                    info={"stage": "sft"})
    exp = export_minimind(run, tmp_path / "out")
    assert exp.weights.name == "full_sft_64_moe.pth" and "--use_moe 1" in exp.command
    _reload(exp.weights, cfg)


def test_a_minimind3_model_names_minimind3s_script(tmp_path):
    torch.manual_seed(0)
    cfg = MiniMindConfig.preset("minimind-3", hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                num_key_value_heads=2, head_dim=16, intermediate_size=128, vocab_size=2048)
    run = tmp_path / "run"
    save_checkpoint(run, 1, model=MiniMindForCausalLM(cfg), tokenizer=load_tokenizer(get_profile("smoke").tokenizer),
                    info={"stage": "sft"})
    exp = export_minimind(run, tmp_path / "out")
    readme = exp.readme.read_text(encoding="utf-8")
    assert "python eval_llm.py --weight full_sft --hidden_size 64 --num_hidden_layers 1`" in readme
    assert "MiniMind2's eval_model.py cannot build it" in readme
    _reload(exp.weights, cfg)


def test_command_line_prints_the_eval_command(tmp_path, capsys):
    from minimind_core.cli import main

    run = write_course_model(tmp_path / "run")
    assert main(["export", "minimind", "--model", str(run), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "python eval_model.py --load 0 --model_mode 1 --hidden_size 64 --num_hidden_layers 2" in printed
    assert printed.startswith((tmp_path / "out" / "README.txt").read_text(encoding="utf-8"))
    assert main(["export", "minimind", "--model", str(run), "--out", str(tmp_path / "o2"), "--weight", "a/b"]) == 2
    assert "--weight 'a/b'" in capsys.readouterr().err
