"""MiniMind: a Llama-style decoder in a few hundred readable lines (MiniMind2 and MiniMind-3).

    tokens -> embed_tokens -> [ RMSNorm -> attention (RoPE, GQA) -> + -> RMSNorm -> SwiGLU FFN -> + ] x N
           -> RMSNorm -> lm_head (tied to embed_tokens) -> logits

MiniMind-3 (config.qk_norm) adds one step inside attention: each head's query and key go through
their own RMSNorm (`q_norm`, `k_norm`) before RoPE, which is what makes it Qwen3-shaped.

Parameter names are Hugging Face's, so the same state dict loads into `LlamaForCausalLM` (dense
MiniMind2) or `Qwen3ForCausalLM` (dense MiniMind-3), and MiniMind's own `.pth` checkpoints load
with `load_state_dict`. The MoE feed-forward lives in moe.py, the KV cache in kv_cache.py.

    model(ids).logits                                   [batch, seq, vocab]
    model(ids, labels=ids).loss                         next-token cross-entropy (labels shifted here)
    out = model(ids, use_cache=True); out.cache         a KVCache to pass back with the next token
    model(ids, output_attentions=True).attentions       one [batch, heads, q, k] tensor per layer

At the end: counting parameters (count_parameters, meta_model, parameter_breakdown by component).

Importing this module registers the model with transformers' Auto classes, so
`AutoModelForCausalLM.from_pretrained(folder)` loads a saved MiniMind without `trust_remote_code`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.utils import ModelOutput

from .config import MiniMindConfig
from .kv_cache import KVCache, TransformersCacheAdapter
from .losses import n_targets, token_ce_sum
from .moe import MoEFeedForward, MoEGate


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in float32 and cast back before the weight."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


def rope_tables(head_dim: int, max_positions: int, theta: float = 1e6, yarn: dict | None = None):
    """cos and sin tables [max_positions, head_dim] for rotate-half RoPE.

    Frequency i (of head_dim/2) is theta^(-2i/head_dim); both halves of a head share it. With
    `yarn` (config.YARN) and a table longer than yarn's original_max_position_embeddings, the
    frequencies are first stretched by `yarn_frequencies`.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    scale = 1.0
    if yarn is not None and max_positions > yarn["original_max_position_embeddings"]:
        inv_freq = yarn_frequencies(inv_freq, head_dim, theta, yarn)
        scale = yarn.get("attention_factor", 1.0)
    positions = torch.arange(max_positions, dtype=torch.float32)
    angles = torch.outer(positions, inv_freq)          # [positions, head_dim/2]
    angles = torch.cat([angles, angles], dim=-1)        # [positions, head_dim]
    return angles.cos() * scale, angles.sin() * scale


