import math

import pytest
import torch
import torch.nn.functional as F

from minimind_core.losses import distill_loss, dpo_loss, sequence_logprobs, token_logprobs


def _batch(seed=0, B=3, T=7, V=11):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g)
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[:, :2] = -100          # prompt
    labels[1, 5:] = -100          # padding
    return logits, labels


def test_token_logprobs_match_log_softmax():
    logits, labels = _batch()
    logps, mask = token_logprobs(logits, labels)
    assert logps.shape == mask.shape == (3, 6)
    ref = F.log_softmax(logits[:, :-1], -1)
    for b in range(3):
        for t in range(6):
            y = labels[b, t + 1].item()
            if y == -100:
                assert not mask[b, t] and logps[b, t] == 0
            else:
                assert mask[b, t]
                torch.testing.assert_close(logps[b, t], ref[b, t, y])


def test_sequence_logprobs_mean_and_sum():
    logits, labels = _batch()
    logps, mask = token_logprobs(logits, labels)
    s = sequence_logprobs(logits, labels, "sum")
    m = sequence_logprobs(logits, labels, "mean")
    torch.testing.assert_close(s, logps.sum(-1))
    torch.testing.assert_close(m, logps.sum(-1) / mask.sum(-1))
    # the mean equals minus the per-sequence cross-entropy the model would report
    ce = F.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100)
    torch.testing.assert_close(m[0], -ce)
    with pytest.raises(ValueError):
        sequence_logprobs(logits, labels, "max")
    with pytest.raises(ValueError, match="labels shape"):
        token_logprobs(logits, labels[:, :-1])


def test_dpo_loss_is_ln2_when_policy_equals_reference():
    pc = torch.tensor([-1.3, -0.2, -2.0])
    pr = torch.tensor([-0.7, -1.1, -3.0])
    loss, metrics = dpo_loss(pc, pr, pc.clone(), pr.clone(), beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-7)
    assert metrics["margin"] == 0 and metrics["accuracy"] == 0
    assert metrics["rewards_chosen"] == 0 and metrics["rewards_rejected"] == 0


def test_dpo_loss_hand_computation():
    pc, pr = torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0])
    rc, rr = torch.tensor([-1.5, -1.5]), torch.tensor([-1.5, -1.5])
    beta = 0.5
    loss, m = dpo_loss(pc, pr, rc, rr, beta=beta)
    # pair 0: beta*((-1+2) - 0) = 0.5 ; pair 1: beta*((-2+1) - 0) = -0.5
    expected = (-math.log(1 / (1 + math.exp(-0.5))) - math.log(1 / (1 + math.exp(0.5)))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert m["accuracy"] == 0.5
    per_pair, _ = dpo_loss(pc, pr, rc, rr, beta=beta, reduction="none")
    assert per_pair.shape == (2,)
    torch.testing.assert_close(per_pair.mean(), loss)
    total, _ = dpo_loss(pc, pr, rc, rr, beta=beta, reduction="sum")
    torch.testing.assert_close(total, per_pair.sum())
    assert m["margin"] == pytest.approx(0.0, abs=1e-7)
    assert m["rewards_chosen"] == pytest.approx(0.5 * ((0.5) + (-0.5)) / 2)
    assert m["rewards_rejected"] == pytest.approx(0.5 * ((-0.5) + (0.5)) / 2)


def test_dpo_gradient_raises_chosen_lowers_rejected():
    pc = torch.tensor([-1.0, -1.5], requires_grad=True)
    pr = torch.tensor([-1.2, -0.9], requires_grad=True)
    rc, rr = pc.detach().clone(), pr.detach().clone()
    loss, _ = dpo_loss(pc, pr, rc, rr)
    loss.backward()
    assert (pc.grad < 0).all()   # gradient descent increases the chosen score
    assert (pr.grad > 0).all()   # and decreases the rejected one
    with pytest.raises(ValueError, match="same shape"):
        dpo_loss(pc, pr[:1], rc, rr)


def test_distill_equals_ce_when_alpha_is_one():
    s, labels = _batch(1)
    t = torch.randn_like(s)
    loss = distill_loss(s, t, labels, alpha=1.0)
    ce = F.cross_entropy(s[:, :-1].reshape(-1, s.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(loss, ce)


def test_distill_kl_zero_when_student_equals_teacher():
    s, labels = _batch(2)
    loss, parts = distill_loss(s, s.clone(), labels, alpha=0.3, temperature=2.0, return_parts=True)
    assert parts["kl"] == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(0.3 * parts["ce"], rel=1e-6)


def test_distill_hand_computed_tiny_example():
    # one sequence of two tokens: the first position predicts label 1; vocab of 2
    s = torch.tensor([[[0.0, 1.0], [5.0, 5.0]]])
    t = torch.tensor([[[1.0, 0.0], [9.0, -9.0]]])
    labels = torch.tensor([[-100, 1]])
    T, alpha = 2.0, 0.25
    ce = -math.log(math.exp(1) / (1 + math.exp(1)))
    ps = [1 / (1 + math.exp(0.5)), 1 / (1 + math.exp(-0.5))]     # softmax([0, .5])
    pt = [1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(0.5))]     # softmax([.5, 0])
    kl = sum(p * math.log(p / q) for p, q in zip(pt, ps))
    expected = alpha * ce + (1 - alpha) * T * T * kl
    s.requires_grad_(True)
    t.requires_grad_(True)
    loss, parts = distill_loss(s, t, labels, alpha=alpha, temperature=T, return_parts=True)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert parts["kl"] == pytest.approx(kl, rel=1e-6)
    loss.backward()
    assert t.grad is None                      # the teacher is not trained
    assert s.grad[0, 1].abs().sum() == 0       # the last position predicts nothing


def test_distill_rejects_different_vocabularies():
    s, labels = _batch(3, V=11)
    t = torch.randn(3, 7, 12)
    with pytest.raises(ValueError, match="shared vocabulary"):
        distill_loss(s, t, labels)
    with pytest.raises(ValueError, match="no trained positions"):
        distill_loss(s, s, torch.full_like(labels, -100))


def test_distill_defaults_are_the_distill_stage_knobs():
    """losses.py spells the defaults out (the model imports it, so it may not import the training
    package); they must stay the distill stage's."""
    import inspect

    from minimind_core.train.config import DistillKnobs

    params = inspect.signature(distill_loss).parameters
    assert params["alpha"].default == DistillKnobs.alpha
    assert params["temperature"].default == DistillKnobs.temperature
