"""Lesson 10 checks: pass on the answers, 'not done yet' on the stubs, a readable message on wrong ones."""
import torch

from minimind_core.checks import lesson10 as checks
from check_helpers import expect_fail, expect_pass, stub

# ---- reference answers, written independently of the library ---------------------------------


def reward(reply, closed, expected, choices):
    text = reply.casefold()
    named = {c for c in set(choices) | {expected} if c.casefold() in text}
    right = named == {expected}
    return float(right) - (0.0 if closed else 0.5)


def group_advantages(rewards, group_size):
    r = rewards.view(-1, group_size)
    return ((r - r.mean(1, keepdim=True)) / (r.std(1, unbiased=False, keepdim=True) + 1e-4)).view(-1)


def k3_kl(logp, ref_logp):
    d = ref_logp - logp
    return d.exp() - d - 1


def clipped_surrogate(logp, old_logp, advantages, clip_eps):
    ratio = (logp - old_logp).exp()
    a = advantages[:, None]
    return torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)


def grpo_loss(logp, old_logp, ref_logp, advantages, mask, beta, clip_eps):
    per_token = -(clipped_surrogate(logp, old_logp, advantages, clip_eps) - beta * k3_kl(logp, ref_logp))
    m = mask.float()
    return ((per_token * m).sum(-1) / m.sum(-1)).mean()


# ---- the tests --------------------------------------------------------------------------------

def test_checks_pass_on_answers():
    expect_pass(checks.check_reward(reward))
    expect_pass(checks.check_group_advantages(group_advantages))
    expect_pass(checks.check_k3_kl(k3_kl))
    expect_pass(checks.check_clipped_surrogate(clipped_surrogate))
    expect_pass(checks.check_grpo_loss(grpo_loss))


def test_checks_report_not_done_on_stubs():
    for r in (checks.check_reward(stub), checks.check_group_advantages(stub), checks.check_k3_kl(stub),
              checks.check_clipped_surrogate(stub), checks.check_grpo_loss(stub)):
        assert not r.passed and "not done yet" in str(r)


def test_reward_that_only_looks_for_the_expected_value_fails():
    r = checks.check_reward(lambda reply, closed, e, c: float(e.casefold() in reply.casefold()) - (0 if closed else 0.5))
    expect_fail(r, "names another choice")


def test_case_sensitive_reward_fails():
    def wrong(reply, closed, expected, choices):
        named = {c for c in set(choices) | {expected} if c in reply}
        return float(named == {expected}) - (0.0 if closed else 0.5)
    expect_fail(checks.check_reward(wrong), "lower case", "casefold")


def test_reward_without_the_format_term_fails():
    expect_fail(checks.check_reward(lambda reply, closed, e, c: reward(reply, True, e, c)), "did not close")


def test_advantages_over_the_whole_batch_fail():
    def wrong(rewards, group_size):
        return (rewards - rewards.mean()) / (rewards.std(unbiased=False) + 1e-4)
    expect_fail(checks.check_group_advantages(wrong), "whole batch", "own group")


def test_advantages_without_eps_fail():
    def wrong(rewards, group_size):
        r = rewards.view(-1, group_size)
        return ((r - r.mean(1, keepdim=True)) / r.std(1, unbiased=False, keepdim=True)).view(-1)
    expect_fail(checks.check_group_advantages(wrong), "NaN", "eps")


def test_advantages_with_the_unbiased_std_fail():
    def wrong(rewards, group_size):
        r = rewards.view(-1, group_size)
        return ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).view(-1)
    expect_fail(checks.check_group_advantages(wrong), "population std")


def test_k1_instead_of_k3_fails():
    expect_fail(checks.check_k3_kl(lambda logp, ref: logp - ref), "k1")


def test_k3_the_wrong_way_round_fails():
    expect_fail(checks.check_k3_kl(lambda logp, ref: k3_kl(ref, logp)), "wrong way round")


def test_surrogate_without_the_clip_fails():
    expect_fail(checks.check_clipped_surrogate(lambda lp, old, a, eps: (lp - old).exp() * a[:, None]),
                "nothing is clipped")


def test_surrogate_with_max_fails():
    def wrong(lp, old, a, eps):
        ratio = (lp - old).exp()
        return torch.maximum(ratio * a[:, None], ratio.clamp(1 - eps, 1 + eps) * a[:, None])
    expect_fail(checks.check_clipped_surrogate(wrong), "max instead of min")


def test_loss_averaged_over_all_tokens_fails():
    def wrong(logp, old, ref, adv, mask, beta, eps):
        per_token = -(clipped_surrogate(logp, old, adv, eps) - beta * k3_kl(logp, ref))
        return (per_token * mask).sum() / mask.sum()
    expect_fail(checks.check_grpo_loss(wrong), "all tokens", "DAPO")


def test_loss_with_the_kl_sign_flipped_fails():
    def wrong(logp, old, ref, adv, mask, beta, eps):
        return grpo_loss(logp, old, ref, adv, mask, -beta, eps)
    expect_fail(checks.check_grpo_loss(wrong), "wrong sign")
