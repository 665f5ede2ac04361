"""The learning-rate schedule: MiniMind's cosine, counted in optimizer steps, with optional warmup."""
from __future__ import annotations

import math


def lr_at(step: int, total: int, base_lr: float, warmup: int = 0) -> float:
    """The learning rate of optimizer step `step` (0-based) of `total`.

    MiniMind's cosine schedule, lr(t) = base_lr * (0.1 + 0.45 * (1 + cos(pi * t / T))), starts
    at base_lr and decays towards base_lr / 10. MiniMind evaluates it per micro-step (T = the
    number of micro-batches); here t and T count *optimizer* steps, so `max_steps` fixes the
    schedule's length directly and the curve does not depend on --accum (with accumulation 8
    the two differ by less than one optimizer step's worth of decay).

    With `warmup` > 0 the first `warmup` steps ramp linearly from base_lr / warmup up to
    base_lr, and the cosine then runs over the remaining total - warmup steps.
    """
    if total <= 0:
        raise ValueError(f"total must be positive, got {total}")
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    t, span = step - warmup, max(1, total - warmup)
    return base_lr * (0.1 + 0.45 * (1.0 + math.cos(math.pi * t / span)))


__all__ = ["lr_at"]
