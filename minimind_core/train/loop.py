"""The training loop behind every stage, as a numbered recipe.

    train()                 1. options, environment, determinism
      prepare_run_dir       2. the run folder: new, resumed, or started over
      build_run             3. tokenizer, model, data streams, plan, optimizer
      restore / seed_all    4. continue a checkpoint's state, or seed a fresh run
      optimizer_step        5. one optimizer step over `accum` micro-batches and every rank
      log_step              6. a metrics row (val_loss every few rows), MiniMind's log line, the callbacks
      save                  7. a checkpoint that a resumed run continues bit for bit

Each phase is a short function that reads and updates one `Run`; the stage-specific parts
(which model, which batches, which loss) come from its task (tasks.py).
"""
from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from .. import checkpoint as ckpt
from ..errors import CheckpointError, NonFiniteLossError, TrainError
from .batches import BatchStream, Source, open_stream, to_device
from .config import TrainConfig
from .env import Env, precision_name, setup_env
from .plan import RunPlan, make_plan, resolve_config
from .schedule import lr_at
from .tasks import TASKS, Task, load_run_tokenizer

# ----------------------------------------------------------------------------------------------
# what a run holds while it trains


@dataclass
class Progress:
    """The counters a checkpoint saves and a resumed run restores."""

    step: int = 0                    # optimizer steps done
    tokens: int = 0                  # tokens seen, over all ranks
    elapsed: float = 0.0             # training seconds before this process started
    best_loss: float | None = None
    last_loss: float | None = None


@dataclass
class Clock:
    """Wall-clock bookkeeping of this process (a resumed run adds Progress.elapsed)."""

    start: float = field(default_factory=time.time)     # when this process began stepping
    last_log: float = field(default_factory=time.time)  # when the previous row was logged
    tokens_at_log: int = 0                              # Progress.tokens at that row
    micro_batches: int = 0                              # micro-batches this process has run


@dataclass
class Run:
    cfg: TrainConfig
    env: Env
    task: Task
    model: torch.nn.Module             # the model itself: what is saved
    params: list                       # the parameters the optimizer updates
    streams: dict                      # name -> BatchStream ("main", SFT's "pretrain")
    plan: RunPlan
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None  # fp16 only
    resume_from: Path | None
    fwd_model: torch.nn.Module | None = None  # what runs forward: the model, DDP- or compile-wrapped
    val: Source | None = None          # the held-out slice val_loss is measured on (None: no validation)
    progress: Progress = field(default_factory=Progress)
    clock: Clock = field(default_factory=Clock)
    last_checkpoint: Path | None = None
    rows: list = field(default_factory=list)  # the logged rows (rank 0)
    metrics_log: ckpt.MetricsLog | None = None


@dataclass
class StepResult:
    loss: float                      # the step's loss: the primary component, else the objective
    components: dict                 # component -> its exact mean over the step
    grad_norm: float                 # before clipping
    metrics: dict                    # the task's extra values (its last micro-batch's)


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
    plan: RunPlan | None = None      # the plan the run followed (plan_run gives the same beforehand)

    def summary(self) -> str:
        loss = "-" if self.final_loss is None else f"{self.final_loss:.3f}"
        best = "-" if self.best_loss is None else f"{self.best_loss:.3f}"
        return (f"done: {self.steps} steps, {self.tokens_seen:,} tokens seen in {self.wall_time / 60:.1f} min; "
                f"final loss {loss}, best {best}; checkpoint: {self.checkpoint}")


# ----------------------------------------------------------------------------------------------
# 1. the entry point


