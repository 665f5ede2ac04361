"""Export a MiniMind model as a plain transformers `LlamaForCausalLM` folder.

MiniMind2's dense models are Llama models with tied embeddings, so the weights move over
unchanged: only the config is translated. The folder (config.json, model.safetensors, tokenizer
with its chat template) loads with transformers alone, without minimind_core, which is the road to
vLLM, llama.cpp (convert_hf_to_gguf.py) and Ollama.
"""
from __future__ import annotations

from pathlib import Path

from .config import MiniMindConfig


def llama_config(config: MiniMindConfig):
    """The `LlamaConfig` that describes the same network as a dense MiniMindConfig."""
    from transformers import LlamaConfig

    if config.use_moe:
        raise ValueError("a mixture-of-experts MiniMind model has no LlamaForCausalLM equivalent; "
                         "only dense models (use_moe=False) can be exported to Llama")
    return LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        head_dim=config.head_dim,
        hidden_act="silu",
        max_position_embeddings=config.max_position_embeddings,
        rms_norm_eps=config.rms_norm_eps,
        rope_theta=config.rope_theta,
        tie_word_embeddings=config.tie_word_embeddings,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )


def to_llama(model):
    """A `LlamaForCausalLM` holding the same weights as `model` (a MiniMindForCausalLM)."""
    from transformers import LlamaForCausalLM

    llama = LlamaForCausalLM(llama_config(model.config))
    missing, unexpected = llama.load_state_dict(model.state_dict(), strict=False)
    missing = [k for k in missing if "rotary_emb" not in k]
    if missing or unexpected:
        raise RuntimeError(f"state dicts differ: missing {missing[:5]}, unexpected {unexpected[:5]}")
    llama.tie_weights()
    return llama.to(next(model.parameters()).dtype)


def export_llama(model_dir: str | Path, out_dir: str | Path) -> Path:
    """Write `model_dir` (a model folder, run folder or LoRA adapter folder, merged first) as a
    LlamaForCausalLM folder. A folder that does not load is a CheckpointError."""
    from .checkpoint import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_dir, device="cpu")
    if any(type(m).__name__ == "LoRALinear" for m in model.modules()):
        from .lora import merge_lora

        model = merge_lora(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    llama = to_llama(model)
    llama.generation_config.bos_token_id = model.config.bos_token_id
    llama.generation_config.eos_token_id = model.config.eos_token_id
    llama.generation_config.pad_token_id = model.config.pad_token_id
    llama.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out