def yarn_frequencies(inv_freq: torch.Tensor, head_dim: int, theta: float, yarn: dict) -> torch.Tensor:
    """YaRN: let a model trained on `original` positions read up to `factor` times more.

    A pair whose frequency turns it many times within the original context (more than beta_fast
    turns) already knows every relative distance: it keeps its frequency. A pair that turns less
    than beta_slow times only ever saw a fraction of its circle: its frequency is divided by
    `factor`, so the longer context maps onto the angles it saw in training. The pairs in between
    blend the two along a linear ramp over their index.
    """
    original, factor = yarn["original_max_position_embeddings"], yarn["factor"]

    def pair_with_turns(turns: float) -> float:   # the (fractional) pair index that turns `turns` times
        return head_dim * math.log(original / (turns * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(pair_with_turns(yarn["beta_fast"])), 0)
    high = min(math.ceil(pair_with_turns(yarn["beta_slow"])), head_dim // 2 - 1)
    ramp = ((torch.arange(head_dim // 2).float() - low) / max(high - low, 1e-3)).clamp(0, 1)
    return inv_freq * (1 - ramp) + inv_freq / factor * ramp


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Rotate q and k ([batch, seq, heads, head_dim]) by the angles of their positions.

    cos/sin are [seq, head_dim] (the rows for these positions).
    """
    cos = cos[None, :, None, :]
    sin = sin[None, :, None, :]
    q_rot = (q * cos + rotate_half(q) * sin).to(q.dtype)
    k_rot = (k * cos + rotate_half(k) * sin).to(k.dtype)
    return q_rot, k_rot


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[batch, seq, kv_heads, head_dim] -> [batch, seq, kv_heads * n_rep, head_dim].

    Each KV head is shared by n_rep consecutive query heads (grouped-query attention).
    """
    if n_rep == 1:
        return x
    b, t, h, d = x.shape
    return x[:, :, :, None, :].expand(b, t, h, n_rep, d).reshape(b, t, h * n_rep, d)


def causal_mask(q_len: int, past_len: int, attention_mask=None, device=None) -> torch.Tensor:
    """Boolean mask [batch or 1, 1, q_len, past_len + q_len]: True where a query may attend.

    A query at position past_len + i sees keys 0..past_len + i; keys whose attention_mask is 0
    (padding) are hidden. A row that would see nothing (a padded query) sees itself, so no NaN.
    """
    k_len = past_len + q_len
    q_pos = torch.arange(past_len, k_len, device=device)[:, None]
    k_pos = torch.arange(k_len, device=device)[None, :]
    mask = (k_pos <= q_pos)[None, None]
    if attention_mask is not None:
        keep = attention_mask[:, None, None, -k_len:].bool()
        mask = (mask & keep) | (k_pos == q_pos)[None, None]
    return mask


def attention_with_weights(q, k, v, mask, dropout_p: float = 0.0):
    """softmax(q k^T / sqrt(head_dim)) v written out: (output, weights [batch, heads, q, k]).

    q/k/v are [batch, heads, seq, head_dim]; the scores and the softmax are computed in float32.
    The same numbers as `scaled_dot_product_attention` up to rounding, but the probabilities are
    kept, so the model takes this path only when asked for them (output_attentions=True).
    """
    scores = q.float() @ k.float().transpose(-1, -2) / math.sqrt(q.shape[-1])
    weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    mixed = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return (mixed @ v.float()).to(q.dtype), weights


# PyTorch 2.5+ lets scaled_dot_product_attention share KV heads (GQA) without repeating them
_SDPA_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)


class Attention(nn.Module):
    """Grouped-query self-attention with RoPE: n_heads query heads share n_kv_heads key/value heads.

    With config.qk_norm (MiniMind-3, Qwen3) every head's query and key vectors are RMS-normalised
    (with a learned weight per dimension, shared by the heads) before RoPE. The attention logits
    q.k / sqrt(head_dim) then cannot grow just because the projections grow during training, a
    known cause of loss spikes; the norm weights still let the model sharpen a head.
    """

    def __init__(self, config: MiniMindConfig, layer_idx: int = 0):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = config.num_key_value_heads
        self.n_rep = self.n_heads // self.n_kv_heads
        self.head_dim = config.head_dim
        h = config.hidden_size
        self.q_proj = nn.Linear(h, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(h, self.n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(h, self.n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, h, bias=False)
        if config.qk_norm:
            self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.qk_norm = config.qk_norm
        self.dropout = config.dropout

    def forward(self, x, rope, cache=None, attention_mask=None, output_attentions=False):
        """x [batch, t, hidden] -> (output [batch, t, hidden], weights [batch, heads, t, keys] or None).

        rope: the (cos, sin) rows [t, head_dim] of the new tokens' positions. cache: a KVCache
        (this layer writes its new keys/values there and attends to all it holds). attention_mask:
        [batch, keys], 0 where a key is padding. The weights are computed only if output_attentions.
        """
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(b, t, self.n_kv_heads, self.head_dim)
        v = self.v_proj(x).view(b, t, self.n_kv_heads, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)      # [batch, past + t, kv_heads, head_dim]

        past_len = k.shape[1] - t
        mask = None                                         # None: plain causal, the fastest path
        if t == 1 and attention_mask is None and not output_attentions:
            pass                                            # one new token, no padding: it sees every key
        elif attention_mask is not None or past_len > 0 or output_attentions:
            mask = causal_mask(t, past_len, attention_mask, x.device)
        causal = mask is None and t > 1
        dropout = self.dropout if self.training else 0.0
        q = q.transpose(1, 2)                               # [batch, heads, t, head_dim]
        weights = None
        if cache is not None and _SDPA_GQA and not output_attentions:
            # with a cache (generation), SDPA shares each KV head among its query heads: no copies
            out = F.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
                                                 dropout_p=dropout, is_causal=causal, enable_gqa=True)
        else:
            k = repeat_kv(k, self.n_rep).transpose(1, 2)    # [batch, heads, past + t, head_dim]
            v = repeat_kv(v, self.n_rep).transpose(1, 2)
            if output_attentions:
                out, weights = attention_with_weights(q, k, v, mask, dropout)
            else:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal)
        out = out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim)
        return self.o_proj(out), weights


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: MiniMindConfig):
        super().__init__()
        h, m = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(h, m, bias=False)
        self.up_proj = nn.Linear(h, m, bias=False)
        self.down_proj = nn.Linear(m, h, bias=False)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x)))


