"""Export a MiniMind model as a plain transformers folder: Llama (MiniMind2) or Qwen3 (MiniMind-3).

A dense MiniMind2 model is a Llama model with tied embeddings, and a MiniMind-3 model (q/k-norm) is
a Qwen3 model, so the weights move over unchanged: only the config is translated. MiniMind-3-MoE is
a Qwen3-MoE model whose experts transformers keeps stacked in two tensors per layer. The folder
(config.json, model.safetensors, tokenizer with its chat template) loads with transformers alone,
without minimind_core, which is the road to vLLM, llama.cpp (convert_hf_to_gguf.py) and Ollama.
checkpoint.save_model_folder writes it, so older transformers read it alike (the RoPE base at the
top level of config.json too).

    hf_family(config)                 "llama" | "qwen3" | "qwen3_moe", or a ValueError saying why none
    to_hf(model)                      the transformers model holding the same weights
    export_hf(model_dir, out_dir)     the folder, in the family the model's config calls for
"""
from __future__ import annotations

from pathlib import Path

import torch

from .config import MiniMindConfig

FAMILIES = ("llama", "qwen3", "qwen3_moe")


def hf_family(config: MiniMindConfig) -> str:
    """The transformers architecture that computes exactly what this config's model computes."""
    if not config.use_moe:
        return "qwen3" if config.qk_norm else "llama"
    if config.qk_norm and config.n_shared_experts == 0:
        return "qwen3_moe"
    raise ValueError("a mixture-of-experts model with shared experts or without q/k-norm (MiniMind2-MoE) "
                     "has no transformers equivalent; dense models and MiniMind-3-MoE can be exported")


def _common(config: MiniMindConfig) -> dict:
    """The config fields every family shares, in transformers' names."""
    return dict(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                intermediate_size=config.intermediate_size, num_hidden_layers=config.num_hidden_layers,
                num_attention_heads=config.num_attention_heads, num_key_value_heads=config.num_key_value_heads,
                head_dim=config.head_dim, hidden_act="silu", max_position_embeddings=config.max_position_embeddings,
                rms_norm_eps=config.rms_norm_eps, tie_word_embeddings=config.tie_word_embeddings,
                attention_bias=False, bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                pad_token_id=config.pad_token_id, rope_parameters=_rope_parameters(config))


def _rope_parameters(config: MiniMindConfig) -> dict:
    """RoPE in transformers' terms; YaRN only where our tables use it (model.rope_tables)."""
    yarn = config.yarn
    if yarn is None or config.max_position_embeddings <= yarn["original_max_position_embeddings"]:
        return {"rope_type": "default", "rope_theta": config.rope_theta}
    return {"rope_type": "yarn", "rope_theta": config.rope_theta, **yarn}


def llama_config(config: MiniMindConfig):
    """The `LlamaConfig` that describes the same network as a dense MiniMind2 config."""
    from transformers import LlamaConfig

    if hf_family(config) != "llama":
        raise ValueError("only a dense model without q/k-norm (MiniMind2) is a LlamaForCausalLM; "
                         f"this one is exported as {hf_family(config)} (export qwen3, or export hf)")
    return LlamaConfig(**_common(config), mlp_bias=False)


def qwen3_config(config: MiniMindConfig):
    """The `Qwen3Config` (dense) or `Qwen3MoeConfig` (MoE) of a MiniMind-3 config."""
    from transformers import Qwen3Config, Qwen3MoeConfig

    family = hf_family(config)
    if family == "qwen3":
        return Qwen3Config(**_common(config), use_sliding_window=False)
    if family == "qwen3_moe":
        return Qwen3MoeConfig(**_common(config), num_experts=config.n_routed_experts,
                              num_experts_per_tok=config.num_experts_per_tok,
                              moe_intermediate_size=config.intermediate_size, norm_topk_prob=config.norm_topk_prob,
                              decoder_sparse_step=1, mlp_only_layers=[], router_aux_loss_coef=config.aux_loss_alpha)
    raise ValueError("only a model with q/k-norm (MiniMind-3) is a Qwen3 model; this one is a Llama model "
                     "(export llama, or export hf)")


