"""Backtest windows of a series: the calibration set of ``polydiff sample --calibrate-on FILE``.

A forecast is calibrated on forecasts from earlier origins of a held-out file (each window's last ``horizon`` steps
hidden); an imputation on the file's own observed cells hidden at random, at the input's missing rate (real gaps
are never targets). The model samples these windows like any other; :mod:`.calibration` turns what it got wrong
into per-feature spread factors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .data import Series
from .tasks import forecast_mask


@dataclass(frozen=True)
class BacktestWindows:
    """Windows ``[s, s + L)`` of a series with what the sampler is given and what is scored.

    Attributes:
        starts: ``(W,)`` window starts. values: ``(W, L, C)`` (NaN where unobserved).
        known: ``(W, L, C)`` bool, given to the sampler. target: ``(W, L, C)`` bool, hidden and observed (scored).
    """

    starts: np.ndarray
    values: np.ndarray
    known: Tensor
    target: np.ndarray


def backtest_windows(series: Series, window: int, task: str, *, windows: int, horizon: int = 0, history: int = 0,
                     hide: float = 0.5, seed: int = 0) -> BacktestWindows:
    """Up to ``windows`` evenly spaced windows that leave ``history`` rows before them (for lag features).

    ``task='forecast'``: the last ``horizon`` steps of each window are hidden; ``'impute'``: each observed cell is
    hidden with probability ``hide`` (seeded). Raises ``ValueError`` if the series is shorter than
    ``history + window`` rows or nothing can be scored.
    """
    T, L = len(series.values), window
    if T < history + L:
        raise ValueError(f"{T} rows; backtesting needs at least {history + L} (one window of {L}"
                         + (f" after {history} rows of lag history)" if history else ")"))
    starts = np.unique(np.linspace(history, T - L, max(1, windows)).round().astype(int))
    idx = starts[:, None] + np.arange(L)[None]
    values, obs = series.values[idx], series.observed[idx]
    if task == "forecast":
        if not 0 < horizon < L:
            raise ValueError(f"horizon {horizon}: expected 1 to {L - 1}")
        known = obs & forecast_mask(L, obs.shape[-1], horizon).numpy()[None]
    elif task == "impute":
        known = obs & (np.random.default_rng(seed).random(obs.shape) >= hide)
    else:
        raise ValueError(f"task {task!r}: expected forecast or impute")
    target = obs & ~known
    if not target.any():
        raise ValueError("no observed cell to hide in the backtest windows")
    return BacktestWindows(starts, values, torch.from_numpy(known), target)


__all__ = ["BacktestWindows", "backtest_windows"]
