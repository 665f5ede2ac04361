"""Lesson 08 checks: pass on the answers, 'not done yet' on the stubs, a readable message on wrong ones."""
import torch
import torch.nn.functional as F

from minimind_core.checks import lesson08 as checks
from check_helpers import expect_fail, expect_pass, stub

# ---- reference answers, written independently of the library ---------------------------------


def bradley_terry(r_chosen, r_rejected):
    return torch.sigmoid(r_chosen - r_rejected)


def sequence_score(logits, labels, reduction="mean"):
    logits, labels = logits[:, :-1], labels[:, 1:]
    keep = labels != -100
    logp = logits.float().log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    total = (logp * keep).sum(-1)
    return total if reduction == "sum" else total / keep.sum(-1).clamp(min=1)


def implicit_reward(policy_scores, ref_scores, beta):
    return beta * (policy_scores - ref_scores)


def dpo_loss(pc, pr, rc, rr, beta=0.1):
    return -F.logsigmoid(beta * ((pc - pr) - (rc - rr))).mean()


def dpo_weight(pc, pr, rc, rr, beta=0.1):
    return torch.sigmoid(-beta * ((pc - pr) - (rc - rr)))


# ---- the tests --------------------------------------------------------------------------------

def test_checks_pass_on_answers():
    expect_pass(checks.check_bradley_terry(bradley_terry))
    expect_pass(checks.check_sequence_score(sequence_score))
    expect_pass(checks.check_implicit_reward(implicit_reward))
    expect_pass(checks.check_dpo_loss(dpo_loss))
    expect_pass(checks.check_dpo_weight(dpo_weight))


def test_checks_report_not_done_on_stubs():
    for r in (checks.check_bradley_terry(stub), checks.check_sequence_score(stub),
              checks.check_implicit_reward(stub), checks.check_dpo_loss(stub), checks.check_dpo_weight(stub)):
        assert not r.passed and "not done yet" in str(r)


def test_bradley_terry_written_with_exponentials_overflows():
    r = checks.check_bradley_terry(lambda c, r: torch.exp(c) / (torch.exp(c) + torch.exp(r)))
    expect_fail(r, "NaN", "sigmoid(r_chosen - r_rejected)")


def test_bradley_terry_of_the_chosen_reward_alone_fails():
    expect_fail(checks.check_bradley_terry(lambda c, r: torch.sigmoid(c)), "equal rewards")


def test_unshifted_sequence_score_fails():
    def wrong(logits, labels, reduction="mean"):
        keep = labels != -100
        logp = logits.log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        total = (logp * keep).sum(-1)
        return total if reduction == "sum" else total / keep.sum(-1)
    expect_fail(checks.check_sequence_score(wrong), "reduction='sum'", "shift them")


def test_mean_over_the_whole_sequence_fails():
    def wrong(logits, labels, reduction="mean"):
        total = sequence_score(logits, labels, "sum")
        return total if reduction == "sum" else total / (labels.shape[1] - 1)
    expect_fail(checks.check_sequence_score(wrong), "reduction='mean'", "number of scored tokens")


def test_sequence_score_averaged_over_the_batch_fails():
    expect_fail(checks.check_sequence_score(lambda lg, lb, reduction="mean": sequence_score(lg, lb, reduction).mean()),
                "expected one value per pair/sequence", "got a scalar")


def test_implicit_reward_with_the_sign_flipped_fails():
    expect_fail(checks.check_implicit_reward(lambda p, r, beta: beta * (r - p)), "sign is flipped")


def test_implicit_reward_without_beta_fails():
    expect_fail(checks.check_implicit_reward(lambda p, r, beta: p - r), "beta=0.1", "values differ")


def test_dpo_loss_without_the_reference_fails():
    r = checks.check_dpo_loss(lambda pc, pr, rc, rr, beta=0.1: -F.logsigmoid(beta * (pc - pr)).mean())
    expect_fail(r, "reference", "rc - rr")


def test_dpo_loss_with_the_sign_flipped_fails():
    r = checks.check_dpo_loss(lambda pc, pr, rc, rr, beta=0.1: -F.logsigmoid(-beta * ((pc - pr) - (rc - rr))).mean())
    expect_fail(r, "sign is flipped")


def test_dpo_loss_per_pair_fails():
    r = checks.check_dpo_loss(lambda pc, pr, rc, rr, beta=0.1: -F.logsigmoid(beta * ((pc - pr) - (rc - rr))))
    expect_fail(r, "scalar", "shape (6,)")


def test_dpo_weight_of_the_winning_probability_fails():
    r = checks.check_dpo_weight(lambda pc, pr, rc, rr, beta=0.1: torch.sigmoid(beta * ((pc - pr) - (rc - rr))))
    expect_fail(r, "sigmoid(-z)")


def test_dpo_weight_without_beta_inside_fails():
    r = checks.check_dpo_weight(lambda pc, pr, rc, rr, beta=0.1: torch.sigmoid(-((pc - pr) - (rc - rr))))
    expect_fail(r, "autograd", "values differ")