def stack_experts(state_dict: dict, config: MiniMindConfig) -> dict:
    """MiniMind's experts (one gate/up/down Linear each) as transformers' Qwen3-MoE holds them: per
    layer `experts.gate_up_proj` [experts, 2 * width, hidden] (gate rows, then up rows) and
    `experts.down_proj` [experts, hidden, width]."""
    sd = {k: v for k, v in state_dict.items() if ".mlp.experts." not in k}
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}.mlp.experts"
        experts = range(config.n_routed_experts)
        sd[f"{p}.gate_up_proj"] = torch.stack([torch.cat([state_dict[f"{p}.{e}.gate_proj.weight"],
                                                          state_dict[f"{p}.{e}.up_proj.weight"]]) for e in experts])
        sd[f"{p}.down_proj"] = torch.stack([state_dict[f"{p}.{e}.down_proj.weight"] for e in experts])
    return sd


def to_hf(model):
    """A transformers `LlamaForCausalLM`, `Qwen3ForCausalLM` or `Qwen3MoeForCausalLM` holding the same
    weights as `model` (a MiniMindForCausalLM), in the model's dtype."""
    from transformers import LlamaForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM

    config = model.config
    family = hf_family(config)
    if family == "llama":
        hf = LlamaForCausalLM(llama_config(config))
    else:
        hf = (Qwen3ForCausalLM if family == "qwen3" else Qwen3MoeForCausalLM)(qwen3_config(config))
    sd = model.state_dict()
    if family == "qwen3_moe":
        sd = stack_experts(sd, config)
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    missing = [k for k in missing if "rotary_emb" not in k]
    if missing or unexpected:
        raise RuntimeError(f"state dicts differ: missing {missing[:5]}, unexpected {unexpected[:5]}")
    hf.tie_weights()
    return hf.to(next(model.parameters()).dtype).eval()


def to_llama(model):
    """A `LlamaForCausalLM` holding the same weights as `model` (a dense MiniMind2 model)."""
    llama_config(model.config)          # a clear error for a model that is not a Llama model
    return to_hf(model)


def to_qwen3(model):
    """A `Qwen3ForCausalLM` (or `Qwen3MoeForCausalLM`) holding the same weights as a MiniMind-3 model."""
    qwen3_config(model.config)
    return to_hf(model)


def export_hf(model_dir: str | Path, out_dir: str | Path, family: str | None = None) -> tuple[Path, str]:
    """Write `model_dir` (a model folder, run folder or LoRA adapter folder, merged first) as a
    transformers folder -> (the folder, its family). `family` ("llama", "qwen3") insists on one: a
    model of another family is a ValueError. A folder that does not load is a CheckpointError."""
    from .checkpoint import load_model_and_tokenizer, save_model_folder

    model, tokenizer = load_model_and_tokenizer(model_dir, device="cpu")
    found = hf_family(model.config)
    if family == "llama":
        llama_config(model.config)
    elif family == "qwen3":
        qwen3_config(model.config)
    if any(type(m).__name__ == "LoRALinear" for m in model.modules()):
        from .lora import merge_lora

        model = merge_lora(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf = to_hf(model)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(hf.generation_config, key, getattr(model.config, key))
    return save_model_folder(out, hf, tokenizer), found


def export_llama(model_dir: str | Path, out_dir: str | Path) -> Path:
    """`export_hf` insisting on a LlamaForCausalLM folder (a MiniMind2 model)."""
    return export_hf(model_dir, out_dir, family="llama")[0]


def export_qwen3(model_dir: str | Path, out_dir: str | Path) -> Path:
    """`export_hf` insisting on a Qwen3ForCausalLM (or Qwen3MoeForCausalLM) folder (a MiniMind-3 model)."""
    return export_hf(model_dir, out_dir, family="qwen3")[0]


__all__ = ["FAMILIES", "hf_family", "llama_config", "qwen3_config", "stack_experts", "to_hf", "to_llama",
           "to_qwen3", "export_hf", "export_llama", "export_qwen3"]
