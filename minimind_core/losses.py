"""Losses beyond plain next-token cross-entropy: sequence log-probabilities, DPO and distillation.

All functions take `labels` in the Hugging Face convention the model uses: the same length as
`input_ids`, -100 where a position is not trained (prompt, role headers, padding). The logits at
position t predict the label at position t + 1, so every function here shifts by one:

    logits[:, :-1]  predicts  labels[:, 1:]

Preference alignment (偏好对齐, DPO) compares how much more likely the policy makes the chosen
reply than the rejected one, relative to a frozen reference model. Knowledge distillation
(知识蒸馏) trains a small student to match a larger teacher's softened next-token distribution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # label of a position that is not trained (prompt, role header, padding)


def token_ce_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy over the trained targets (labels != -100), in fp32.

    labels have the same length as the inputs (Hugging Face convention): position i's label is
    the token at i, predicted from position i - 1. Divide by `n_targets(labels)` for the mean.
    """
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                           labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")


def n_targets(labels: torch.Tensor) -> int:
    """How many positions `token_ce_sum` sums over."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def _shift(logits: torch.Tensor, labels: torch.Tensor):
    if logits.dim() != 3:
        raise ValueError(f"logits must be [batch, seq, vocab], got shape {tuple(logits.shape)}")
    if labels.shape != logits.shape[:2]:
        raise ValueError(f"labels shape {tuple(labels.shape)} does not match logits' "
                         f"[batch, seq] = {tuple(logits.shape[:2])}")
    logits = logits[:, :-1, :]
    labels = labels[:, 1:]
    mask = labels != IGNORE_INDEX
    return logits, labels, mask


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor):
    """Log-probability the model gives each (shifted) label token.

    Returns `(logps, mask)`, both [batch, seq - 1]: `logps[b, t]` = log p(labels[b, t+1] | ...)
    computed in float32, 0 where `mask` is False (label -100).
    """
    logits, labels, mask = _shift(logits, labels)
    safe = labels.masked_fill(~mask, 0).unsqueeze(-1)
    logits = logits.float()
    # log_softmax(x)[y] = x[y] - logsumexp(x); avoids materialising a second [B, T, V] tensor
    picked = logits.gather(-1, safe).squeeze(-1)
    logps = picked - torch.logsumexp(logits, dim=-1)
    return logps.masked_fill(~mask, 0.0), mask


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """One score per sequence: the mean (MiniMind2) or sum (later releases) of the per-token
    log-probs over the trained (assistant) tokens. Returns [batch] float32.

    A sequence without any trained token gets 0 (and no gradient) rather than NaN.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    logps, mask = token_logprobs(logits, labels)
    total = logps.sum(-1)
    if reduction == "sum":
        return total
    return total / mask.sum(-1).clamp(min=1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float = 0.1,
             reduction: str = "mean"):
    """Direct Preference Optimization loss from sequence scores (each [batch]).

        loss = -log sigmoid(beta * ((pc - pr) - (rc - rr)))

    reduction: "mean" (over the pairs, default), "sum", or "none" (one loss per pair, [batch]).
    Returns `(loss, metrics)` where metrics holds plain floats (batch means):
      rewards_chosen    mean of beta * (pc - rc)   (implicit reward of the chosen reply)
      rewards_rejected  mean of beta * (pr - rr)
      margin            mean of rewards_chosen - rewards_rejected
      accuracy          fraction of pairs whose chosen reward beats the rejected one
    At the start of training the policy equals the reference, so loss = ln 2 and margin = 0.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    shapes = {t.shape for t in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)}
    if len(shapes) != 1:
        raise ValueError("dpo_loss: policy_chosen, policy_rejected, ref_chosen and ref_rejected must "
                         f"have the same shape, got {[tuple(s) for s in shapes]}")
    ref_chosen = ref_chosen.detach()
    ref_rejected = ref_rejected.detach()
    chosen_reward = beta * (policy_chosen - ref_chosen)
    rejected_reward = beta * (policy_rejected - ref_rejected)
    logits = chosen_reward - rejected_reward
    losses = -F.logsigmoid(logits)
    loss = losses.mean() if reduction == "mean" else losses.sum() if reduction == "sum" else losses
    with torch.no_grad():
        metrics = {
            "rewards_chosen": chosen_reward.float().mean().item(),
            "rewards_rejected": rejected_reward.float().mean().item(),
            "margin": logits.float().mean().item(),
            "accuracy": (logits > 0).float().mean().item(),
        }
    return loss, metrics


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                 alpha: float = 0.5, temperature: float = 1.5,
                 return_parts: bool = False):
    """Knowledge-distillation loss over the trained positions:

        L = alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))

    CE and KL are both averaged over the positions whose (shifted) label is not -100; the KL at a
    position is summed over the vocabulary. The T^2 factor keeps the gradient size of the soft
    term independent of T (the defaults are the distill stage's, train.config.DistillKnobs: a test
    keeps the two equal; they are not imported from there because the model imports this module
    and the modeling code written into checkpoints must not need the training package). The
    teacher gets no gradient. Returns the loss tensor, or
    `(loss, {"ce": float, "kl": float})` with `return_parts=True`.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if student_logits.shape[-1] != teacher_logits.shape[-1]:
        raise ValueError(
            f"distillation needs a shared vocabulary: the student has {student_logits.shape[-1]} "
            f"logits per position, the teacher {teacher_logits.shape[-1]} (use the same tokenizer)")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} must have the same [batch, seq, vocab] shape")
    s, targets, mask = _shift(student_logits, labels)
    t = teacher_logits[:, :-1, :].detach()
    n = mask.sum()
    if n == 0:
        raise ValueError("distill_loss: no trained positions (every shifted label is -100)")
    s = s[mask].float()          # [N, V]
    t = t[mask].float()
    ce = F.cross_entropy(s, targets[mask])
    if alpha < 1.0:
        log_ps = F.log_softmax(s / temperature, dim=-1)
        log_pt = F.log_softmax(t / temperature, dim=-1)
        kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1).mean()
    else:
        kl = ce.new_zeros(())
    loss = alpha * ce + (1.0 - alpha) * temperature ** 2 * kl
    if return_parts:
        return loss, {"ce": ce.item(), "kl": kl.item()}
    return loss
