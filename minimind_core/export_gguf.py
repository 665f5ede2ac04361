"""Write a MiniMind model as one GGUF file, the format llama.cpp, Ollama and LM Studio run.

A dense MiniMind2 model is a Llama model with tied embeddings, so the file declares llama.cpp's
`llama` architecture and needs no converter of its own. Four things have to be right for llama.cpp
to compute what our model computes:

1. Hyper-parameters as llama.cpp's metadata keys: context length, widths, head counts (including
   the key-value heads of grouped-query attention), RoPE base (1e6, not Llama's 1e4) and RMSNorm eps.
2. Tensor names (token_embd, blk.N.attn_q, ..., output_norm). The output matrix is tied to the
   embedding: writing no `output.weight` tells llama.cpp to reuse `token_embd`.
3. RoPE layout. Our attention (like Hugging Face's Llama) rotates the two *halves* of each head
   (rotate-half); llama.cpp's `llama` architecture rotates *adjacent pairs* (dims 2i and 2i+1), the
   layout of Meta's original weights. The same network in llama.cpp's layout has the rows of every
   q and k head reordered: row i of the first half goes to row 2i, row i of the second half to 2i+1.
   Attention scores are dot products of q and k, so permuting both the same way changes nothing else.
4. The tokenizer: the byte-level BPE vocabulary and merges, the ids of <|im_start|> (bos) and
   <|im_end|> (eos), and the pre-tokenizer, the regex that cuts text into words before BPE runs.
   Ours is GPT-2's (ByteLevel without a prefix space), which llama.cpp knows as "gpt-2"; declaring
   it is what lets llama.cpp tokenize as we do without patching its converter.

The chat template goes in too (`tokenizer.chat_template`), so `llama-cli` and Ollama format chats
as MiniMind was trained. Weights are written as f32, f16 or q8_0 (8-bit blocks of 32 values with
one f16 scale each, made with the quantiser of llama.cpp's own `gguf` package); norm weights stay
f32 in every case, as llama.cpp's converter keeps them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .errors import ExportError

DTYPES = ("f32", "f16", "q8_0")
PRE_TOKENIZER = "gpt-2"          # llama.cpp's name for GPT-2's split regex (LLAMA_VOCAB_PRE_TYPE_GPT2)
Q8_BLOCK = 32                    # values per q8_0 block


# ----------------------------------------------------------------------------------------------
# tensors


def rotate_half_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder the rows of a q or k projection ([n_heads * head_dim, in]) from rotate-half RoPE
    to llama.cpp's adjacent-pair RoPE.

    Within a head of d rows, rotate-half pairs row i with row i + d/2; llama.cpp pairs 2i with 2i+1.
    So rows (0, d/2, 1, d/2+1, ...) are taken in that order: view each head as [2, d/2], swap the
    two axes, and flatten again.
    """
    rows, cols = w.shape
    head_dim = rows // n_heads
    return w.reshape(n_heads, 2, head_dim // 2, cols).transpose(1, 2).reshape(rows, cols)


def gguf_tensors(model) -> list[tuple[str, torch.Tensor]]:
    """(llama.cpp name, float32 tensor) for every weight of a dense MiniMindForCausalLM, in file order."""
    cfg = model.config
    sd = {k: v.detach().to(torch.float32).cpu() for k, v in model.state_dict().items()}
    out = [("token_embd.weight", sd["model.embed_tokens.weight"])]
    per_layer = [
        ("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
        ("post_attention_layernorm", "ffn_norm"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
    ]
    for i in range(cfg.num_hidden_layers):
        for ours, theirs in per_layer:
            w = sd[f"model.layers.{i}.{ours}.weight"]
            if theirs == "attn_q":
                w = rotate_half_to_interleaved(w, cfg.num_attention_heads)
            elif theirs == "attn_k":
                w = rotate_half_to_interleaved(w, cfg.num_key_value_heads)
            out.append((f"blk.{i}.{theirs}.weight", w))
    out.append(("output_norm.weight", sd["model.norm.weight"]))
    if not cfg.tie_word_embeddings:   # tied: llama.cpp reuses token_embd when output.weight is absent
        out.append(("output.weight", sd["lm_head.weight"]))
    return out


def _encode(w: torch.Tensor, dtype: str):
    """(numpy data, raw GGML type or None) for one tensor in the file's dtype."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    a = w.numpy()
    if a.ndim == 1 or dtype == "f32":
        return a.astype(np.float32), None
    if dtype == "q8_0" and a.shape[-1] % Q8_BLOCK == 0:
        return quantize(a.astype(np.float32), GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0
    return a.astype(np.float16), None   # f16, and q8_0's fallback for rows not a multiple of 32


# ----------------------------------------------------------------------------------------------
# tokenizer


def _check_pre_tokenizer(spec: dict, where: str) -> None:
    """Only GPT-2's byte-level split maps onto llama.cpp's "gpt-2" pre-tokenizer; refuse the rest."""
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") == "Sequence" and len(pre.get("pretokenizers", [])) == 1:
        pre = pre["pretokenizers"][0]
    ok = (pre.get("type") == "ByteLevel" and not pre.get("add_prefix_space", False)
          and pre.get("use_regex", True))
    if not ok:
        raise ExportError(f"{where}: pre_tokenizer is {json.dumps(pre)}; only ByteLevel without prefix space "
                          "(GPT-2's split) can be declared to llama.cpp")
    if spec.get("normalizer"):
        raise ExportError(f"{where}: the tokenizer has a normalizer ({spec['normalizer'].get('type')}); "
                          "llama.cpp's gpt2 tokenizer applies none")
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise ExportError(f"{where}: model is {model.get('type')} (byte_fallback={model.get('byte_fallback')}); "
                          "expected byte-level BPE")


def tokenizer_metadata(tokenizer, vocab_size: int, where: str = "tokenizer") -> dict:
    """Tokens, token types and merges as llama.cpp's `gpt2` tokenizer reads them.

    Token strings are the byte-level spellings of the vocabulary (a space is `Ġ`); special tokens
    are CONTROL, other added tokens USER_DEFINED. Ids the tokenizer does not use, up to the model's
    vocab_size, are filled with UNUSED placeholders, because llama.cpp takes the vocabulary size
    from the token list and it must match the embedding's rows.
    """
    from gguf import TokenType

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    _check_pre_tokenizer(spec, where)
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise ExportError(f"{where}: the tokenizer has ids up to {max(vocab.values())}, "
                          f"but the model's vocab_size is {vocab_size}")
    added = {t["id"]: t for t in spec.get("added_tokens", [])}
    by_id = {i: s for s, i in vocab.items()}
    tokens, types = [], []
    for i in range(vocab_size):
        if i in added:
            tokens.append(added[i]["content"])
            types.append(TokenType.CONTROL if added[i]["special"] else TokenType.USER_DEFINED)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    return {"tokens": tokens, "types": types, "merges": merges}


# ----------------------------------------------------------------------------------------------
# the file


def _load_dense(model_dir):
    """The model (LoRA adapters merged in) and its tokenizer, or an ExportError saying why not."""
    from .checkpoint import load_model_and_tokenizer
    from .lora import lora_layers, merge_lora

    model, tokenizer = load_model_and_tokenizer(model_dir, device="cpu")
    if lora_layers(model):        # an adapter folder: llama.cpp gets the adapted weights
        model = merge_lora(model)
    if model.config.use_moe:
        raise ExportError(f"{model_dir}: a mixture-of-experts model has no `llama` GGUF equivalent; "
                          "only dense models (use_moe=False) can be exported")
    if model.config.qk_norm:
        raise ExportError(f"{model_dir}: a MiniMind-3 model (q/k-norm) has no `llama` GGUF equivalent; write a "
                          "Qwen3 folder with `export qwen3` and convert it with llama.cpp's convert_hf_to_gguf.py")
    return model, tokenizer


def write_gguf(model, tokenizer, out_file: str | Path, dtype: str = "f16", name: str = "MiniMind") -> Path:
    """Write `model` (a dense MiniMindForCausalLM) and `tokenizer` to `out_file` as GGUF."""
    from gguf import GGML_QUANT_VERSION, GGUFWriter, LlamaFileType

    if dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    cfg = model.config
    tok = tokenizer_metadata(tokenizer, cfg.vocab_size)
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")

    w = GGUFWriter(str(tmp), "llama")
    w.add_name(name)
    w.add_file_type({"f32": LlamaFileType.ALL_F32, "f16": LlamaFileType.MOSTLY_F16,
                     "q8_0": LlamaFileType.MOSTLY_Q8_0}[dtype])
    if dtype == "q8_0":
        w.add_quantization_version(GGML_QUANT_VERSION)
    w.add_vocab_size(cfg.vocab_size)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_freq_base(float(cfg.rope_theta))
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(PRE_TOKENIZER)
    w.add_token_list(tok["tokens"])
    w.add_token_types(tok["types"])
    w.add_token_merges(tok["merges"])
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    w.add_pad_token_id(cfg.pad_token_id)
    w.add_add_bos_token(False)   # the chat template writes <|im_start|> itself
    w.add_add_eos_token(False)
    template = getattr(tokenizer, "chat_template", None)
    if template:
        w.add_chat_template(template)

    for tname, t in gguf_tensors(model):
        data, raw = _encode(t, dtype)
        w.add_tensor(tname, data, raw_dtype=raw)
    try:          # written under a hidden name and renamed when complete: no half-written FILE
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, out)
    except BaseException:
        w.close()
        tmp.unlink(missing_ok=True)
        raise
    return out


def export_gguf(model_dir: str | Path, out_file: str | Path, dtype: str = "f16") -> Path:
    """Write `model_dir` (a model folder, a run folder or a LoRA adapter folder) to one GGUF file."""
    if dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    model, tokenizer = _load_dense(model_dir)
    return write_gguf(model, tokenizer, out_file, dtype, name=Path(model_dir).absolute().name or "MiniMind")


__all__ = ["DTYPES", "PRE_TOKENIZER", "ExportError", "export_gguf", "write_gguf", "gguf_tensors",
           "rotate_half_to_interleaved", "tokenizer_metadata"]
