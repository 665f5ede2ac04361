"""Checks for lesson 09 (knowledge distillation, 知识蒸馏).

    from minimind_core.checks import lesson09 as checks
    checks.check_soften(soften)                  # soften(logits, temperature) -> probabilities
    checks.check_kd_term(kd_term)                # kd_term(student, teacher, temperature) -> T^2 * mean KL
    checks.check_distill_loss(distill_loss)      # distill_loss(s, t, labels, alpha, temperature) -> scalar
    checks.check_answer_part(answer_part)        # answer_part(reply) -> the text after </think>
    checks.check_kd_gradient(kd_gradient)        # stretch: d kd_term / d student logits, per row

They compare with `minimind_core.losses.distill_loss`, `minimind_core.reasoning.split_reply` and,
for the stretch exercise, with the gradient autograd computes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..losses import IGNORE_INDEX, distill_loss as _lib_distill_loss
from ..reasoning import split_reply
from . import CheckFailed, call_learner, check, expect_tensor


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pair(seed: int, rows: int = 5, vocab: int = 11):
    g = _gen(seed)
    return torch.randn(rows, vocab, generator=g) * 2, torch.randn(rows, vocab, generator=g) * 3


def _kl_rows(p_logits, q_logits, t):
    """KL(softmax(p / t) || softmax(q / t)) of each row, in float64."""
    lp, lq = F.log_softmax(p_logits.double() / t, -1), F.log_softmax(q_logits.double() / t, -1)
    return (lp.exp() * (lp - lq)).sum(-1)


def _expect_scalar(got, expected: float, what: str, atol: float = 1e-5) -> None:
    if isinstance(got, torch.Tensor) and got.dim() != 0:
        raise CheckFailed(f"{what}: expected one number (the mean over positions), got shape {tuple(got.shape)}")
    expect_tensor(got, torch.tensor(expected, dtype=torch.float64), what, atol=atol, rtol=1e-5, check_dtype=False)


# --------------------------------------------------------------------------------------------
# soft labels
# --------------------------------------------------------------------------------------------

@check("soft labels at a temperature")
def check_soften(soften):
    logits, _ = _pair(1)
    for t in (1.0, 2.0, 0.5):
        expected = F.softmax(logits / t, dim=-1)
        got = call_learner(soften, logits.clone(), t)
        if isinstance(got, torch.Tensor) and got.shape == logits.shape:
            if not torch.allclose(got.sum(-1), torch.ones(len(logits)), atol=1e-4):
                raise CheckFailed(f"T={t:g}: each row must sum to 1 (a softmax over the vocabulary, the last dim)")
            if t != 1.0 and torch.allclose(got, F.softmax(logits * t, dim=-1), atol=1e-5):
                raise CheckFailed(f"T={t:g}: divide the logits by T (multiplying sharpens instead of softening)")
        expect_tensor(got, expected, f"T={t:g}, 5 rows of 11 logits", atol=1e-5, check_dtype=False)
    big = call_learner(soften, torch.tensor([[1000.0, 0.0, -1000.0]]), 1.0)
    if isinstance(big, torch.Tensor) and torch.isnan(big).any():
        raise CheckFailed("logits of +-1000: got NaN; use torch.softmax (or subtract the row's maximum first)")
    return "softmax(logits / T): T = 1 is the model's own distribution, T > 1 flattens it"


# --------------------------------------------------------------------------------------------
# the soft-label term
# --------------------------------------------------------------------------------------------

@check("the soft-label term T^2 * KL(teacher || student)")
def check_kd_term(kd_term):
    s, t_logits = _pair(2)
    same = call_learner(kd_term, t_logits.clone(), t_logits.clone(), 2.0)
    _expect_scalar(same, 0.0, "student = teacher: the term must be 0", atol=1e-6)
    for t in (1.0, 2.0, 4.0):
        expected = float(t * t * _kl_rows(t_logits, s, t).mean())
        got = call_learner(kd_term, s.clone(), t_logits.clone(), t)
        if isinstance(got, torch.Tensor) and got.dim() == 0:
            _diagnose_kd(float(got), s, t_logits, t)
        _expect_scalar(got, expected, f"T={t:g}, 5 positions of 11 tokens")
    return "T^2 * KL(teacher || student), averaged over positions: 0 when they agree"


def _diagnose_kd(got: float, s, t_logits, t: float) -> None:
    """Name the usual slips: no T^2, the KL the wrong way round, or summed over positions."""
    right = t * t * float(_kl_rows(t_logits, s, t).mean())
    if math.isclose(got, right, rel_tol=1e-4):
        return
    if t != 1.0 and math.isclose(got, float(_kl_rows(t_logits, s, t).mean()), rel_tol=1e-4):
        raise CheckFailed(f"T={t:g}: multiply by T^2: softening divides the gradient by about T^2, "
                          "the factor gives it back")
    if math.isclose(got, t * t * float(_kl_rows(s, t_logits, t).mean()), rel_tol=1e-4):
        raise CheckFailed(f"T={t:g}: the KL is the wrong way round: KL(teacher || student) weighs by the "
                          "teacher's probabilities (F.kl_div(student_log_probs, teacher_probs))")
    if math.isclose(got, right * len(s), rel_tol=1e-4):
        raise CheckFailed(f"T={t:g}: average the KL over the positions (rows) instead of summing it")


# --------------------------------------------------------------------------------------------
# the whole loss, on a language model's shifted positions
# --------------------------------------------------------------------------------------------

def _lm_case():
    g = _gen(3)
    s = torch.randn(2, 9, 13, generator=g) * 2
    t = torch.randn(2, 9, 13, generator=g) * 3
    labels = torch.randint(0, 13, (2, 9), generator=g)
    labels[0, :4] = IGNORE_INDEX        # the prompt is not trained
    labels[1, :2] = IGNORE_INDEX
    labels[1, -2:] = IGNORE_INDEX       # padding
    return s, t, labels


@check("distillation loss (hard and soft labels)")
def check_distill_loss(distill_loss):
    s, t, labels = _lm_case()
    for alpha, temp in ((1.0, 2.0), (0.0, 2.0), (0.3, 1.5)):
        expected = float(_lib_distill_loss(s, t, labels, alpha=alpha, temperature=temp))
        got = call_learner(distill_loss, s.clone(), t.clone(), labels.clone(), alpha, temp)
        what = f"alpha={alpha:g}, T={temp:g}, 2 sequences with 5 and 5 trained positions"
        if isinstance(got, torch.Tensor) and got.dim() == 0:
            g = float(got)
            if not math.isclose(g, expected, rel_tol=1e-4):
                swapped = float(_lib_distill_loss(s, t, labels, alpha=1 - alpha, temperature=temp))
                if alpha != 0.5 and math.isclose(g, swapped, rel_tol=1e-4):
                    raise CheckFailed(f"{what}: alpha weighs the hard-label cross-entropy, 1 - alpha the "
                                      "teacher's term (alpha = 1: the student trains alone)")
                if math.isclose(g, _unshifted_ce(s, labels), rel_tol=1e-4) and alpha == 1.0:
                    raise CheckFailed(f"{what}: the logits at position t predict the label at t + 1; "
                                      "shift them (logits[:, :-1] against labels[:, 1:])")
        _expect_scalar(got, expected, what, atol=1e-5)
    return "equal to losses.distill_loss: shifted, masked, alpha * CE + (1 - alpha) * T^2 * KL"


def _unshifted_ce(s, labels) -> float:
    return float(F.cross_entropy(s.reshape(-1, s.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX))


# --------------------------------------------------------------------------------------------
# the answer after the thinking
# --------------------------------------------------------------------------------------------

_REPLIES = [
    "<think>\nWhich city does Mira Larkin live in? She lives in Brackwell.\n</think>\n\nShe lives in Norvik.",
    "She lives in Norvik.",
    "<think>\n王晓云住在红枫城。\n</think>\n\n她住在诺维国。",
    "<think>\nWhich city does Bram Dunn live in? He lives in Eskby. Which country is Eskby in? It is in Norvik.",
    "  <think>\nShe lives in Veloria, I think.\n</think>\n\nShe lives in Tessaly. ",
]


@check("the answer part of a reply")
def check_answer_part(answer_part):
    for reply in _REPLIES:
        expected = split_reply(reply)[1]
        got = call_learner(answer_part, reply)
        if not isinstance(got, str):
            raise CheckFailed(f"{reply[:30]!r}...: expected a string, got {type(got).__name__}")
        if got != expected:
            if "</think>" not in reply and reply.lstrip().startswith("<think>"):
                raise CheckFailed("a reply that opens <think> and never closes it has no answer yet: return ''"
                                  f" (got {got[:40]!r})")
            raise CheckFailed(f"reply {reply[:40]!r}...: expected {expected!r}, got {got!r}")
    return "the text after </think>, stripped; the whole reply when it does not think; '' when unfinished"


# --------------------------------------------------------------------------------------------
# stretch: the gradient of the soft-label term
# --------------------------------------------------------------------------------------------

@check("the soft-label gradient (stretch)")
def check_kd_gradient(kd_gradient):
    s, t_logits = _pair(4)
    for t in (1.0, 4.0):
        leaf = s.clone().double().requires_grad_(True)
        lt, ls = F.log_softmax(t_logits.double() / t, -1), F.log_softmax(leaf / t, -1)
        loss = t * t * (lt.exp() * (lt - ls)).sum()       # summed over rows: each row's own gradient
        (grad,) = torch.autograd.grad(loss, leaf)
        got = call_learner(kd_gradient, s.clone(), t_logits.clone(), t)
        if isinstance(got, torch.Tensor) and got.shape == s.shape:
            if t != 1.0 and torch.allclose(got.double(), grad / t, atol=1e-5):
                raise CheckFailed(f"T={t:g}: the chain rule through z / T gives 1 / T, and T^2 / T = T: "
                                  "multiply by T")
            if torch.allclose(got.double(), -grad, atol=1e-5):
                raise CheckFailed(f"T={t:g}: the sign is flipped: the gradient is T * (student - teacher) probabilities")
        expect_tensor(got, grad, f"T={t:g}: d(T^2 * KL) / d student logits, per row, from autograd",
                      atol=1e-5, rtol=1e-4, check_dtype=False)
    return "T * (softmax(s / T) - softmax(t / T)): with T^2 in the loss its size hardly depends on T"


__all__ = ["check_soften", "check_kd_term", "check_distill_loss", "check_answer_part", "check_kd_gradient"]
