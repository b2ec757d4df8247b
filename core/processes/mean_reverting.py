"""Processes that drift toward a conditioning signal ``y`` (SGMSE's OUVE, the OU/bridge family).

``dx = gamma (y - x) dt + g(t) dw`` with ``g(t) = sigma_min (sigma_max/sigma_min)^t sqrt(2 log(sigma_max/sigma_min))``
has the exact marginal ``x_t = y + alpha_t (x_0 - y) + sigma_t eps``: ``alpha_t = exp(-gamma t)`` and
``sigma_t^2 = sigma_min^2 L / (gamma + L) ((sigma_max/sigma_min)^(2t) - exp(-2 gamma t))``, ``L = log(sigma_max/sigma_min)``.
It is a Gaussian process with mean offset ``m_t = (1 - alpha_t) y`` and prior ``N(y, sigma_1^2 I)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..schedules import Schedule, ScheduleValues
from ..spaces import DataSpace, infer_space
from ..types import Cond, State
from .gaussian import GaussianProcess, _dtype


def bisect_inverse(f, target: Tensor, lo: float = 0.0, hi: float = 1.0, iters: int = 64) -> Tensor:
    """Solve ``f(t) = target`` for a strictly decreasing ``f`` on ``[lo, hi]`` by bisection (float64)."""
    target64 = target.to(torch.float64)
    a = torch.full_like(target64, lo)
    b = torch.full_like(target64, hi)
    for _ in range(iters):
        mid = 0.5 * (a + b)
        above = f(mid) > target64
        a = torch.where(above, mid, a)
        b = torch.where(above, b, mid)
    return (0.5 * (a + b)).to(target.dtype)


@dataclass(frozen=True, repr=False)
class OUVE(Schedule):
    """The Ornstein-Uhlenbeck variance-exploding schedule of SGMSE+ (Richter et al. 2023)."""

    gamma: float = 1.5
    sigma_min: float = 0.05
    sigma_max: float = 0.5
    name: ClassVar[str] = "ouve"
    t_min: float = 0.03

    def __call__(self, t: Tensor) -> ScheduleValues:
        L = math.log(self.sigma_max / self.sigma_min)
        alpha = torch.exp(-self.gamma * t)
        var = self.sigma_min**2 * L / (self.gamma + L) * (torch.exp(2 * L * t) - alpha**2)
        g_sq = 2 * L * self.sigma_min**2 * torch.exp(2 * L * t)
        d_var = -2 * self.gamma * var + g_sq
        sigma = var.clamp(min=0).sqrt()
        d_sigma = d_var / (2 * sigma.clamp(min=torch.finfo(sigma.dtype).tiny))
        return ScheduleValues(alpha, sigma, -self.gamma * alpha, d_sigma)

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        return bisect_inverse(lambda t: self(t).log_snr, log_snr, lo=0.0, hi=1.0)


class MeanRevertingProcess(GaussianProcess):
    """``x_t = y + alpha_t (x_0 - y) + sigma_t eps`` with ``y = cond[cond_key]`` (e.g. noisy speech).

    Args:
        schedule: an :class:`OUVE` (default) or any schedule whose ``alpha`` decays from 1.
        cond_key: the conditioning entry holding ``y``, shaped like ``x_0``.
    """

    name = "ouve"

    def __init__(self, schedule: Schedule | None = None, cond_key: str = "y") -> None:
        super().__init__(schedule or OUVE())
        self.cond_key = cond_key

    @property
    def has_offset(self) -> bool:
        return True

    def _y(self, cond: Cond | None) -> Tensor:
        if not cond or self.cond_key not in cond:
            raise ValueError(f"{type(self).__name__} needs the conditioning signal cond[{self.cond_key!r}] (the mean it reverts to)")
        return cond[self.cond_key]

    def offset(self, t: Tensor, like: State, *, space: DataSpace | None = None, cond: Cond | None = None) -> State:
        y = self._y(cond)
        space = space or infer_space(like)
        alpha = self.schedule(t).alpha.to(_dtype(like))
        return space.expand(1.0 - alpha, like) * y

    def prior_mean_x0(self, like: State, *, cond: Cond | None = None) -> State:
        return self._y(cond)

    def sde(self, x: State, t: Tensor, *, space: DataSpace | None = None, cond: Cond | None = None) -> tuple[State, Tensor]:
        """Drift ``gamma (y - x)`` i.e. ``f(t) (x - y)``; diffusion ``g(t)``, shape ``(B,)``."""
        space = space or infer_space(x)
        v = self.schedule(t)
        y = self._y(cond)
        return space.expand(v.drift.to(_dtype(x)), x) * (x - y), v.diffusion_sq.clamp(min=0).sqrt()

    def config(self) -> dict[str, Any]:
        return {**self.schedule_fn.config(), "cond_key": self.cond_key}
