"""`export gguf`: a GGUF file with llama.cpp's names and layout, read back by transformers' GGUF loader."""
import json

import numpy as np
import pytest
import torch

from course_model import PROMPTS, write_course_model
from minimind_core.checkpoint import load_model, load_tokenizer_for
from minimind_core.errors import ExportError
from minimind_core.export_gguf import export_gguf, rotate_half_to_interleaved, write_gguf
from minimind_core.generate import chat_prompt_ids, generate
from minimind_core.model import apply_rope, rope_tables

gguf = pytest.importorskip("gguf")
NEW_TOKENS = 24


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The course model (a run folder), its model and tokenizer, and its GGUF files in every dtype."""
    root = tmp_path_factory.mktemp("gguf")
    run = write_course_model(root / "run")
    files = {dt: export_gguf(run, root / "out" / f"model-{dt}.gguf", dt) for dt in ("f32", "f16", "q8_0")}
    return run, load_model(run).eval(), load_tokenizer_for(run), files


def _fields(path):
    reader = gguf.GGUFReader(str(path))
    return reader, {name: f.contents() for name, f in reader.fields.items()}


def test_metadata_names_and_tokenizer(course):
    run, model, tok, files = course
    cfg = model.config
    reader, kv = _fields(files["f16"])
    assert kv["general.architecture"] == "llama"
    assert kv["llama.context_length"] == cfg.max_position_embeddings
    assert kv["llama.embedding_length"] == cfg.hidden_size
    assert kv["llama.block_count"] == cfg.num_hidden_layers
    assert kv["llama.feed_forward_length"] == cfg.intermediate_size
    assert kv["llama.attention.head_count"] == cfg.num_attention_heads
    assert kv["llama.attention.head_count_kv"] == cfg.num_key_value_heads
    assert kv["llama.rope.freq_base"] == 1e6
    assert kv["llama.rope.dimension_count"] == cfg.head_dim
    assert kv["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    assert kv["llama.vocab_size"] == cfg.vocab_size == len(kv["tokenizer.ggml.tokens"])
    assert kv["tokenizer.ggml.model"] == "gpt2" and kv["tokenizer.ggml.pre"] == "gpt-2"
    assert (kv["tokenizer.ggml.bos_token_id"], kv["tokenizer.ggml.eos_token_id"],
            kv["tokenizer.ggml.padding_token_id"]) == (1, 2, 0)
    assert kv["tokenizer.ggml.add_bos_token"] is False
    assert kv["tokenizer.ggml.tokens"][:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    # CONTROL x3 (the specials), USER_DEFINED x6 (the reserved tool and thinking tags), then NORMAL
    assert kv["tokenizer.ggml.token_type"][:10] == [3, 3, 3, 4, 4, 4, 4, 4, 4, 1]
    spec = json.loads(tok.backend_tokenizer.to_str())
    assert kv["tokenizer.ggml.merges"] == [" ".join(m) if not isinstance(m, str) else m
                                           for m in spec["model"]["merges"]]
    assert kv["tokenizer.chat_template"] == tok.chat_template
    names = {t.name for t in reader.tensors}
    expected = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{n}.weight" for i in range(cfg.num_hidden_layers)
        for n in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate",
                  "ffn_up", "ffn_down")}
    assert names == expected                                  # tied: no output.weight
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == "F16" and types["blk.0.attn_norm.weight"] == "F32"
    assert {t.tensor_type.name for t in gguf.GGUFReader(str(files["q8_0"])).tensors} == {"Q8_0", "F32"}


def _interleaved_rope(x, theta=1e6):
    """llama.cpp's `llama` RoPE: dims (2i, 2i+1) rotate together. x: [seq, heads, head_dim]."""
    seq, _, d = x.shape
    inv = 1.0 / theta ** (torch.arange(0, d, 2).float() / d)
    ang = torch.arange(seq).float()[:, None] * inv[None]            # [seq, d/2]
    cos, sin = ang.cos()[:, None], ang.sin()[:, None]
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)


