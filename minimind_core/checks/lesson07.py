"""Checks for lesson 07 (sampling and evaluation, 采样与评测).

    from minimind_core.checks import lesson07 as checks
    checks.check_temperature_softmax(temperature_softmax)   # (logits, temperature) -> probabilities
    checks.check_top_k(top_k_filter)                        # (logits, k) -> logits, removed = -inf
    checks.check_top_p(top_p_filter)                        # (logits, p) -> logits, removed = -inf
    checks.check_masked_perplexity(masked_perplexity)       # (token_losses, mask) -> float
    checks.check_repetition_penalty(repetition_penalty)     # stretch: (logits, previous, penalty) -> logits

The reference is the library: `generate.filter_logits` (temperature, top-k, top-p),
`generate.apply_repetition_penalty`, and the model's own loss for perplexity. Inputs are seeded
random logits [batch, vocab] with edge cases: very sharp logits, ties, k >= vocab, a top token
that alone holds more than p.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .. import generate as lib
from . import CheckFailed, call_learner, check, expect_tensor


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _logits(batch: int, vocab: int, seed: int, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(batch, vocab, generator=_gen(seed)) * scale


def _as_tensor(got, what: str) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what}: expected a torch.Tensor, got {type(got).__name__}")
    return got


# --------------------------------------------------------------------------------------------
# 1. temperature + softmax
# --------------------------------------------------------------------------------------------

@check("temperature + softmax")
def check_temperature_softmax(temperature_softmax):
    cases = [
        ("logits [2, 10], T = 1 (plain softmax)", _logits(2, 10, 0), 1.0),
        ("logits [3, 50], T = 0.5 (sharper)", _logits(3, 50, 1), 0.5),
        ("logits [3, 50], T = 2 (flatter)", _logits(3, 50, 2), 2.0),
        ("logits [1, 7] of size ~100 with T = 0.05 (exp would overflow: subtract the max first)",
         _logits(1, 7, 3, scale=100.0), 0.05),
        ("logits [2, 3, 20] (any number of leading dimensions; softmax over the last)", torch.randn(2, 3, 20, generator=_gen(4)), 0.8),
    ]
    for desc, z, t in cases:
        z0 = z.clone()
        expected = lib.filter_logits(z0, t).softmax(-1)
        got = _as_tensor(call_learner(temperature_softmax, z, t), desc)
        if got.shape == expected.shape and torch.isnan(got).any():
            raise CheckFailed(f"{desc}: your probabilities contain nan (exp overflowed? subtract the row's max "
                              "before exp, or use torch.softmax)")
        if got.shape == expected.shape and got.dtype == expected.dtype and \
                not torch.allclose(got.sum(-1), torch.ones(()), atol=1e-4):
            raise CheckFailed(f"{desc}: each row must sum to 1, yours sum to {got.sum(-1).flatten()[0].item():.4f} "
                              "(softmax over the last dimension)")
        if not torch.equal(z, z0):
            raise CheckFailed(f"{desc}: your function changed the logits in place")
        expect_tensor(got, expected, desc, atol=1e-6, rtol=1e-4)
    return "matches softmax(filter_logits(logits, T)) for T = 0.05 ... 2, batched, without overflow"


# --------------------------------------------------------------------------------------------
# 2. top-k
# --------------------------------------------------------------------------------------------

def _expect_filtered(got, expected, z, desc, fewer_hint: str = ""):
    got = _as_tensor(got, desc)
    if tuple(got.shape) != tuple(expected.shape):
        raise CheckFailed(f"{desc}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    kept_e, kept_g = torch.isfinite(expected), torch.isfinite(got)
    if not torch.equal(kept_e, kept_g):
        row = int((kept_e != kept_g).any(-1).nonzero()[0])
        ne, ng = int(kept_e[row].sum()), int(kept_g[row].sum())
        extra = ""
        if bool(kept_e[row].any()) and not bool(kept_g[row, z[row].argmax()]):
            extra = "; the most likely token must always stay"
        elif ng < ne and fewer_hint:
            extra = f"; {fewer_hint}"
        raise CheckFailed(f"{desc}: row {row} should keep {ne} token(s), yours keeps {ng}{extra}")
    bad = torch.isfinite(got) & ~torch.isclose(got, z, atol=1e-6, rtol=1e-5)
    if bool(bad.any()):
        idx = [int(i) for i in bad.nonzero()[0]]
        raise CheckFailed(f"{desc}: a kept token's logit must stay as it was; at {idx} expected "
                          f"{z[tuple(idx)].item():.6g}, got {got[tuple(idx)].item():.6g}")
    removed = ~kept_g
    if bool(removed.any()) and not bool((got[removed] == float("-inf")).all()):
        v = got[removed][got[removed] != float("-inf")][0].item()
        raise CheckFailed(f"{desc}: removed tokens must get -inf (probability exactly 0), found {v:.6g}")


@check("top-k filtering")
def check_top_k(top_k_filter):
    ties = torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.5, 2.0, -1.0]])
    cases = [
        ("logits [2, 20], k = 5", _logits(2, 20, 10), 5),
        ("logits [4, 100], k = 1 (only the most likely token)", _logits(4, 100, 11), 1),
        ("logits [3, 30], k = 29", _logits(3, 30, 12), 29),
        ("logits [2, 8], k = 8 (k = vocab: nothing to remove)", _logits(2, 8, 13), 8),
        ("logits [2, 8], k = 50 (k > vocab: nothing to remove; torch.topk would fail)", _logits(2, 8, 14), 50),
        ("logits [[3, 1, 2, 2, 0.5, 2, -1]], k = 2: three tokens tie at the 2nd-largest logit 2.0; "
         "keep every token >= the k-th largest value, so all four stay", ties, 2),
    ]
    for desc, z, k in cases:
        z0 = z.clone()
        got = call_learner(top_k_filter, z, k)
        if not torch.equal(z, z0):
            raise CheckFailed(f"{desc}: your function changed the logits in place")
        _expect_filtered(got, lib.filter_logits(z0, 1.0, top_k=k), z0, desc)
    return "matches filter_logits(logits, top_k=k) for k = 1 ... vocab and beyond, ties at the k-th value kept"


# --------------------------------------------------------------------------------------------
# 3. top-p (nucleus)
# --------------------------------------------------------------------------------------------

def _log_probs(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).log()


def _kept_multiset(x: torch.Tensor, row: int) -> list[float]:
    r = x[row]
    return sorted(r[torch.isfinite(r)].tolist())


@check("top-p (nucleus) filtering")
def check_top_p(top_p_filter):
    cases = [
        ("logits [3, 40], p = 0.9", _logits(3, 40, 20), 0.9, False),
        ("logits [3, 40], p = 0.5", _logits(3, 40, 21), 0.5, False),
        ("probabilities [0.6, 0.3, 0.1] as logits, p = 0.5: the top token alone passes p and must stay",
         _log_probs([[0.6, 0.3, 0.1]]), 0.5, False),
        ("probabilities [0.1, 0.2, 0.3, 0.4], p = 0.65: keep 0.4 and 0.3 (0.4 < 0.65, 0.4 + 0.3 >= 0.65): the "
         "token that crosses p stays", _log_probs([[0.1, 0.2, 0.3, 0.4]]), 0.65, False),
        ("logits [2, 30], p = 0.01 (only the top token)", _logits(2, 30, 22), 0.01, False),
        ("probabilities [0.4, 0.3, 0.3], p = 0.6: two tokens tie at 0.3 and only one is needed; either may "
         "stay", _log_probs([[0.4, 0.3, 0.3]]), 0.6, True),
        ("very sharp logits [2, 50] (scale 30), p = 0.9", _logits(2, 50, 23, scale=30.0), 0.9, False),
    ]
    for desc, z, p, tie in cases:
        z0 = z.clone()
        got = call_learner(top_p_filter, z, p)
        if not torch.equal(z, z0):
            raise CheckFailed(f"{desc}: your function changed the logits in place")
        expected = lib.filter_logits(z, 1.0, top_p=p)
        if not tie:
            _expect_filtered(got, expected, z, desc, fewer_hint="the token that brings the running total to p "
                             "stays too (drop a token only when the tokens before it already reach p)")
        else:  # which of two tied tokens stays depends on the sort: compare what is kept as a multiset
            got = _as_tensor(got, desc)
            if tuple(got.shape) != tuple(expected.shape):
                raise CheckFailed(f"{desc}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
            for row in range(z.shape[0]):
                want, have = _kept_multiset(expected, row), _kept_multiset(got, row)
                if len(want) != len(have) or not all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)
                                                     for a, b in zip(want, have)):
                    raise CheckFailed(f"{desc}: expected to keep {len(want)} token(s) with probabilities "
                                      f"{[round(math.exp(v), 3) for v in reversed(want)]}, yours keeps "
                                      f"{[round(math.exp(v), 3) for v in reversed(have)]}")
    return "matches filter_logits(logits, top_p=p): the smallest set reaching p, top token always kept, ties"


# --------------------------------------------------------------------------------------------
# 4. perplexity from per-token losses with a mask
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _model_case(seed: int):
    """Per-token losses of a small random model on sequences of different real lengths, the mask
    of the predicted tokens, and the model's own loss (mean over the same tokens)."""
    from ..config import MiniMindConfig
    from ..model import MiniMindForCausalLM

    torch.manual_seed(seed)
    model = MiniMindForCausalLM(MiniMindConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                               num_key_value_heads=1, vocab_size=97, max_position_embeddings=64))
    model.eval()
    g = _gen(seed)
    ids = torch.randint(3, 97, (3, 12), generator=g)
    lengths = [12, 7, 3]
    labels = ids.clone()
    for row, n in enumerate(lengths):
        labels[row, n:] = -100          # padding after the real tokens
    with torch.no_grad():
        out = model(ids, labels=labels)
    logits = out.logits[:, :-1]
    targets = labels[:, 1:]
    mask = targets != -100
    losses = F.cross_entropy(logits.reshape(-1, 97), targets.clamp(min=0).reshape(-1), reduction="none")
    # masked positions hold junk (9.0), so that a forgotten mask shows
    losses = torch.where(mask, losses.view(targets.shape), torch.full(targets.shape, 9.0))
    return losses, mask, math.exp(out.loss.item())


