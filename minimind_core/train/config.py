"""Every option of a training run and its default, in one place.

A run's options come in three layers, each overriding the one before:

    1. the defaults below (run options, and each stage's knobs);
    2. the profile's recipe for the stage (profiles.StageRecipe): data, schedule, what it starts
       from, knob values;
    3. the caller's overrides: train("sft", lr=1e-3, mix_pretrain=False), or the CLI's flags.

`plan.resolve_config` puts the three together into one TrainConfig. The schedule fields have no
default here: every recipe states them. This module imports neither torch nor the profiles, so
the profiles can use the knob classes and the command line starts fast.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TrainError

# ----------------------------------------------------------------------------------------------
# stage knobs: what only one stage (or two) reads


@dataclass(frozen=True, kw_only=True)
class SFTKnobs:
    """Supervised fine-tuning."""

    mix_pretrain: bool | str | Path = False  # one pretraining batch per step: True (the profile's file) or a file
    mix_batch_size: int | None = None         # sequences of that batch (None: the pretrain recipe's batch size)


@dataclass(frozen=True, kw_only=True)
class LoRAKnobs:
    """LoRA adapters on a frozen model (lora.apply_lora)."""

    rank: int = 8                  # r: each adapted weight gets A [r x in] and B [out x r]
    alpha: float | None = None     # the adapter's output is scaled by alpha / r (None: alpha = r, MiniMind's)
    targets: str | tuple = "all"   # "all" linear layers, "minimind" (the square ones) or module names


@dataclass(frozen=True, kw_only=True)
class DPOKnobs:
    """Direct preference optimization (losses.dpo_loss)."""

    beta: float = 0.1              # strength of the pull towards the reference model
    score: str = "mean"            # sequence score: "mean" (MiniMind2) or "sum" of the token log-probs
    sft_weight: float = 0.0        # + this x the chosen replies' cross-entropy (0: plain DPO, MiniMind's)

    def __post_init__(self):
        if self.score not in ("mean", "sum"):
            raise TrainError(f"dpo_score must be 'mean' or 'sum', got {self.score!r}")
        if float(self.sft_weight) < 0:
            raise TrainError(f"dpo_sft_weight must be >= 0, got {self.sft_weight}")


@dataclass(frozen=True, kw_only=True)
class DistillKnobs:
    """Knowledge distillation (losses.distill_loss)."""

    alpha: float = 0.5             # weight of the hard-label CE; 1 - alpha goes to the teacher's KL
    temperature: float = 1.5       # softens both distributions before the KL
    teacher: str | Path | None = None  # the teacher's model or run folder, or a stage of this profile
    student: dict = field(default_factory=dict)  # MiniMindConfig changes for a fresh student (e.g. fewer layers)
    student_layers: tuple | None = None  # the student = these of the teacher's layers (distill.student_from_teacher; wins over init)

    def __post_init__(self):
        if self.student_layers is not None and not self.student_layers:
            raise TrainError("student_layers must name at least one of the teacher's layers, got none")
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise TrainError(f"distill_alpha must be between 0 and 1, got {self.alpha}")
        if float(self.temperature) <= 0:
            raise TrainError(f"distill_temperature must be positive, got {self.temperature}")


@dataclass(frozen=True, kw_only=True)
class GRPOKnobs:
    """Group relative policy optimization with a rule-based reward (grpo.py)."""

    group_size: int = 8            # G: replies sampled per prompt (MiniMind: 6)
    beta: float = 0.1              # weight of the k3 KL to the reference model
    clip_eps: float = 0.2          # PPO's clip: the ratio may move 1 +- clip_eps per update
    max_new_tokens: int = 32       # reply budget; a reply not closed by then loses format_weight
    temperature: float = 1.0       # sampling temperature of the rollouts
    top_p: float | None = None     # nucleus sampling of the rollouts (None: the whole distribution)
    format_weight: float = 0.5     # reward taken off a reply that does not close with <|im_end|>
    loss_agg: str = "sequence"     # "sequence": mean per reply, then over replies; "token": over all tokens

    def __post_init__(self):
        if int(self.group_size) < 2:
            raise TrainError(f"grpo_group_size must be at least 2 (advantages compare a reply with its group), "
                             f"got {self.group_size}")
        if float(self.beta) < 0 or not 0 < float(self.clip_eps) < 1:
            raise TrainError(f"grpo_beta must be >= 0 and grpo_clip_eps in (0, 1), got {self.beta}, {self.clip_eps}")
        if int(self.max_new_tokens) < 1 or float(self.temperature) <= 0:
            raise TrainError(f"grpo_max_new_tokens must be >= 1 and grpo_temperature > 0, got "
                             f"{self.max_new_tokens}, {self.temperature}")
        if self.loss_agg not in ("sequence", "token"):
            raise TrainError(f"grpo_loss_agg must be 'sequence' or 'token', got {self.loss_agg!r}")


# the knob overrides train() accepts: name -> (TrainConfig field, knob field)
KNOB_OVERRIDES = {
    "mix_pretrain": ("sft", "mix_pretrain"),
    "mix_batch_size": ("sft", "mix_batch_size"),
    "lora_rank": ("lora", "rank"),
    "lora_alpha": ("lora", "alpha"),
    "lora_targets": ("lora", "targets"),
    "dpo_beta": ("dpo", "beta"),
    "dpo_score": ("dpo", "score"),
    "dpo_sft_weight": ("dpo", "sft_weight"),
    "distill_alpha": ("distill", "alpha"),
    "distill_temperature": ("distill", "temperature"),
    "teacher": ("distill", "teacher"),
    "student": ("distill", "student"),
    "student_layers": ("distill", "student_layers"),
    "grpo_group_size": ("grpo", "group_size"),
    "grpo_beta": ("grpo", "beta"),
    "grpo_clip_eps": ("grpo", "clip_eps"),
    "grpo_max_new_tokens": ("grpo", "max_new_tokens"),
    "grpo_temperature": ("grpo", "temperature"),
    "grpo_top_p": ("grpo", "top_p"),
    "grpo_format_weight": ("grpo", "format_weight"),
    "grpo_loss_agg": ("grpo", "loss_agg"),
}


# ----------------------------------------------------------------------------------------------
# the whole run


@dataclass(kw_only=True)
class TrainConfig:
    """One run's options, resolved (see the module docstring for where each value comes from)."""

    # what, and where from / to
    stage: str                      # pretrain | sft | lora | dpo | distill | grpo
    profile: str                    # smoke | tiny | full: the size of everything
    data: Path                      # the training JSONL file
    out: Path                       # the run folder: run.json, metrics.jsonl, checkpoints/
    init: Path | None = None        # model or run folder to start from (None: a fresh model)
    tokenizer: Path | None = None   # None: the --init model's own tokenizer, else profile_tokenizer
    profile_tokenizer: Path | None = None  # the profile's tokenizer, the last fallback
    model: dict = field(default_factory=dict)  # MiniMindConfig arguments of a fresh model (the profile's size)
    # schedule: every recipe sets these
    epochs: int                     # passes over the data, when max_steps is None
    max_steps: int | None           # optimizer steps; wins over epochs and sets the LR schedule's length
    batch_size: int                 # sequences per micro-batch, per rank
    accum: int                      # micro-batches per optimizer step
    lr: float                       # peak learning rate of the cosine schedule
    warmup: int                     # steps of linear warmup before the cosine
    seq_len: int                    # tokens per sequence
    log_every: int                  # log a row (and MiniMind's line) every N optimizer steps
    save_every: int                 # checkpoint every N steps (0: only at the end)
    # validation: a held-out slice of the training file, never trained on
    val_fraction: float = 0.0       # share held out (every round(1/f)-th example); 0: no validation
    val_every: int = 5              # compute val_loss at every N-th logged row (and at the last step)
    val_batches: int = 8            # batches of the held-out slice per evaluation (a fixed subset)
    # the run
    seed: int = 1337                # fixes fresh weights, data order and sampling
    keep: int = 2                   # complete checkpoints kept in the run folder
    resume: bool = False            # continue from the run folder's newest checkpoint
    overwrite: bool = False         # start over in a run folder that holds a run
    dtype: str = "auto"             # auto | bf16 | fp16 | fp32 (auto: bf16 on GPUs that have it, fp32 on a CPU)
    compile: bool = False           # wrap the model in torch.compile
    device: str | None = None       # cpu, cuda, cuda:1 (None: CUDA when available)
    num_workers: int | None = None  # data-loader workers (None: 0 on a CPU, 2 on a GPU)
    cache_dir: Path | None = None   # where tokenized pretraining data is cached (None: data/cache)
    threads: int | None = None      # CPU threads per process (None: up to 2 per process on a CPU)
    progress: bool = True           # progress bars (the log lines are printed either way)
    # stage knobs
    sft: SFTKnobs = field(default_factory=SFTKnobs)
    lora: LoRAKnobs = field(default_factory=LoRAKnobs)
    dpo: DPOKnobs = field(default_factory=DPOKnobs)
    distill: DistillKnobs = field(default_factory=DistillKnobs)
    grpo: GRPOKnobs = field(default_factory=GRPOKnobs)

    def to_json(self) -> dict:
        """The options as plain JSON values (written to the run folder's run.json)."""
        return _jsonable(dataclasses.asdict(self))


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value


# what train(..., **overrides) accepts: the run's options and the knob names
OPTION_NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig)
                     if f.name not in ("stage", "profile", "profile_tokenizer", "model",
                                       "sft", "lora", "dpo", "distill", "grpo"))
OVERRIDE_NAMES = OPTION_NAMES + tuple(KNOB_OVERRIDES)


__all__ = ["TrainConfig", "SFTKnobs", "LoRAKnobs", "DPOKnobs", "DistillKnobs", "GRPOKnobs", "KNOB_OVERRIDES",
           "OPTION_NAMES", "OVERRIDE_NAMES"]