class DecoderLayer(nn.Module):
    """Pre-norm block: h = x + attn(norm1(x)); out = h + ffn(norm2(h))."""

    def __init__(self, config: MiniMindConfig, layer_idx: int):
        super().__init__()
        self.self_attn = Attention(config, layer_idx)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.use_moe = config.use_moe
        self.mlp = MoEFeedForward(config, expert=FeedForward) if config.use_moe else FeedForward(config)

    def forward(self, x, rope, cache=None, attention_mask=None, output_attentions=False):
        """-> (output [batch, t, hidden], attention weights or None, MoE balance loss or None)."""
        attn_out, weights = self.self_attn(self.input_layernorm(x), rope, cache=cache,
                                           attention_mask=attention_mask, output_attentions=output_attentions)
        h = x + attn_out
        if self.use_moe:
            ffn_out, aux_loss = self.mlp(self.post_attention_layernorm(h))
        else:
            ffn_out, aux_loss = self.mlp(self.post_attention_layernorm(h)), None
        return h + ffn_out, weights, aux_loss


def model_rope_tables(config: MiniMindConfig):
    """The RoPE tables of a model: every position up to max_position_embeddings, YaRN if switched on."""
    return rope_tables(config.head_dim, config.max_position_embeddings, config.rope_theta, config.yarn)


class MiniMindPreTrainedModel(PreTrainedModel):
    config_class = MiniMindConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules = ["DecoderLayer"]
    _supports_sdpa = True

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
        elif isinstance(module, MoEGate):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))
        elif isinstance(module, MiniMindModel):
            cos, sin = model_rope_tables(self.config)
            module.rope_cos.copy_(cos)
            module.rope_sin.copy_(sin)


