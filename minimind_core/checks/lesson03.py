"""Checks for lesson 03 (RMSNorm, RoPE, grouped-query attention, the KV cache).

    from minimind_core.checks import lesson03 as checks
    checks.check_rms_norm(rms_norm)                    # rms_norm(x, weight, eps) -> tensor
    checks.check_rope_tables(rope_tables)              # rope_tables(head_dim, max_positions, theta) -> (cos, sin)
    checks.check_apply_rope(apply_rope)                # apply_rope(q, k, cos, sin) -> (q_rot, k_rot)
    checks.check_repeat_kv(repeat_kv)                  # repeat_kv(x, n_rep) -> tensor
    checks.check_attention_step(attention_step)        # (q, k, v, past_k, past_v) -> (out, (k_all, v_all))
    checks.check_rope_interleaved(rope_interleaved)    # stretch: rope_interleaved(x, positions, theta) -> tensor

Each check compares with `minimind_core.model` (or, for the stretch exercise, a reference built
here with complex numbers) on seeded random inputs and edge cases.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..model import RMSNorm, apply_rope, causal_mask, repeat_kv, rope_tables
from . import CheckFailed, call_learner, check, expect_tensor


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tuple2(got, what: str):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise CheckFailed(f"{what}: expected a pair (two tensors), got {type(got).__name__}"
                          + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""))
    return got


# --------------------------------------------------------------------------------------------
# RMSNorm
# --------------------------------------------------------------------------------------------

def _reference_rms_norm(x, weight, eps):
    norm = RMSNorm(x.shape[-1], eps)
    with torch.no_grad():
        norm.weight = torch.nn.Parameter(weight.clone())
        return norm(x)


@check("RMSNorm")
def check_rms_norm(rms_norm):
    g = _gen(0)
    cases = []
    x = torch.randn(2, 5, 16, generator=g)
    w = 1 + 0.5 * torch.randn(16, generator=g)
    cases.append(("random x [2, 5, 16]", x, w, 1e-5, 1e-5))
    x0 = torch.randn(3, 8, generator=g)
    x0[1] = 0.0
    cases.append(("a row of zeros (eps keeps it finite)", x0, torch.randn(8, generator=g), 1e-5, 1e-5))
    small = 1e-3 * torch.randn(4, 8, generator=g)
    cases.append(("tiny values with eps=1e-6 (use the eps argument)", small, torch.ones(8), 1e-6, 1e-4))
    big = (300 * torch.randn(2, 32, generator=g)).half()
    cases.append(("float16 values near 300 (square them in float32: 300**2 overflows float16)",
                  big, torch.randn(32, generator=g).half(), 1e-5, 2e-3))
    for what, x, w, eps, tol in cases:
        got = call_learner(rms_norm, x.clone(), w.clone(), eps)
        expected = _reference_rms_norm(x, w, eps)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and got.is_floating_point():
            if torch.isnan(got).any() and not torch.isnan(expected).any():
                raise CheckFailed(f"{what}: your result has NaN where a finite value was expected "
                                  "(divide by sqrt(mean(x**2) + eps))")
            if x.dtype == torch.float16 and (torch.isinf(got).any() or bool((got == 0).all())):
                raise CheckFailed(f"{what}: your result is inf or all zeros: compute mean(x**2) in float32, "
                                  "then cast back to x's dtype")
        expect_tensor(got, expected, f"rms_norm on {what}", atol=tol, rtol=tol)
    return "correct: normalised by the root mean square (in float32), scaled by the weight"


# --------------------------------------------------------------------------------------------
# RoPE
# --------------------------------------------------------------------------------------------

@check("RoPE cos/sin tables")
def check_rope_tables(rope_tables_fn):
    for head_dim, n, theta in ((64, 128, 1e6), (16, 40, 1e4), (8, 3, 10.0)):
        got = _tuple2(call_learner(rope_tables_fn, head_dim, n, theta), f"rope_tables({head_dim}, {n}, {theta:g})")
        cos, sin = rope_tables(head_dim, n, theta)
        for name, g, e in (("cos", got[0], cos), ("sin", got[1], sin)):
            if isinstance(g, torch.Tensor) and g.shape == e.shape and g.dtype == e.dtype:
                inter = e[:, : head_dim // 2].repeat_interleave(2, dim=-1)
                if not torch.allclose(g, e, atol=1e-5) and torch.allclose(g, inter, atol=1e-5):
                    raise CheckFailed(f"{name} table for head_dim {head_dim}: you repeated each frequency "
                                      "twice in a row (interleaved layout); rotate-half wants the "
                                      "head_dim/2 angles, then the same head_dim/2 angles again")
            expect_tensor(g, e, f"{name} table for head_dim={head_dim}, {n} positions, theta={theta:g}",
                          atol=1e-5, rtol=1e-4)
    return "correct: angle[m, i] = m * theta**(-2i/head_dim), both halves share a frequency"


@check("apply_rope")
def check_apply_rope(apply_rope_fn):
    g = _gen(1)
    cos, sin = rope_tables(16, 64, 1e4)
    for what, b, t, h, kvh, start in (("8 positions from 0, 4 query / 2 KV heads", 2, 8, 4, 2, 0),
                                      ("3 positions from 40 (the rows cos[40:43])", 1, 3, 2, 1, 40),
                                      ("one position", 1, 1, 4, 4, 7)):
        q = torch.randn(b, t, h, 16, generator=g)
        k = torch.randn(b, t, kvh, 16, generator=g)
        c, s = cos[start:start + t], sin[start:start + t]
        got = _tuple2(call_learner(apply_rope_fn, q.clone(), k.clone(), c, s), f"apply_rope ({what})")
        eq, ek = apply_rope(q, k, c, s)
        if isinstance(got[0], torch.Tensor) and got[0].shape == eq.shape:
            x1, x2 = q.chunk(2, -1)
            swapped = q * c[None, :, None] + torch.cat([x2, -x1], -1) * s[None, :, None]
            if torch.allclose(got[0], swapped, atol=1e-5) and not torch.allclose(eq, swapped, atol=1e-5):
                raise CheckFailed(f"q ({what}): the rotation goes the wrong way: rotate_half(x) is "
                                  "(-x2, x1), not (x2, -x1)")
        expect_tensor(got[0], eq, f"rotated q ({what})", atol=1e-5, rtol=1e-4)
        expect_tensor(got[1], ek, f"rotated k ({what})", atol=1e-5, rtol=1e-4)
    return "correct: x * cos + rotate_half(x) * sin, for q and k"


# --------------------------------------------------------------------------------------------
# Grouped-query attention
# --------------------------------------------------------------------------------------------

@check("repeat_kv")
def check_repeat_kv(repeat_kv_fn):
    g = _gen(2)
    for b, t, kvh, d, n_rep in ((2, 5, 2, 8, 4), (1, 3, 3, 4, 2), (1, 4, 2, 8, 1)):
        x = torch.randn(b, t, kvh, d, generator=g)
        what = f"repeat_kv(x [{b}, {t}, {kvh}, {d}], n_rep={n_rep})"
        got = call_learner(repeat_kv_fn, x.clone(), n_rep)
        expected = repeat_kv(x, n_rep)
        if (isinstance(got, torch.Tensor) and got.shape == expected.shape and n_rep > 1
                and torch.equal(got, x.repeat(1, 1, n_rep, 1))):
            raise CheckFailed(f"{what}: you tiled the whole block of KV heads ([k0, k1, k0, k1, ...]); "
                              f"consecutive query heads share a KV head: [k0 x{n_rep}, k1 x{n_rep}, ...]")
        expect_tensor(got, expected, what)
    return "correct: each KV head serves n_rep consecutive query heads"


def _reference_step(q, k, v, past_k, past_v):
    """One attention step with the cache, the way the library's Attention does it."""
    k_all = torch.cat([past_k, k], dim=1)
    v_all = torch.cat([past_v, v], dim=1)
    n_rep = q.shape[2] // k.shape[2]
    qh = q.transpose(1, 2)
    kh = repeat_kv(k_all, n_rep).transpose(1, 2)
    vh = repeat_kv(v_all, n_rep).transpose(1, 2)
    mask = causal_mask(q.shape[1], past_k.shape[1], None, q.device)
    out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
    return out.transpose(1, 2), (k_all, v_all)


