"""Noise schedules ``x_t = alpha_t * x_0 + sigma_t * eps`` with derivatives and invertible log-SNR.

Every schedule maps per-sample times ``t`` of shape ``(B,)`` (``t = 0`` data, ``t = 1`` noise) to
:class:`ScheduleValues` of the same shape. The log-SNR ``lambda_t = log(alpha_t^2 / sigma_t^2)``
is strictly decreasing, and :meth:`Schedule.t_from_log_snr` is its exact inverse, so a trained
model can be re-timed and samplers can place their grids uniformly in log-SNR.

The SDE view (Song et al. 2021) follows from ``alpha`` and ``sigma``:
``f(t) = d log(alpha_t) / dt`` and ``g(t)^2 = d sigma_t^2 / dt - 2 f(t) sigma_t^2``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class ScheduleValues:
    """Schedule quantities at times ``t``; every field has shape ``(B,)``."""

    alpha: Tensor
    sigma: Tensor
    d_alpha: Tensor
    d_sigma: Tensor

    @property
    def log_snr(self) -> Tensor:
        """``log(alpha^2 / sigma^2)``, shape ``(B,)``."""
        return 2.0 * (torch.log(self.alpha) - torch.log(self.sigma))

    @property
    def drift(self) -> Tensor:
        """SDE drift coefficient ``f(t) = d_alpha / alpha``, shape ``(B,)``."""
        return self.d_alpha / self.alpha

    @property
    def diffusion_sq(self) -> Tensor:
        """Squared SDE diffusion ``g(t)^2 = 2 sigma d_sigma - 2 f sigma^2``, shape ``(B,)``."""
        return 2.0 * self.sigma * self.d_sigma - 2.0 * self.drift * self.sigma**2


class Schedule(ABC):
    """Base class: subclasses implement :meth:`__call__`, :meth:`log_snr` and :meth:`t_from_log_snr`.

    Attributes:
        t_min: smallest time a sampler should step to (``sigma`` is too small to matter below it).
        t_max: largest time a sampler should start from (``alpha`` may vanish at ``t = 1``).
        prior_scale: standard deviation of the prior ``x_1 ~ N(0, prior_scale^2 I)``.
    """

    name: ClassVar[str]
    t_min: float = 1e-3
    t_max: float = 1.0

    @abstractmethod
    def __call__(self, t: Tensor) -> ScheduleValues:
        """Schedule values at ``t`` (shape ``(B,)``)."""

    def log_snr(self, t: Tensor) -> Tensor:
        """``lambda_t = log(alpha_t^2 / sigma_t^2)``, shape ``(B,)``."""
        return self(t).log_snr

    @abstractmethod
    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        """Exact inverse of :meth:`log_snr`; shape ``(B,)``."""

    @property
    def prior_scale(self) -> float:
        t = torch.tensor([self.t_max], dtype=torch.float64)
        return float(self(t).sigma[0])

    def config(self) -> dict[str, Any]:
        """Constructor parameters (round-trips through ``type(self)(**config)``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.config().items())
        return f"{type(self).__name__}({params})"


def _vp_sigma(alpha: Tensor, d_alpha: Tensor) -> tuple[Tensor, Tensor]:
    """``sigma = sqrt(1 - alpha^2)`` and its derivative (finite where ``sigma > 0``)."""
    sigma_sq = (1.0 - alpha**2).clamp(min=0.0)
    sigma = sigma_sq.sqrt()
    d_sigma = -alpha * d_alpha / sigma.clamp(min=torch.finfo(sigma.dtype).tiny)
    return sigma, d_sigma