def train(stage: str, profile=None, callbacks: Iterable = (), **overrides) -> RunResult:
    """Train `stage` ("pretrain", "sft", "lora", "dpo", "distill" or "grpo") and return a RunResult.

    profile:    "smoke" | "tiny" | "full" or a Profile (None: MINIMIND_PROFILE / the default)
    callbacks:  called with each logged row (a dict: step, epoch, tokens, loss, lr, grad_norm,
                tokens_per_s, elapsed_s, ...), e.g. to update a live plot; an object may instead
                have on_log(row) and/or on_end(result)
    overrides:  any run option of TrainConfig (data, init, out, epochs, max_steps, batch_size,
                accum, lr, warmup, seq_len, seed, log_every, save_every, keep, resume, overwrite,
                dtype, compile, device, num_workers, cache_dir, threads, progress, tokenizer) or a
                stage knob (lora_rank, lora_alpha, lora_targets, dpo_beta, dpo_score, distill_alpha,
                distill_temperature, teacher, student, mix_pretrain, mix_batch_size, grpo_group_size,
                grpo_beta, grpo_clip_eps, grpo_max_new_tokens, grpo_temperature, grpo_top_p,
                grpo_format_weight, grpo_loss_agg), or
                model: the shape of a new model, a preset name ("minimind-3") or MiniMindConfig
                arguments (plan.model_arguments)
    """
    cfg = resolve_config(stage, profile, **overrides)
    env = setup_env(cfg)
    det_before = torch.are_deterministic_algorithms_enabled()
    if env.device.type == "cpu":  # on a CPU a run is reproducible bit for bit
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
        # (the train command does os._exit); a clean finish leaves the group in order
        if ok:
            env.close()


def _run(cfg: TrainConfig, env: Env, callbacks: list) -> RunResult:
    t_start = time.time()
    resume_from = prepare_run_dir(cfg, env)
    run = build_run(cfg, env, resume_from)
    if resume_from is not None:
        restore(run)
    else:
        seed_all(cfg.seed + env.rank)
    run.fwd_model = wrap_model(run.model, cfg, env)
    open_run_folder(run)
    announce(run)
    train_steps(run, callbacks)
    p = run.progress
    result = RunResult(run_dir=cfg.out, checkpoint=run.last_checkpoint, metrics=run.rows, final_loss=p.last_loss,
                       best_loss=p.best_loss, tokens_seen=p.tokens, steps=p.step, wall_time=time.time() - t_start,
                       config=cfg, plan=run.plan)
    env.print(result.summary())
    for cb in callbacks:
        fn = _callback_fn(cb, "on_end")
        if fn is not None:
            fn(result)
    return result


# ----------------------------------------------------------------------------------------------
# 2. the run folder


def prepare_run_dir(cfg: TrainConfig, env: Env) -> Path | None:
    """Check the run folder; return the checkpoint to resume from (or None)."""
    out = cfg.out
    existing = ckpt.latest_checkpoint(out)
    if cfg.resume:
        if existing is None:
            env.print(f"resume: no complete checkpoint in {out}; starting from the beginning")
        return existing
    if existing is not None or (out / ckpt.METRICS).exists():
        if not cfg.overwrite:
            raise TrainError(f"{out} already holds a run; pass --resume to continue it, --overwrite to start "
                             "over, or choose another --out")
        if env.is_main:
            ckpt.retire_checkpoints(out)
        env.barrier()
    return None


def open_run_folder(run: Run) -> None:
    """Rank 0 records the options in run.json and opens metrics.jsonl (cut back to the resumed step)."""
    cfg, env = run.cfg, run.env
    if not env.is_main:
        return
    cfg.out.mkdir(parents=True, exist_ok=True)
    ckpt.clean_partial(cfg.out)
    ckpt.atomic_write_json(cfg.out / ckpt.RUN_INFO, {**cfg.to_json(), "world_size": env.world,
                                                     "device": str(env.device),
                                                     "precision": str(env.autocast_dtype or torch.float32)})
    resumed = run.resume_from is not None
    run.metrics_log = ckpt.MetricsLog(cfg.out, resume_step=run.progress.step if resumed else None)
    run.rows = ckpt.read_metrics(cfg.out) if resumed else []


# ----------------------------------------------------------------------------------------------
# 3. model, data, optimizer


def build_run(cfg: TrainConfig, env: Env, resume_from: Path | None) -> Run:
    tokenizer = load_run_tokenizer(cfg)
    task = TASKS[cfg.stage](cfg, env, tokenizer)
    model = task.build_model(resume_from).to(env.device)
    task.watch_balance_loss(model)
    model.train()
    params = task.trainable_parameters(model)
    if not params:
        raise TrainError(f"{cfg.stage}: the model has no trainable parameters")
    streams = {name: open_stream(source, cfg, env) for name, source in task.sources().items()}
    plan = make_plan(cfg, streams["main"].batches_per_epoch, env.world, task.sequences_per_example)
    opt = torch.optim.AdamW(params, lr=cfg.lr, fused=env.device.type == "cuda")
    scaler = torch.amp.GradScaler(env.device.type) if env.autocast_dtype == torch.float16 else None
    return Run(cfg=cfg, env=env, task=task, model=model, params=params, streams=streams, plan=plan,
               opt=opt, scaler=scaler, resume_from=resume_from, last_checkpoint=resume_from, val=task.val)


