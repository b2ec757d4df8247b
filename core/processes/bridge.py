"""The Schrödinger bridge between clean and noisy speech ("SB-VE", Jukić et al. 2024; SGMSE's ``sbve``).

A variance-exploding Brownian motion with ``g(t)^2 = c k^(2t)`` started at ``x_0`` and pinned to the
conditioning signal ``y`` at ``t = 1``. With ``s_t^2 = int_0^t g^2 = c (k^(2t) - 1) / (2 log k)``,
``S = s_1^2`` and ``sbar_t^2 = S - s_t^2`` its marginal is Gaussian::

    x_t = (sbar_t^2 / S) x_0 + (s_t^2 / S) y + (s_t sbar_t / sqrt(S)) eps

i.e. the mean-reverting form ``x_t = y + alpha_t (x_0 - y) + sigma_t eps`` with ``alpha_t = sbar_t^2 / S``
and ``sigma_t = s_t sbar_t / sqrt(S)``. The forward SDE implied by these (``f = d log alpha / dt``,
``g^2 = d sigma^2/dt - 2 f sigma^2``) is the Doob h-transform ``dx = g^2 (y - x) / sbar_t^2 dt + g dw``
(tested in ``tests/core/test_bridge_process.py``). At ``t = 1`` the marginal is the point ``y``, so
samplers start at ``t_max < 1`` where ``sigma`` is still positive. The first-order ODE sampler of the
bridge is DDIM on this schedule and its SDE sampler is the posterior (DDPM) step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..schedules import Schedule, ScheduleValues
from .mean_reverting import MeanRevertingProcess


@dataclass(frozen=True, repr=False)
class BridgeVE(Schedule):
    """Schedule of the VE Schrödinger bridge: ``alpha_t = sbar_t^2 / S``, ``sigma_t = s_t sbar_t / sqrt(S)``.

    Args:
        k: growth of ``g(t)^2 = c k^(2t)`` (SGMSE default 2.6).
        c: scale of ``g(t)^2`` (SGMSE default 0.4).
        t_min: smallest sampler time before the final step to 0 (0.01: ``sigma = 0.064``; below it the reverse-SDE
            and Heun samplers on a uniform grid lose accuracy where ``sigma_t ~ sqrt(c t)`` changes fastest;
            measured with ``tests/core/samplers/test_defaults.py``).
        t_max: start time of samplers (``sigma_1 = 0``: the bridge ends at ``y``).
    """

    k: float = 2.6
    c: float = 0.4
    t_min: float = 0.01
    t_max: float = 0.999
    name: ClassVar[str] = "sb-ve"

    def __post_init__(self) -> None:
        if not (self.k > 1.0 and self.c > 0.0):
            raise ValueError(f"sb-ve needs k > 1 and c > 0, got k={self.k}, c={self.c}")
        if not 0.0 <= self.t_min < self.t_max < 1.0:
            raise ValueError(f"sb-ve needs 0 <= t_min < t_max < 1, got t_min={self.t_min}, t_max={self.t_max}")

    @property
    def _log_k(self) -> float:
        return math.log(self.k)

    def s_sq(self, t: Tensor) -> Tensor:
        """``s_t^2 = int_0^t g(u)^2 du = c (k^(2t) - 1) / (2 log k)``, shape ``(B,)``."""
        return self.c * torch.expm1(2.0 * self._log_k * t) / (2.0 * self._log_k)

    def g_sq(self, t: Tensor) -> Tensor:
        """``g(t)^2 = c k^(2t)``, shape ``(B,)``."""
        return self.c * torch.exp(2.0 * self._log_k * t)

    @property
    def total_var(self) -> float:
        """``S = s_1^2``."""
        return self.c * (self.k**2 - 1.0) / (2.0 * self._log_k)

    def __call__(self, t: Tensor) -> ScheduleValues:
        S = self.total_var
        s2 = self.s_sq(t)
        sbar2 = (S - s2).clamp(min=0.0)
        g2 = self.g_sq(t)
        alpha = sbar2 / S
        var = s2 * sbar2 / S
        sigma = var.sqrt()
        d_var = g2 * (sbar2 - s2) / S
        d_sigma = d_var / (2.0 * sigma.clamp(min=torch.finfo(sigma.dtype).tiny))
        return ScheduleValues(alpha, sigma, -g2 / S, d_sigma)

    def log_snr(self, t: Tensor) -> Tensor:
        """``log(alpha^2 / sigma^2) = log(sbar_t^2 / (S s_t^2))``, shape ``(B,)``."""
        S = self.total_var
        s2 = self.s_sq(t)
        return torch.log(S - s2) - torch.log(S * s2)

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        """Exact inverse: ``s^2 = S / (1 + S e^lambda)``, ``t = log(1 + 2 log k s^2 / c) / (2 log k)``."""
        S = self.total_var
        s2 = S / (1.0 + S * torch.exp(log_snr))
        return torch.log1p(2.0 * self._log_k * s2 / self.c) / (2.0 * self._log_k)


class BridgeProcess(MeanRevertingProcess):
    """The SB-VE bridge ``x_t = y + alpha_t (x_0 - y) + sigma_t eps`` toward ``y = cond[cond_key]``.

    Shapes: ``x_0`` and ``y`` alike (e.g. ``(B, 2, F, T)`` spectrograms); times ``(B,)``.
    """

    name = "sb-ve"

    def __init__(self, schedule: BridgeVE | None = None, cond_key: str = "y") -> None:
        super().__init__(schedule or BridgeVE(), cond_key=cond_key)


def sb_ve(cond_key: str = "y", **params: float) -> BridgeProcess:
    """``polydiff.processes.get("sb-ve", k=2.6, c=0.4, t_min=0.01, t_max=0.999, cond_key="y")``."""
    return BridgeProcess(BridgeVE(**params), cond_key=cond_key)


__all__ = ["BridgeProcess", "BridgeVE", "sb_ve"]
