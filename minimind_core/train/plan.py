"""What a run will do before it starts: its options (resolve_config) and its size (plan_run).

    from minimind_core.train import plan_run
    plan = plan_run("pretrain", "tiny")
    plan.total_steps, plan.batches_per_epoch, plan.tokens_per_step

train() makes its plan with the same function (`make_plan`), so a lesson that draws the learning
rate schedule before the run draws the one the run will follow.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import TrainError
from ..profiles import STAGES, get_profile
from .batches import BatchStream
from .config import KNOB_OVERRIDES, OVERRIDE_NAMES, TrainConfig
from .env import Env
from .tasks import TASKS, load_run_tokenizer

# ----------------------------------------------------------------------------------------------
# options: the profile's recipe with the caller's overrides


def resolve_config(stage: str, profile=None, **overrides) -> TrainConfig:
    """Fill every option from the profile's recipe for `stage`, then apply `overrides`.

    overrides: TrainConfig's run options and the stage knobs by name (config.OVERRIDE_NAMES),
    and `model=` (see `model_arguments`); `None` means "the default". `epochs=` without
    `max_steps=` trains whole epochs even when the recipe has a step budget. An unknown name raises
    TrainError listing the valid ones.
    """
    if stage not in STAGES:
        raise TrainError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    prof = profile if hasattr(profile, "stages") else get_profile(profile)
    recipe = prof.stage(stage)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    model = overrides.pop("model", None)
    unknown = sorted(set(overrides) - set(OVERRIDE_NAMES))
    if unknown:
        raise TrainError(f"train() got unknown option(s) {', '.join(unknown)}; "
                         f"valid options: {', '.join(OVERRIDE_NAMES)}")
    options = _recipe_options(stage, prof, recipe)
    if "epochs" in overrides and "max_steps" not in overrides:
        options["max_steps"] = None
    knobs = {name: getattr(recipe, name) for name in ("sft", "lora", "dpo", "distill", "grpo")}
    for key, value in overrides.items():
        if key in KNOB_OVERRIDES:
            group, name = KNOB_OVERRIDES[key]
            knobs[group] = dataclasses.replace(knobs[group], **{name: value})
        else:
            options[key] = value
    knobs["sft"] = _resolve_mix(knobs["sft"], prof)
    knobs["distill"] = _resolve_teacher(knobs["distill"], stage, prof)
    for key in ("data", "out", "init", "tokenizer", "cache_dir"):
        if options.get(key) is not None:
            options[key] = Path(options[key])
    if model is not None:
        options["model"] = model_arguments(model)
    cfg = TrainConfig(**options, **knobs)
    _check(cfg)
    if model is not None and cfg.init is not None:
        raise TrainError(f"--model shapes a new model, but this {stage} run starts from the trained model "
                         f"--init {cfg.init} and keeps its shape: drop --model")
    return cfg


def model_arguments(model) -> dict:
    """The MiniMindConfig arguments `model=` asks for, replacing the profile's model.

    A preset name ("minimind-3", presets.PRESET_NAMES), a dict of MiniMindConfig arguments, or a
    dict with "preset" and changes to it: {"preset": "minimind-3", "num_hidden_layers": 2}.
    """
    from ..presets import preset_arguments

    if isinstance(model, dict):
        args = dict(model)
        name = args.pop("preset", None)
    elif isinstance(model, str):
        args, name = {}, model
    else:
        raise TrainError(f"model must be a preset name or a dict of MiniMindConfig arguments, got {model!r}")
    from ..config import MiniMindConfig

    try:
        args = {**(preset_arguments(name) if name is not None else {}), **args}
        MiniMindConfig(**args)            # a shape that cannot be built fails here, named as --model
    except (TypeError, ValueError) as e:
        raise TrainError(f"--model: {e}") from None
    return args


def _recipe_options(stage, prof, recipe) -> dict:
    return dict(stage=stage, profile=prof.name, data=recipe.data, out=prof.run_dir(stage),
                init=prof.run_dir(recipe.init) if recipe.init else None, profile_tokenizer=prof.tokenizer,
                model=dict(prof.model), epochs=recipe.epochs, max_steps=recipe.max_steps,
                batch_size=recipe.batch_size, accum=recipe.accum, lr=recipe.lr, warmup=recipe.warmup,
                seq_len=recipe.seq_len, log_every=recipe.log_every, save_every=recipe.save_every,
                val_fraction=recipe.val_fraction)


def _resolve_mix(knobs, prof):
    """mix_pretrain=True means the profile's pretraining file, at its recipe's batch size."""
    if not knobs.mix_pretrain:
        return knobs
    pre = prof.stage("pretrain")
    path = knobs.mix_pretrain if isinstance(knobs.mix_pretrain, (str, Path)) else pre.data
    batch_size = int(knobs.mix_batch_size or pre.batch_size)
    return dataclasses.replace(knobs, mix_pretrain=Path(path), mix_batch_size=batch_size)


def _resolve_teacher(knobs, stage, prof):
    """A teacher named by a stage ("sft") is that stage's run folder in this profile."""
    t = knobs.teacher
    if stage == "distill" and isinstance(t, str) and t in STAGES and not Path(t).exists():
        return dataclasses.replace(knobs, teacher=str(prof.run_dir(t)))
    return knobs


