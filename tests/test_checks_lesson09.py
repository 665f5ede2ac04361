"""Lesson 09 checks: pass on the answers, 'not done yet' on the stubs, a readable message on wrong ones."""
import torch
import torch.nn.functional as F

from minimind_core.checks import lesson09 as checks
from check_helpers import expect_fail, expect_pass, stub

# ---- reference answers, written independently of the library ---------------------------------


def soften(logits, temperature):
    return torch.softmax(logits / temperature, dim=-1)


def kd_term(student_logits, teacher_logits, temperature):
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    p_t = F.softmax(teacher_logits / temperature, dim=-1)
    return temperature ** 2 * F.kl_div(log_p_s, p_t, reduction="batchmean")


def distill_loss(student_logits, teacher_logits, labels, alpha=0.5, temperature=1.5):
    s, t, y = student_logits[:, :-1], teacher_logits[:, :-1], labels[:, 1:]
    keep = y != -100
    ce = F.cross_entropy(s[keep], y[keep])
    return alpha * ce + (1 - alpha) * kd_term(s[keep], t[keep], temperature)


def answer_part(reply):
    text = reply.strip()
    if not text.startswith("<think>"):
        return text
    if "</think>" not in text:
        return ""
    return text.split("</think>", 1)[1].strip()


def kd_gradient(student_logits, teacher_logits, temperature):
    return temperature * (torch.softmax(student_logits / temperature, -1) - torch.softmax(teacher_logits / temperature, -1))


# ---- the tests --------------------------------------------------------------------------------

def test_checks_pass_on_answers():
    expect_pass(checks.check_soften(soften))
    expect_pass(checks.check_kd_term(kd_term))
    expect_pass(checks.check_distill_loss(distill_loss))
    expect_pass(checks.check_answer_part(answer_part))
    expect_pass(checks.check_kd_gradient(kd_gradient))


def test_checks_report_not_done_on_stubs():
    for r in (checks.check_soften(stub), checks.check_kd_term(stub), checks.check_distill_loss(stub),
              checks.check_answer_part(stub), checks.check_kd_gradient(stub)):
        assert not r.passed and "not done yet" in str(r)


def test_soften_multiplying_by_the_temperature_fails():
    expect_fail(checks.check_soften(lambda z, t: torch.softmax(z * t, -1)), "divide the logits by T")


def test_soften_over_the_wrong_dimension_fails():
    expect_fail(checks.check_soften(lambda z, t: torch.softmax(z / t, 0)), "sum to 1")


def test_soften_with_exponentials_overflows():
    def naive(z, t):
        e = torch.exp(z / t)
        return e / e.sum(-1, keepdim=True)
    expect_fail(checks.check_soften(naive), "NaN")


def test_kd_term_without_t_squared_fails():
    expect_fail(checks.check_kd_term(lambda s, t, T: kd_term(s, t, T) / T ** 2), "T^2")


def test_kd_term_the_wrong_way_round_fails():
    def reversed_kl(s, t, T):
        return T ** 2 * F.kl_div(F.log_softmax(t / T, -1), F.softmax(s / T, -1), reduction="batchmean")
    expect_fail(checks.check_kd_term(reversed_kl), "wrong way round")


def test_kd_term_summed_over_positions_fails():
    def summed(s, t, T):
        return T ** 2 * F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="sum")
    expect_fail(checks.check_kd_term(summed), "average")


def test_kd_term_per_position_fails():
    def per_row(s, t, T):
        return T ** 2 * F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="none").sum(-1)
    expect_fail(checks.check_kd_term(per_row), "one number")


def test_distill_loss_with_alpha_swapped_fails():
    r = checks.check_distill_loss(lambda s, t, y, a, T: distill_loss(s, t, y, 1 - a, T))
    expect_fail(r, "alpha weighs the hard-label")


def test_distill_loss_unshifted_fails():
    def unshifted(s, t, y, alpha, T):
        keep = y != -100
        return alpha * F.cross_entropy(s[keep], y[keep]) + (1 - alpha) * kd_term(s[keep], t[keep], T)
    expect_fail(checks.check_distill_loss(unshifted), "shift them")


def test_answer_part_that_keeps_the_thinking_fails():
    expect_fail(checks.check_answer_part(lambda r: r.replace("<think>", "").replace("</think>", "").strip()),
                "expected")


def test_answer_part_of_an_unfinished_reply_fails():
    def unfinished(reply):
        return reply.split("</think>")[-1].strip()
    expect_fail(checks.check_answer_part(unfinished), "never closes it")


def test_kd_gradient_without_the_temperature_fails():
    r = checks.check_kd_gradient(lambda s, t, T: torch.softmax(s / T, -1) - torch.softmax(t / T, -1))
    expect_fail(r, "multiply by T")


def test_kd_gradient_with_the_sign_flipped_fails():
    expect_fail(checks.check_kd_gradient(lambda s, t, T: -kd_gradient(s, t, T)), "sign is flipped")
