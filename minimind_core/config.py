"""MiniMindConfig: the hyper-parameters of the MiniMind2 family, with MiniMind's own field names.

`MiniMindConfig()` is MiniMind2-Small (25.83M parameters). The other presets:

    MiniMindConfig(hidden_size=768, num_hidden_layers=16)   # MiniMind2, 104M
    MiniMindConfig(hidden_size=640, use_moe=True)           # MiniMind2-MoE, 145M

Because the field names are MiniMind's, a MiniMind `config.json` loads as it is.
"""
from __future__ import annotations

import math

from transformers import AutoConfig, PretrainedConfig


def swiglu_hidden_size(hidden_size: int) -> int:
    """MiniMind's FFN width: 8/3 of the model width, rounded up to a multiple of 64.

    512 -> 1408, 640 -> 1728, 768 -> 2048.
    """
    return 64 * math.ceil(int(hidden_size * 8 / 3) / 64)


class MiniMindConfig(PretrainedConfig):
    model_type = "minimind"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        hidden_size: int = 512,                   # model width (d_model)
        num_hidden_layers: int = 8,               # decoder blocks
        num_attention_heads: int = 8,             # query heads; head_dim = hidden_size / heads
        num_key_value_heads: int = 2,             # key/value heads shared by groups of query heads (GQA)
        vocab_size: int = 6400,                   # MiniMind's tokenizer
        intermediate_size: int | None = None,     # SwiGLU width; None: swiglu_hidden_size(hidden_size)
        hidden_act: str = "silu",                 # SwiGLU's gate; the only one supported
        max_position_embeddings: int = 32768,     # rows of the RoPE tables: the longest sequence
        rms_norm_eps: float = 1e-5,
        rope_theta: float = 1e6,                  # RoPE base: larger = slower-turning dimensions
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
        # MiniMind's config.json files carry flash_attn; attention always uses PyTorch's SDPA here
        kwargs.pop("flash_attn", None)
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_attention_heads})"
            )
        if num_attention_heads % num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({num_key_value_heads}) for grouped-query attention"
            )
        if hidden_act != "silu":
            raise ValueError(f"only hidden_act='silu' (SwiGLU) is supported, got {hidden_act!r}")
        if scoring_func != "softmax":
            raise ValueError(f"only scoring_func='softmax' is supported, got {scoring_func!r}")
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.vocab_size = vocab_size
        self.intermediate_size = intermediate_size or swiglu_hidden_size(hidden_size)
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = float(rope_theta)
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

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


try:  # AutoConfig.from_pretrained(folder) then knows model_type "minimind"
    AutoConfig.register(MiniMindConfig.model_type, MiniMindConfig)
except ValueError:  # already registered (module reloaded)
    pass
