"""Checks for lesson 08 (preference alignment with DPO, 偏好对齐).

    from minimind_core.checks import lesson08 as checks
    checks.check_bradley_terry(bradley_terry)          # bradley_terry(r_chosen, r_rejected) -> P(chosen wins)
    checks.check_sequence_score(sequence_score)        # sequence_score(logits, labels, reduction) -> [batch]
    checks.check_implicit_reward(implicit_reward)      # implicit_reward(policy, reference, beta) -> [batch]
    checks.check_dpo_loss(dpo_loss)                    # dpo_loss(pc, pr, rc, rr, beta) -> scalar
    checks.check_dpo_weight(dpo_weight)                # stretch: dpo_weight(pc, pr, rc, rr, beta) -> [batch]

They compare with `minimind_core.losses` (sequence_logprobs, dpo_loss) and, for the stretch
exercise, with the gradient autograd computes.
"""
from __future__ import annotations

import math

import torch

from ..losses import IGNORE_INDEX, dpo_loss as _lib_dpo_loss, sequence_logprobs
from . import CheckFailed, call_learner, check, expect_tensor


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _scores(seed: int, n: int = 6):
    """Four rows of sequence scores (log-probabilities: negative), pc, pr, rc, rr."""
    return tuple(torch.rand(4, n, generator=_gen(seed)).mul(-3.0).sub(0.2))


def _expect_vector(got, expected: torch.Tensor, what: str, atol: float = 1e-5) -> None:
    if isinstance(got, torch.Tensor) and got.dim() == 0 and expected.dim() == 1:
        raise CheckFailed(f"{what}: expected one value per pair/sequence (shape {tuple(expected.shape)}), "
                          "got a scalar: do not average here")
    expect_tensor(got, expected, what, atol=atol, rtol=1e-5, check_dtype=False)


# --------------------------------------------------------------------------------------------
# the Bradley-Terry model
# --------------------------------------------------------------------------------------------

@check("Bradley-Terry probability")
def check_bradley_terry(bradley_terry):
    got = call_learner(bradley_terry, torch.tensor([1.5]), torch.tensor([1.5]))
    expect_tensor(got, torch.tensor([0.5]), "equal rewards: each reply wins half the time", check_dtype=False)
    r_c = torch.tensor([2.0, 0.0, -1.0, 100.0, -100.0])
    r_r = torch.tensor([1.0, 1.0, -1.0, -100.0, 100.0])
    expected = torch.sigmoid(r_c - r_r)
    got = call_learner(bradley_terry, r_c.clone(), r_r.clone())
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (5,) and torch.isnan(got).any():
        raise CheckFailed("rewards of +100 and -100: got NaN, because exp(100) overflows float32; "
                          "write the probability as sigmoid(r_chosen - r_rejected)")
    _expect_vector(got, expected, "P(chosen wins) = sigmoid(r_chosen - r_rejected) for 5 pairs", atol=1e-6)
    shifted = call_learner(bradley_terry, r_c + 7.0, r_r + 7.0)
    _expect_vector(shifted, expected, "both rewards shifted by +7 (only the difference counts)", atol=1e-6)
    return "sigmoid of the reward difference: 0.5 when equal, unchanged by a common shift"


# --------------------------------------------------------------------------------------------
# sequence scores: sum and mean of the reply's token log-probabilities
# --------------------------------------------------------------------------------------------

def _score_cases():
    g = _gen(3)
    logits = torch.randn(3, 10, 23, generator=g) * 2
    labels = torch.randint(0, 23, (3, 10), generator=g)
    labels[0, :4] = IGNORE_INDEX          # the prompt is not scored
    labels[1, :7] = IGNORE_INDEX          # a short reply
    labels[2, :2] = IGNORE_INDEX
    labels[2, -3:] = IGNORE_INDEX         # padding after the reply
    return logits, labels


@check("sequence score (sum and mean)")
def check_sequence_score(sequence_score):
    logits, labels = _score_cases()
    for reduction in ("sum", "mean"):
        expected = sequence_logprobs(logits, labels, reduction=reduction)
        got = call_learner(sequence_score, logits.clone(), labels.clone(), reduction)
        what = f"reduction={reduction!r}, 3 replies of 6, 3 and 5 scored tokens"
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (3,):
            unshifted = _unshifted(logits, labels, reduction)
            if torch.allclose(got.double(), unshifted, atol=1e-4):
                raise CheckFailed(f"{what}: the logits at position t predict the label at t + 1; "
                                  "shift them (logits[:, :-1] against labels[:, 1:])")
            if reduction == "mean":
                over_all = expected * (labels[:, 1:] != IGNORE_INDEX).sum(-1) / (labels.shape[1] - 1)
                if torch.allclose(got.double(), over_all.double(), atol=1e-4):
                    raise CheckFailed(f"{what}: divide by the number of scored tokens of each reply, "
                                      "not by the sequence length")
        _expect_vector(got, expected, what, atol=1e-4)
    return "matches losses.sequence_logprobs for sum and mean (shifted, prompt and padding masked)"


