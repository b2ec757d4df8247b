"""DiffWave's fast inference schedule (Kong et al. 2021, §4 and Appendix B, Algorithm 2 "fast sampling").

A model trained on ``T`` noise levels ``beta_1..beta_T`` (``alpha_bar_t = prod_{i<=t} (1 - beta_i)``) is sampled with a
short user-defined schedule ``beta^infer_1..beta^infer_S`` (DiffWave: ``S = 6``, ``[1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5]``).
Each inference step ``s`` calls the network at the fractional training step ``t_align_s`` whose noise level matches
``alpha_bar^infer_s`` by interpolating ``sqrt(alpha_bar)`` linearly between neighbouring training steps:

    t_align_s = t + (sqrt(alpha_bar_t) - sqrt(alpha_bar^infer_s)) / (sqrt(alpha_bar_t) - sqrt(alpha_bar_{t+1}))
    for the t with alpha_bar_{t+1} <= alpha_bar^infer_s <= alpha_bar_t

(steps numbered from 1; ``alpha_bar_0 = 1``). The reverse updates use the inference schedule:
``x <- (x - beta_s / sqrt(1 - alpha_bar_s) eps) / sqrt(1 - beta_s)``, plus ``sigma_s z`` with
``sigma_s^2 = (1 - alpha_bar_{s-1}) / (1 - alpha_bar_s) beta_s`` for ``s > 1``, starting from ``x ~ N(0, I)``.

polydiff trains in continuous time: the ``T`` training steps are ``t = n / T`` of the recipe's Gaussian process, with
``alpha_bar_n = alpha(n / T)^2`` (:func:`training_alpha_bars`), so the network is called at ``t = t_align / T``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

#: DiffWave's fast inference schedule (T_infer = 6) and the number of training steps it was aligned to (T = 50).
DIFFWAVE_FAST_BETAS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5)
DIFFWAVE_TRAIN_STEPS = 50


def align_steps(train_alpha_bars: Sequence[float] | np.ndarray, infer_betas: Sequence[float]) -> np.ndarray:
    """DiffWave's ``t_align_s`` (fractional training steps, numbered from 1) for every inference step ``s = 1..S``.

    Args:
        train_alpha_bars: ``alpha_bar_1..alpha_bar_T`` of the training steps ``(T,)``, decreasing.
        infer_betas: the inference schedule ``beta^infer_1..beta^infer_S``.

    Returns:
        ``(S,)`` float64 array of ``t_align``.

    Raises:
        ValueError: an inference noise level beyond the last training step (``alpha_bar^infer_s < alpha_bar_T``).
    """
    ab = np.concatenate([[1.0], np.asarray(train_alpha_bars, dtype=np.float64)])  # ab[t] = alpha_bar_t, t = 0..T
    infer = np.cumprod(1.0 - np.asarray(infer_betas, dtype=np.float64))
    out = []
    for s, a in enumerate(infer, start=1):
        if a < ab[-1]:
            raise ValueError(f"inference step {s}: alpha_bar {a:.4g} is below the last training step's {ab[-1]:.4g}")
        t = next(t for t in range(len(ab) - 1) if ab[t + 1] <= a <= ab[t])
        out.append(t + (np.sqrt(ab[t]) - np.sqrt(a)) / (np.sqrt(ab[t]) - np.sqrt(ab[t + 1])))
    return np.asarray(out, dtype=np.float64)


def training_alpha_bars(process: Any, steps: int = DIFFWAVE_TRAIN_STEPS) -> np.ndarray:
    """``alpha_bar_n = alpha(n / T)^2`` for ``n = 1..T`` of a continuous-time Gaussian process ``(T,)``."""
    t = torch.arange(1, steps + 1, dtype=torch.float64) / steps
    return (process.schedule(t).alpha.double() ** 2).numpy()


@dataclass(frozen=True)
class FastSchedule:
    """An inference schedule ``betas`` ``(S,)`` and the continuous times ``t`` ``(S,)`` the network is called at."""

    betas: tuple[float, ...]
    t: tuple[float, ...]

    @property
    def alpha_bars(self) -> np.ndarray:
        return np.cumprod(1.0 - np.asarray(self.betas, dtype=np.float64))


def fast_schedule(process: Any, betas: Sequence[float] = DIFFWAVE_FAST_BETAS, train_steps: int = DIFFWAVE_TRAIN_STEPS) -> FastSchedule:
    """The aligned schedule for a model of ``process``: ``t_s = t_align_s / train_steps``."""
    t = align_steps(training_alpha_bars(process, train_steps), betas) / train_steps
    return FastSchedule(tuple(float(b) for b in betas), tuple(float(v) for v in t))


def sample_fast(model: Any, shape: Sequence[int], schedule: FastSchedule, *, cond: Any = None,
                generator: torch.Generator | Sequence[torch.Generator] | None = None, dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu", x_start: Tensor | None = None) -> tuple[Tensor, int]:
    """DiffWave's Algorithm 2 with the aligned schedule: ``(x_0 (shape), NFE = S)``.

    ``model`` is a :class:`polydiff.Denoiser` (any prediction type; its ``eps`` estimate is used); ``generator`` one per
    sample (or one for the batch) draws the start ``N(0, I)`` (unless ``x_start`` is given) and the noise of every step.
    """
    def randn() -> Tensor:
        if isinstance(generator, (list, tuple)):
            return torch.stack([torch.randn(tuple(shape[1:]), generator=g, dtype=dtype, device=device) for g in generator])
        return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)

    betas = np.asarray(schedule.betas, dtype=np.float64)
    ab = schedule.alpha_bars
    x = randn() if x_start is None else x_start.to(device=device, dtype=dtype)
    for s in range(len(betas) - 1, -1, -1):  # s = S-1 .. 0 (inference step s + 1)
        t = torch.full((shape[0],), schedule.t[s], dtype=dtype, device=device)
        with torch.no_grad():
            eps = model.denoise(x, t, cond).eps
        x = (x - betas[s] / np.sqrt(1.0 - ab[s]) * eps) / np.sqrt(1.0 - betas[s])
        if s > 0:
            sigma = np.sqrt((1.0 - ab[s - 1]) / (1.0 - ab[s]) * betas[s])
            x = x + sigma * randn()
    return x, len(betas)


__all__ = ["DIFFWAVE_FAST_BETAS", "DIFFWAVE_TRAIN_STEPS", "FastSchedule", "align_steps", "fast_schedule", "sample_fast",
           "training_alpha_bars"]