@dataclass(frozen=True, repr=False)
class VPLinear(Schedule):
    """Variance-preserving with linear ``beta(t) = beta_min + t (beta_max - beta_min)`` (DDPM / VP-SDE).

    ``log alpha_t = -(beta_max - beta_min) t^2 / 4 - beta_min t / 2`` and ``sigma_t = sqrt(1 - alpha_t^2)``.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    name: ClassVar[str] = "vp-linear"

    def _log_alpha(self, t: Tensor) -> tuple[Tensor, Tensor]:
        delta = self.beta_max - self.beta_min
        log_alpha = -0.25 * delta * t**2 - 0.5 * self.beta_min * t
        d_log_alpha = -0.5 * (self.beta_min + delta * t)
        return log_alpha, d_log_alpha

    def __call__(self, t: Tensor) -> ScheduleValues:
        log_alpha, d_log_alpha = self._log_alpha(t)
        alpha = torch.exp(log_alpha)
        d_alpha = alpha * d_log_alpha
        sigma, d_sigma = _vp_sigma(alpha, d_alpha)
        return ScheduleValues(alpha, sigma, d_alpha, d_sigma)

    def log_snr(self, t: Tensor) -> Tensor:
        log_alpha, _ = self._log_alpha(t)
        return 2.0 * log_alpha - torch.log(-torch.expm1(2.0 * log_alpha))

    def _t_from_neg_log_alpha_sq(self, a: Tensor) -> Tensor:
        """Solve ``(delta/2) t^2 + beta_min t = a`` for ``t >= 0`` (``a = -log alpha^2``)."""
        delta = self.beta_max - self.beta_min
        if delta == 0:
            return a / self.beta_min
        return 2.0 * a / (self.beta_min + torch.sqrt(self.beta_min**2 + 2.0 * delta * a))

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        # alpha^2 = sigmoid(lambda)  =>  -log alpha^2 = softplus(-lambda)
        return self._t_from_neg_log_alpha_sq(F.softplus(-log_snr))


@dataclass(frozen=True, repr=False)
class SubVP(VPLinear):
    """Sub-VP SDE (Song et al. 2021): ``alpha_t`` as VP-linear, ``sigma_t = 1 - alpha_t^2``."""

    name: ClassVar[str] = "sub-vp"

    def __call__(self, t: Tensor) -> ScheduleValues:
        log_alpha, d_log_alpha = self._log_alpha(t)
        alpha = torch.exp(log_alpha)
        d_alpha = alpha * d_log_alpha
        sigma = -torch.expm1(2.0 * log_alpha)
        d_sigma = -2.0 * alpha * d_alpha
        return ScheduleValues(alpha, sigma, d_alpha, d_sigma)

    def log_snr(self, t: Tensor) -> Tensor:
        log_alpha, _ = self._log_alpha(t)
        return 2.0 * log_alpha - 2.0 * torch.log(-torch.expm1(2.0 * log_alpha))

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        # a = alpha^2 solves a / (1 - a)^2 = e^lambda; the root in (0, 1), written stably.
        e = torch.exp(log_snr)
        a = 2.0 * e / ((2.0 * e + 1.0) + torch.sqrt(4.0 * e + 1.0))
        return self._t_from_neg_log_alpha_sq(-torch.log(a))


@dataclass(frozen=True, repr=False)
class VPCosine(Schedule):
    """Cosine schedule (Nichol & Dhariwal 2021): ``alpha_t = cos(pi/2 (t+s)/(1+s)) / cos(pi/2 s/(1+s))``.

    ``alpha_1 = 0`` exactly, so samplers start at ``t_max`` slightly below 1.
    """

    s: float = 0.008
    name: ClassVar[str] = "vp-cosine"
    t_max: float = 0.9999

    def _phi(self, t: Tensor) -> Tensor:
        return 0.5 * math.pi * (t + self.s) / (1.0 + self.s)

    def __call__(self, t: Tensor) -> ScheduleValues:
        c0 = math.cos(0.5 * math.pi * self.s / (1.0 + self.s))
        phi = self._phi(t)
        alpha = torch.cos(phi) / c0
        d_alpha = -torch.sin(phi) * (0.5 * math.pi / (1.0 + self.s)) / c0
        sigma, d_sigma = _vp_sigma(alpha, d_alpha)
        return ScheduleValues(alpha, sigma, d_alpha, d_sigma)

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        c0 = math.cos(0.5 * math.pi * self.s / (1.0 + self.s))
        alpha = torch.sigmoid(log_snr).sqrt()
        phi = torch.acos((alpha * c0).clamp(-1.0, 1.0))
        return phi * (1.0 + self.s) / (0.5 * math.pi) - self.s


@dataclass(frozen=True, repr=False)
class VE(Schedule):
    """Variance-exploding (SMLD / VE-SDE): ``alpha_t = 1``, ``sigma_t = sigma_min (sigma_max/sigma_min)^t``."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    name: ClassVar[str] = "ve"
    t_min: float = 0.0

    def __call__(self, t: Tensor) -> ScheduleValues:
        rate = math.log(self.sigma_max / self.sigma_min)
        sigma = self.sigma_min * torch.exp(rate * t)
        return ScheduleValues(torch.ones_like(t), sigma, torch.zeros_like(t), rate * sigma)

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        return (-0.5 * log_snr - math.log(self.sigma_min)) / math.log(self.sigma_max / self.sigma_min)


