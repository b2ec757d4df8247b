"""Helpers shared by the Gaussian samplers: schedule coefficients and model estimates on any state.

Samplers work in standard coordinates ``z_t = alpha_t x_0 + sigma_t eps`` (``polydiff.sample``
removes a process's mean offset first). For product processes whose components are all Gaussian
(each with its own schedule), the helpers act component-wise, so one sampler body serves both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..denoiser import ProductDenoised
from ..parameterisation import Denoised
from ..processes import GaussianProcess, ProductProcess
from ..schedules import ScheduleValues
from ..state import StateDict, first_leaf
from ..types import State
from .base import SamplerContext, SamplerModel

Coef = Callable[[ScheduleValues], Tensor]


def coef(ctx: SamplerContext, t: Tensor, x: State, fn: Coef) -> State:
    """``fn(schedule(t))`` (shape ``(B,)``) expanded onto ``x``; per component for product processes."""
    process = ctx.process
    if isinstance(process, ProductProcess):
        return StateDict(
            {k: ctx.space[k].expand(fn(p.schedule(t)).to(x[k].dtype), x[k]) for k, p in process.components.items()}  # type: ignore[index]
        )
    return ctx.space.expand(fn(process.schedule(t)).to(first_leaf(x).dtype), x)


def estimate(model: SamplerModel, x: State, t: Tensor, ctx: SamplerContext) -> Denoised:
    """One network evaluation as ``(x0, eps)``; product estimates are merged component-wise."""
    d = model.denoise(x, t, ctx.cond, space=ctx.space)
    if isinstance(d, ProductDenoised):
        parts = d.parts
        if not all(isinstance(p, Denoised) for p in parts.values()):
            raise ValueError("this sampler needs every component of the product process to be Gaussian")
        return Denoised(x0=StateDict({k: p.x0 for k, p in parts.items()}), eps=StateDict({k: p.eps for k, p in parts.items()}))
    if not isinstance(d, Denoised):
        raise TypeError(f"a Gaussian sampler got {type(d).__name__} from the model")
    return d


def is_gaussian(process) -> bool:
    """Whether a process (or every component of a product) is Gaussian."""
    if isinstance(process, ProductProcess):
        return all(isinstance(p, GaussianProcess) for p in process.components.values())
    return isinstance(process, GaussianProcess)


def velocity(ctx: SamplerContext, t: Tensor, d: Denoised) -> State:
    """Probability-flow ODE velocity ``dz/dt = d_alpha x0 + d_sigma eps``."""
    return coef(ctx, t, d.x0, lambda v: v.d_alpha) * d.x0 + coef(ctx, t, d.x0, lambda v: v.d_sigma) * d.eps


def combine(ctx: SamplerContext, t: Tensor, x0: State, eps: State) -> State:
    """``alpha_t x0 + sigma_t eps``."""
    return coef(ctx, t, x0, lambda v: v.alpha) * x0 + coef(ctx, t, x0, lambda v: v.sigma) * eps


def projected_noise(ctx: SamplerContext, like: State) -> State:
    """Standard Gaussian noise in the space (per-sample generators respected)."""
    return ctx.space.randn_like(like, ctx.generator)


def is_final(t_next: Tensor | float) -> bool:
    """Whether a step lands on ``t = 0`` (where samplers return the x0 estimate)."""
    return float(t_next if not isinstance(t_next, Tensor) else t_next.reshape(-1)[0]) == 0.0


def coef_pair(ctx: SamplerContext, t: Tensor, s: Tensor, x: State, fn: Callable[[ScheduleValues, ScheduleValues], Tensor]) -> State:
    """``fn(schedule(t), schedule(s))`` (shape ``(B,)``) expanded onto ``x``; per component for products."""
    process = ctx.process
    if isinstance(process, ProductProcess):
        return StateDict(
            {
                k: ctx.space[k].expand(fn(p.schedule(t), p.schedule(s)).to(x[k].dtype), x[k])  # type: ignore[index]
                for k, p in process.components.items()
            }
        )
    return ctx.space.expand(fn(process.schedule(t), process.schedule(s)).to(first_leaf(x).dtype), x)


def posterior_std(vt: ScheduleValues, vs: ScheduleValues) -> Tensor:
    """Std of the exact posterior ``q(z_s | z_t, x_0)`` for ``s < t``: ``sigma_s sqrt(1 - (alpha_t sigma_s / (alpha_s sigma_t))^2)``."""
    r = (vt.alpha * vs.sigma) / (vs.alpha * vt.sigma)
    return vs.sigma * (1 - r * r).clamp(min=0).sqrt()


def coef_times(
    ctx: SamplerContext, times: Sequence[Tensor], x: State, fn: Callable[..., Tensor]
) -> State:
    """``fn(schedule(t_0), schedule(t_1), ...)`` (shape ``(B,)``) expanded onto ``x``; per component for products.

    Args:
        times: per-sample times, each ``(B,)``.
        fn: maps one :class:`ScheduleValues` per time to a ``(B,)`` coefficient.
    """
    process = ctx.process
    if isinstance(process, ProductProcess):
        return StateDict(
            {
                k: ctx.space[k].expand(fn(*(p.schedule(t) for t in times)).to(x[k].dtype), x[k])  # type: ignore[index]
                for k, p in process.components.items()
            }
        )
    return ctx.space.expand(fn(*(process.schedule(t) for t in times)).to(first_leaf(x).dtype), x)


def half_log_snr(v: ScheduleValues) -> Tensor:
    """DPM-Solver's ``lambda = log(alpha / sigma)`` (half the log-SNR), shape ``(B,)``."""
    return torch.log(v.alpha) - torch.log(v.sigma)


