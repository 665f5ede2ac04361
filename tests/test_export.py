"""`export llama | qwen3 | hf` write a folder that plain transformers loads and runs, without minimind_core."""
import json
import subprocess
import sys

import pytest
import torch

from minimind_core import MiniMindConfig, MiniMindForCausalLM
from minimind_core.cli import main
from minimind_core.tokenizer import train_tokenizer

LOADER = r"""
import sys, json, torch
sys.modules["minimind_core"] = None          # make sure nothing of ours is importable
from transformers import AutoModelForCausalLM, AutoTokenizer
d = sys.argv[1]
model = AutoModelForCausalLM.from_pretrained(d).eval()
tok = AutoTokenizer.from_pretrained(d)
ids = tok.apply_chat_template([{"role": "user", "content": "hello"}], add_generation_prompt=True,
                              return_tensors="pt", return_dict=True)["input_ids"]
out = model.generate(ids, max_new_tokens=5, do_sample=False)
x = torch.tensor([[5, 6, 7, 8, 9, 10]])
print(json.dumps({"class": type(model).__name__, "new": out.shape[1] - ids.shape[1],
                  "logits": model(x).logits[0, -1, :8].tolist(),
                  "prompt_end": tok.decode(ids[0])}))
"""


def test_export_llama_round_trip(tiny_model, tmp_path):
    src = tmp_path / "model"
    tiny_model.save_pretrained(src)
    train_tokenizer(["hello world, 你好世界 " * 5] * 20, 300, src)
    out = tmp_path / "llama"
    assert main(["export", "llama", "--model", str(src), "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"
    proc = subprocess.run([sys.executable, "-c", LOADER, str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["class"] == "LlamaForCausalLM" and res["new"] == 5
    assert res["prompt_end"].endswith("<|im_start|>assistant\n")
    with torch.no_grad():
        ours = tiny_model(torch.tensor([[5, 6, 7, 8, 9, 10]])).logits[0, -1, :8]
    torch.testing.assert_close(torch.tensor(res["logits"]), ours, atol=1e-4, rtol=1e-4)


def test_export_rejects_a_non_model_folder(tmp_path, capsys):
    assert main(["export", "llama", "--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a model folder" in capsys.readouterr().err


QWEN3_LOADER = r"""
import sys, json, torch
sys.modules["minimind_core"] = None          # make sure nothing of ours is importable
from transformers import AutoModelForCausalLM
x = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])
res = {}
for d in sys.argv[1:]:
    model = AutoModelForCausalLM.from_pretrained(d).eval()
    with torch.no_grad():
        res[d] = {"class": type(model).__name__, "logits": model(x).logits[0].tolist(),
                  "greedy": model.generate(x, max_new_tokens=4, do_sample=False)[0, 8:].tolist()}
print(json.dumps(res))
"""


def _minimind3(tmp_path, name, **changes):
    """A small random MiniMind-3-shaped model folder with a tokenizer."""
    torch.manual_seed(0)
    config = MiniMindConfig.preset("minimind-3", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, head_dim=24, intermediate_size=160, vocab_size=320,
                                   **changes)
    model = MiniMindForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    src = tmp_path / name
    model.save_pretrained(src)
    train_tokenizer(["hello world, 你好世界 " * 5] * 20, 320, src)
    return model, src


def test_export_qwen3_reloads_in_a_fresh_process(tmp_path, capsys):
    dense, dense_dir = _minimind3(tmp_path, "dense")
    moe, moe_dir = _minimind3(tmp_path, "moe", use_moe=True, n_routed_experts=4, num_experts_per_tok=1,
                              n_shared_experts=0, aux_loss_alpha=5e-4, seq_aux=False)
    out_dense, out_moe = tmp_path / "qwen3", tmp_path / "qwen3-moe"
    assert main(["export", "qwen3", "--model", str(dense_dir), "--out", str(out_dense)]) == 0
    assert main(["export", "hf", "--model", str(moe_dir), "--out", str(out_moe)]) == 0
    printed = capsys.readouterr().out
    assert "wrote a Qwen3ForCausalLM folder" in printed and "wrote a Qwen3MoeForCausalLM folder" in printed
    config = json.loads((out_dense / "config.json").read_text())
    assert (config["model_type"], config["head_dim"]) == ("qwen3", 24)
    assert json.loads((out_moe / "config.json").read_text())["model_type"] == "qwen3_moe"
    proc = subprocess.run([sys.executable, "-c", QWEN3_LOADER, str(out_dense), str(out_moe)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    x = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])
    for model, out, cls in ((dense, out_dense, "Qwen3ForCausalLM"), (moe, out_moe, "Qwen3MoeForCausalLM")):
        got = res[str(out)]
        assert got["class"] == cls
        with torch.no_grad():
            torch.testing.assert_close(torch.tensor(got["logits"]), model(x).logits[0], atol=1e-4, rtol=1e-4)
            ours = model.generate(x, max_new_tokens=4, do_sample=False)[0, 8:].tolist()
        assert got["greedy"] == ours


def test_export_hf_picks_the_family_and_the_named_formats_refuse_the_other(tiny_model, tmp_path, capsys):
    llama_src = tmp_path / "minimind2"
    tiny_model.save_pretrained(llama_src)
    train_tokenizer(["hello world " * 5] * 20, 300, llama_src)
    assert main(["export", "hf", "--model", str(llama_src), "--out", str(tmp_path / "hf")]) == 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "llama"
    assert main(["export", "qwen3", "--model", str(llama_src), "--out", str(tmp_path / "q")]) == 2
    assert "only a model with q/k-norm (MiniMind-3) is a Qwen3 model" in capsys.readouterr().err
    _, qwen_src = _minimind3(tmp_path, "m3")
    assert main(["export", "llama", "--model", str(qwen_src), "--out", str(tmp_path / "l")]) == 2
    err = capsys.readouterr().err
    assert "without q/k-norm (MiniMind2) is a LlamaForCausalLM" in err and "export qwen3" in err
    assert not (tmp_path / "q").exists() and not (tmp_path / "l").exists()


def test_minimind2_moe_has_no_transformers_family():
    from minimind_core.export import hf_family

    with pytest.raises(ValueError, match="shared experts or without q/k-norm .* no transformers equivalent"):
        hf_family(MiniMindConfig.preset("minimind2-moe"))