@check("attention step with a KV cache")
def check_attention_step(attention_step):
    g = _gen(3)
    d = 16
    for what, b, t, past, h, kvh in (("one new token after 7 cached ones", 2, 1, 7, 4, 2),
                                     ("3 new tokens after 5 cached ones (causal among the new ones)", 1, 3, 5, 4, 2),
                                     ("an empty cache (the prompt, 6 tokens)", 1, 6, 0, 4, 1),
                                     ("8 query heads sharing 2 KV heads", 1, 2, 4, 8, 2)):
        q = torch.randn(b, t, h, d, generator=g)
        k = torch.randn(b, t, kvh, d, generator=g)
        v = torch.randn(b, t, kvh, d, generator=g)
        pk = torch.randn(b, past, kvh, d, generator=g)
        pv = torch.randn(b, past, kvh, d, generator=g)
        got = _tuple2(call_learner(attention_step, q, k, v, pk.clone(), pv.clone()), f"attention_step ({what})")
        cache = _tuple2(got[1], f"the new cache returned by attention_step ({what})")
        eout, (ek, ev) = _reference_step(q, k, v, pk, pv)
        if isinstance(got[0], torch.Tensor) and got[0].shape == eout.shape:
            unscaled, _ = _reference_step(q * math.sqrt(d), k, v, pk, pv)
            if torch.allclose(got[0], unscaled, atol=1e-4) and not torch.allclose(got[0], eout, atol=1e-4):
                raise CheckFailed(f"output ({what}): the scores are not divided by sqrt(head_dim) = {math.sqrt(d):g}")
        expect_tensor(cache[0], ek, f"cached keys ({what}: past then new, [batch, past+new, kv_heads, head_dim])")
        expect_tensor(cache[1], ev, f"cached values ({what})")
        expect_tensor(got[0], eout, f"output [batch, new, heads, head_dim] ({what})", atol=1e-5, rtol=1e-4)
    return "correct: new keys/values appended to the cache; each new query sees the past and itself"


