"""Checks for lesson 10 (reinforcement learning with verifiable rewards, GRPO, 强化学习).

    from minimind_core.checks import lesson10 as checks
    checks.check_reward(reward)                      # reward(reply, closed, expected, choices) -> float
    checks.check_group_advantages(group_advantages)  # group_advantages(rewards [B*G], group_size) -> [B*G]
    checks.check_k3_kl(k3_kl)                        # k3_kl(logp, ref_logp) -> [N, T]
    checks.check_clipped_surrogate(clipped_surrogate)  # (logp, old_logp, advantages [N], clip_eps) -> [N, T]
    checks.check_grpo_loss(grpo_loss)                # stretch: (logp, old_logp, ref_logp, adv, mask, beta, clip_eps)

They compare with `minimind_core.grpo` (reward, group_advantages, k3_kl, clipped_surrogate,
grpo_token_loss, aggregate) and name the usual slips.
"""
from __future__ import annotations

import torch

from .. import grpo as lib
from . import CheckFailed, call_learner, check, expect_tensor


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close(got, expected: torch.Tensor, atol: float = 1e-5) -> bool:
    return (isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(expected.shape)
            and bool(torch.allclose(got.detach().double(), expected.double(), atol=atol, equal_nan=True)))


# --------------------------------------------------------------------------------------------
# the reward
# --------------------------------------------------------------------------------------------

CITIES = ["Selstead", "Rosmere", "Halden", "Millbrook"]
JOBS_ZH = ["面包师", "农民", "老师", "医生"]


def _reward_cases():
    """(what, reply, closed, expected, choices)."""
    return [
        ("a right answer, closed", "She lives in Rosmere.", True, "Rosmere", CITIES),
        ("a wrong answer, closed", "She lives in Halden.", True, "Rosmere", CITIES),
        ("a right answer that also names a wrong city", "She lives in Rosmere or Halden.", True, "Rosmere", CITIES),
        ("a right answer in lower case", "she lives in rosmere.", True, "Rosmere", CITIES),
        ("a right answer that never closed with <|im_end|>", "She lives in Rosmere. She lives in", False,
         "Rosmere", CITIES),
        ("a wrong answer that never closed", "She lives in Halden, in Halden, in", False, "Rosmere", CITIES),
        ("a right answer in Chinese", "他是一名老师。", True, "老师", JOBS_ZH),
        ("an empty reply", "", True, "Rosmere", CITIES),
    ]


@check("the verifiable reward")
def check_reward(reward):
    for what, reply, closed, expected, choices in _reward_cases():
        rec = lib.PromptRecord(messages=(), expected=expected, choices=tuple(choices))
        want = lib.reward(reply, closed, rec)
        got = call_learner(reward, reply, closed, expected, list(choices))
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise CheckFailed(f"{what}: expected a number, got {type(got).__name__}") from None
        if abs(got - want) < 1e-9:
            continue
        if what.startswith("a right answer that also names"):
            raise CheckFailed(f"{what} ({reply!r}): expected {want}, got {got}; a reply that names another choice "
                              "too is not right (otherwise listing every city would always win)")
        if "in lower case" in what:
            raise CheckFailed(f"{what} ({reply!r}): expected {want}, got {got}; compare case-insensitively "
                              "(str.casefold), as held-out accuracy does")
        if "never closed" in what:
            raise CheckFailed(f"{what}: expected {want}, got {got}; take 0.5 off a reply that did not close "
                              "(closed=False), whether it was right or wrong")
        raise CheckFailed(f"{what} ({reply!r}, expected {expected!r}): expected reward {want}, got {got}")
    return "1 right / 0 wrong (right = names the fact and no other choice), -0.5 when not closed"


# --------------------------------------------------------------------------------------------
# group-normalised advantages
# --------------------------------------------------------------------------------------------

@check("group-normalised advantages")
def check_group_advantages(group_advantages):
    G = 4
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0,     # a group that teaches: two right, two wrong
                            1.0, 1.0, 1.0, 1.0,     # all right: nothing to learn
                            0.0, 0.5, 1.0, -0.5])   # graded rewards
    expected = lib.group_advantages(rewards, G)
    got = call_learner(group_advantages, rewards.clone(), G)
    what = "3 groups of 4 rewards"
    if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(expected.shape):
        if not bool(torch.isfinite(got).all()):
            raise CheckFailed(f"{what}: got NaN or inf for the group whose replies all earned 1.0 (std 0); "
                              "divide by (std + eps), eps = 1e-4")
        whole = (rewards - rewards.mean()) / (rewards.std(unbiased=False) + 1e-4)
        if _close(got, whole):
            raise CheckFailed(f"{what}: you normalised over the whole batch; each reply is compared with "
                              "its own group (view(-1, G), mean and std along dim 1)")
        r = rewards.view(-1, G)
        unbiased = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).view(-1)
        if _close(got, unbiased):
            raise CheckFailed(f"{what}: use the population std (unbiased=False, dividing by G), as MiniMind")
        centred = (r - r.mean(1, keepdim=True)).view(-1)
        if _close(got, centred):
            raise CheckFailed(f"{what}: the rewards are centred but not divided by the group's std + eps")
    expect_tensor(got, expected, what, atol=1e-4, rtol=1e-4, check_dtype=False)
    return "(r - group mean) / (group std + 1e-4): 0 for a group that all earned the same"


# --------------------------------------------------------------------------------------------
# the k3 KL estimate
# --------------------------------------------------------------------------------------------

def _logps(seed: int, shape=(3, 5)):
    g = _gen(seed)
    return -torch.rand(shape, generator=g) * 3 - 0.05, -torch.rand(shape, generator=g) * 3 - 0.05


