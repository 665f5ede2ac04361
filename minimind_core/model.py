"""MiniMind2: a Llama-style decoder in a few hundred readable lines.

    tokens -> embed_tokens -> [ RMSNorm -> attention (RoPE, GQA) -> + -> RMSNorm -> SwiGLU FFN -> + ] x N
           -> RMSNorm -> lm_head (tied to embed_tokens) -> logits

Parameter names are Hugging Face Llama's, so the same state dict loads into `LlamaForCausalLM`
(dense models) and MiniMind's own `.pth` checkpoints load with `load_state_dict`.

KV cache layout (MiniMind's): one (k, v) pair per layer, each [batch, past_len, kv_heads, head_dim],
keys stored after RoPE and before the KV heads are repeated. Hugging Face `Cache` objects (what
`model.generate` passes) are accepted too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.utils import ModelOutput

from .config import MiniMindConfig


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


def rope_tables(head_dim: int, max_positions: int, theta: float = 1e6):
    """cos and sin tables [max_positions, head_dim] for rotate-half RoPE.

    Frequency i (of head_dim/2) is theta^(-2i/head_dim); both halves of a head share it.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    positions = torch.arange(max_positions, dtype=torch.float32)
    angles = torch.outer(positions, inv_freq)          # [positions, head_dim/2]
    angles = torch.cat([angles, angles], dim=-1)        # [positions, head_dim]
    return angles.cos(), angles.sin()


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