# --------------------------------------------------------------------------------------------
# Stretch: interleaved RoPE
# --------------------------------------------------------------------------------------------

def _reference_interleaved(x, positions, theta):
    """RoPE on pairs (0,1), (2,3), ... as complex numbers: (x0 + i x1) * exp(i m freq_j)."""
    d = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions.to(torch.float64)[:, None] * freqs[None]               # [t, d/2]
    rot = torch.polar(torch.ones_like(angles), angles)[None, :, None, :]    # [1, t, 1, d/2]
    xc = torch.view_as_complex(x.to(torch.float64).reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(xc * rot).reshape(x.shape).to(x.dtype)


def _forward_with_rope(model, input_ids, rope_fn):
    """The library model's forward, written out, with `rope_fn(x, positions)` in place of RoPE."""
    inner = model.model
    t = input_ids.shape[1]
    positions = torch.arange(t, device=input_ids.device)
    x = inner.embed_tokens(input_ids)
    for layer in inner.layers:
        attn = layer.self_attn
        h = layer.input_layernorm(x)
        b = h.shape[0]
        q = rope_fn(attn.q_proj(h).view(b, t, attn.n_heads, attn.head_dim), positions)
        k = rope_fn(attn.k_proj(h).view(b, t, attn.n_kv_heads, attn.head_dim), positions)
        v = attn.v_proj(h).view(b, t, attn.n_kv_heads, attn.head_dim)
        k, v = repeat_kv(k, attn.n_rep), repeat_kv(v, attn.n_rep)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             is_causal=True)
        x = x + attn.o_proj(out.transpose(1, 2).reshape(b, t, -1))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return model.lm_head(inner.norm(x))


@check("interleaved RoPE (stretch)")
def check_rope_interleaved(rope_interleaved, model=None):
    """Compare with a complex-number reference; with `model` (default: a small random one), also
    measure how far the logits move when the model's rotate-half weights meet interleaved RoPE."""
    g = _gen(4)
    for what, t, start, d, theta in (("8 positions from 0, head_dim 16", 8, 0, 16, 1e4),
                                     ("4 positions from 100, head_dim 64, theta 1e6", 4, 100, 64, 1e6)):
        x = torch.randn(2, t, 3, d, generator=g)
        positions = torch.arange(start, start + t)
        got = call_learner(rope_interleaved, x.clone(), positions, theta)
        expected = _reference_interleaved(x, positions, theta)
        cos, sin = rope_tables(d, start + t, theta)
        rotate_half_result, _ = apply_rope(x, x, cos[start:], sin[start:])
        if isinstance(got, torch.Tensor) and got.shape == x.shape and torch.allclose(got, rotate_half_result, atol=1e-5):
            raise CheckFailed(f"{what}: this is the rotate-half layout (pairs (i, i + head_dim/2)); "
                              "interleaved RoPE rotates pairs (0, 1), (2, 3), ...")
        expect_tensor(got, expected, f"rope_interleaved ({what})", atol=1e-5, rtol=1e-4)

    if model is None:
        from ..config import MiniMindConfig
        from ..model import MiniMindForCausalLM

        torch.manual_seed(0)
        model = MiniMindForCausalLM(MiniMindConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                   num_key_value_heads=2, vocab_size=256,
                                                   max_position_embeddings=64)).eval()
    device = next(model.parameters()).device
    ids = torch.randint(3, model.config.vocab_size, (1, 24), generator=_gen(5)).to(device)
    theta = model.config.rope_theta

    def half_fn(x, positions):
        cos, sin = model.model.rope_cos[positions], model.model.rope_sin[positions]
        return apply_rope(x, x, cos, sin)[0]

    def inter_fn(x, positions):
        return rope_interleaved(x, positions.to(x.device), theta)

    with torch.no_grad():
        library = model(ids).logits.float()
        rebuilt = _forward_with_rope(model, ids, half_fn).float()
        if not torch.allclose(rebuilt, library, atol=1e-3, rtol=1e-3):
            raise CheckFailed("the written-out forward does not reproduce the model (not a MiniMind model?)")
        swapped = _forward_with_rope(model, ids, inter_fn).float()
    diff = (swapped - library).abs().max().item()
    same_top = (swapped.argmax(-1) == library.argmax(-1)).float().mean().item()
    if not diff > 1e-4:
        raise CheckFailed(f"the logits with your interleaved RoPE equal the model's (max difference {diff:.3g}): "
                          "is it really a different layout?")
    return (f"correct. With the model's rotate-half weights, interleaved RoPE moves the logits by up to "
            f"{diff:.3g}; the top token agrees at {same_top:.0%} of 24 positions")


__all__ = ["check_rms_norm", "check_rope_tables", "check_apply_rope", "check_repeat_kv",
           "check_attention_step", "check_rope_interleaved"]
