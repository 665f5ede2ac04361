"""One decoding step of a dense MiniMind model, with as little Python per token as possible.

After the prompt, generation calls the model once per new token with a single token. On a CPU a
small model's step is mostly fixed costs, not arithmetic: the tiny model's step is ~60 module
calls (each through nn.Module.__call__), an output object, and a few hundred small tensor
operations. `DecodeStep` runs the same step on the model's own weights as plain function calls:

    x = embed(token)
    for each layer:  h = norm1(x); q, k, v = h Wq, h Wk, h Wv; (MiniMind-3: q, k = q_norm(q), k_norm(k));
                     rotate q, k (RoPE); write k, v to the cache; x = x + attention(q, cached k, cached v) Wo
                     h = norm2(x); x = x + (silu(h Wg) * h Wu) Wd
    logits = norm(x) W_head

Every tensor operation computes what the model's forward computes, on the same inputs in the same
order (the same RMSNorm formula, RoPE, scaled_dot_product_attention call), so the logits are the
model's bit for bit (tests/test_decode.py); only the Python around them is gone, which makes a
step about 1.5x faster on the tiny model (benchmarks/generate_speed.py).

Only a model whose layers are exactly the dense MiniMind layer takes this path (`supports`): a
LoRA adapter, MoE feed-forward, forward hooks or any parameter the step does not know sends
generation through the model's forward instead.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import model as modeling

# the parameters of one dense decoder layer, and nothing else
LAYER_PARAMETERS = {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                    "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
                    "input_layernorm.weight", "post_attention_layernorm.weight"}
QK_NORM_PARAMETERS = {"self_attn.q_norm.weight", "self_attn.k_norm.weight"}   # MiniMind-3
LAYER_MODULES = (modeling.DecoderLayer, modeling.Attention, modeling.FeedForward, modeling.RMSNorm, nn.Linear,
                 nn.Dropout)


def supports(model) -> bool:
    """Whether `model` is a dense MiniMindForCausalLM whose every layer DecodeStep reproduces."""
    if type(model) is not modeling.MiniMindForCausalLM or model.config.use_moe or not modeling._SDPA_GQA:
        return False
    for module in model.modules():
        if module._forward_hooks or module._forward_pre_hooks:
            return False
    for layer in model.model.layers:
        expected = LAYER_PARAMETERS | (QK_NORM_PARAMETERS if layer.self_attn.qk_norm else set())
        if {name for name, _ in layer.named_parameters()} != expected:
            return False
        if any(type(m) not in LAYER_MODULES for m in layer.modules()):
            return False
    return type(model.lm_head) is nn.Linear and model.lm_head.bias is None


def rms_norm_fp32(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """model.RMSNorm.forward for a float32 `x`, whose two casts (to float32 and back) do nothing."""
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope_fp32(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """model.apply_rope for one float32 tensor: x cos + rotate_half(x) sin, with rotate_half(x) sin
    computed as roll(x) * (-sin, sin) (one operation instead of three; the same numbers, since
    -(a b) = a (-b) exactly). cos/signed_sin: [1, 1, 1, head_dim]."""
    return x * cos + x.roll(x.shape[-1] // 2, -1) * signed_sin


class DecodeStep:
    """`step(tokens [batch, 1], cache, attention_mask)` -> next-token logits [batch, vocab]: the
    model's forward for one new token (its RoPE position is cache.length), without module calls.

    A float32 model also skips the no-op casts of RMSNorm and computes RoPE's rotation in one
    operation (rms_norm_fp32, rope_fp32); other dtypes use the model's own functions.
    """

    def __init__(self, model):
        if not supports(model):
            raise ValueError("DecodeStep reproduces dense MiniMind layers only; use the model's forward")
        self.model = model
        self.fp32 = model.model.embed_tokens.weight.dtype == torch.float32 and model.model.rope_cos.dtype == torch.float32
        norm = (lambda m: (lambda x: rms_norm_fp32(x, m.weight, m.eps))) if self.fp32 else (lambda m: m.forward)
        self.layers = []
        for i, layer in enumerate(model.model.layers):
            a, f = layer.self_attn, layer.mlp
            qk_norm = (norm(a.q_norm), norm(a.k_norm)) if a.qk_norm else None
            self.layers.append((i, norm(layer.input_layernorm), a.q_proj.weight, a.k_proj.weight, a.v_proj.weight,
                                qk_norm, a.o_proj.weight, a.n_heads, a.n_kv_heads, a.head_dim,
                                norm(layer.post_attention_layernorm), f.gate_proj.weight, f.up_proj.weight,
                                f.down_proj.weight))
        self.final_norm = norm(model.model.norm)
        half = model.model.rope_sin.shape[-1] // 2
        self.sign = torch.cat([-torch.ones(half), torch.ones(half)]).to(model.model.rope_sin)

    def __call__(self, tokens: torch.Tensor, cache, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        inner = self.model.model
        b = tokens.shape[0]
        pos = cache.length
        cos, sin = inner.rope_cos[pos:pos + 1], inner.rope_sin[pos:pos + 1]
        if self.fp32:
            cos, signed_sin = cos[None, :, None, :], (sin * self.sign)[None, :, None, :]
        mask = None
        if attention_mask is not None:                    # padded rows: hide their padding keys
            mask = modeling.causal_mask(1, pos, attention_mask, tokens.device)
        x = F.embedding(tokens, inner.embed_tokens.weight)
        for i, norm1, wq, wk, wv, qk_norm, wo, heads, kv_heads, head_dim, norm2, wg, wu, wd in self.layers:
            h = norm1(x)
            q = F.linear(h, wq).view(b, 1, heads, head_dim)
            k = F.linear(h, wk).view(b, 1, kv_heads, head_dim)
            v = F.linear(h, wv).view(b, 1, kv_heads, head_dim)
            if qk_norm is not None:                       # MiniMind-3: each head's q and k normalised
                q, k = qk_norm[0](q), qk_norm[1](k)
            if self.fp32:
                q, k = rope_fp32(q, cos, signed_sin), rope_fp32(k, cos, signed_sin)
            else:
                q, k = modeling.apply_rope(q, k, cos, sin)
            k, v = cache.update(i, k, v)
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 attn_mask=mask, dropout_p=0.0, is_causal=False, enable_gqa=True)
            x = x + F.linear(out.transpose(1, 2).reshape(b, 1, heads * head_dim), wo)
            h = norm2(x)
            x = x + F.linear(F.silu(F.linear(h, wg)) * F.linear(h, wu), wd)
        cache.advance(1)
        return F.linear(self.final_norm(x)[:, -1, :], self.model.lm_head.weight)


__all__ = ["DecodeStep", "supports", "LAYER_PARAMETERS", "rms_norm_fp32", "rope_fp32"]
