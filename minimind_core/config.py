"""MiniMindConfig: the hyper-parameters of the MiniMind family, with MiniMind's own field names.

`MiniMindConfig()` is MiniMind2-Small (25.83M parameters). Every released model has a name
(presets.py):

    MiniMindConfig.preset("minimind2")         # MiniMind2, 104M
    MiniMindConfig.preset("minimind2-moe")     # MiniMind2-MoE, 145M
    MiniMindConfig.preset("minimind-3")        # MiniMind-3, 63.9M: Qwen3-shaped (head_dim 96, q/k-norm)
    MiniMindConfig.preset("minimind-3-moe")    # MiniMind-3-MoE, 198M

Because the field names are MiniMind's, a MiniMind2 `config.json` loads as it is. MiniMind-3's
config.json names a few MoE fields differently and has no switch for q/k-norm (every MiniMind-3
model has it); `minimind3_fields` translates those, so it loads as it is too.
"""
from __future__ import annotations

import math

from transformers import AutoConfig, PretrainedConfig


def swiglu_hidden_size(hidden_size: int) -> int:
    """MiniMind's FFN width: 8/3 of the model width, rounded up to a multiple of 64.

    512 -> 1408, 640 -> 1728, 768 -> 2048.
    """
    return 64 * math.ceil(int(hidden_size * 8 / 3) / 64)


# YaRN, as MiniMind switches it on for inference (`inference_rope_scaling`): RoPE frequencies below
# what a 2048-token context turns through are slowed down 16x, the fast ones kept (model.rope_tables)
YARN = dict(factor=16, original_max_position_embeddings=2048, beta_fast=32, beta_slow=1, attention_factor=1.0)

# keys only MiniMind-3's config.json has: seeing one means "this is a MiniMind-3 model"
_MINIMIND3_KEYS = ("router_aux_loss_coef", "num_experts", "moe_intermediate_size")


def minimind3_fields(kwargs: dict) -> dict:
    """The arguments of a MiniMind-3 config.json in this class's terms (others pass unchanged).

    MiniMind-3 calls n_routed_experts `num_experts` and aux_loss_alpha `router_aux_loss_coef`, has
    no shared experts, a batch-level balance loss (seq_aux=False), and q/k-norm in every model.
    """
    if "qk_norm" in kwargs or not any(k in kwargs for k in _MINIMIND3_KEYS):
        return kwargs
    kw = dict(kwargs)
    if "num_experts" in kw:
        kw["n_routed_experts"] = kw.pop("num_experts")
    if "router_aux_loss_coef" in kw:
        kw["aux_loss_alpha"] = kw.pop("router_aux_loss_coef")
    width = kw.pop("moe_intermediate_size", None)
    if width is not None and width != kw.get("intermediate_size", width):
        raise ValueError(f"moe_intermediate_size ({width}) differs from intermediate_size "
                         f"({kw.get('intermediate_size')}): experts narrower than the dense FFN are not supported")
    kw.setdefault("intermediate_size", width)
    kw.update(qk_norm=True, n_shared_experts=0, seq_aux=False)
    return kw


def checked_shape(hidden_size: int, num_attention_heads: int, num_key_value_heads: int, head_dim,
                  hidden_act: str, scoring_func: str) -> int:
    """The head width (hidden_size / heads unless given), after checking the shape fits together."""
    if head_dim is None:
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_attention_heads "
                             f"({num_attention_heads}), or give head_dim")
        head_dim = hidden_size // num_attention_heads
    if head_dim % 2:
        raise ValueError(f"head_dim must be even (RoPE rotates pairs of dimensions), got {head_dim}")
    if num_attention_heads % num_key_value_heads:
        raise ValueError(
            f"num_attention_heads ({num_attention_heads}) must be a multiple of "
            f"num_key_value_heads ({num_key_value_heads}) for grouped-query attention"
        )
    if hidden_act != "silu":
        raise ValueError(f"only hidden_act='silu' (SwiGLU) is supported, got {hidden_act!r}")
    if scoring_func != "softmax":
        raise ValueError(f"only scoring_func='softmax' is supported, got {scoring_func!r}")
    return head_dim