class Attention(nn.Module):
    def __init__(self, config: MiniMindConfig, layer_idx: int = 0):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = config.num_key_value_heads
        self.n_rep = self.n_heads // self.n_kv_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        h = config.hidden_size
        self.q_proj = nn.Linear(h, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(h, self.n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(h, self.n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, h, bias=False)
        self.dropout = config.dropout

    def forward(self, x, cos, sin, past_key_value=None, use_cache=False, attention_mask=None,
                cache=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(b, t, self.n_kv_heads, self.head_dim)
        v = self.v_proj(x).view(b, t, self.n_kv_heads, self.head_dim)
        q, k = apply_rope(q, k, cos, sin)

        if cache is not None:  # a Hugging Face Cache object: it stores [batch, heads, seq, dim]
            k_all, v_all = cache.update(k.transpose(1, 2), v.transpose(1, 2), self.layer_idx)
            k, v = k_all.transpose(1, 2), v_all.transpose(1, 2)
            present = None
        else:
            if past_key_value is not None:
                k = torch.cat([past_key_value[0], k], dim=1)
                v = torch.cat([past_key_value[1], v], dim=1)
            present = (k, v) if use_cache else None

        # [batch, heads, seq, head_dim] for scaled_dot_product_attention
        q = q.transpose(1, 2)
        k = repeat_kv(k, self.n_rep).transpose(1, 2)
        v = repeat_kv(v, self.n_rep).transpose(1, 2)
        dropout = self.dropout if self.training else 0.0
        past_len = k.shape[2] - t
        if attention_mask is None and past_len == 0:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:
            mask = _causal_mask(t, past_len, attention_mask, x.device)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        out = out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim)
        return self.o_proj(out), present


def _causal_mask(q_len: int, past_len: int, attention_mask, device):
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


class MoEGate(nn.Module):
    """Softmax router: each token picks its top-k routed experts; weights renormalised to sum to 1."""

    def __init__(self, config: MiniMindConfig):
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.n_experts = config.n_routed_experts
        self.norm_topk_prob = config.norm_topk_prob
        self.alpha = config.aux_loss_alpha
        self.seq_aux = config.seq_aux
        self.weight = nn.Parameter(torch.empty(self.n_experts, config.hidden_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x):
        b, t, h = x.shape
        scores = F.linear(x.reshape(-1, h), self.weight).softmax(dim=-1)   # [b*t, experts]
        topk_weight, topk_idx = scores.topk(self.top_k, dim=-1, sorted=False)
        if self.top_k > 1 and self.norm_topk_prob:
            topk_weight = topk_weight / (topk_weight.sum(dim=-1, keepdim=True) + 1e-20)
        aux_loss = x.new_zeros(())
        if self.training and self.alpha > 0:
            aux_loss = self.balance_loss(scores.view(b, t, -1), topk_idx.view(b, t * self.top_k))
        return topk_idx, topk_weight, aux_loss

    def balance_loss(self, scores, topk_idx):
        """Sequence-level balance loss: alpha * sum_e (load_e * mean score_e), averaged over sequences.

        load_e is the share of the sequence's top-k picks that went to expert e, scaled so that a
        perfectly even router has load 1 for every expert.
        """
        b, t, n = scores.shape
        if self.seq_aux:
            load = torch.zeros(b, n, device=scores.device, dtype=scores.dtype)
            load.scatter_add_(1, topk_idx, torch.ones_like(topk_idx, dtype=scores.dtype))
            load = load / (topk_idx.shape[1] / n)
            return (load * scores.mean(dim=1)).sum(dim=1).mean() * self.alpha
        one_hot = F.one_hot(topk_idx.reshape(-1), n).float()
        fraction = one_hot.mean(0) * n
        return (fraction * scores.reshape(-1, n).mean(0)).sum() * self.alpha


class MoEFeedForward(nn.Module):
    """Routed experts (top-k of n) plus always-on shared experts."""

    def __init__(self, config: MiniMindConfig):
        super().__init__()
        self.experts = nn.ModuleList([FeedForward(config) for _ in range(config.n_routed_experts)])
        self.gate = MoEGate(config)
        self.shared_experts = nn.ModuleList([FeedForward(config) for _ in range(config.n_shared_experts)])
        self.aux_loss = None

    def forward(self, x):
        b, t, h = x.shape
        topk_idx, topk_weight, self.aux_loss = self.gate(x)
        flat = x.reshape(-1, h)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token_idx, slot = (topk_idx == e).nonzero(as_tuple=True)
            if token_idx.numel() == 0:
                continue
            y = expert(flat[token_idx]) * topk_weight[token_idx, slot, None].to(flat.dtype)
            out.index_add_(0, token_idx, y)
        out = out.view(b, t, h)
        for shared in self.shared_experts:
            out = out + shared(x)
        return out


class DecoderLayer(nn.Module):
    """Pre-norm block: h = x + attn(norm1(x)); out = h + ffn(norm2(h))."""

    def __init__(self, config: MiniMindConfig, layer_idx: int):
        super().__init__()
        self.self_attn = Attention(config, layer_idx)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MoEFeedForward(config) if config.use_moe else FeedForward(config)

    def forward(self, x, cos, sin, past_key_value=None, use_cache=False, attention_mask=None, cache=None):
        attn_out, present = self.self_attn(self.input_layernorm(x), cos, sin, past_key_value, use_cache,
                                           attention_mask, cache)
        h = x + attn_out
        return h + self.mlp(self.post_attention_layernorm(h)), present


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
            cos, sin = rope_tables(self.config.head_dim, self.config.max_position_embeddings,
                                   self.config.rope_theta)
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
        cos, sin = rope_tables(config.head_dim, config.max_position_embeddings, config.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, input_ids, attention_mask=None, past_key_values=None, use_cache=False):
        b, t = input_ids.shape
        cache = None
        if past_key_values is not None and not isinstance(past_key_values, (list, tuple)):
            cache = past_key_values          # a transformers Cache object
            past_len = cache.get_seq_length()
            past_key_values = None
        else:
            past_len = past_key_values[0][0].shape[1] if past_key_values else 0
        if past_len + t > self.rope_cos.shape[0]:
            raise ValueError(f"sequence of {past_len + t} positions is longer than max_position_embeddings "
                             f"({self.rope_cos.shape[0]})")
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None            # no padding: the plain causal path is faster
        cos = self.rope_cos[past_len:past_len + t]
        sin = self.rope_sin[past_len:past_len + t]
        x = self.dropout(self.embed_tokens(input_ids))
        presents = []
        for i, layer in enumerate(self.layers):
            past = past_key_values[i] if past_key_values else None
            x, present = layer(x, cos, sin, past, use_cache, attention_mask, cache)
            presents.append(present)
        aux_loss = sum((l.mlp.aux_loss for l in self.layers if isinstance(l.mlp, MoEFeedForward)
                        and l.mlp.aux_loss is not None), x.new_zeros(()))
        if cache is not None:
            new_cache = cache
        else:
            new_cache = presents if use_cache else None
        return self.norm(x), new_cache, aux_loss


@dataclass
class MiniMindCausalLMOutput(ModelOutput):
    """loss, logits, the KV cache and the MoE balance loss (0 for dense models).

    `cache` holds MiniMind's per-layer (k, v) list, or the transformers Cache object that was
    passed in; `past_key_values` is the same object under its older name.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: object | None = None
    aux_loss: torch.FloatTensor | None = None

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
                use_cache=False, logits_to_keep: int = 0, cache=None, **kwargs):
        """Logits for every position; with `labels` also the loss (labels are shifted here).

        `past_key_values` is a list of per-layer (k, v) from an earlier call with use_cache=True;
        `cache` (or past_key_values) may also be a transformers Cache object, as `generate` passes.
        """
        if cache is not None:
            past_key_values = cache
        hidden, cache, aux_loss = self.model(input_ids, attention_mask, past_key_values, use_cache)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                   labels[:, 1:].reshape(-1), ignore_index=-100)
            loss = loss + aux_loss
        return MiniMindCausalLMOutput(loss=loss, logits=logits, cache=cache, aux_loss=aux_loss)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters, a tied matrix counted once (model.parameters() already dedupes)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
