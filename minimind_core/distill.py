"""White-box knowledge distillation (知识蒸馏): a student cut from its teacher, and soft labels.

The loss itself is `losses.distill_loss` (the student matches the teacher's softened next-token
distribution, mixed with the hard labels); the `distill` stage trains with it (train/tasks.py).
This module holds what a lesson needs around it:

* `student_from_teacher`: a smaller student made of some of the teacher's layers, with the
  teacher's embeddings, final norm and head. DistilBERT started its 6-layer student from every
  other layer of the 12-layer BERT; a student that starts where the teacher's knowledge is
  learns from the soft labels in minutes, while a random one spends its budget learning
  grammar. The `distill` stage does this when its `student_layers` knob is set.
* `soft_labels`: the teacher's distribution at a temperature, and how much it says beyond the
  hard label (its entropy): what the student gets from a teacher that a one-hot label lacks.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def student_from_teacher(teacher, layers: Sequence[int], **config_changes):
    """A new model with the teacher's layers `layers` (in that order), embeddings, final norm and head.

    The copies are independent of the teacher (training the student leaves the teacher as it is).
    `config_changes` may change nothing that the copied weights fix (width, heads, vocabulary).
    """
    from .config import MiniMindConfig
    from .model import MiniMindForCausalLM

    layers = [int(i) for i in layers]
    n = int(teacher.config.num_hidden_layers)
    if not layers or any(not 0 <= i < n for i in layers):
        raise ValueError(f"student layers {layers} must be indices of the teacher's {n} layers (0..{n - 1})")
    fixed = {"hidden_size", "num_attention_heads", "num_key_value_heads", "vocab_size", "intermediate_size"}
    if fixed & set(config_changes):
        raise ValueError(f"a student cut from its teacher keeps the teacher's {', '.join(sorted(fixed & set(config_changes)))}")
    config = MiniMindConfig(**{**teacher.config.to_dict(), **config_changes, "num_hidden_layers": len(layers)})
    student = MiniMindForCausalLM(config)
    source = {k: v.detach().clone() for k, v in teacher.state_dict().items()}
    state = {}
    for k, v in source.items():
        if k.startswith("model.layers."):
            index, rest = k[len("model.layers."):].split(".", 1)
            if int(index) in layers:
                state[f"model.layers.{layers.index(int(index))}.{rest}"] = v
        else:
            state[k] = v
    missing, unexpected = student.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith("lm_head.weight")]:
        raise ValueError(f"the student's weights do not match the teacher's: missing {missing}, unexpected {unexpected}")
    return student.to(next(teacher.parameters()).device)


def soft_labels(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """softmax(logits / T) over the last dimension: the teacher's soft labels at temperature T.

    T = 1 is the model's own distribution; a higher T flattens it, so the small probabilities of
    the wrong-but-related tokens (the "dark knowledge") become visible to the student's loss.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return F.softmax(logits.float() / temperature, dim=-1)


def entropy_bits(probs: torch.Tensor) -> torch.Tensor:
    """The entropy of each distribution (last dimension) in bits; 0 for a one-hot label."""
    p = probs.float()
    return -(p * torch.log2(p.clamp_min(1e-12))).sum(-1)


__all__ = ["student_from_teacher", "soft_labels", "entropy_bits"]