def transition_var_ratio(vt: ScheduleValues, vs: ScheduleValues) -> Tensor:
    """``sigma_{t|s}^2 / sigma_t^2 = 1 - exp(lambda_t - lambda_s)`` for ``s < t`` (stable form), shape ``(B,)``.

    ``sigma_{t|s}^2 = sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2`` is the variance of ``q(z_t | z_s)``.
    """
    return (-torch.expm1(vt.log_snr - vs.log_snr)).clamp(min=0.0)


def per_sample(ctx: SamplerContext, s: Tensor, x: State) -> State:
    """Expand a per-sample scalar ``s`` of shape ``(B,)`` onto ``x`` (any state) in ``x``'s dtype."""
    return ctx.space.expand(s.to(first_leaf(x).dtype), x)


def check_finite(value: Tensor, what: str, sampler: str, t: Tensor) -> Tensor:
    """Raise a ``ValueError`` naming ``sampler`` and ``what`` when ``value`` (shape ``(B,)``) is not finite."""
    if not bool(torch.isfinite(value).all()):
        raise ValueError(
            f"{sampler}: {what} is not finite at t={float(t.reshape(-1)[0]):.6g} (alpha_t = 0 or sigma_t = 0 there); "
            "start the grid below the singular time, e.g. t_start=0.999"
        )
    return value


def shared_process(ctx: SamplerContext, sampler: str, option: str):
    """The single Gaussian process of ``ctx`` (or of every component of a product with one shared schedule).

    Raises:
        ValueError: a product whose components have different schedules (``option`` cannot act on one time).
    """
    process = ctx.process
    if not isinstance(process, ProductProcess):
        return process
    comps = list(process.components.values())
    first = comps[0]
    for p in comps[1:]:
        if type(p.schedule_fn) is not type(first.schedule_fn) or p.schedule_fn != first.schedule_fn:
            raise ValueError(
                f"{sampler}: option {option!r} needs one shared schedule, but the product process has components "
                f"with different schedules ({', '.join(f'{k}={c.name}' for k, c in process.components.items())}); "
                f"set {option}=0"
            )
    return first


Step = Callable[[State, Denoised, Tensor, Tensor], State]


def single_evaluation_loop(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext, step: Step) -> State:
    """Walk ``grid`` with one network evaluation per step.

    ``step(x, d, t, s)`` maps the state at ``t`` and the estimate ``d`` there to the state at
    ``s < t`` (``t``, ``s`` of shape ``(B,)``); a step that lands on ``t = 0`` returns ``d.x0``.
    State corrections and the step report are applied after every step.
    """
    n = len(grid) - 1
    for i in range(n):
        leaf = first_leaf(x)
        t, s = ctx.times(grid[i], leaf), ctx.times(grid[i + 1], leaf)
        d = estimate(model, x, t, ctx)
        x = d.x0 if is_final(grid[i + 1]) else step(x, d, t, s)
        x = ctx.correct(x, s)
        ctx.report(i, n, t, s, x, d.x0)
    return x