def wrap_model(model, cfg: TrainConfig, env: Env):
    """What runs forward: DDP over the ranks, torch.compile on request."""
    if env.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    if cfg.compile:
        model = torch.compile(model)
    return model


def announce(run: Run) -> None:
    from ..model import count_parameters

    cfg, env, plan = run.cfg, run.env, run.plan
    n_params = count_parameters(run.model)
    env.print(f"MiniMind模型参数量: {n_params / 1e6:.2f}M(illion)")
    n_train = sum(p.numel() for p in run.params)
    if n_train != n_params:
        env.print(f"trainable parameters: {n_train:,} ({100 * n_train / n_params:.2f}%)")
    env.print(f"{cfg.stage} ({cfg.profile} profile): {plan.total_steps} steps x {cfg.accum} micro-batches of "
              f"{cfg.batch_size} x {env.world} rank(s), seq_len {cfg.seq_len}, lr {cfg.lr:g}, "
              f"{plan.batches_per_epoch} batches per epoch per rank, device {env.device}, "
              f"precision {precision_name(env.autocast_dtype)}; run folder {cfg.out}")


# ----------------------------------------------------------------------------------------------
# 4. restore, or seed


def restore(run: Run) -> None:
    """Continue where the checkpoint stopped: optimizer, loss scaler, data position, counters, RNG."""
    cfg, env = run.cfg, run.env
    try:
        state = ckpt.load_trainer_state(run.resume_from)
    except CheckpointError as e:
        raise TrainError(str(e)) from None
    run.opt.load_state_dict(state["optimizer"])
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    for name, s in state["streams"].items():
        if name in run.streams:
            run.streams[name].load_state_dict(s)
    step = int(state["step"])
    run.progress = Progress(step=step, tokens=int(state["tokens"]), elapsed=float(state["elapsed"]),
                            best_loss=state.get("best_loss"), last_loss=state.get("last_loss"))
    rngs = state.get("rng") or []
    if len(rngs) == env.world:
        ckpt.set_rng_state(rngs[env.rank])
    else:
        env.print(f"resume: the checkpoint was written by {len(rngs)} rank(s), this run has {env.world}; "
                  "data order continues, random states are reseeded")
        torch.manual_seed(cfg.seed + 1000 * step + env.rank)
    env.print(f"resume: continuing from {run.resume_from} (step {step}/{run.plan.total_steps})")


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


# ----------------------------------------------------------------------------------------------
# the steps, with 5. 6. 7. inside


def train_steps(run: Run, callbacks: list) -> None:
    from tqdm.auto import tqdm

    cfg, env, p, total = run.cfg, run.env, run.progress, run.plan.total_steps
    bar = tqdm(total=total, initial=p.step, desc=cfg.stage, dynamic_ncols=True,
               disable=not (env.is_main and cfg.progress), file=sys.stdout)
    start_step = p.step
    run.clock = Clock(tokens_at_log=p.tokens)
    try:
        while p.step < total:
            lr = lr_at(p.step, total, cfg.lr, cfg.warmup)
            result = optimizer_step(run, lr)
            if p.step % cfg.log_every == 0 or p.step == total:
                log_step(run, result, lr, bar, callbacks)
            bar.update(1)
            if cfg.save_every and p.step % cfg.save_every == 0 and p.step < total:
                save(run)
        if p.step > start_step or run.resume_from is None:  # nothing new since the resumed checkpoint: keep it
            save(run)
        if env.is_main and run.last_checkpoint is None:
            run.last_checkpoint = ckpt.latest_checkpoint(cfg.out)
        env.barrier()
    finally:
        bar.close()
        if run.metrics_log is not None:
            run.metrics_log.close()


# ----------------------------------------------------------------------------------------------
# 5. one optimizer step


