"""The training loop behind every stage: pretrain (预训练), SFT (监督微调), LoRA, DPO and distillation.

One loop, one Python API, the same under `python -m minimind_core train STAGE` and under
`torchrun --nproc_per_node N -m minimind_core train STAGE`:

    from minimind_core.train import train
    result = train("pretrain", profile="tiny", callbacks=[plot.update], max_steps=300)
    result.final_loss, result.checkpoint, result.metrics

What each stage trains and on which batches lives in a small *task* class (PretrainTask,
SFTTask, LoRATask, DPOTask, DistillTask); everything else is shared:

- AdamW (fused on CUDA), gradient clipping at 1.0, MiniMind's cosine schedule (`lr_at`).
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
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from .errors import NonFiniteLossError, TrainError
from .losses import IGNORE_INDEX, n_targets, token_ce_sum
from .profiles import STAGES, get_profile





# ----------------------------------------------------------------------------------------------
# the learning-rate schedule


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


# ----------------------------------------------------------------------------------------------
# options


EXTRA_KEYS = ("rank", "alpha", "targets", "beta", "score", "temperature", "teacher", "student",
              "mix_pretrain", "mix_batch_size")


@dataclass
class TrainConfig:
    """Every option of a run, resolved: the profile's StageRecipe with the caller's overrides."""

    stage: str
    profile: str
    data: Path
    tokenizer: Path | None
    init: Path | None
    out: Path
    epochs: int
    max_steps: int | None
    batch_size: int
    accum: int
    lr: float
    warmup: int
    seq_len: int
    seed: int = 1337
    log_every: int = 10
    save_every: int = 0
    keep: int = 2
    resume: bool = False
    overwrite: bool = False
    dtype: str = "auto"
    compile: bool = False
    device: str | None = None
    num_workers: int | None = None
    cache_dir: Path | None = None
    threads: int | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def resolve_config(stage: str, profile=None, **overrides) -> TrainConfig:
    """Fill every option from the profile's recipe for `stage`, then apply `overrides`.

    Keys of the recipe's `extra` (rank, alpha, beta, temperature, teacher, ...) may be passed
    as overrides too. `epochs=` without `max_steps=` trains whole epochs even when the recipe
    has a step budget. `None` values mean "use the default".
    """
    if stage not in STAGES:
        raise TrainError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    prof = profile if hasattr(profile, "stages") else get_profile(profile)
    recipe = prof.stage(stage)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    extra = dict(recipe.extra)
    for k in list(overrides):
        if k in EXTRA_KEYS or k in recipe.extra:
            extra[k] = overrides.pop(k)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"train() got unknown option(s): {', '.join(unknown)}")
    max_steps = recipe.max_steps
    if "epochs" in overrides and "max_steps" not in overrides:
        max_steps = None
    init = recipe.init
    init_path = Path(overrides.pop("init")) if "init" in overrides else (
        prof.run_dir(init) if init else None)
    if stage == "distill" and "teacher" in extra and isinstance(extra["teacher"], str) \
            and extra["teacher"] in STAGES and not Path(extra["teacher"]).exists():
        extra["teacher"] = str(prof.run_dir(extra["teacher"]))
    cfg = TrainConfig(
        stage=stage, profile=prof.name, data=Path(recipe.data), tokenizer=None, init=init_path,
        out=prof.run_dir(stage), epochs=recipe.epochs, max_steps=max_steps, batch_size=recipe.batch_size,
        accum=recipe.accum, lr=recipe.lr, warmup=recipe.warmup, seq_len=recipe.seq_len,
        log_every=recipe.log_every, save_every=recipe.save_every, extra=extra,
    )
    for k, v in overrides.items():
        setattr(cfg, k, v)
    for k in ("data", "out", "tokenizer", "cache_dir"):
        if getattr(cfg, k) is not None:
            setattr(cfg, k, Path(getattr(cfg, k)))
    for k in ("epochs", "batch_size", "accum", "seq_len", "log_every"):
        if int(getattr(cfg, k)) < 1:
            raise TrainError(f"--{k.replace('_', '-')} must be at least 1, got {getattr(cfg, k)}")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise TrainError(f"--max-steps must be at least 1, got {cfg.max_steps}")
    if cfg.dtype not in ("auto", "bf16", "fp16", "fp32"):
        raise TrainError(f"--dtype must be auto, bf16, fp16 or fp32, got {cfg.dtype!r}")
    cfg._profile = prof  # noqa: SLF001 - kept for the tasks (model config, pretrain data)
    return cfg


# ----------------------------------------------------------------------------------------------
# where we run: device, ranks, precision


@dataclass
class Env:
    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    autocast_dtype: torch.dtype | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


def setup_env(cfg: TrainConfig) -> Env:
    """Pick the device, join the process group when launched by torchrun, choose the precision."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    owns = False
    if world > 1 and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and cfg.device in (None, "cuda")
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        from datetime import timedelta

        timeout = timedelta(seconds=int(os.environ.get("MINIMIND_DIST_TIMEOUT", "600")))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timeout)
        owns = True
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    else:
        rank, world, local_rank = 0, 1, 0
    if cfg.device:
        device = torch.device(cfg.device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank)
    elif torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda was asked for but CUDA is not available")
    if device.type == "cpu":
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(cfg.threads or max(1, min(2, (os.cpu_count() or 2) // max(1, local_world))))
    elif cfg.threads:
        torch.set_num_threads(cfg.threads)
    return Env(device=device, rank=rank, world=world, local_rank=local_rank,
               autocast_dtype=resolve_precision(cfg.dtype, device), owns_group=owns)


def resolve_precision(dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for --dtype on this device (None = plain fp32).

    auto: bf16 on a GPU that supports it, fp16 (+ GradScaler) on an older GPU, fp32 on the CPU.
    """
    if dtype == "fp32":
        return None
    if dtype == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise TrainError("this GPU has no bf16 support; use --dtype fp16 (with loss scaling) or auto")
        return torch.bfloat16
    if dtype == "fp16":
        return torch.float16
    raise TrainError(f"unknown --dtype {dtype!r}")


# ----------------------------------------------------------------------------------------------
# data: an endless, resumable stream of batches


class BatchStream:
    """Batches of one dataset, epoch after epoch, in an order fixed by (seed, epoch).

    A DistributedSampler (also with one process, so one GPU shuffles too) gives each rank its
    share of a permutation seeded by seed + epoch; `set_epoch` is called at every epoch start.
    `state_dict()` is the (epoch, position) to continue from, so a resumed run sees exactly the
    batches an uninterrupted run would have seen.
    """

    def __init__(self, dataset, batch_size: int, collate_fn=None, *, seed: int, rank: int = 0,
                 world: int = 1, shuffle: bool = True, num_workers: int = 0, pin_memory: bool = False,
                 name: str = "data"):
        from torch.utils.data.distributed import DistributedSampler

        self.dataset, self.batch_size, self.collate_fn = dataset, batch_size, collate_fn
        self.num_workers, self.pin_memory, self.name = num_workers, pin_memory, name
        if len(dataset) < world:
            raise TrainError(f"{name}: {len(dataset)} examples cannot be split over {world} ranks")
        self.sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle,
                                          seed=seed, drop_last=True)
        self.batches_per_epoch = len(self.sampler) // batch_size
        if self.batches_per_epoch == 0:
            raise TrainError(f"{name}: {len(dataset)} examples ({len(self.sampler)} per rank) are fewer than "
                             f"one batch of {batch_size}; lower --batch-size")
        self.epoch, self.position = 0, 0
        self._it = None

    def _start(self):
        from torch.utils.data import DataLoader

        self.sampler.set_epoch(self.epoch)
        order = list(self.sampler)[self.position * self.batch_size:self.batches_per_epoch * self.batch_size]
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=order, drop_last=True,
                            collate_fn=self.collate_fn, num_workers=self.num_workers,
                            pin_memory=self.pin_memory, persistent_workers=False)
        self._it = iter(loader)

    def next(self):
        if self._it is None:
            self._start()
        try:
            batch = next(self._it)
        except StopIteration:
            self.epoch, self.position = self.epoch + 1, 0
            self._start()
            batch = next(self._it)
        self.position += 1
        if self.position >= self.batches_per_epoch:  # the epoch is used up: the next call starts a new one
            self._it = iter(())
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "batches_per_epoch": self.batches_per_epoch}

    def load_state_dict(self, state: dict) -> None:
        epoch, position = int(state["epoch"]), int(state["position"])
        if state.get("batches_per_epoch") not in (None, self.batches_per_epoch):
            # a different batch size or rank count: keep the same fraction of the epoch
            position = round(position * self.batches_per_epoch / state["batches_per_epoch"])
        if position >= self.batches_per_epoch:
            epoch, position = epoch + 1, 0
        self.epoch, self.position, self._it = epoch, position, None


def _to_device(batch, device):
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    return batch



# ----------------------------------------------------------------------------------------------
# stages


class Task:
    """What one stage trains and how its loss is made.

    components: weight of each loss component in the objective; a component's value is the
    sum returned by `forward` divided by its global count from `counts` (tokens, pairs, ...).
    primary: the component reported as "loss" (None: the weighted objective itself).
    """

    components: dict = {"ce": 1.0}
    primary: str | None = None
    uses_init = True

    def __init__(self, cfg: TrainConfig, env: Env, tokenizer):
        self.cfg, self.env, self.tokenizer = cfg, env, tokenizer
        self.profile = cfg._profile  # noqa: SLF001

    # model -------------------------------------------------------------------------------
    def build_model(self, resume_from: Path | None):
        """The model to train, on the CPU in fp32 (weights from `resume_from` when resuming)."""
        if resume_from is not None:
            return load_model_checked(resume_from, self.tokenizer, "resume checkpoint")
        return load_model_checked(self.cfg.init, self.tokenizer, "--init")

    def trainable_parameters(self, model):
        return [p for p in model.parameters() if p.requires_grad]

    def save_payload(self, model) -> dict:
        """kwargs for checkpoint.save_checkpoint: the model (or adapter) and the tokenizer."""
        return {"model": model, "tokenizer": self.tokenizer}

    # data --------------------------------------------------------------------------------
    def build_streams(self) -> dict:
        raise NotImplementedError

    def counts(self, micro: dict) -> dict:
        return {"ce": n_targets(micro["main"]["labels"])}

    def tokens(self, micro: dict) -> int:
        b = micro["main"]
        if "attention_mask" in b:
            return int(b["attention_mask"].sum())
        return b["input_ids"].numel()

    # loss --------------------------------------------------------------------------------
    def forward(self, model, micro: dict) -> dict:
        b = micro["main"]
        logits = model(input_ids=b["input_ids"]).logits
        return {"ce": token_ce_sum(logits, b["labels"])}

    @property
    def _progress(self) -> bool:
        return bool(self.cfg.progress and self.env.is_main)

    def _stream(self, dataset, batch_size, collate=None, name="data", seed_offset=0):
        cfg, env = self.cfg, self.env
        workers = cfg.num_workers if cfg.num_workers is not None else (0 if env.device.type == "cpu" else 2)
        return BatchStream(dataset, batch_size, collate, seed=cfg.seed + seed_offset, rank=env.rank,
                           world=env.world, num_workers=workers, pin_memory=env.device.type == "cuda", name=name)


def _require_file(path: Path, what: str) -> Path:
    if path is None or not Path(path).is_file():
        raise TrainError(f"{path}: {what} not found (pass --data FILE, or create the sample corpus with "
                         "`python -m minimind_core data sample`)")
    return Path(path)


def _packed_dataset(path: Path, tokenizer, seq_len: int, env: Env, cache_dir=None, progress=True):
    from .datasets import PackedDataset, build_token_cache

    _require_file(path, "pretraining data")
    # rank 0 tokenizes and writes the cache; the other ranks wait, then read it
    if env.distributed and not env.is_main:
        _barrier(env)
    cache = build_token_cache(path, tokenizer, cache_dir=cache_dir, progress=progress and env.is_main)
    if env.distributed and env.is_main:
        _barrier(env)
    return PackedDataset(cache, seq_len)


class PretrainTask(Task):
    uses_init = False

    def build_model(self, resume_from):
        if resume_from is not None:
            return load_model_checked(resume_from, self.tokenizer, "resume checkpoint")
        if self.cfg.init is not None:
            return load_model_checked(self.cfg.init, self.tokenizer, "--init")
        from .model import MiniMindForCausalLM

        config = self.profile.model_config()
        check_vocab(config.vocab_size, self.tokenizer, f"the {self.profile.name} profile's model")
        torch.manual_seed(self.cfg.seed)
        return MiniMindForCausalLM(config)

    def build_streams(self):
        ds = _packed_dataset(self.cfg.data, self.tokenizer, self.cfg.seq_len, self.env, self.cfg.cache_dir, self._progress)
        return {"main": self._stream(ds, self.cfg.batch_size, name=str(self.cfg.data))}


class SFTTask(Task):
    """Supervised fine-tuning on chat data; optionally one pretraining batch mixed into each step.

    Mixing (extra["mix_pretrain"]) keeps a small model's pretrained knowledge extractable:
    without it a few epochs of SFT memorise the SFT conversations and forget the rest.
    """

    def __init__(self, cfg, env, tokenizer):
        super().__init__(cfg, env, tokenizer)
        self.mix = bool(cfg.extra.get("mix_pretrain"))
        if self.mix:
            self.components = {"ce": 1.0, "pretrain": 1.0}
            self.primary = "ce"

    def build_streams(self):
        from .datasets import SFTDataset, collate_pad

        ds = SFTDataset(_require_file(self.cfg.data, "SFT data"), self.tokenizer, self.cfg.seq_len,
                        progress=self._progress)
        streams = {"main": self._stream(ds, self.cfg.batch_size, collate_pad, name=str(self.cfg.data))}
        if self.mix:
            pre = self.profile.stage("pretrain")
            mix = self.cfg.extra["mix_pretrain"]
            path = Path(mix) if isinstance(mix, (str, Path)) else pre.data
            bs = int(self.cfg.extra.get("mix_batch_size") or pre.batch_size)
            pds = _packed_dataset(path, self.tokenizer, self.cfg.seq_len, self.env, self.cfg.cache_dir, self._progress)
            streams["pretrain"] = self._stream(pds, bs, name=str(path), seed_offset=1)
        return streams

    def counts(self, micro):
        c = super().counts(micro)
        if self.mix:
            c["pretrain"] = n_targets(micro["pretrain"]["labels"])
        return c

    def forward(self, model, micro):
        out = super().forward(model, micro)
        if self.mix:
            b = micro["pretrain"]
            out["pretrain"] = token_ce_sum(model(input_ids=b["input_ids"]).logits, b["labels"])
        return out


class LoRATask(SFTTask):
    """LoRA: adapters on the frozen SFT model; only the adapter is trained and saved.

    The checkpoint holds adapter.safetensors and adapter_config.json, whose "base" names the
    model folder the adapter belongs to (checkpoint.load_model puts the two together; lora.merge
    folds the adapter into the weights for export).
    """

    def __init__(self, cfg, env, tokenizer):
        super().__init__(cfg, env, tokenizer)
        self.mix, self.components, self.primary = False, {"ce": 1.0}, None
        self.base_dir = None

    def _lora_kwargs(self):
        e = self.cfg.extra
        alpha = e.get("alpha")
        return dict(rank=int(e.get("rank", 8)), alpha=None if alpha is None else float(alpha),
                    targets=e.get("targets") or "all")

    def build_model(self, resume_from):
        from . import lora

        base = resolve_init(self.cfg.init)
        self.base_dir = base
        model = load_model_checked(base, self.tokenizer, "--init")
        for p in model.parameters():
            p.requires_grad_(False)
        kw = self._lora_kwargs()
        torch.manual_seed(self.cfg.seed)
        lora.apply_lora(model, **kw)  # freezes everything but the adapters
        if resume_from is not None:
            from safetensors.torch import load_file

            lora.load_lora(model, load_file(str(Path(resume_from) / ckpt.ADAPTER_WEIGHTS)))
        return model

    def save_payload(self, model):
        from . import lora

        config = {**lora.adapter_config(model), "base": str(Path(self.base_dir).resolve()),
                  "model_type": "minimind-lora"}
        return {"adapter": (lora.lora_state_dict(model), config), "tokenizer": self.tokenizer}


class DPOTask(Task):
    """DPO: the policy starts from --init; a frozen copy of it is the reference model."""

    components = {"dpo": 1.0}

    def build_model(self, resume_from):
        model = super().build_model(resume_from)
        ref = load_model_checked(self.cfg.init, self.tokenizer, "--init")
        ref.requires_grad_(False)
        ref.eval()
        self.ref = ref.to(self.env.device)
        return model

    def build_streams(self):
        from .datasets import DPODataset, collate_dpo

        ds = DPODataset(_require_file(self.cfg.data, "DPO data"), self.tokenizer, self.cfg.seq_len,
                        progress=self._progress)
        return {"main": self._stream(ds, self.cfg.batch_size, collate_dpo, name=str(self.cfg.data))}

    def counts(self, micro):
        return {"dpo": int(micro["main"]["chosen_input_ids"].shape[0])}

    def tokens(self, micro):
        b = micro["main"]
        return int((b["chosen_labels"] != IGNORE_INDEX).sum() + (b["rejected_labels"] != IGNORE_INDEX).sum())

    def forward(self, model, micro):
        from .losses import dpo_loss, sequence_logprobs

        b = micro["main"]
        ids = torch.cat([b["chosen_input_ids"], b["rejected_input_ids"]])
        labels = torch.cat([b["chosen_labels"], b["rejected_labels"]])
        mode = self.cfg.extra.get("score", "mean")
        n = b["chosen_input_ids"].shape[0]
        logp = sequence_logprobs(model(input_ids=ids).logits, labels, reduction=mode)
        with torch.no_grad():
            ref_logp = sequence_logprobs(self.ref(input_ids=ids).logits, labels, reduction=mode)
        loss, metrics = dpo_loss(logp[:n], logp[n:], ref_logp[:n], ref_logp[n:],
                                 beta=float(self.cfg.extra.get("beta", 0.1)))
        self.extras = {"reward_accuracy": metrics["accuracy"], "reward_margin": metrics["margin"]}
        return {"dpo": loss * n}  # summed over pairs; the loop divides by the global pair count


class DistillTask(Task):
    """Knowledge distillation: a student learns from a teacher's softened distribution.

    L = alpha * CE + (1 - alpha) * T^2 * KL(teacher || student) over the SFT loss-masked
    positions. The teacher (`teacher=` / --teacher) and the student share the tokenizer and may
    differ in size. The student starts from --init when given, else it is a fresh model of the
    profile's size with extra["student"] overrides (e.g. fewer layers).
    """

    components = {"distill": 1.0}

    def __init__(self, cfg, env, tokenizer):
        super().__init__(cfg, env, tokenizer)
        self.alpha = float(cfg.extra.get("alpha", 0.5))
        self.temperature = float(cfg.extra.get("temperature", 1.0))

    def build_model(self, resume_from):
        teacher_dir = self.cfg.extra.get("teacher")
        if not teacher_dir:
            raise TrainError("distill needs a teacher: pass --teacher DIR (a model or run folder; "
                             "MiniMind used a 768x16 full-SFT model)")
        teacher = load_model_checked(teacher_dir, self.tokenizer, "--teacher")
        teacher.requires_grad_(False)
        teacher.eval()
        self.teacher = teacher.to(self.env.device)
        if resume_from is not None:
            student = load_model_checked(resume_from, self.tokenizer, "resume checkpoint")
        elif self.cfg.init is not None:
            student = load_model_checked(self.cfg.init, self.tokenizer, "--init")
        else:
            from .model import MiniMindForCausalLM

            config = self.profile.model_config(**dict(self.cfg.extra.get("student") or {}))
            check_vocab(config.vocab_size, self.tokenizer, "the student model")
            torch.manual_seed(self.cfg.seed)
            student = MiniMindForCausalLM(config)
        if student.config.vocab_size != teacher.config.vocab_size:
            raise TrainError(f"student vocab_size {student.config.vocab_size} != teacher vocab_size "
                             f"{teacher.config.vocab_size}: they must share a tokenizer")
        return student

    def build_streams(self):
        from .datasets import SFTDataset, collate_pad

        ds = SFTDataset(_require_file(self.cfg.data, "distillation data"), self.tokenizer, self.cfg.seq_len,
                        progress=self._progress)
        return {"main": self._stream(ds, self.cfg.batch_size, collate_pad, name=str(self.cfg.data))}

    def counts(self, micro):
        return {"distill": n_targets(micro["main"]["labels"])}

    def forward(self, model, micro):
        from .losses import distill_loss

        b = micro["main"]
        s_logits = model(input_ids=b["input_ids"]).logits
        n = n_targets(b["labels"])
        if n == 0:  # nothing to learn in this micro-batch; keep the graph for DDP
            return {"distill": s_logits.sum() * 0.0}
        with torch.no_grad():
            t_logits = self.teacher(input_ids=b["input_ids"]).logits
        loss, parts = distill_loss(s_logits, t_logits, b["labels"], alpha=self.alpha,
                                   temperature=self.temperature, return_parts=True)
        self.extras = {"ce": parts["ce"], "kl": parts["kl"]}
        return {"distill": loss * n}  # summed over target tokens


TASKS = {"pretrain": PretrainTask, "sft": SFTTask, "lora": LoRATask, "dpo": DPOTask, "distill": DistillTask}


# ----------------------------------------------------------------------------------------------
# model and tokenizer loading with clear errors


def resolve_init(path) -> Path:
    if path is None:
        raise TrainError("this stage starts from a trained model: pass --init DIR (a model or run folder)")
    try:
        return ckpt.resolve_model_dir(path)
    except ckpt.CheckpointError as e:
        raise TrainError(f"--init {e}") from None


def check_vocab(vocab_size: int, tokenizer, what: str) -> None:
    if len(tokenizer) > vocab_size:
        raise TrainError(f"tokenizer has {len(tokenizer)} tokens but {what} has vocab_size {vocab_size}: "
                         "token ids would fall outside the embedding table (use the model's own tokenizer)")


def load_model_checked(path, tokenizer, what: str):
    d = resolve_init(path) if what == "--init" else _resolve(path, what)
    try:
        model = ckpt.load_model(d)
    except ckpt.CheckpointError as e:
        raise TrainError(f"{what} {e}") from None
    check_vocab(model.config.vocab_size, tokenizer, f"the model in {d}")
    return model


def _resolve(path, what):
    try:
        return ckpt.resolve_model_dir(path)
    except ckpt.CheckpointError as e:
        raise TrainError(f"{what} {e}") from None


def load_run_tokenizer(cfg: TrainConfig):
    """--tokenizer if given, else the one saved with --init, else the profile's tokenizer.

    When both --tokenizer and the --init model's own tokenizer exist they must be identical.
    """
    from .tokenizer import load_tokenizer

    def load(path, what):
        try:
            return load_tokenizer(path)
        except (FileNotFoundError, ValueError, OSError) as e:
            raise TrainError(f"{what} {e}") from None

    init_tok = None
    if cfg.init is not None and cfg.stage != "pretrain":
        d = resolve_init(cfg.init)
        if ckpt.is_adapter_dir(d) and not (d / "tokenizer.json").exists():
            d = None
        if d is not None and (d / "tokenizer.json").exists():
            init_tok = load(d, "--init")
    if cfg.tokenizer is not None:
        tok = load(cfg.tokenizer, "--tokenizer")
        if init_tok is not None and tok.get_vocab() != init_tok.get_vocab():
            raise TrainError(f"--tokenizer {cfg.tokenizer} differs from the tokenizer saved with --init {cfg.init} "
                             "(vocabulary mismatch); drop --tokenizer to use the model's own")
        return tok
    if init_tok is not None:
        return init_tok
    return load(cfg._profile.tokenizer, "tokenizer")  # noqa: SLF001


# ----------------------------------------------------------------------------------------------
# the result


@dataclass
class RunResult:
    run_dir: Path
    checkpoint: Path | None
    metrics: list
    final_loss: float | None
    best_loss: float | None
    tokens_seen: int
    steps: int
    wall_time: float
    config: TrainConfig | None = None

    def summary(self) -> str:
        loss = "-" if self.final_loss is None else f"{self.final_loss:.3f}"
        best = "-" if self.best_loss is None else f"{self.best_loss:.3f}"
        return (f"done: {self.steps} steps, {self.tokens_seen:,} tokens seen in {self.wall_time / 60:.1f} min; "
                f"final loss {loss}, best {best}; checkpoint: {self.checkpoint}")


# ----------------------------------------------------------------------------------------------
# distributed helpers


def _barrier(env: Env):
    if env.distributed:
        import torch.distributed as dist

        dist.barrier()


def _all_reduce(t: torch.Tensor, env: Env) -> torch.Tensor:
    if env.distributed:
        import torch.distributed as dist

        dist.all_reduce(t)
    return t


def _gather_objects(obj, env: Env) -> list:
    if not env.distributed:
        return [obj]
    import torch.distributed as dist

    out = [None] * env.world
    dist.all_gather_object(out, obj)
    return out


# ----------------------------------------------------------------------------------------------
# the loop


def _callback_fn(cb, name):
    if hasattr(cb, name):
        return getattr(cb, name)
    if name == "on_log" and callable(cb):
        return cb
    return None


def _print(msg: str, env: Env, bar=None):
    if not env.is_main:
        return
    if bar is not None:
        bar.write(msg)
    else:
        print(msg, flush=True)


def _prepare_run_dir(cfg: TrainConfig, env: Env) -> Path | None:
    """Check the run folder; return the checkpoint to resume from (or None)."""
    out = cfg.out
    existing = ckpt.latest_checkpoint(out)
    if cfg.resume:
        if existing is None:
            _print(f"resume: no complete checkpoint in {out}; starting from the beginning", env)
        return existing
    if existing is not None or (out / ckpt.METRICS).exists():
        if not cfg.overwrite:
            raise TrainError(f"{out} already holds a run; pass --resume to continue it, --overwrite to start "
                             "over, or choose another --out")
        if env.is_main:
            for c in ckpt.list_checkpoints(out):
                ckpt._retire(c)  # noqa: SLF001
        _barrier(env)
    return None


def train(stage: str, profile=None, callbacks: Iterable = (), **overrides) -> RunResult:
    """Train `stage` ("pretrain", "sft", "lora", "dpo" or "distill") and return a RunResult.

    profile:    "smoke" | "tiny" | "full" or a Profile (None: MINIMIND_PROFILE / the default)
    callbacks:  called with each logged row (a dict: step, epoch, tokens, loss, lr, grad_norm,
                tokens_per_s, elapsed_s, ...), e.g. to update a live plot; an object may instead
                have on_log(row) and/or on_end(result)
    overrides:  any TrainConfig field (data, init, out, epochs, max_steps, batch_size, accum, lr,
                warmup, seq_len, seed, log_every, save_every, keep, resume, overwrite, dtype,
                compile, device, num_workers, cache_dir, threads, progress, tokenizer) or a stage knob
                (rank, alpha, targets, beta, score, temperature, teacher, student, mix_pretrain)
    """
    cfg = resolve_config(stage, profile, **overrides)
    env = setup_env(cfg)
    det_before = torch.are_deterministic_algorithms_enabled()
    if env.device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    ok = False
    try:
        result = _run(cfg, env, list(callbacks))
        ok = True
        return result
    except torch.OutOfMemoryError:
        bs, acc, L = cfg.batch_size, cfg.accum, cfg.seq_len
        hint = (f"--batch-size {bs // 2} --accum {acc * 2} (the same effective batch)" if bs > 1
                else f"--seq-len {max(1, L // 2)}")
        raise TrainError(f"CUDA out of memory at --batch-size {bs} --seq-len {L} on {env.device}: "
                         f"lower them, e.g. {hint}, or a shorter --seq-len") from None
    finally:
        torch.use_deterministic_algorithms(det_before)
        # after a failure a distributed process exits without waiting on the other ranks
        # (train_cli does os._exit); a clean finish leaves the group in order
        if env.owns_group and ok:
            import torch.distributed as dist

            if dist.is_initialized():
                with contextlib.suppress(Exception):
                    dist.destroy_process_group()


def _run(cfg: TrainConfig, env: Env, callbacks: list) -> RunResult:
    from tqdm.auto import tqdm

    from .model import count_parameters

    t_start = time.time()
    resume_from = _prepare_run_dir(cfg, env)
    tokenizer = load_run_tokenizer(cfg)
    task = TASKS[cfg.stage](cfg, env, tokenizer)
    model = task.build_model(resume_from).to(env.device)
    model.train()
    params = task.trainable_parameters(model)
    if not params:
        raise TrainError(f"{cfg.stage}: the model has no trainable parameters")
    streams = task.build_streams()
    main = streams["main"]

    total = cfg.max_steps or max(1, cfg.epochs * main.batches_per_epoch // cfg.accum)
    n_epochs = math.ceil(total * cfg.accum / main.batches_per_epoch)

    opt = torch.optim.AdamW(params, lr=cfg.lr, fused=env.device.type == "cuda")
    scaler = torch.amp.GradScaler(env.device.type) if env.autocast_dtype == torch.float16 else None

    # resume state ------------------------------------------------------------------------
    step, tokens_seen, elapsed_before, best = 0, 0, 0.0, None
    last_loss = None
    if resume_from is not None:
        try:
            state = ckpt.load_trainer_state(resume_from)
        except ckpt.CheckpointError as e:
            raise TrainError(str(e)) from None
        opt.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        for name, s in state["streams"].items():
            if name in streams:
                streams[name].load_state_dict(s)
        step, tokens_seen = int(state["step"]), int(state["tokens"])
        elapsed_before, best, last_loss = float(state["elapsed"]), state.get("best_loss"), state.get("last_loss")
        rngs = state.get("rng") or []
        if len(rngs) == env.world:
            ckpt.set_rng_state(rngs[env.rank])
        else:
            _print(f"resume: the checkpoint was written by {len(rngs)} rank(s), this run has {env.world}; "
                   "data order continues, random states are reseeded", env)
            torch.manual_seed(cfg.seed + 1000 * step + env.rank)
        _print(f"resume: continuing from {resume_from} (step {step}/{total})", env)
    else:
        torch.manual_seed(cfg.seed + env.rank)
        import random

        import numpy as np

        random.seed(cfg.seed + env.rank)
        np.random.seed(cfg.seed + env.rank)

    # model wrappers ----------------------------------------------------------------------
    fwd_model = model
    if env.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        fwd_model = DDP(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    if cfg.compile:
        fwd_model = torch.compile(fwd_model)

    if env.is_main:
        cfg.out.mkdir(parents=True, exist_ok=True)
        ckpt.clean_partial(cfg.out)
        ckpt.atomic_write_json(cfg.out / ckpt.RUN_INFO, {**cfg.to_json(), "world_size": env.world,
                                                         "device": str(env.device),
                                                         "precision": str(env.autocast_dtype or torch.float32)})
        metrics_log = ckpt.MetricsLog(cfg.out, resume_step=step if resume_from is not None else None)
    else:
        metrics_log = None

    n_params = count_parameters(model)
    _print(f"MiniMind模型参数量: {n_params / 1e6:.2f}M(illion)", env)
    n_train = sum(p.numel() for p in params)
    if n_train != n_params:
        _print(f"trainable parameters: {n_train:,} ({100 * n_train / n_params:.2f}%)", env)
    _print(f"{cfg.stage} ({cfg.profile} profile): {total} steps x {cfg.accum} micro-batches of "
           f"{cfg.batch_size} x {env.world} rank(s), seq_len {cfg.seq_len}, lr {cfg.lr:g}, "
           f"{main.batches_per_epoch} batches per epoch per rank, device {env.device}, "
           f"precision {_dtype_name(env.autocast_dtype)}; run folder {cfg.out}", env)

    bar = tqdm(total=total, initial=step, desc=cfg.stage, dynamic_ncols=True,
               disable=not (env.is_main and cfg.progress), file=sys.stdout)
    rows = ckpt.read_metrics(cfg.out) if (env.is_main and resume_from is not None) else []
    last_ckpt = resume_from
    comp_names = list(task.components)
    start_step = step
    t_run = time.time()
    t_log, tok_log, micro_done = time.time(), tokens_seen, 0

    def save(at_step):
        rng = _gather_objects(ckpt.rng_state(), env)
        if not env.is_main:
            return None
        state = {
            "step": at_step, "tokens": tokens_seen, "elapsed": elapsed_before + time.time() - t_run,
            "best_loss": best, "last_loss": last_loss, "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "streams": {k: s.state_dict() for k, s in streams.items()}, "rng": rng, "world_size": env.world,
            "stage": cfg.stage,
        }
        return ckpt.save_checkpoint(cfg.out, at_step, trainer_state=state, keep=cfg.keep,
                                    info={"stage": cfg.stage, "tokens": tokens_seen, "loss": last_loss},
                                    **task.save_payload(model))

    try:
        while step < total:
            lr = lr_at(step, total, cfg.lr, cfg.warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            micros = [{k: _to_device(s.next(), env.device) for k, s in streams.items()} for _ in range(cfg.accum)]
            counts = torch.tensor([[task.counts(m)[c] for c in comp_names] for m in micros], dtype=torch.float64)
            step_tokens = torch.tensor([float(sum(task.tokens(m) for m in micros))], dtype=torch.float64)
            glob = _all_reduce(torch.cat([counts.sum(0), step_tokens]).to(env.device), env).cpu()
            denom = glob[:-1].clamp(min=1.0)
            sums = torch.zeros(len(comp_names), dtype=torch.float64, device=env.device)
            for i, m in enumerate(micros):
                sync = (i == len(micros) - 1) or not env.distributed
                ctx = contextlib.nullcontext() if sync else fwd_model.no_sync()
                with ctx:
                    with env.autocast():
                        parts = task.forward(fwd_model, m)
                    objective = sum(task.components[c] * parts[c] / float(denom[j])
                                    for j, c in enumerate(comp_names)) * env.world
                    if scaler is not None:
                        scaler.scale(objective).backward()
                    else:
                        objective.backward()
                sums += torch.stack([parts[c].detach().double() for c in comp_names])
            means = (_all_reduce(sums, env).cpu() / denom).tolist()
            comp = dict(zip(comp_names, means))
            step_loss = (comp[task.primary] if task.primary else
                         sum(task.components[c] * comp[c] for c in comp_names))
            if not math.isfinite(step_loss):
                raise NonFiniteLossError(
                    f"loss became {step_loss} at step {step + 1} (lr {lr:.3g}); stopped without applying that update. "
                    f"The last good checkpoint is {last_ckpt or '(none saved yet)'}. Try a lower --lr, "
                    "--dtype bf16/fp32 instead of fp16, or check the data")
            if scaler is not None:
                scaler.unscale_(opt)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
            if scaler is None and not math.isfinite(grad_norm):
                raise NonFiniteLossError(
                    f"gradient norm became {grad_norm} at step {step + 1} (loss {step_loss:.4f}); stopped without "
                    f"applying that update. The last good checkpoint is {last_ckpt or '(none saved yet)'}. "
                    "Try a lower --lr")
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            micro_done += cfg.accum
            tokens_seen += int(glob[-1])
            last_loss = step_loss
            best = step_loss if best is None else min(best, step_loss)

            if step % cfg.log_every == 0 or step == total:
                now = time.time()
                row = {"step": step, "epoch": main.epoch + (main.position / main.batches_per_epoch),
                       "tokens": tokens_seen, "loss": step_loss, "lr": lr, "grad_norm": grad_norm,
                       "tokens_per_s": (tokens_seen - tok_log) / max(now - t_log, 1e-9),
                       "elapsed_s": elapsed_before + now - t_run}
                for c in comp_names:
                    if len(comp_names) > 1 or task.primary:
                        row[f"{c}_loss"] = comp[c]
                row.update(getattr(task, "extras", None) or {})
                t_log, tok_log = now, tokens_seen
                if env.is_main:
                    rows.append(row)
                    metrics_log.write(row)
                    per_micro = (now - t_run) / max(1, micro_done)
                    left = main.batches_per_epoch - main.position if main.position else 0
                    ep = min(main.epoch + 1, n_epochs)
                    pos = main.position or main.batches_per_epoch
                    bar.write(f"Epoch:[{ep}/{n_epochs}]({pos}/{main.batches_per_epoch}) loss:{step_loss:.3f} "
                              f"lr:{lr:.12f} epoch_Time:{per_micro * left / 60:.1f}min:")
                    bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{row['tokens_per_s']:.0f}")
                    for cb in callbacks:
                        fn = _callback_fn(cb, "on_log")
                        if fn is not None:
                            fn(row)
            bar.update(1)
            if cfg.save_every and step % cfg.save_every == 0 and step < total:
                last_ckpt = save(step) or last_ckpt
        if step > start_step or resume_from is None:  # nothing new since the resumed checkpoint: keep it
            last_ckpt = save(step) or last_ckpt
        if env.is_main and last_ckpt is None:
            last_ckpt = ckpt.latest_checkpoint(cfg.out)
        _barrier(env)
    finally:
        bar.close()
        if metrics_log is not None:
            metrics_log.close()

    result = RunResult(run_dir=cfg.out, checkpoint=last_ckpt, metrics=rows, final_loss=last_loss, best_loss=best,
                       tokens_seen=tokens_seen, steps=step, wall_time=time.time() - t_start, config=cfg)
    _print(result.summary(), env)
    for cb in callbacks:
        fn = _callback_fn(cb, "on_end")
        if fn is not None:
            fn(result)
    return result


def _dtype_name(dt) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16 + loss scaling"}.get(dt, str(dt))


__all__ = ["train", "lr_at", "resolve_config", "TrainConfig", "RunResult", "TrainError", "NonFiniteLossError",
           "BatchStream", "TASKS", "token_ce_sum"]
