"""The course's loader reads Llama and Qwen3 folders: its own Llama export (converted back to our
model) and a Qwen3 folder (through transformers' class), so `eval qa`, `eval ppl` and the lessons
work on them."""
import json
import sys
from pathlib import Path

import pytest
import torch

from minimind_core import MiniMindForCausalLM
from minimind_core import checkpoint as ck
from minimind_core.cli import main
from minimind_core.evaluate import greedy_token_ids, perplexity
from minimind_core.profiles import get_profile

sys.path.insert(0, str(Path(__file__).parent))
from course_model import PROMPTS, write_course_model  # noqa: E402


@pytest.fixture(scope="module")
def run_and_llama(tmp_path_factory):
    from minimind_core.export import export_llama

    root = tmp_path_factory.mktemp("foreign")
    run = write_course_model(root / "run")
    return run, export_llama(run, root / "llama")


def test_llama_export_loads_as_our_model_with_equal_logits(run_and_llama):
    run, llama = run_and_llama
    ours = ck.load_model(run)
    back = ck.load_model(llama)
    assert type(back) is MiniMindForCausalLM and back.config.rope_theta == ours.config.rope_theta
    assert back.lm_head.weight is back.model.embed_tokens.weight
    ids = torch.randint(3, 2048, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ours(ids).logits, back(ids).logits)


def test_eval_qa_on_a_llama_export_gives_the_same_answers(run_and_llama, capsys):
    run, llama = run_and_llama
    data = str(get_profile("smoke").eval_qa)
    printed = {}
    for name, folder in (("run", run), ("llama", llama)):
        assert main(["eval", "qa", "--model", str(folder), "--data", data, "--limit", "12", "--verbose"]) == 0
        printed[name] = capsys.readouterr().out
    assert printed["run"] == printed["llama"]
    assert printed["run"].count(" -> ") == 12 and "accuracy: " in printed["run"]


def test_eval_ppl_on_a_llama_export(run_and_llama, capsys):
    run, llama = run_and_llama
    data = str(get_profile("smoke").stages["pretrain"].data)
    lines = {}
    for name, folder in (("run", run), ("llama", llama)):
        assert main(["eval", "ppl", "--model", str(folder), "--data", data, "--max-tokens", "300"]) == 0
        lines[name] = capsys.readouterr().out.strip().splitlines()[-1]
    assert lines["run"] == lines["llama"] and lines["run"].startswith("perplexity: ")


@pytest.mark.parametrize("yarn", [False, True])
def test_a_qwen3_export_loads_as_our_model_with_equal_logits(tmp_path, yarn):
    """MiniMind-3 (q/k-norm, its own head_dim, YaRN) -> export qwen3 -> our loader: the same model."""
    from minimind_core.export import export_qwen3

    run = write_course_model(tmp_path / "run", qk_norm=True, head_dim=24, inference_rope_scaling=yarn,
                             max_position_embeddings=4096 if yarn else 256)
    out = export_qwen3(run, tmp_path / "qwen3")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "qwen3" and cfg["rope_theta"] == 1e6
    assert (cfg.get("rope_scaling") or {}).get("rope_type") == ("yarn" if yarn else None)
    ours, back = ck.load_model(run), ck.load_model(out)
    assert type(back) is MiniMindForCausalLM and back.config.qk_norm and back.config.head_dim == 24
    assert back.config.inference_rope_scaling == yarn
    ids = torch.randint(3, 2048, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ours(ids).logits, back(ids).logits)


def test_a_qwen3_folder_our_model_cannot_express_goes_through_transformers(run_and_llama, tmp_path):
    """Attention biases are not in our model: the loader falls back to transformers' class, and the
    course's batched greedy evaluation gives transformers' own greedy tokens."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    run, _ = run_and_llama
    tok = ck.load_tokenizer_for(run)
    torch.manual_seed(0)
    qwen = Qwen3ForCausalLM(Qwen3Config(vocab_size=2048, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, head_dim=16, attention_bias=True,
                                        max_position_embeddings=256, tie_word_embeddings=True, bos_token_id=1,
                                        eos_token_id=2, pad_token_id=0)).eval()
    with torch.no_grad():
        for p in qwen.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    ck.save_model_folder(tmp_path / "qwen3", qwen, tok)
    model, tok2 = ck.load_model_and_tokenizer(tmp_path / "qwen3", device="cpu")
    assert type(model).__name__ == "Qwen3ForCausalLM"
    from minimind_core.generate import chat_prompt_ids

    got = greedy_token_ids(model, tok2, PROMPTS[:4], max_new_tokens=10, batch_size=4)
    for text, toks in zip(PROMPTS[:4], got):
        ids = chat_prompt_ids(tok2, text)
        want = qwen.generate(ids, max_new_tokens=10, do_sample=False, pad_token_id=0)[0, ids.shape[1]:].tolist()
        assert toks == want, text


def test_an_unknown_model_type_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ck.CheckpointError, match="model_type is 'gpt2'"):
        ck.load_model(tmp_path)