def optimizer_step(run: Run, lr: float) -> StepResult:
    """`accum` micro-batches per rank, then one update with the gradient of their exact mean loss.

    Each component's loss is divided by its count over the whole step (all micro-batches, all
    ranks), so accumulating k micro-batches equals one k-times larger batch and N ranks equal one
    process over the same global batch. DDP averages gradients over ranks: x world undoes that.
    """
    cfg, env, task, p = run.cfg, run.env, run.task, run.progress
    for g in run.opt.param_groups:
        g["lr"] = lr
    micros = [{k: to_device(s.next(), env.device) for k, s in run.streams.items()} for _ in range(cfg.accum)]
    names = list(task.components)
    counts = torch.tensor([[task.counts(m)[c] for c in names] for m in micros], dtype=torch.float64)
    step_tokens = torch.tensor([float(sum(task.tokens(m) for m in micros))], dtype=torch.float64)
    glob = env.all_reduce(torch.cat([counts.sum(0), step_tokens]).to(env.device)).cpu()
    denom = glob[:-1].clamp(min=1.0)
    sums, metrics = _backward_micro_batches(run, micros, names, denom)
    comp = dict(zip(names, (env.all_reduce(sums).cpu() / denom).tolist()))
    loss = comp[task.primary] if task.primary else sum(task.components[c] * comp[c] for c in names)
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"loss became {loss} at step {p.step + 1} (lr {lr:.3g}); stopped without applying that update. "
            f"The last good checkpoint is {run.last_checkpoint or '(none saved yet)'}. Try a lower --lr, "
            "--dtype bf16/fp32 instead of fp16, or check the data")
    grad_norm = _apply_update(run, loss)
    p.step += 1
    p.tokens += int(glob[-1])
    p.last_loss = loss
    p.best_loss = loss if p.best_loss is None else min(p.best_loss, loss)
    run.clock.micro_batches += cfg.accum
    return StepResult(loss=loss, components=comp, grad_norm=grad_norm, metrics=metrics)


def _backward_micro_batches(run: Run, micros: list, names: list, denom: torch.Tensor):
    """Forward and backward every micro-batch; the loss sums (this rank) and the task's metrics."""
    env, task, model = run.env, run.task, run.fwd_model
    sums = torch.zeros(len(names), dtype=torch.float64, device=env.device)
    metrics = {}
    for i, m in enumerate(micros):
        sync = (i == len(micros) - 1) or not env.distributed  # DDP all-reduces the gradients once, at the end
        with contextlib.nullcontext() if sync else model.no_sync():
            with env.autocast():
                out = task.forward(model, m)
            objective = sum(task.components[c] * out.sums[c] / float(denom[j])
                            for j, c in enumerate(names)) * env.world
            if run.scaler is not None:
                run.scaler.scale(objective).backward()
            else:
                objective.backward()
        sums += torch.stack([out.sums[c].detach().double() for c in names])
        metrics.update(out.metrics)
    return sums, metrics


def _apply_update(run: Run, loss: float) -> float:
    """Clip the gradient at norm 1.0 and step the optimizer; returns the norm before clipping."""
    opt, scaler = run.opt, run.scaler
    if scaler is not None:
        scaler.unscale_(opt)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(run.params, 1.0))
    if scaler is None and not math.isfinite(grad_norm):
        raise NonFiniteLossError(
            f"gradient norm became {grad_norm} at step {run.progress.step + 1} (loss {loss:.4f}); stopped without "
            f"applying that update. The last good checkpoint is {run.last_checkpoint or '(none saved yet)'}. "
            "Try a lower --lr")
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    opt.zero_grad(set_to_none=True)
    return grad_norm


# ----------------------------------------------------------------------------------------------
# 6. log


