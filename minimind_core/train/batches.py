"""Batches of a dataset, epoch after epoch, in an order that survives a restart."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from ..errors import TrainError


class _EpochOrder(torch.utils.data.Sampler):
    """Example indices epoch after epoch, without end: the rest of `start_epoch` from `position`
    batches in, then every later epoch whole. Each epoch is the DistributedSampler's permutation for
    that epoch, cut to whole batches, so batch boundaries fall on epoch boundaries."""

    def __init__(self, sampler: DistributedSampler, batch_size: int, batches_per_epoch: int,
                 start_epoch: int, position: int):
        self.sampler, self.batch_size, self.batches_per_epoch = sampler, batch_size, batches_per_epoch
        self.start_epoch, self.position = start_epoch, position

    def __iter__(self):
        epoch, skip = self.start_epoch, self.position * self.batch_size
        while True:
            self.sampler.set_epoch(epoch)
            yield from list(self.sampler)[skip:self.batches_per_epoch * self.batch_size]
            epoch, skip = epoch + 1, 0


class BatchStream:
    """Batches of one dataset, epoch after epoch, in an order fixed by (seed, epoch).

    A DistributedSampler (also with one process, so one GPU shuffles too) gives each rank its
    share of a permutation seeded by seed + epoch. One DataLoader reads an endless sequence of
    such epochs, so its worker processes start once per run, not once per epoch (on a small corpus
    an epoch is a few batches, and restarting workers each time cost a GPU run 35% of its speed).
    `state_dict()` is the (epoch, position) to continue from, so a resumed run sees exactly the
    batches an uninterrupted run would have seen.
    """

    def __init__(self, dataset, batch_size: int, collate_fn=None, *, seed: int, rank: int = 0,
                 world: int = 1, shuffle: bool = True, num_workers: int = 0, pin_memory: bool = False,
                 name: str = "data"):
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
        order = _EpochOrder(self.sampler, self.batch_size, self.batches_per_epoch, self.epoch, self.position)
        # the loader's own generator: starting its iterator then draws nothing from the global RNG, so a
        # resumed run (which starts its iterator again) samples exactly what an uninterrupted one does
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=order, drop_last=True,
                            collate_fn=self.collate_fn, num_workers=self.num_workers,
                            pin_memory=self.pin_memory,
                            generator=torch.Generator().manual_seed(self.sampler.seed + self.epoch))
        self._it = iter(loader)

    def next(self):
        if self._it is None:
            self._start()
        batch = next(self._it)
        self.position += 1
        if self.position >= self.batches_per_epoch:  # the epoch is used up: the next batch opens a new one
            self.epoch, self.position = self.epoch + 1, 0
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


@dataclass(frozen=True)
class Source:
    """What one stream of a task is made of ("main", or e.g. SFT's mixed-in "pretrain")."""

    dataset: object                  # a map-style dataset
    batch_size: int                  # examples per micro-batch, per rank
    collate: Callable | None = None  # examples -> batch (None: the default stacking)
    name: str = "data"               # how errors name it (the file)
    seed_offset: int = 0             # a different shuffle than the main stream's


def open_stream(source: Source, cfg, env) -> BatchStream:
    """The BatchStream of `source` for this rank (data-loader workers only on a GPU by default)."""
    workers = cfg.num_workers if cfg.num_workers is not None else (0 if env.device.type == "cpu" else 2)
    return BatchStream(source.dataset, source.batch_size, source.collate, seed=cfg.seed + source.seed_offset,
                       rank=env.rank, world=env.world, num_workers=workers,
                       pin_memory=env.device.type == "cuda", name=source.name)


def to_device(batch, device):
    """A batch (a tensor, or a dict of them) on `device`."""
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    return batch


__all__ = ["BatchStream", "Source", "open_stream", "to_device"]