@check("perplexity from masked token losses")
def check_masked_perplexity(masked_perplexity):
    losses = torch.tensor([[1.0, 2.0, 3.0], [0.5, 5.0, 5.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    cases = [("losses [[1, 2, 3], [0.5, 5, 5]], mask [[1, 1, 1], [1, 0, 0]]: exp of the mean over the 4 "
              "real tokens = exp(1.625)", losses, mask, math.exp((1 + 2 + 3 + 0.5) / 4))]
    for seed in (0, 1):
        l, m, ppl = _model_case(seed)
        cases.append((f"a small model's token losses [3, 11], sequences of 11, 6 and 2 predicted tokens (seed "
                      f"{seed}); masked positions hold junk 9.0", l, m, ppl))
    int_mask = cases[1][2].long()
    cases.append(("the same with an integer 0/1 mask", cases[1][1], int_mask, cases[1][3]))
    cases.append(("everything masked in but one token of loss 0 -> perplexity 1",
                  torch.tensor([[0.0, 7.0]]), torch.tensor([[1, 0]]), 1.0))
    for desc, l, m, expected in cases:
        got = call_learner(masked_perplexity, l.clone(), m.clone())
        if isinstance(got, torch.Tensor):
            if got.numel() != 1:
                raise CheckFailed(f"{desc}: expected one number, got a tensor of shape {tuple(got.shape)}")
            got = got.item()
        if not isinstance(got, (int, float)):
            raise CheckFailed(f"{desc}: expected a float, got {type(got).__name__}")
        if not math.isclose(got, expected, rel_tol=1e-4):
            hint = ""
            lm = l.double()
            if math.isclose(got, math.exp(float(lm.mean())), rel_tol=1e-4):
                hint = " (that is the mean over every position: leave the masked ones out)"
            elif math.isclose(got, float((lm * m).sum(-1).div(m.sum(-1)).exp().mean()), rel_tol=1e-4):
                hint = " (that is the mean of per-sequence perplexities: average the losses over all tokens first)"
            elif math.isclose(got, float((lm * m).sum() / m.sum()), rel_tol=1e-4):
                hint = " (that is the mean loss: perplexity is exp of it)"
            raise CheckFailed(f"{desc}: expected {expected:.6g}, got {got:.6g}{hint}")
    return "exp(sum(loss * mask) / sum(mask)), equal to exp(the model's loss) on padded batches"


# --------------------------------------------------------------------------------------------
# 5. stretch: repetition penalty
# --------------------------------------------------------------------------------------------

@check("repetition penalty (stretch)")
def check_repetition_penalty(repetition_penalty):
    z = torch.tensor([[2.0, -1.0, 0.5, -3.0, 1.0]])
    cases = [
        ("logits [[2, -1, 0.5, -3, 1]], previous [[0, 1]], penalty 2: 2 -> 1 (divide), -1 -> -2 (multiply)",
         z, torch.tensor([[0, 1]]), 2.0),
        ("previous [[2, 2, 2, 3]]: a token seen three times is penalised once, not three times",
         z, torch.tensor([[2, 2, 2, 3]]), 1.5),
        ("logits [3, 40], previous [3, 12], penalty 1.3", _logits(3, 40, 30), torch.randint(0, 40, (3, 12), generator=_gen(31)), 1.3),
        ("penalty 1.0 changes nothing", _logits(2, 40, 32), torch.randint(0, 40, (2, 5), generator=_gen(33)), 1.0),
    ]
    for desc, logits, prev, penalty in cases:
        z0 = logits.clone()
        expected = lib.apply_repetition_penalty(z0, prev, penalty)
        got = call_learner(repetition_penalty, logits, prev.clone(), penalty)
        if not torch.equal(logits, z0):
            raise CheckFailed(f"{desc}: your function changed the logits in place")
        got = _as_tensor(got, desc)
        if got.shape == expected.shape and penalty != 1.0:
            neg = (logits < 0) & (expected != logits)
            if bool(neg.any()) and bool((got[neg] > logits[neg]).any()):
                raise CheckFailed(f"{desc}: a negative logit went up; dividing -1 by the penalty makes a seen "
                                  "token MORE likely, multiply negative logits instead")
        expect_tensor(got, expected, desc, atol=1e-6, rtol=1e-5)
    return "matches apply_repetition_penalty: positive / penalty, negative * penalty, once per token"


__all__ = ["check_temperature_softmax", "check_top_k", "check_top_p", "check_masked_perplexity",
           "check_repetition_penalty"]