@dataclass(frozen=True, repr=False)
class EDM(Schedule):
    """EDM (Karras et al. 2022): ``alpha_t = 1`` and ``sigma_t`` on the Karras rho-grid.

    ``sigma_t = (sigma_min^(1/rho) + t (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho``, so a uniform
    grid in ``t`` is exactly EDM's sampling grid. ``sigma_data`` is used by EDM preconditioning
    and by the EDM loss weighting.
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    sigma_data: float = 0.5
    name: ClassVar[str] = "edm"
    t_min: float = 0.0

    def _ends(self) -> tuple[float, float]:
        return self.sigma_min ** (1.0 / self.rho), self.sigma_max ** (1.0 / self.rho)

    def __call__(self, t: Tensor) -> ScheduleValues:
        lo, hi = self._ends()
        base = lo + t * (hi - lo)
        sigma = base**self.rho
        d_sigma = self.rho * base ** (self.rho - 1.0) * (hi - lo)
        return ScheduleValues(torch.ones_like(t), sigma, torch.zeros_like(t), d_sigma)

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        lo, hi = self._ends()
        sigma = torch.exp(-0.5 * log_snr)
        return (sigma ** (1.0 / self.rho) - lo) / (hi - lo)


@dataclass(frozen=True, repr=False)
class Flow(Schedule):
    """Rectified flow / conditional OT path: ``alpha_t = 1 - t``, ``sigma_t = t``."""

    name: ClassVar[str] = "flow"
    t_max: float = 1.0

    def __call__(self, t: Tensor) -> ScheduleValues:
        return ScheduleValues(1.0 - t, t.clone(), -torch.ones_like(t), torch.ones_like(t))

    def log_snr(self, t: Tensor) -> Tensor:
        return 2.0 * (torch.log1p(-t) - torch.log(t))

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        return torch.sigmoid(-0.5 * log_snr)


SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (VPLinear, VPCosine, VE, EDM, Flow, SubVP)
}


def get_schedule(name: str, **params: Any) -> Schedule:
    """Build a schedule by name (``vp-linear``, ``vp-cosine``, ``ve``, ``edm``, ``flow``, ``sub-vp``)."""
    try:
        cls = SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown schedule {name!r}; expected one of: {', '.join(SCHEDULES)}") from None
    valid = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(params) - valid
    if unknown:
        raise ValueError(f"schedule {name!r} has no parameter(s) {sorted(unknown)}; valid: {sorted(valid)}")
    return cls(**params)


__all__ = ["EDM", "SCHEDULES", "Schedule", "ScheduleValues", "SubVP", "VE", "VPCosine", "VPLinear", "Flow", "get_schedule"]
