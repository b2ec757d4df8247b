"""Process-group set-up for ``torchrun`` (env ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``).

The same :func:`polydiff.training.train` runs single-process (no environment variables: world size 1)
and under ``torchrun --nproc_per_node N`` (NCCL on CUDA, gloo on CPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits.

    Attributes:
        rank: global rank. world_size: number of processes. local_rank: rank on this node.
        device: the device this process trains on. initialised_here: whether :func:`setup` created
            the process group (and :func:`teardown` should destroy it).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def setup(device: str | torch.device = "cpu") -> DistInfo:
    """Initialise the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``); pick the device.

    With ``device="cuda"`` each process uses ``cuda:LOCAL_RANK``.
    """
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available; use --device cpu")
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = _env_int("LOCAL_RANK", rank)
        created = False
    else:
        world = _env_int("WORLD_SIZE", 1)
        rank = _env_int("RANK", 0)
        local = _env_int("LOCAL_RANK", rank)
        created = False
        if world > 1:
            if not dist.is_available():
                raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(local)
            dist.init_process_group(backend=backend, rank=rank, world_size=world)
            created = True
    if device.type == "cuda":
        device = torch.device("cuda", local if world > 1 else (device.index or 0))
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device, initialised_here=created)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op single-process)."""
    if info.distributed:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def all_gather_tensor(info: DistInfo, t: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of ``t`` (same shape on every rank), in rank order, on CPU."""
    if not info.distributed:
        return [t.detach().cpu()]
    x = t.detach().to(info.device if info.device.type == "cuda" else "cpu")
    out = [torch.empty_like(x) for _ in range(info.world_size)]
    dist.all_gather(out, x)
    return [o.cpu() for o in out]


def mean_across_ranks(info: DistInfo, t: torch.Tensor) -> torch.Tensor:
    """The average of ``t`` over ranks (identity single-process)."""
    if not info.distributed:
        return t
    x = t.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / info.world_size


def teardown(info: DistInfo) -> None:
    """Destroy the process group if :func:`setup` created it."""
    if info.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["DistInfo", "all_gather_tensor", "barrier", "mean_across_ranks", "setup", "teardown"]
