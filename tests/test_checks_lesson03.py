"""Lesson 03 checks: pass on the answers, 'not done yet' on the stubs, a readable message on wrong ones."""
import math

import pytest
import torch
import torch.nn.functional as F

from minimind_core.checks import lesson03 as checks
from check_helpers import stub


# ---- reference answers, written independently of the library ---------------------------------

def rms_norm(x, weight, eps=1e-5):
    x32 = x.float()
    return weight * (x32 / torch.sqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rope_tables(head_dim, max_positions, theta=1e6):
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.arange(max_positions).float()[:, None] * freqs[None]
    angles = torch.cat([angles, angles], -1)
    return angles.cos(), angles.sin()


def _rotate_half(x):
    x1, x2 = x.chunk(2, -1)
    return torch.cat([-x2, x1], -1)


def apply_rope(q, k, cos, sin):
    c, s = cos[None, :, None], sin[None, :, None]
    return q * c + _rotate_half(q) * s, k * c + _rotate_half(k) * s


def repeat_kv(x, n_rep):
    return x.repeat_interleave(n_rep, dim=2)


def attention_step(q, k, v, past_k, past_v):
    k_all, v_all = torch.cat([past_k, k], 1), torch.cat([past_v, v], 1)
    n_rep = q.shape[2] // k.shape[2]
    qh, kh, vh = q.transpose(1, 2), repeat_kv(k_all, n_rep).transpose(1, 2), repeat_kv(v_all, n_rep).transpose(1, 2)
    t, total = q.shape[1], k_all.shape[1]
    scores = qh @ kh.transpose(-1, -2) / math.sqrt(q.shape[-1])
    mask = torch.ones(t, total, dtype=torch.bool).tril(diagonal=total - t)
    out = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ vh
    return out.transpose(1, 2), (k_all, v_all)


def rope_interleaved(x, positions, theta=1e6):
    d = x.shape[-1]
    freqs = 1.0 / theta ** (torch.arange(0, d, 2).float() / d)
    angles = positions.float()[:, None] * freqs[None]
    cos, sin = angles.cos()[None, :, None], angles.sin()[None, :, None]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1).flatten(-2).to(x.dtype)


# ---- plausible wrong answers ------------------------------------------------------------------

def rms_norm_no_eps(x, weight, eps=1e-5):
    x32 = x.float()
    return weight * (x32 / torch.sqrt(x32.pow(2).mean(-1, keepdim=True))).to(x.dtype)


def rms_norm_in_input_dtype(x, weight, eps=1e-5):
    return weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def rms_norm_fixed_eps(x, weight, eps=1e-5):
    return rms_norm(x, weight, 1e-5)