def log_step(run: Run, result: StepResult, lr: float, bar, callbacks: list) -> None:
    """A row for metrics.jsonl and the callbacks, and MiniMind's log line (rank 0)."""
    cfg, env, task, p, clock = run.cfg, run.env, run.task, run.progress, run.clock
    main: BatchStream = run.streams["main"]
    now = time.time()
    row = {"step": p.step, "epoch": main.epoch + (main.position / main.batches_per_epoch),
           "tokens": p.tokens, "loss": result.loss, "lr": lr, "grad_norm": result.grad_norm,
           "tokens_per_s": (p.tokens - clock.tokens_at_log) / max(now - clock.last_log, 1e-9),
           "elapsed_s": p.elapsed + now - clock.start}
    if len(result.components) > 1 or task.primary:
        row.update({f"{c}_loss": v for c, v in result.components.items()})
    row.update(result.metrics)
    n_row = p.step // cfg.log_every   # the first row, every val_every-th row and the last one
    if run.val is not None and (n_row == 1 or n_row % cfg.val_every == 0 or p.step == run.plan.total_steps):
        row["val_loss"] = validation_loss(run)  # every rank: the sums are all-reduced
    clock.last_log, clock.tokens_at_log = now, p.tokens
    if not env.is_main:
        return
    run.rows.append(row)
    run.metrics_log.write(row)
    per_micro = (now - clock.start) / max(1, clock.micro_batches)
    # what is left of this epoch, or of the run when it stops before the epoch ends (max_steps)
    left_in_epoch = main.batches_per_epoch - main.position if main.position else 0
    left = min(left_in_epoch, (run.plan.total_steps - p.step) * cfg.accum)
    ep = min(main.epoch + (1 if main.position else 0), run.plan.epochs)  # position 0: an epoch just ended
    pos = main.position or main.batches_per_epoch
    val = f" val_loss:{row['val_loss']:.3f}" if "val_loss" in row else ""
    bar.write(f"Epoch:[{ep}/{run.plan.epochs}]({pos}/{main.batches_per_epoch}) loss:{result.loss:.3f}{val} "
              f"lr:{lr:.12f} epoch_Time:{per_micro * left / 60:.1f}min:")
    bar.set_postfix(loss=f"{result.loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{row['tokens_per_s']:.0f}")
    for cb in callbacks:
        fn = _callback_fn(cb, "on_log")
        if fn is not None:
            fn(row)


def validation_loss(run: Run) -> float:
    """The mean next-token loss on the held-out slice: its first val_batches batches, in file order.

    The same fixed examples every time, so successive values are comparable; the model is in eval
    mode under no_grad, and nothing here touches a random generator or the training streams, so a
    run with validation trains exactly like one without. Ranks split the examples and all-reduce
    the loss sum and the target count.
    """
    from torch.utils.data import default_collate

    from ..losses import n_targets, token_ce_sum

    src, env, model = run.val, run.env, run.model
    n = min(len(src.dataset), run.cfg.val_batches * src.batch_size)
    mine = list(range(env.rank, n, env.world))
    collate = src.collate or default_collate
    totals = torch.zeros(2, dtype=torch.float64, device=env.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), env.autocast():
            for i in range(0, len(mine), src.batch_size):
                b = to_device(collate([src.dataset[j] for j in mine[i:i + src.batch_size]]), env.device)
                logits = model(input_ids=b["input_ids"]).logits
                totals += torch.stack([token_ce_sum(logits, b["labels"]).double(),
                                       torch.tensor(float(n_targets(b["labels"])), dtype=torch.float64,
                                                    device=env.device)])
    finally:
        model.train(was_training)
    total = env.all_reduce(totals).cpu()
    return float(total[0] / total[1].clamp(min=1.0))


def _callback_fn(cb, name):
    if hasattr(cb, name):
        return getattr(cb, name)
    if name == "on_log" and callable(cb):
        return cb
    return None


# ----------------------------------------------------------------------------------------------
# 7. save


def save(run: Run) -> None:
    """Checkpoint the model (or adapter) and all a resumed run needs; every rank's RNG, rank 0 writes."""
    cfg, env, p = run.cfg, run.env, run.progress
    rng = env.gather_objects(ckpt.rng_state())
    if not env.is_main:
        return
    state = {
        "step": p.step, "tokens": p.tokens, "elapsed": p.elapsed + time.time() - run.clock.start,
        "best_loss": p.best_loss, "last_loss": p.last_loss, "optimizer": run.opt.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "streams": {k: s.state_dict() for k, s in run.streams.items()}, "rng": rng, "world_size": env.world,
        "stage": cfg.stage,
    }
    info = {"stage": cfg.stage, "tokens": p.tokens, "loss": p.last_loss, "total_steps": run.plan.total_steps}
    run.last_checkpoint = ckpt.save_checkpoint(cfg.out, p.step, trainer_state=state, keep=cfg.keep, info=info,
                                               **run.task.save_payload(run.model))


__all__ = ["train", "RunResult", "Run", "Progress", "prepare_run_dir", "build_run", "restore", "optimizer_step",
           "log_step", "validation_loss", "save"]
