"""Where a run executes: the device, the ranks of a distributed job, the precision.

`setup_env` joins the process group when torchrun started us (NCCL on CUDA, gloo on the CPU) and
picks the autocast dtype. The Env it returns also holds the few collective operations the loop
needs; with one process each of them is a no-op, so the loop reads the same either way.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import TrainError


@dataclass
class Env:
    device: torch.device
    rank: int = 0                              # this process's rank (0: the one that logs and saves)
    world: int = 1                             # processes in the job
    local_rank: int = 0                        # rank on this machine (picks the GPU)
    autocast_dtype: torch.dtype | None = None  # None: plain fp32
    owns_group: bool = False                   # we started the process group, so we end it

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

    # collectives: no-ops with one process ---------------------------------------------------
    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum `t` over the ranks, in place; returns it."""
        if self.distributed:
            dist.all_reduce(t)
        return t

    def gather_objects(self, obj) -> list:
        """`obj` of every rank, in rank order."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def print(self, msg: str) -> None:
        """Print on rank 0 only."""
        if self.is_main:
            print(msg, flush=True)

    def close(self) -> None:
        """Leave the process group if this run joined it."""
        if self.owns_group and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()


def setup_env(cfg) -> Env:
    """Pick the device, join the process group when launched by torchrun, choose the precision."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    owns = False
    if world > 1 and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and cfg.device in (None, "cuda")
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        timeout = timedelta(seconds=int(os.environ.get("MINIMIND_DIST_TIMEOUT", "600")))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timeout)
        owns = True
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    else:
        rank, world, local_rank = 0, 1, 0
    device = _pick_device(cfg.device, local_rank)
    _set_threads(cfg.threads, device, world)
    return Env(device=device, rank=rank, world=world, local_rank=local_rank,
               autocast_dtype=resolve_precision(cfg.dtype, device), owns_group=owns)


def _pick_device(asked: str | None, local_rank: int) -> torch.device:
    if asked:
        device = torch.device(asked)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank)
    elif torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda was asked for but CUDA is not available")
    return device


def default_threads(local_world: int = 1) -> int:
    """CPU threads per process when --threads is not given: the cores shared among this machine's
    processes, at most 2 (the small models gain little from more).

    With OpenMP's default wait policy, idle threads spin, and when another process competes for
    the cores two spinning threads run many times slower than one (README, "Threads").
    minimind_core sets OMP_WAIT_POLICY=PASSIVE when it is imported before torch; if torch came
    first (the variable is then unset), one thread is the safe choice.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        return 1
    return max(1, min(2, (os.cpu_count() or 2) // max(1, local_world)))


def _set_threads(threads: int | None, device: torch.device, world: int) -> None:
    """On a CPU, share the cores among the processes of this machine (default_threads)."""
    if device.type == "cpu":
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(threads or default_threads(local_world))
    elif threads:
        torch.set_num_threads(threads)


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


def precision_name(dtype: torch.dtype | None) -> str:
    """How the run's log line names the autocast dtype."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16 + loss scaling"}.get(dtype, str(dtype))


__all__ = ["Env", "setup_env", "resolve_precision", "precision_name", "default_threads"]