def rope_tables_interleaved(head_dim, max_positions, theta=1e6):
    cos, sin = rope_tables(head_dim, max_positions, theta)
    return cos[:, : head_dim // 2].repeat_interleave(2, -1), sin[:, : head_dim // 2].repeat_interleave(2, -1)


def rope_tables_every_dim(head_dim, max_positions, theta=1e6):
    freqs = 1.0 / theta ** (torch.arange(0, head_dim // 2).float() / head_dim)   # forgot the 2
    angles = torch.arange(max_positions).float()[:, None] * freqs[None]
    angles = torch.cat([angles, angles], -1)
    return angles.cos(), angles.sin()


def apply_rope_wrong_direction(q, k, cos, sin):
    c, s = cos[None, :, None], sin[None, :, None]
    flip = lambda x: torch.cat([x.chunk(2, -1)[1], -x.chunk(2, -1)[0]], -1)  # noqa: E731
    return q * c + flip(q) * s, k * c + flip(k) * s


def apply_rope_q_only(q, k, cos, sin):
    return apply_rope(q, k, cos, sin)[0], k


def repeat_kv_tiled(x, n_rep):
    return x.repeat(1, 1, n_rep, 1)


def attention_no_scale(q, k, v, past_k, past_v):
    return attention_step(q * math.sqrt(q.shape[-1]), k, v, past_k, past_v)


def attention_mask_not_offset(q, k, v, past_k, past_v):
    k_all, v_all = torch.cat([past_k, k], 1), torch.cat([past_v, v], 1)
    n_rep = q.shape[2] // k.shape[2]
    qh, kh, vh = q.transpose(1, 2), repeat_kv(k_all, n_rep).transpose(1, 2), repeat_kv(v_all, n_rep).transpose(1, 2)
    t, total = q.shape[1], k_all.shape[1]
    mask = torch.ones(t, total, dtype=torch.bool).tril()        # forgot that the new tokens come after the past
    out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
    return out.transpose(1, 2), (k_all, v_all)


def attention_cache_new_first(q, k, v, past_k, past_v):
    out, (ka, va) = attention_step(q, k, v, past_k, past_v)
    return out, (torch.cat([k, past_k], 1), torch.cat([v, past_v], 1))


def rope_interleaved_is_rotate_half(x, positions, theta=1e6):
    cos, sin = rope_tables(x.shape[-1], int(positions.max()) + 1, theta)
    return apply_rope(x, x, cos[positions], sin[positions])[0]


def rope_interleaved_swapped_sign(x, positions, theta=1e6):
    return rope_interleaved(x, -positions, theta)


# ---- the tests ---------------------------------------------------------------------------------

CASES = [
    (checks.check_rms_norm, rms_norm, [
        (rms_norm_no_eps, "NaN where a finite value was expected"),
        (rms_norm_in_input_dtype, "compute mean(x**2) in float32"),
        (rms_norm_fixed_eps, "eps=1e-6"),
    ]),
    (checks.check_rope_tables, rope_tables, [
        (rope_tables_interleaved, "repeated each frequency twice in a row"),
        (rope_tables_every_dim, "values differ; first at index"),
    ]),
    (checks.check_apply_rope, apply_rope, [
        (apply_rope_wrong_direction, "rotation goes the wrong way"),
        (apply_rope_q_only, "rotated k"),
    ]),
    (checks.check_repeat_kv, repeat_kv, [
        (repeat_kv_tiled, "consecutive query heads share a KV head"),
        (lambda x, n_rep: x, "expected shape (2, 5, 8, 8), got (2, 5, 2, 8)"),
    ]),
    (checks.check_attention_step, attention_step, [
        (attention_no_scale, "not divided by sqrt(head_dim) = 4"),
        (attention_mask_not_offset, "output [batch, new, heads, head_dim] (one new token after 7 cached ones)"),
        (attention_cache_new_first, "cached keys"),
    ]),
    (checks.check_rope_interleaved, rope_interleaved, [
        (rope_interleaved_is_rotate_half, "this is the rotate-half layout"),
        (rope_interleaved_swapped_sign, "rope_interleaved (8 positions from 0, head_dim 16)"),
    ]),
]


@pytest.mark.parametrize("check_fn, answer, wrongs", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_check(check_fn, answer, wrongs):
    result = check_fn(answer)
    assert result.passed, str(result)
    todo = check_fn(stub)
    assert not todo.passed and todo.message.startswith("not done yet")
    for wrong, expected_text in wrongs:
        result = check_fn(wrong)
        assert not result.passed, f"{wrong.__name__} passed"
        assert expected_text in result.message, result.message
        assert "\n" not in str(result)


def test_library_functions_pass_their_own_checks():
    from minimind_core import model

    assert checks.check_rope_tables(model.rope_tables).passed
    assert checks.check_apply_rope(model.apply_rope).passed
    assert checks.check_repeat_kv(model.repeat_kv).passed
    lib_norm = checks.check_rms_norm(lambda x, w, eps: checks._reference_rms_norm(x, w, eps))
    assert lib_norm.passed


def test_interleaved_changes_a_given_models_logits(tiny_model):
    result = checks.check_rope_interleaved(rope_interleaved, tiny_model)
    assert result.passed, str(result)
    assert "moves the logits by up to" in result.message


def test_a_crash_is_reported_in_one_line():
    result = checks.check_repeat_kv(lambda x, n: x.reshape(-1, 7))
    assert not result.passed and "raised RuntimeError" in result.message
