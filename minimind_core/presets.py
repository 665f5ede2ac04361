"""The MiniMind family by name: the MiniMindConfig arguments of each released model.

    MiniMindConfig.preset("minimind-3")              # the config (config.py)
    train("pretrain", profile="full", model="minimind-3")
    python -m minimind_core train pretrain --model minimind-3

Two generations share one code path. MiniMind2 (2025) is Llama-shaped: head_dim = hidden / heads,
no norm inside attention, 8/3-wide SwiGLU, MiniMind2-MoE with 4 routed experts (top 2) and 1
shared expert. MiniMind-3 (2026) is Qwen3-shaped: a per-head RMSNorm on queries and keys before
RoPE (q/k-norm), more key/value heads, a pi-times-wide SwiGLU, and its MoE routes each token to one
of 4 experts with no shared expert.

Each entry lists only what differs from `MiniMindConfig()`'s defaults (MiniMind2-Small). This
module is plain data, so the command line can list the names without importing torch.
"""
from __future__ import annotations

DEFAULT_PRESET = "minimind2-small"

_MINIMIND3 = dict(
    hidden_size=768, num_hidden_layers=8,
    num_attention_heads=8, num_key_value_heads=4, head_dim=96,
    intermediate_size=2432,      # ceil(768 * pi / 64) * 64: MiniMind-3's width rule (MiniMind2: 8/3)
    rms_norm_eps=1e-6, rope_theta=1e6,
    qk_norm=True,                # RMSNorm over each head's query and key, before RoPE
)

PRESETS: dict[str, dict] = {
    # name               MiniMindConfig arguments                        parameters
    "minimind2-small": dict(),                                           # 25,829,888
    "minimind2": dict(hidden_size=768, num_hidden_layers=16),            # 104,030,976
    "minimind2-moe": dict(hidden_size=640, use_moe=True),                # 145,029,760
    "minimind-3": dict(_MINIMIND3),                                      # 63,912,192
    "minimind-3-moe": dict(_MINIMIND3, use_moe=True, n_routed_experts=4, num_experts_per_tok=1,
                           n_shared_experts=0, norm_topk_prob=True,
                           aux_loss_alpha=5e-4, seq_aux=False),          # 198,416,640
}
PRESET_NAMES = tuple(PRESETS)


def preset_arguments(name: str) -> dict:
    """A copy of the MiniMindConfig arguments of preset `name`; an unknown name is a ValueError
    that lists the valid ones."""
    key = str(name).strip().lower()
    if key not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; expected one of {', '.join(PRESET_NAMES)}")
    return dict(PRESETS[key])


__all__ = ["DEFAULT_PRESET", "PRESETS", "PRESET_NAMES", "preset_arguments"]