def test_permuted_q_k_give_the_same_attention_scores_under_llama_cpp_rope():
    torch.manual_seed(1)
    heads, kv_heads, d, h, seq = 4, 2, 16, 64, 7
    wq, wk, x = torch.randn(heads * d, h), torch.randn(kv_heads * d, h), torch.randn(seq, h)
    cos, sin = rope_tables(d, seq, 1e6)
    q, k = apply_rope((x @ wq.T).view(1, seq, heads, d), (x @ wk.T).view(1, seq, kv_heads, d), cos, sin)
    ours = torch.einsum("qhd,khd->hqk", q[0], k[0].repeat_interleave(heads // kv_heads, dim=1))
    q2 = _interleaved_rope((x @ rotate_half_to_interleaved(wq, heads).T).view(seq, heads, d))
    k2 = _interleaved_rope((x @ rotate_half_to_interleaved(wk, kv_heads).T).view(seq, kv_heads, d))
    theirs = torch.einsum("qhd,khd->hqk", q2, k2.repeat_interleave(heads // kv_heads, dim=1))
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
    # and without the permutation llama.cpp's RoPE would compute something else
    k3 = _interleaved_rope((x @ wk.T).view(seq, kv_heads, d))
    q3 = _interleaved_rope((x @ wq.T).view(seq, heads, d))
    wrong = torch.einsum("qhd,khd->hqk", q3, k3.repeat_interleave(heads // kv_heads, dim=1))
    assert (wrong - ours).abs().max() > 1.0


def _load_hf(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return model, tok


def _greedy_hf(model, ids):
    out = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=2, pad_token_id=0)
    new = out[0, ids.shape[1]:].tolist()
    return new[:new.index(2) + 1] if 2 in new else new


def _greedy_ours(model, ids):
    return generate(model, ids, max_new_tokens=NEW_TOKENS, do_sample=False)[0].tolist()


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_transformers_reads_it_back_with_the_same_greedy_tokens(course, dtype):
    run, model, tok, files = course
    hf, hf_tok = _load_hf(files[dtype])
    assert type(hf).__name__ == "LlamaForCausalLM" and hf.config.tie_word_embeddings
    reference = model
    if dtype == "f16":   # the file holds fp16-rounded matrices (norms stay f32): compare with the same
        reference = load_model(run).eval()
        with torch.no_grad():
            for p in reference.parameters():
                if p.dim() == 2:
                    p.copy_(p.half().float())
    texts = PROMPTS + ["it's we'll they're", "数字 12345 和 3.14159", "emoji 🙂 中文 mixed", "trailing   "]
    for text in texts:
        assert hf_tok.encode(text, add_special_tokens=False) == tok.encode(text, add_special_tokens=False), text
    for prompt in PROMPTS:
        ids = chat_prompt_ids(tok, prompt)
        hf_ids = hf_tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        assert hf_ids.tolist() == ids.tolist()                 # the embedded chat template renders the same
        ours = _greedy_ours(reference, ids)
        assert len(set(ours)) > 3                              # a reply that exercises the weights
        assert _greedy_hf(hf, ids) == ours, prompt
    x = torch.tensor([list(range(3, 40))])
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, reference(x).logits, atol=2e-4, rtol=1e-4)


def test_q8_0_is_close_and_agreement_is_reported(course):
    run, model, tok, files = course
    reader = gguf.GGUFReader(str(files["q8_0"]))
    from gguf.quants import dequantize

    tensors = {t.name: t for t in reader.tensors}
    t = tensors["blk.1.ffn_down.weight"]
    got = dequantize(t.data, t.tensor_type).reshape(model.model.layers[1].mlp.down_proj.weight.shape)
    want = model.model.layers[1].mlp.down_proj.weight.detach().numpy()
    # q8_0: per block of 32, step = max|w| / 127 stored as f16; a value is off by half a step plus
    # 127 times the step's own f16 rounding (2^-11 relative): at most 0.57 steps
    step = np.abs(want).reshape(-1, 32).max(axis=1, keepdims=True) / 127
    err = np.abs(got - want).reshape(-1, 32)
    assert (err <= 0.57 * step).all() and err.mean() < 0.3 * step.mean()
    assert files["q8_0"].stat().st_size < 0.6 * files["f16"].stat().st_size
    hf, _ = _load_hf(files["q8_0"])
    same = prefix = total = 0
    for p in PROMPTS:
        ids = chat_prompt_ids(tok, p)
        a, b = _greedy_ours(model, ids), _greedy_hf(hf, ids)
        same += a == b
        prefix += next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        total += len(a)
        with torch.no_grad():
            want, got = model(ids).logits[0, -1], hf(ids).logits[0, -1]
        # quantisation noise (measured: max 0.14 std, correlation 0.9995), not a different model
        assert (got - want).abs().max() < 0.3 * want.std() and torch.corrcoef(torch.stack([got, want]))[0, 1] > 0.998
    print(f"q8_0: {same}/{len(PROMPTS)} greedy replies identical to the f32 course model; "
          f"{prefix}/{total} tokens agree before the first difference")


def test_bad_requests_are_refused_in_one_line(course, tmp_path):
    run, model, tok, files = course
    with pytest.raises(ExportError, match="--dtype 'q4'"):
        export_gguf(run, tmp_path / "m.gguf", "q4")
    from minimind_core import MiniMindConfig, MiniMindForCausalLM

    moe = MiniMindForCausalLM(MiniMindConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                             num_key_value_heads=2, vocab_size=2048, use_moe=True))
    moe_dir = tmp_path / "moe"
    moe.save_pretrained(moe_dir)
    tok.save_pretrained(moe_dir)
    with pytest.raises(ExportError, match="mixture-of-experts"):
        export_gguf(moe_dir, tmp_path / "m.gguf")
    qwen3 = MiniMindForCausalLM(MiniMindConfig.preset("minimind-3", hidden_size=64, num_hidden_layers=1,
                                                   num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                                   intermediate_size=128, vocab_size=2048))
    qwen3.save_pretrained(tmp_path / "m3")
    tok.save_pretrained(tmp_path / "m3")
    with pytest.raises(ExportError, match="MiniMind-3 model .* `export qwen3`"):
        export_gguf(tmp_path / "m3", tmp_path / "m.gguf")
    from tokenizers import pre_tokenizers

    other = load_tokenizer_for(run)
    other.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    with pytest.raises(ExportError, match="pre_tokenizer"):
        write_gguf(model, other, tmp_path / "m.gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".m.gguf*"))


def test_command_line(course, tmp_path, capsys):
    from minimind_core.cli import main

    run, model, tok, files = course
    out = tmp_path / "m.gguf"
    assert main(["export", "gguf", "--model", str(run), "--out", str(out), "--dtype", "q8_0"]) == 0
    assert f"wrote {out} (q8_0," in capsys.readouterr().out
    assert out.read_bytes() == files["q8_0"].read_bytes()          # the same file as the library writes
    assert main(["export", "gguf", "--model", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "no such folder" in capsys.readouterr().err
