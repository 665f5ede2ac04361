"""Lesson 07 checks: pass on the answers, 'not done yet' on the stubs, a readable message on wrong ones."""
import math

import pytest
import torch

from minimind_core.checks import lesson07 as checks
from check_helpers import stub


# ---- reference answers, written independently of the library ---------------------------------

def temperature_softmax(logits, temperature):
    z = logits / temperature
    z = z - z.max(dim=-1, keepdim=True).values
    e = z.exp()
    return e / e.sum(dim=-1, keepdim=True)


def top_k_filter(logits, k):
    if k >= logits.shape[-1]:
        return logits.clone()
    kth = logits.sort(dim=-1, descending=True).values[..., k - 1:k]
    return torch.where(logits >= kth, logits, torch.full_like(logits, float("-inf")))


def top_p_filter(logits, p):
    out = logits.clone()
    for row in range(logits.shape[0]):
        probs = logits[row].softmax(-1)
        order = probs.argsort(descending=True).tolist()
        total = 0.0
        for i in order:
            if total >= p:
                out[row, i] = float("-inf")
            total += float(probs[i])
    return out


def masked_perplexity(losses, mask):
    m = mask.to(losses.dtype)
    return math.exp(float((losses * m).sum() / m.sum()))


def repetition_penalty(logits, previous, penalty):
    out = logits.clone()
    for b in range(logits.shape[0]):
        for t in set(previous[b].tolist()):
            v = logits[b, t]
            out[b, t] = v / penalty if v > 0 else v * penalty
    return out


# ---- plausible wrong answers -----------------------------------------------------------------

def temperature_times(logits, temperature):          # multiplies instead of dividing
    return (logits * temperature).softmax(-1)


def softmax_without_max(logits, temperature):         # overflows on sharp logits
    e = (logits / temperature).exp()
    return e / e.sum(-1, keepdim=True)


def top_k_exactly_k(logits, k):                       # torch.topk + scatter drops tied tokens
    k = min(k, logits.shape[-1])
    idx = logits.topk(k, dim=-1).indices
    return torch.full_like(logits, float("-inf")).scatter(-1, idx, logits.gather(-1, idx))


def top_k_zero_instead_of_inf(logits, k):
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, 0.0)


def top_p_drops_crossing_token(logits, p):           # cumulative > p without the shift
    s, i = logits.sort(dim=-1, descending=True)
    remove = s.softmax(-1).cumsum(-1) > p
    return logits.masked_fill(remove.scatter(-1, i, remove), float("-inf"))


def top_p_on_probs_unsorted(logits, p):              # cumsum in vocabulary order
    remove = (logits.softmax(-1).cumsum(-1) - logits.softmax(-1)) >= p
    return logits.masked_fill(remove, float("-inf"))


def perplexity_ignores_mask(losses, mask):
    return math.exp(float(losses.mean()))


def perplexity_mean_of_sequences(losses, mask):
    m = mask.float()
    return float(((losses * m).sum(-1) / m.sum(-1)).exp().mean())


def perplexity_without_exp(losses, mask):
    m = mask.float()
    return float((losses * m).sum() / m.sum())


def penalty_always_divides(logits, previous, penalty):
    return logits.scatter(1, previous, logits.gather(1, previous) / penalty)


def penalty_per_occurrence(logits, previous, penalty):
    out = logits.clone()
    for b in range(logits.shape[0]):
        for t in previous[b].tolist():
            out[b, t] = out[b, t] / penalty if out[b, t] > 0 else out[b, t] * penalty
    return out


CASES = [
    (checks.check_temperature_softmax, temperature_softmax, [
        (temperature_times, "T = 0.5 (sharper): 150 of 150 values differ"),
        (softmax_without_max, "contain nan (exp overflowed? subtract the row's max"),
    ]),
    (checks.check_top_k, top_k_filter, [
        (top_k_exactly_k, "three tokens tie at the 2nd-largest logit 2.0; keep every token >= the k-th largest "
                          "value, so all four stay: row 0 should keep 4 token(s), yours keeps 2"),
        (top_k_zero_instead_of_inf, "should keep 5 token(s), yours keeps 20"),
    ]),
    (checks.check_top_p, top_p_filter, [
        (top_p_drops_crossing_token, "the token that brings the running total to p stays too"),
        (top_p_on_probs_unsorted, "should keep"),
    ]),
    (checks.check_masked_perplexity, masked_perplexity, [
        (perplexity_ignores_mask, "expected 5.07842, got 15.6426 (that is the mean over every position"),
        (perplexity_mean_of_sequences, "(that is the mean of per-sequence perplexities"),
        (perplexity_without_exp, "(that is the mean loss: perplexity is exp of it)"),
    ]),
    (checks.check_repetition_penalty, repetition_penalty, [
        (penalty_always_divides, "a negative logit went up"),
        (penalty_per_occurrence, "penalised once, not three times: 1 of 5 values differ; first at index [0, 2]: "
                                 "expected 0.333333, got 0.148148"),
    ]),
]


@pytest.mark.parametrize("check_fn,answer,wrongs", CASES, ids=[c[0].check_name for c in CASES])
def test_check(check_fn, answer, wrongs):
    ok = check_fn(answer)
    assert ok.passed, ok.message
    todo = check_fn(stub)
    assert not todo.passed and todo.message.startswith("not done yet")
    for wrong, text in wrongs:
        res = check_fn(wrong)
        assert not res.passed, f"{wrong.__name__} passed"
        assert text in res.message, res.message
        assert "\n" not in str(res)


def test_top_p_tie_accepts_either_tied_token():
    def keep_the_other(logits, p):
        out = top_p_filter(logits, p)
        if logits.shape[-1] == 3 and torch.allclose(logits.softmax(-1), torch.tensor([[0.4, 0.3, 0.3]])):
            kept = torch.isfinite(out[0])
            assert int(kept.sum()) == 2
            swapped = out.clone()
            swapped[0, 1], swapped[0, 2] = (logits[0, 1], float("-inf")) if not kept[1] else (float("-inf"), logits[0, 2])
            return swapped
        return out

    assert checks.check_top_p(keep_the_other).passed


def test_in_place_change_is_reported():
    def in_place(logits, temperature):
        logits /= temperature
        return logits.softmax(-1)

    res = checks.check_temperature_softmax(in_place)
    assert not res.passed and "changed the logits in place" in res.message