class MiniMindConfig(PretrainedConfig):
    model_type = "minimind"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        hidden_size: int = 512,                   # model width (d_model)
        num_hidden_layers: int = 8,               # decoder blocks
        num_attention_heads: int = 8,             # query heads
        num_key_value_heads: int = 2,             # key/value heads shared by groups of query heads (GQA)
        head_dim: int | None = None,              # width of one head; None: hidden_size / num_attention_heads
        qk_norm: bool = False,                    # RMSNorm over each head's q and k before RoPE (MiniMind-3)
        vocab_size: int = 6400,                   # MiniMind's tokenizer
        intermediate_size: int | None = None,     # SwiGLU width; None: swiglu_hidden_size(hidden_size)
        hidden_act: str = "silu",                 # SwiGLU's gate; the only one supported
        max_position_embeddings: int = 32768,     # rows of the RoPE tables: the longest sequence
        rms_norm_eps: float = 1e-5,
        rope_theta: float = 1e6,                  # RoPE base: larger = slower-turning dimensions
        inference_rope_scaling: bool = False,     # YaRN (the YARN settings) for contexts past 2048 tokens
        dropout: float = 0.0,                     # on embeddings, attention probabilities and FFN outputs
        bos_token_id: int = 1,                    # <|im_start|>
        eos_token_id: int = 2,                    # <|im_end|>
        pad_token_id: int = 0,                    # <|endoftext|>
        tie_word_embeddings: bool = True,         # lm_head shares the embedding matrix
        initializer_range: float = 0.02,          # std of the normal init of linear and embedding weights
        # mixture of experts (MiniMind2-MoE, see moe.py)
        use_moe: bool = False,
        num_experts_per_tok: int = 2,             # routed experts each token goes to (top-k)
        n_routed_experts: int = 4,
        n_shared_experts: int = 1,                # experts every token goes through
        scoring_func: str = "softmax",            # the router's scores; the only one supported
        aux_loss_alpha: float = 0.1,              # weight of the balance loss
        seq_aux: bool = True,                     # balance loss per sequence (True) or per batch
        norm_topk_prob: bool = True,              # renormalise the top-k weights to sum to 1
        **kwargs,
    ):
        # MiniMind's config.json files carry flash_attn (attention always uses PyTorch's SDPA here)
        # and rope_scaling (what inference_rope_scaling switches on: YARN)
        for key in ("flash_attn", "rope_scaling"):
            kwargs.pop(key, None)
        head_dim = checked_shape(hidden_size, num_attention_heads, num_key_value_heads, head_dim,
                                 hidden_act, scoring_func)
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim
        self.qk_norm = bool(qk_norm)
        self.vocab_size = vocab_size
        self.intermediate_size = intermediate_size or swiglu_hidden_size(hidden_size)
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = float(rope_theta)
        self.inference_rope_scaling = bool(inference_rope_scaling)
        self.dropout = dropout
        self.initializer_range = initializer_range
        self.use_moe = use_moe
        self.num_experts_per_tok = num_experts_per_tok
        self.n_routed_experts = n_routed_experts
        self.n_shared_experts = n_shared_experts
        self.scoring_func = scoring_func
        self.aux_loss_alpha = aux_loss_alpha
        self.seq_aux = seq_aux
        self.norm_topk_prob = norm_topk_prob
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """What from_pretrained calls with a config.json: a MiniMind-3 file is translated first."""
        return super().from_dict(minimind3_fields(dict(config_dict)), **kwargs)

    @classmethod
    def preset(cls, name: str, **changes) -> "MiniMindConfig":
        """The config of a released MiniMind model by name (presets.PRESET_NAMES), with `changes`
        applied: `MiniMindConfig.preset("minimind-3", num_hidden_layers=2)`."""
        from .presets import preset_arguments   # plain data; imported here so this file stands alone

        return cls(**{**preset_arguments(name), **changes})

    @property
    def yarn(self) -> dict | None:
        """The YaRN settings RoPE uses, or None (inference_rope_scaling off)."""
        return dict(YARN) if self.inference_rope_scaling else None


try:  # AutoConfig.from_pretrained(folder) then knows model_type "minimind"
    AutoConfig.register(MiniMindConfig.model_type, MiniMindConfig)
except ValueError:  # already registered (module reloaded)
    pass
