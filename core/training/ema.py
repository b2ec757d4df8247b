"""Exponential moving average of a model's parameters (``torch.optim.swa_utils.AveragedModel``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class EMA:
    """EMA of the parameters of ``model``; buffers are copied (not averaged) after every update.

    The first update copies the parameters (``AveragedModel`` semantics); later updates do
    ``ema = decay * ema + (1 - decay) * param`` with one fused ``foreach`` lerp per dtype/device.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=False)
        self.averaged.module.eval()
        self.averaged.module.requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        """The averaged copy of the model (same structure and state-dict keys as the model)."""
        return self.averaged.module

    @property
    def num_updates(self) -> int:
        return int(self.averaged.n_averaged.item())

    @num_updates.setter
    def num_updates(self, value: int) -> None:
        self.averaged.n_averaged.fill_(int(value))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current parameters of ``model`` into the average and copy its buffers."""
        self.averaged.update_parameters(model)
        for b_ema, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)


__all__ = ["EMA"]
