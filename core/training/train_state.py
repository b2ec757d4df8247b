"""What a checkpoint holds besides the weights, and putting it back: optimizer, scheduler, EMA count,
data position, step, and every random state (per rank for torch's; gathered to rank 0, which writes)."""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from ..recipes import RunDir, TrainConfig
from . import distributed
from .checkpoint import Checkpoint, save_checkpoint
from .data import DataPosition
from .ema import EMA


def _rng_state(info: distributed.DistInfo, loss_gen: torch.Generator) -> dict[str, Any]:
    """RNG states: torch CPU, CUDA and the loss generator for every rank; python and numpy of this rank."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch_cpu": distributed.all_gather_tensor(info, torch.get_rng_state()),
        "loss_generator": distributed.all_gather_tensor(info, loss_gen.get_state()),
        "cuda": None,
    }
    if info.device.type == "cuda":
        state["cuda"] = distributed.all_gather_tensor(info, torch.cuda.get_rng_state(info.device))
    return state


def save_train_checkpoint(
    run: RunDir, tc: TrainConfig, info: distributed.DistInfo, step: int, pos: DataPosition, seconds: float,
    bad_total: int, model: nn.Module, ema: EMA, optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler, loss_gen: torch.Generator,
) -> Path:
    """Write checkpoint ``step`` (collective: every rank must call it; rank 0 writes, the others wait)."""
    rng = _rng_state(info, loss_gen)  # collective: every rank takes part
    path = run.checkpoints / f"step-{step:08d}"
    if info.is_main:
        state = {
            "step": step, "epoch": pos.epoch, "batch": pos.batch, "world_size": info.world_size, "seconds": seconds,
            "bad_steps": bad_total, "ema_updates": ema.num_updates, "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": rng,
        }
        path = save_checkpoint(run.checkpoints, step, model=model.state_dict(), ema=ema.module.state_dict(),
                               state=state, keep=tc.keep_checkpoints)
    distributed.barrier(info)
    return path


def restore_train_state(
    ck: Checkpoint, model: nn.Module, ema: EMA, optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler, loss_gen: torch.Generator, info: distributed.DistInfo,
) -> tuple[int, DataPosition, float, int]:
    """Load ``ck`` into the training objects; return ``(step, data position, seconds so far, bad steps)``."""
    try:
        model.load_state_dict(ck.model)
        if ck.ema is not None:
            ema.module.load_state_dict(ck.ema)
        s = ck.state
        ema.num_updates = int(s["ema_updates"])
        optimizer.load_state_dict(s["optimizer"])
        scheduler.load_state_dict(s["scheduler"])
        rng = s["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        if int(s["world_size"]) == info.world_size:
            torch.set_rng_state(rng["torch_cpu"][info.rank])
            loss_gen.set_state(rng["loss_generator"][info.rank])
            if info.device.type == "cuda" and rng["cuda"] is not None:
                torch.cuda.set_rng_state(rng["cuda"][info.rank], info.device)
        else:
            warnings.warn(f"checkpoint {ck.path} was written by {s['world_size']} process(es), this run has "
                          f"{info.world_size}: the data position is kept but per-rank random streams restart", stacklevel=3)
        return int(s["step"]), DataPosition(int(s["epoch"]), int(s["batch"])), float(s["seconds"]), int(s["bad_steps"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {ck.path} does not fit this run: {str(e).splitlines()[0]}") from None


__all__ = ["restore_train_state", "save_train_checkpoint"]
