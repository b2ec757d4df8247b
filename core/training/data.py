"""Deterministic, resumable, shardable data order.

Epoch ``e`` visits the training set in the order ``DistributedSampler(seed=seed, shuffle=True,
drop_last=True)`` gives after ``set_epoch(e)`` (a seeded ``torch.randperm``); rank ``r`` of ``W``
takes every ``W``-th index. Batches are consecutive runs of ``batch_size`` of these indices; the
last incomplete batch of an epoch is dropped. The position is :class:`DataPosition` ``(epoch, batch)``,
so a resumed run skips the consumed batches of the current epoch without loading them.

With ``W`` ranks of ``batch_size = B/W``, the union over ranks of batch ``k`` is exactly batch ``k`` of
a single process with ``batch_size = B`` (same permutation, interleaved), which is what makes
single-process and DDP runs the same computation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate


@dataclass(frozen=True)
class DataPosition:
    """``batch`` batches of epoch ``epoch`` have been consumed."""

    epoch: int = 0
    batch: int = 0


class ShardedBatches:
    """This rank's batches in a deterministic order that can be resumed at any :class:`DataPosition`."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        seed: int,
        world_size: int = 1,
        rank: int = 0,
        collate: Callable[[list[Any]], Any] | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"train.batch_size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.batches_per_epoch = len(self.sampler) // batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the training set has {len(dataset)} items (len(dataset)), fewer than one global batch of "  # type: ignore[arg-type]
                f"{batch_size * world_size} (train.batch_size x world size); lower train.batch_size"
            )
        self.collate = collate or default_collate
        self.num_workers = num_workers
        self.pin_memory = pin_memory

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's dataset indices of ``epoch`` in visiting order."""
        self.sampler.set_epoch(epoch)
        return list(iter(self.sampler))

    def iterate(self, start: DataPosition) -> Iterator[tuple[Any, list[int], DataPosition]]:
        """Yield ``(batch, dataset_indices, position_after)`` forever, starting at ``start``."""
        epoch, first = start.epoch, start.batch
        nb = self.batches_per_epoch
        while True:
            idx = self.epoch_indices(epoch)
            batches = [idx[b * self.batch_size : (b + 1) * self.batch_size] for b in range(first, nb)]
            loader = DataLoader(
                self.dataset, batch_sampler=batches, collate_fn=self.collate,
                num_workers=self.num_workers, pin_memory=self.pin_memory,
                # its own generator, so creating a loader never draws from the global torch RNG
                generator=torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % (1 << 63)),
            )
            for b, (batch, ids) in enumerate(zip(loader, batches, strict=True), start=first):
                after = DataPosition(epoch, b + 1) if b + 1 < nb else DataPosition(epoch + 1, 0)
                yield batch, ids, after
            epoch, first = epoch + 1, 0


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``; objects with ``.to`` (graph batches) are moved whole."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        moved = {k: to_device(v, device) for k, v in batch.items()}
        try:
            return type(batch)(moved)
        except TypeError:
            return moved
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    if hasattr(batch, "to") and callable(batch.to):
        return batch.to(device)
    return batch


def batch_size_of(batch: Any, default: int) -> int:
    """Number of samples in a batch when it is a tensor or a mapping with an ``x`` tensor; else ``default``."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, Mapping) and "x" in batch and isinstance(batch["x"], torch.Tensor):
        return int(batch["x"].shape[0])
    return default


__all__ = ["DataPosition", "ShardedBatches", "batch_size_of", "to_device"]


class OneAhead:
    """Holds at most one batch drawn ahead of time from a ``ShardedBatches.iterate`` stream.

    The engine reads the loss and gradient norm on the host every step (the non-finite guard), which
    waits for the device. Drawing the next batch (sampling and collating on the CPU) *before* that
    wait lets the CPU work overlap the device's step, as in a loop that never waits. The stream's
    order is fixed by its seed, so drawing ahead changes no batch and no saved position: each item
    carries the position after itself.
    """

    def __init__(self, stream: Iterator[tuple[Any, list[int], DataPosition]]) -> None:
        self._stream = stream
        self._held: tuple[Any, list[int], DataPosition] | None = None

    def fill(self) -> None:
        """Draw the next item now, if none is held."""
        if self._held is None:
            self._held = next(self._stream)

    def take(self) -> tuple[Any, list[int], DataPosition]:
        """The next item: the one drawn ahead, or a fresh one."""
        self.fill()
        item, self._held = self._held, None
        assert item is not None
        return item
