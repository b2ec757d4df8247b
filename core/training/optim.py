"""AdamW with linear warm-up and cosine decay to ``min_lr_ratio`` (a :class:`~torch.optim.lr_scheduler.LambdaLR`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..recipes import TrainConfig


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """The learning-rate multiplier after ``step`` optimizer steps.

    Linear warm-up from ``1/warmup_steps`` to 1 over ``warmup_steps`` steps, then cosine decay from 1 to
    ``min_lr_ratio`` at ``total_steps`` (constant ``min_lr_ratio`` afterwards).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / decay_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, tc: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``model`` with the ``train`` section's lr, betas and weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (every parameter has requires_grad=False)")
    return torch.optim.AdamW(params, lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, tc: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up + cosine :class:`LambdaLR` (its ``last_epoch`` counts optimizer steps)."""
    fn: Callable[[int], float] = lambda s: lr_factor(  # noqa: E731
        s, total_steps=tc.steps, warmup_steps=tc.warmup_steps, min_lr_ratio=tc.min_lr_ratio
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


__all__ = ["build_optimizer", "build_scheduler", "lr_factor"]