def _unshifted(logits, labels, reduction):
    mask = labels != IGNORE_INDEX
    logp = logits.double().log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    total = (logp * mask).sum(-1)
    return total if reduction == "sum" else total / mask.sum(-1).clamp(min=1)


# --------------------------------------------------------------------------------------------
# the implicit reward
# --------------------------------------------------------------------------------------------

@check("implicit reward")
def check_implicit_reward(implicit_reward):
    pc, _, rc, _ = _scores(5)
    same = call_learner(implicit_reward, pc.clone(), pc.clone(), 0.1)
    _expect_vector(same, torch.zeros_like(pc), "policy = reference: every reward is 0", atol=1e-7)
    for beta in (0.1, 0.5):
        got = call_learner(implicit_reward, pc.clone(), rc.clone(), beta)
        expected = beta * (pc - rc)
        if isinstance(got, torch.Tensor) and got.shape == pc.shape and torch.allclose(got, beta * (rc - pc)):
            raise CheckFailed(f"beta={beta}: the sign is flipped: the reward is beta * (policy - reference), "
                              "positive when the policy likes the reply more than the reference does")
        _expect_vector(got, expected, f"beta={beta}, 6 replies", atol=1e-6)
    return "beta * (policy score - reference score): 0 at the start, scaled by beta"


# --------------------------------------------------------------------------------------------
# the DPO loss
# --------------------------------------------------------------------------------------------

@check("DPO loss")
def check_dpo_loss(dpo_loss):
    pc, pr, rc, rr = _scores(7)
    cases = [("policy = reference (the start of training): the loss must be ln 2 = 0.693", pc, pr, pc, pr, 0.1)]
    cases += [(f"beta={beta}, 6 pairs with different reference scores", pc, pr, rc, rr, beta) for beta in (0.1, 1.0)]
    for what, a, b, c, d, beta in cases:
        expected, _ = _lib_dpo_loss(a, b, c, d, beta=beta)
        got = call_learner(dpo_loss, a.clone(), b.clone(), c.clone(), d.clone(), beta)
        if isinstance(got, torch.Tensor) and got.dim() != 0:
            raise CheckFailed(f"{what}: expected the mean over pairs (a scalar), got shape {tuple(got.shape)}")
        if isinstance(got, torch.Tensor):
            _diagnose_dpo(float(got), what, a, b, c, d, beta)
        expect_tensor(got, expected, what, atol=1e-6, rtol=1e-5, check_dtype=False)
    return "ln 2 at the start, and equal to losses.dpo_loss"


def _diagnose_dpo(got: float, what: str, pc, pr, rc, rr, beta) -> None:
    """Name the two usual slips: no reference model, and the sign of the margin."""
    logsig = torch.nn.functional.logsigmoid
    right = float(-logsig(beta * ((pc - pr) - (rc - rr))).mean())
    if math.isclose(got, right, rel_tol=1e-5):
        return
    if math.isclose(got, float(-logsig(beta * (pc - pr)).mean()), rel_tol=1e-5):
        raise CheckFailed(f"{what}: subtract the reference's preference (rc - rr): without it DPO is not "
                          "anchored to the SFT model")
    if math.isclose(got, float(-logsig(-beta * ((pc - pr) - (rc - rr))).mean()), rel_tol=1e-5) and pc is not rc:
        raise CheckFailed(f"{what}: the sign is flipped: the loss must fall when the chosen reply gains on "
                          "the rejected one")


# --------------------------------------------------------------------------------------------
# stretch: how much each pair pulls
# --------------------------------------------------------------------------------------------

@check("DPO gradient weight (stretch)")
def check_dpo_weight(dpo_weight):
    pc, pr, rc, rr = _scores(11)
    beta = 0.5
    policy_c = pc.clone().requires_grad_(True)
    loss, _ = _lib_dpo_loss(policy_c, pr, rc, rr, beta=beta, reduction="sum")
    (grad,) = torch.autograd.grad(loss, policy_c)
    expected = -grad / beta     # d loss_i / d pc_i = -beta * weight_i
    got = call_learner(dpo_weight, pc.clone(), pr.clone(), rc.clone(), rr.clone(), beta)
    if isinstance(got, torch.Tensor) and got.shape == pc.shape:
        z = beta * ((pc - pr) - (rc - rr))
        if torch.allclose(got, torch.sigmoid(z), atol=1e-6):
            raise CheckFailed("got sigmoid(z), the probability the model is already right; the weight is "
                              "sigmoid(-z): pairs the policy already gets right pull little")
    _expect_vector(got, expected, f"beta={beta}, 6 pairs: -(d loss / d pc) / beta from autograd", atol=1e-6)
    return "sigmoid(-z): equals autograd's gradient; a pair the policy already ranks right pulls little"


__all__ = ["check_bradley_terry", "check_sequence_score", "check_implicit_reward", "check_dpo_loss",
           "check_dpo_weight"]