class MiniMindModel(MiniMindPreTrainedModel):
    """The decoder stack without the language-model head."""

    def __init__(self, config: MiniMindConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList([DecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        cos, sin = model_rope_tables(config)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, input_ids, attention_mask=None, cache=None, output_attentions=False):
        """-> (hidden states after the final norm, MoE balance loss (0 if dense), attentions or None).

        With a cache, input_ids are the tokens after the cached ones: their RoPE positions start
        at cache.length, and the cache has advanced past them on return.
        """
        b, t = input_ids.shape
        past_len = cache.length if cache is not None else 0
        if past_len + t > self.rope_cos.shape[0]:
            raise ValueError(f"sequence of {past_len + t} positions is longer than max_position_embeddings "
                             f"({self.rope_cos.shape[0]})")
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None            # no padding: the plain causal path is faster
        rope = (self.rope_cos[past_len:past_len + t], self.rope_sin[past_len:past_len + t])
        x = self.dropout(self.embed_tokens(input_ids))
        aux_loss = x.new_zeros(())
        attentions = []
        for layer in self.layers:
            x, weights, layer_aux = layer(x, rope, cache=cache, attention_mask=attention_mask,
                                          output_attentions=output_attentions)
            if layer_aux is not None:
                aux_loss = aux_loss + layer_aux
            attentions.append(weights)
        if cache is not None:
            cache.advance(t)
        return self.norm(x), aux_loss, tuple(attentions) if output_attentions else None


@dataclass
class MiniMindCausalLMOutput(ModelOutput):
    """loss, logits, the KV cache, the MoE balance loss (0 for dense models) and, when asked for,
    the attention weights (one [batch, heads, q, k] tensor per layer).

    `cache` is the KVCache the call used (or the transformers Cache that was passed in);
    `past_key_values` is the same object under its older name.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: object | None = None
    aux_loss: torch.FloatTensor | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None

    @property
    def past_key_values(self):
        return self.cache


class MiniMindForCausalLM(MiniMindPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: MiniMindConfig | None = None):
        config = config or MiniMindConfig()
        super().__init__(config)
        self.model = MiniMindModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def forward(self, input_ids=None, attention_mask=None, labels=None, past_key_values=None,
                use_cache=False, logits_to_keep: int = 0, cache=None, output_attentions=False, **kwargs):
        """Logits for every position; with `labels` also the loss (labels are shifted here).

        `cache` (or `past_key_values`): the KVCache of an earlier call, or a transformers Cache
        (what `generate` passes). use_cache=True without one starts a new KVCache.
        """
        cache = past_key_values if cache is None else cache
        kv = self._kv_cache(cache, use_cache, input_ids)
        hidden, aux_loss, attentions = self.model(input_ids, attention_mask, kv, output_attentions)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = token_ce_sum(logits, labels) / n_targets(labels) + aux_loss
        return MiniMindCausalLMOutput(loss=loss, logits=logits, cache=kv if cache is None else cache,
                                      aux_loss=aux_loss, attentions=attentions)

    def _kv_cache(self, cache, use_cache: bool, input_ids):
        """The cache the layers use: ours as it is, a transformers Cache behind an adapter, a new
        KVCache when use_cache asks for one."""
        if cache is None:
            return KVCache(self.config, input_ids.shape[0]) if use_cache else None
        if isinstance(cache, KVCache):
            return cache
        if isinstance(cache, Cache):
            return TransformersCacheAdapter(cache)
        raise TypeError(f"cache must be a minimind_core KVCache or a transformers Cache, got "
                        f"{type(cache).__name__} (per-layer (k, v) lists are no longer accepted: pass the "
                        "cache object that the previous call returned)")


# ----------------------------------------------------------------------------------------------
# counting parameters


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters, a tied matrix counted once (model.parameters() already dedupes)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def meta_model(config: MiniMindConfig) -> MiniMindForCausalLM:
    """`MiniMindForCausalLM(config)` on the meta device: every parameter has its shape, none has
    memory, so even a 100M-parameter model costs nothing to count or inspect."""
    with torch.device("meta"):
        return MiniMindForCausalLM(config)


def embedding_parameters(vocab_size: int, hidden_size: int, tied: bool = True) -> int:
    """Parameters of the input embedding and the output projection (lm_head, no bias):
    one vocab x hidden matrix when they are tied, two when not."""
    return vocab_size * hidden_size * (1 if tied else 2)


COMPONENT_ORDER = ["embedding (tied with lm_head)", "embedding", "lm_head", "attention q", "attention k",
                   "attention v", "attention o", "MLP gate", "MLP up", "MLP down", "MoE router", "norms",
                   "q/k norms"]
_ATTN_NAME = re.compile(r"\.self_attn\.([qkvo])_proj\.")
_MLP_NAME = re.compile(r"\.(gate|up|down)_proj\.")


def component_of(name: str, tied: bool = True) -> str:
    """The component a parameter belongs to, from its (Hugging Face Llama) name.

    embedding / lm_head, attention q|k|v|o, MLP gate|up|down (routed and shared experts of an MoE
    model included), MoE router, norms, q/k norms (MiniMind-3's per-head norms in attention)."""
    if name.startswith("model.embed_tokens."):
        return "embedding (tied with lm_head)" if tied else "embedding"
    if name.startswith("lm_head."):
        return "lm_head"
    if name.endswith((".self_attn.q_norm.weight", ".self_attn.k_norm.weight")):
        return "q/k norms"
    m = _ATTN_NAME.search(name)
    if m:
        return f"attention {m.group(1)}"
    if ".mlp." in name:
        m = _MLP_NAME.search(name)
        if m:
            return f"MLP {m.group(1)}"
        if name.endswith(".mlp.gate.weight"):
            return "MoE router"
    if "layernorm" in name or name.startswith("model.norm."):
        return "norms"
    raise ValueError(f"parameter {name!r}: no component known for this name")


def parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """{component: number of parameters} over `model.named_parameters()` (which lists a tied
    matrix once), in COMPONENT_ORDER. The values sum to `count_parameters(model)`."""
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        c = component_of(name, tied)
        counts[c] = counts.get(c, 0) + p.numel()
    return {c: counts[c] for c in COMPONENT_ORDER if c in counts}


# ----------------------------------------------------------------------------------------------
# registration with transformers


def _register_with_transformers() -> None:
    """Let AutoModelForCausalLM load a folder whose config says model_type "minimind" (config.py
    registers the config the same way)."""
    try:
        AutoModelForCausalLM.register(MiniMindConfig, MiniMindForCausalLM)
    except ValueError:  # already registered (module reloaded)
        pass


_register_with_transformers()
