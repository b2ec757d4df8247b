"""Gaussian forward processes ``x_t = alpha_t x_0 + sigma_t eps`` (plus an optional offset)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..schedules import Schedule, ScheduleValues, get_schedule
from ..spaces import DataSpace, infer_space
from ..state import as_state
from ..types import Cond, GeneratorLike, State
from .base import ForwardProcess, Noised


class GaussianProcess(ForwardProcess):
    """``q(x_t | x_0) = N(alpha_t x_0 + m_t, sigma_t^2 I)`` for a :class:`~polydiff.schedules.Schedule`.

    ``m_t`` is zero here; subclasses that drift toward a conditioning signal (mean-reverting
    processes) override :meth:`offset`. Samplers work in *standard coordinates*
    ``z_t = x_t - m_t``, where every Gaussian process reads ``z_t = alpha_t x_0 + sigma_t eps``.

    The SDE view: ``dx = f(t) x dt + g(t) dw`` with ``f = d log alpha / dt`` and
    ``g^2 = d sigma^2/dt - 2 f sigma^2`` (see :class:`~polydiff.schedules.ScheduleValues`).
    """

    is_discrete: ClassVar[bool] = False

    def __init__(self, schedule: Schedule) -> None:
        self._schedule = schedule
        self.name = schedule.name

    @property
    def schedule_fn(self) -> Schedule:
        """The underlying :class:`Schedule` object."""
        return self._schedule

    def schedule(self, t: Tensor) -> ScheduleValues:
        return self._schedule(t)

    def log_snr(self, t: Tensor) -> Tensor:
        """``log(alpha_t^2 / sigma_t^2)``, shape ``(B,)``."""
        return self._schedule.log_snr(t)

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        """Inverse of :meth:`log_snr`, shape ``(B,)``."""
        return self._schedule.t_from_log_snr(log_snr)

    @property
    def t_min(self) -> float:
        return self._schedule.t_min

    @property
    def t_max(self) -> float:
        return self._schedule.t_max

    # -- offsets (zero for plain Gaussian processes) ------------------------------------------------
    @property
    def has_offset(self) -> bool:
        """Whether ``m_t`` is non-zero (a process drifting toward a conditioning signal)."""
        return False

    def offset(self, t: Tensor, like: State, *, space: DataSpace | None = None, cond: Cond | None = None) -> State | None:
        """The mean offset ``m_t`` shaped like ``like``, or ``None`` when it is zero."""
        return None

    def prior_mean_x0(self, like: State, *, cond: Cond | None = None) -> State | None:
        """The guess for ``x_0`` used to centre the prior (``None`` means zero)."""
        return None

    # -- sampling from q ----------------------------------------------------------------------------
    def sde(self, x: State, t: Tensor, *, space: DataSpace | None = None, cond: Cond | None = None) -> tuple[State, Tensor]:
        """Forward SDE ``(drift f(t) (x - m_t) + dm_t/dt - f m_t ..., g(t))``: returns ``(drift, g)`` with ``g`` shape ``(B,)``.

        For plain Gaussian processes the drift is ``f(t) x``.
        """
        space = space or infer_space(x)
        v = self.schedule(t)
        drift = space.expand(v.drift.to(_dtype(x)), x) * x
        return drift, v.diffusion_sq.clamp(min=0).sqrt()

    def noise(
        self,
        x_0: State,
        t: Tensor,
        *,
        generator: GeneratorLike = None,
        space: DataSpace | None = None,
        cond: Cond | None = None,
        eps: State | None = None,
    ) -> Noised:
        x_0 = as_state(x_0)
        space = space or infer_space(x_0)
        if eps is None:
            eps = space.randn_like(x_0, generator)
        v = self.schedule(t)
        x_t = space.expand(v.alpha, x_0) * x_0 + space.expand(v.sigma, x_0) * eps
        m = self.offset(t, x_0, space=space, cond=cond)
        if m is not None:
            x_t = x_t + m
        return Noised(x_t=x_t, t=t, noise=eps)

    def prior_sample(
        self, like: State, *, generator: GeneratorLike = None, space: DataSpace | None = None, cond: Cond | None = None, t: float = 1.0
    ) -> State:
        """``x_t ~ N(alpha_t mu + m_t, sigma_t^2 I)`` where ``mu`` is :meth:`prior_mean_x0` (zero by default)."""
        like = as_state(like)
        space = space or infer_space(like)
        b = space.batch_size(like)
        dtype = _dtype(like)
        tt = torch.full((b,), float(t), dtype=dtype, device=_device(like))
        v = self.schedule(tt)
        x = space.expand(v.sigma, like) * space.randn_like(like, generator)
        mu = self.prior_mean_x0(like, cond=cond)
        if mu is not None:
            x = x + space.expand(v.alpha, like) * mu
        m = self.offset(tt, like, space=space, cond=cond)
        return x if m is None else x + m

    def prior_log_prob(self, x_1: State, *, space: DataSpace | None = None, cond: Cond | None = None, t: float | None = None) -> Tensor:
        """Log-density of the prior at ``x_1``, shape ``(B,)``, with the space's degrees of freedom.

        ``N(alpha mu + m, sigma^2 I)`` restricted to the space (zero-CoM spaces use ``(n - 1) d`` dof).
        """
        x_1 = as_state(x_1)
        space = space or infer_space(x_1)
        t = self.t_max if t is None else t
        b = space.batch_size(x_1)
        tt = torch.full((b,), float(t), dtype=torch.float64, device=_device(x_1))
        v = self.schedule(tt)
        z = x_1
        mu = self.prior_mean_x0(x_1, cond=cond)
        if mu is not None:
            z = z - space.expand(v.alpha.to(_dtype(x_1)), x_1) * mu
        m = self.offset(tt.to(_dtype(x_1)), x_1, space=space, cond=cond)
        if m is not None:
            z = z - m
        sq = space.sum(z * z).to(torch.float64)
        dof = space.dof(x_1)
        return -0.5 * sq / v.sigma**2 - dof * (torch.log(v.sigma) + 0.5 * math.log(2 * math.pi))

    def config(self) -> dict[str, Any]:
        return self._schedule.config()


def _dtype(x: State) -> torch.dtype:
    from ..state import first_leaf

    leaf = first_leaf(x)
    return leaf.dtype if leaf.is_floating_point() else torch.get_default_dtype()


def _device(x: State) -> torch.device:
    from ..state import first_leaf

    return first_leaf(x).device


def gaussian(name: str, **params: Any) -> GaussianProcess:
    """A Gaussian process on the named schedule (``vp-linear``, ``vp-cosine``, ``ve``, ``edm``, ``flow``, ``sub-vp``)."""
    return GaussianProcess(get_schedule(name, **params))
