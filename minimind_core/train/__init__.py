"""The training loop behind every stage: pretrain (预训练), SFT (监督微调), LoRA, DPO, distillation and GRPO.

One loop, one Python API, the same under `python -m minimind_core train STAGE` and under
`torchrun --nproc_per_node N -m minimind_core train STAGE`:

    from minimind_core.train import train, plan_run
    plan = plan_run("pretrain", "tiny")            # steps, batches per epoch, tokens per step
    result = train("pretrain", profile="tiny", callbacks=[plot.update], max_steps=300)
    result.final_loss, result.checkpoint, result.metrics

What each stage trains and on which batches lives in a small task class (tasks.py); everything
else is shared:

- AdamW (fused on CUDA), gradient clipping at 1.0, MiniMind's cosine schedule (schedule.lr_at).
- Gradient accumulation. The loss of an optimizer step is the token-weighted mean over all of
  its micro-batches and all ranks (MiniMind logged the last micro-batch only), and the gradient
  is exactly the gradient of that mean: accumulating k micro-batches equals one k-times larger
  batch, and N ranks equal one process over the same global batch.
- Mixed precision: bf16 autocast where the GPU has it, fp16 with a GradScaler where it does not,
  fp32 on the CPU (MiniMind used fp16 even when bf16 was asked for). `compile=True` wraps the
  model in torch.compile.
- DDP: NCCL on CUDA, gloo on the CPU; a DistributedSampler whose `set_epoch` is called every
  epoch, shuffling on one GPU too (MiniMind did neither); only rank 0 logs and saves.
- Checkpoints in the run folder (see checkpoint.py), resumable with `resume=True`; on a CPU a
  resumed run ends bit-identical to an uninterrupted one.
- A non-finite loss stops the run (keeping the last good checkpoint); a CUDA out-of-memory
  error says what to lower.

The modules, in reading order:

    config.py    every option and its default (TrainConfig, the stage knobs)
    plan.py      options from profile + overrides (resolve_config); the run's size (plan_run)
    schedule.py  the learning rate of each step
    env.py       device, precision, ranks
    batches.py   the resumable batch stream
    tasks.py     what each stage trains and its loss
    loop.py      train(): the numbered recipe

Names are imported from their module on first use, so `minimind_core.train.config` (which the
profiles use) is cheap to import.
"""
from __future__ import annotations

import importlib

from ..errors import NonFiniteLossError, TrainError

_HOMES = {
    "train": "loop", "RunResult": "loop",
    "plan_run": "plan", "RunPlan": "plan", "resolve_config": "plan",
    "TrainConfig": "config", "SFTKnobs": "config", "LoRAKnobs": "config", "DPOKnobs": "config",
    "DistillKnobs": "config", "GRPOKnobs": "config",
    "lr_at": "schedule",
    "BatchStream": "batches",
    "TASKS": "tasks",
}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_HOMES))


__all__ = ["train", "RunResult", "plan_run", "RunPlan", "resolve_config", "TrainConfig", "SFTKnobs",
           "LoRAKnobs", "DPOKnobs", "DistillKnobs", "GRPOKnobs", "lr_at", "BatchStream", "TASKS", "TrainError",
           "NonFiniteLossError"]
