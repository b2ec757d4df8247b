"""Validation: the mean loss of a model (the EMA model during training) over the validation set."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..recipes import DataBundle, Recipe, TrainConfig
from .data import batch_size_of, to_device
from .seeding import mix_seed

_EVAL_STREAM = 0x5EED_E7A1


@torch.no_grad()
def validation_loss(recipe: Recipe, model: nn.Module, bundle: DataBundle, cfg: Any, device: torch.device,
                    autocast: Any = nullcontext) -> float:
    """Mean loss of ``model`` over ``bundle.val`` (sample-weighted), with a fixed seed so it is comparable across steps.

    ``cfg`` is the run's config (its ``train`` section gives the batch size, workers and seed).
    """
    tc: TrainConfig = cfg.train
    if bundle.val is None:
        raise ValueError("the recipe's DataBundle has no val dataset")
    loader = DataLoader(bundle.val, batch_size=tc.batch_size, shuffle=False, collate_fn=bundle.collate,
                        num_workers=tc.num_workers)
    gen = torch.Generator(device).manual_seed(mix_seed(tc.seed, _EVAL_STREAM))
    total, n = 0.0, 0
    was_training = model.training
    model.eval()
    for batch in loader:
        batch = to_device(batch, device)
        b = batch_size_of(batch, tc.batch_size)
        with autocast():
            loss = recipe.loss(model, batch, cfg, gen)
        total += float(loss) * b
        n += b
    model.train(was_training)
    return total / max(n, 1)


__all__ = ["validation_loss"]