@check("k3 estimate of the KL")
def check_k3_kl(k3_kl):
    logp, ref = _logps(1)
    same = call_learner(k3_kl, logp.clone(), logp.clone())
    expect_tensor(same, torch.zeros_like(logp), "policy = reference: the KL is 0 at every token", atol=1e-6,
                  check_dtype=False)
    expected = lib.k3_kl(logp, ref)
    got = call_learner(k3_kl, logp.clone(), ref.clone())
    what = "15 tokens whose policy and reference log-probs differ"
    if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(logp.shape):
        if _close(got, logp - ref):
            raise CheckFailed(f"{what}: logp - ref_logp is the plain (k1) estimate, negative for some tokens; "
                              "k3 = exp(d) - d - 1 with d = ref_logp - logp is never negative")
        if _close(got, lib.k3_kl(ref, logp)):
            raise CheckFailed(f"{what}: d is the wrong way round; d = ref_logp - logp (the sampled token's "
                              "log-ratio reference / policy)")
    expect_tensor(got, expected, what, atol=1e-6, rtol=1e-5, check_dtype=False)
    return "exp(d) - d - 1 with d = ref_logp - logp: 0 when equal, never negative"


# --------------------------------------------------------------------------------------------
# the clipped surrogate
# --------------------------------------------------------------------------------------------

def _surrogate_case():
    g = _gen(5)
    old = -torch.rand(4, 6, generator=g) * 2 - 0.1
    logp = old + torch.randn(4, 6, generator=g) * 0.4      # ratios from about 0.3 to 3: many are clipped
    adv = torch.tensor([1.5, -1.0, 0.0, -0.5])
    return logp, old, adv


@check("clipped surrogate")
def check_clipped_surrogate(clipped_surrogate):
    logp, old, adv = _surrogate_case()
    same = call_learner(clipped_surrogate, old.clone(), old.clone(), adv.clone(), 0.2)
    expect_tensor(same, adv[:, None].expand_as(old), "ratio 1 (the first update): the objective is A at "
                  "every token", atol=1e-6, check_dtype=False)
    expected, _ = lib.clipped_surrogate(logp, old, adv, 0.2)
    got = call_learner(clipped_surrogate, logp.clone(), old.clone(), adv.clone(), 0.2)
    what = "4 replies of 6 tokens, clip_eps 0.2, advantages +1.5, -1, 0, -0.5"
    if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(logp.shape):
        ratio = torch.exp(logp - old)
        a = adv[:, None]
        if _close(got, ratio * a):
            raise CheckFailed(f"{what}: nothing is clipped; take min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)")
        if _close(got, ratio.clamp(0.8, 1.2) * a):
            raise CheckFailed(f"{what}: the clipped term alone lets a bad reply's ratio go unpunished; take the "
                              "min of the clipped and the unclipped term")
        if _close(got, torch.maximum(ratio * a, ratio.clamp(0.8, 1.2) * a)):
            raise CheckFailed(f"{what}: max instead of min: the surrogate is a pessimistic (lower) bound")
        if _close(got, (logp / old) * a) or _close(got, (logp - old) * a):
            raise CheckFailed(f"{what}: the ratio is pi / pi_old = exp(logp - old_logp)")
    expect_tensor(got, expected, what, atol=1e-5, rtol=1e-5, check_dtype=False)
    return "min(ratio A, clip(ratio, 1 +- eps) A): A at ratio 1, flat once the ratio leaves the range"


# --------------------------------------------------------------------------------------------
# stretch: the whole loss
# --------------------------------------------------------------------------------------------

@check("GRPO loss (stretch)")
def check_grpo_loss(grpo_loss):
    logp, old, adv = _surrogate_case()
    _, ref = _logps(9, shape=tuple(logp.shape))
    mask = torch.ones_like(logp, dtype=torch.bool)
    mask[1, 3:] = False                      # a short reply
    mask[3, 1:] = False                      # a one-token reply
    beta, eps = 0.1, 0.2
    per_token, _, _ = lib.grpo_token_loss(logp, old, ref, adv, beta, eps)
    expected = lib.aggregate(per_token, mask, "sequence")
    got = call_learner(grpo_loss, logp.clone(), old.clone(), ref.clone(), adv.clone(), mask.clone(), beta, eps)
    what = "4 replies of 6, 3, 6 and 1 tokens, beta 0.1, clip_eps 0.2"
    if isinstance(got, torch.Tensor) and got.dim() != 0:
        raise CheckFailed(f"{what}: expected one number (a scalar), got shape {tuple(got.shape)}")
    if isinstance(got, torch.Tensor):
        g = float(got)
        if abs(g - float(lib.aggregate(per_token, mask, "token"))) < 1e-5:
            raise CheckFailed(f"{what}: that is the mean over all tokens (DAPO's); GRPO averages each reply's "
                              "tokens first, then the replies")
        if abs(g - float(lib.aggregate(per_token, torch.ones_like(mask), "sequence"))) < 1e-5:
            raise CheckFailed(f"{what}: the padding was counted; average over each reply's own tokens (mask)")
        flipped, _, _ = lib.grpo_token_loss(logp, old, ref, adv, -beta, eps)
        if abs(g - float(lib.aggregate(flipped, mask, "sequence"))) < 1e-5:
            raise CheckFailed(f"{what}: the KL term has the wrong sign; the loss is -(surrogate - beta * kl)")
    expect_tensor(got, expected, what, atol=1e-5, rtol=1e-5, check_dtype=False)
    return "-(surrogate - beta kl), averaged per reply, then over replies (grpo.aggregate 'sequence')"


__all__ = ["check_reward", "check_group_advantages", "check_k3_kl", "check_clipped_surrogate", "check_grpo_loss"]