def _check(cfg: TrainConfig) -> None:
    for k in ("epochs", "batch_size", "accum", "seq_len", "log_every"):
        if int(getattr(cfg, k)) < 1:
            raise TrainError(f"--{k.replace('_', '-')} must be at least 1, got {getattr(cfg, k)}")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise TrainError(f"--max-steps must be at least 1, got {cfg.max_steps}")
    if not 0.0 <= float(cfg.val_fraction) <= 0.5:
        raise TrainError(f"--val-fraction must be between 0 and 0.5, got {cfg.val_fraction}")
    for k in ("val_every", "val_batches"):
        if int(getattr(cfg, k)) < 1:
            raise TrainError(f"--{k.replace('_', '-')} must be at least 1, got {getattr(cfg, k)}")
    if cfg.dtype not in ("auto", "bf16", "fp16", "fp32"):
        raise TrainError(f"--dtype must be auto, bf16, fp16 or fp32, got {cfg.dtype!r}")


# ----------------------------------------------------------------------------------------------
# the plan: how many steps, batches and tokens


@dataclass(frozen=True)
class RunPlan:
    """The size of a run, as train() will run it."""

    total_steps: int          # optimizer steps: max_steps, else whole epochs (rounded down)
    epochs: int               # epochs the run reaches into (the last one may be partial)
    batches_per_epoch: int    # micro-batches per epoch, per rank
    micro_batches: int        # micro-batches per optimizer step, per rank (accum)
    sequences_per_step: int   # sequences per optimizer step over all ranks (a DPO pair counts two)
    tokens_per_step: int      # sequences_per_step x seq_len (padded stages train fewer real tokens)
    world: int                # ranks (processes)


def make_plan(cfg: TrainConfig, batches_per_epoch: int, world: int, sequences_per_example: int = 1) -> RunPlan:
    """The plan of a run whose main stream has `batches_per_epoch` micro-batches per rank."""
    total = cfg.max_steps or max(1, cfg.epochs * batches_per_epoch // cfg.accum)
    sequences = cfg.batch_size * cfg.accum * world * sequences_per_example
    return RunPlan(total_steps=total, epochs=math.ceil(total * cfg.accum / batches_per_epoch),
                   batches_per_epoch=batches_per_epoch, micro_batches=cfg.accum, sequences_per_step=sequences,
                   tokens_per_step=sequences * cfg.seq_len, world=world)


def plan_run(stage: str, profile=None, *, world: int | None = None, **overrides) -> RunPlan:
    """The plan of train(stage, profile, **overrides) run by `world` processes (default: this job's).

    Loads the tokenizer and the datasets (the pretraining token cache is built if missing), but
    no model.
    """
    overrides.setdefault("progress", False)
    cfg = resolve_config(stage, profile, **overrides)
    world = world or int(os.environ.get("WORLD_SIZE", "1"))
    task = TASKS[stage](cfg, Env(device=torch.device("cpu")), load_run_tokenizer(cfg))
    main = task.sources()["main"]
    stream = BatchStream(main.dataset, main.batch_size, seed=cfg.seed, world=world, name=main.name)
    return make_plan(cfg, stream.batches_per_epoch, world, task.sequences_per_example)


__all__ = ["resolve_config", "model_arguments", "RunPlan", "make_plan", "plan_run"]
