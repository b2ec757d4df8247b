"""Helpers shared by the Gaussian samplers: schedule coefficients and model estimates on any state.

Samplers work in standard coordinates ``z_t = alpha_t x_0 + sigma_t eps`` (``polydiff.sample``
removes a process's mean offset first). For product processes whose components are all Gaussian
(each with its own schedule), the helpers act component-wise, so one sampler body serves both.

The schedule is evaluated once per grid point, before a sampler's loop: :class:`GridCoefficients`
holds every grid point's values as numbers (grid times are shared by the batch, so a step's
coefficients are numbers that multiply any state) and one ``(B,)`` time tensor per point;
:func:`polydiff.sample` builds it and hands it to the denoiser too
(:func:`polydiff.denoiser.known_schedule_values`). Off-grid times (Heun's churn) use the per-time helpers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

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


@dataclass(frozen=True)
class GridValues:
    """One Gaussian schedule evaluated once at every point of a grid (float64, as Python floats).

    Every field is a tuple of ``len(grid)`` floats: ``alpha``, ``sigma`` and their time derivatives
    ``d_alpha``, ``d_sigma``; ``lam`` is DPM-Solver's half log-SNR ``log(alpha / sigma)`` (``+inf`` where
    ``sigma = 0``, ``-inf`` where ``alpha = 0``); ``drift`` is ``f = d_alpha / alpha`` and ``g2`` is
    ``g^2 = 2 sigma d_sigma - 2 f sigma^2`` (``inf`` where ``alpha = 0``). Grid times are shared by the
    batch, so a step's coefficients are plain numbers that broadcast onto any state.
    """

    t: tuple[float, ...]
    alpha: tuple[float, ...]
    sigma: tuple[float, ...]
    d_alpha: tuple[float, ...]
    d_sigma: tuple[float, ...]
    lam: tuple[float, ...]
    drift: tuple[float, ...]
    g2: tuple[float, ...]

    @classmethod
    def of(cls, process: GaussianProcess, grid: Tensor) -> GridValues:
        """Evaluate ``process``'s schedule once on ``grid`` (shape ``(N + 1,)``)."""
        g = grid.detach().to(device="cpu", dtype=torch.float64)
        v = process.schedule(g)
        with torch.no_grad():
            half_lam = 0.5 * process.log_snr(g)
            a, s, da, ds = v.alpha, v.sigma, v.d_alpha, v.d_sigma
            drift = torch.where(a > 0, da / a.clamp(min=torch.finfo(a.dtype).tiny), torch.full_like(a, -math.inf))
            g2 = torch.where(a > 0, 2.0 * s * ds - 2.0 * drift.nan_to_num(neginf=0.0) * s * s, torch.full_like(a, math.inf))
        return cls(*(tuple(x.tolist()) for x in (g, a, s, da, ds, half_lam, drift, g2)))


@dataclass(frozen=True, eq=False)
class GridCoefficients:
    """The schedule of a sampler call evaluated once per grid point, before the loop.

    Attributes:
        grid: the grid, shape ``(N + 1,)``.
        parts: component key -> :class:`GridValues` (the single key ``""`` for a lone process).
        times: grid time ``i`` as a per-sample tensor of shape ``(B,)``, one tensor object per grid point.
        known: ``(id(process), id(times[i]))`` -> ``(process, times[i], schedule getter, numbers)`` for
            every component process: entered with :func:`polydiff.denoiser.known_schedule_values` around the loop,
            it spares the denoiser the schedule evaluation and the coefficient expansion at grid times.
        product: whether the process is a product (coefficients are then ``StateDict`` s of numbers).

    :meth:`coef` turns a per-component formula into a number (lone process) or a
    :class:`~polydiff.state.StateDict` of numbers (product process), either of which multiplies a state.
    """

    grid: Tensor
    parts: Mapping[str, GridValues]
    times: tuple[Tensor, ...]
    known: Mapping[tuple[int, int], tuple[Any, Tensor, Any, tuple[float, float, float, float]]]
    product: bool

    def coef(self, fn: Callable[[GridValues], float]) -> Any:
        """``fn(values)`` for the lone process, or ``StateDict({key: fn(values_key)})`` for a product."""
        if not self.product:
            return fn(self.parts[""])
        return StateDict({k: fn(v) for k, v in self.parts.items()})

    @cached_property
    def first_order(self) -> list[tuple[Any, Any]]:
        """Per step ``i``: ``(sigma_s / sigma_t, alpha_s (1 - exp(lambda_t - lambda_s)))`` of :func:`first_order_step`."""
        n = len(self.times) - 1
        return [
            (self.coef(lambda v: v.sigma[i + 1] / v.sigma[i]), self.coef(lambda v: v.alpha[i + 1] * -math.expm1(v.lam[i] - v.lam[i + 1])))
            for i in range(n)
        ]

    def any(self, pred: Callable[[GridValues], bool]) -> bool:
        """Whether ``pred`` holds for any component."""
        return any(pred(v) for v in self.parts.values())


def precompute_grid(process: Any, grid: Tensor, batch_size: int, like: State) -> GridCoefficients:
    """Evaluate the schedule(s) of a Gaussian ``process`` (or all-Gaussian product) once on ``grid``.

    Args:
        grid: descending times, shape ``(N + 1,)``. batch_size: ``B``. like: the state (dtype and device of the times).
    """
    leaf = first_leaf(like)
    dtype = torch.promote_types(leaf.dtype, torch.float32) if leaf.is_floating_point() else torch.float64
    matrix = grid.to(device=leaf.device, dtype=dtype).unsqueeze(1).expand(len(grid), batch_size).contiguous()
    times = matrix.unbind(0)
    comps = dict(process.components) if isinstance(process, ProductProcess) else {"": process}
    parts = {k: GridValues.of(p, grid) for k, p in comps.items()}
    known: dict[tuple[int, int], tuple[Any, Tensor, Any, tuple[float, float, float, float]]] = {}
    for k, p in comps.items():
        gv = parts[k]
        for i, t in enumerate(times):  # the schedule at a grid time, as (B,) tensors, is built only if asked for
            values = partial(_row_values, p, t)
            known[(id(p), id(t))] = (p, t, values, (gv.alpha[i], gv.sigma[i], gv.d_alpha[i], gv.d_sigma[i]))
    return GridCoefficients(grid, parts, times, known, isinstance(process, ProductProcess))


def _row_values(process: Any, t: Tensor) -> ScheduleValues:
    return process.schedule(t)


def grid_coefficients(ctx: SamplerContext, grid: Tensor, like: State) -> GridCoefficients:
    """The call's precomputed :class:`GridCoefficients` (``ctx.coefficients``, made by :func:`polydiff.sample`)
    when it belongs to ``grid``, else evaluated now (a sampler called directly, or on another grid)."""
    pre = ctx.coefficients
    if pre is not None and pre.grid is grid:
        return pre
    return precompute_grid(ctx.process, grid, ctx.batch_size, like)


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
        return Denoised.lazy(x0=lambda: StateDict({k: p.x0 for k, p in parts.items()}),
                             eps=lambda: StateDict({k: p.eps for k, p in parts.items()}))
    if not isinstance(d, Denoised):
        raise TypeError(f"a Gaussian sampler got {type(d).__name__} from the model")
    return d


def is_gaussian(process) -> bool:
    """Whether a process (or every component of a product) is Gaussian."""
    if isinstance(process, ProductProcess):
        return all(isinstance(p, GaussianProcess) for p in process.components.values())
    return isinstance(process, GaussianProcess)




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






def transition_var_ratio(vt: ScheduleValues, vs: ScheduleValues) -> Tensor:
    """``sigma_{t|s}^2 / sigma_t^2 = 1 - exp(lambda_t - lambda_s)`` for ``s < t`` (stable form), shape ``(B,)``.

    ``sigma_{t|s}^2 = sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2`` is the variance of ``q(z_t | z_s)``.
    """
    return (-torch.expm1(vt.log_snr - vs.log_snr)).clamp(min=0.0)






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


def first_order_step(coefs: GridCoefficients, x: State, x0: State, i: int) -> State:
    """The DDIM / DPM-Solver-1 / EDM-Euler step from grid point ``i`` to ``i + 1``, from the x0 estimate alone.

    ``z_s = (sigma_s / sigma_t) z_t + alpha_s (1 - exp(lambda_t - lambda_s)) x0_hat`` (``lambda = log(alpha / sigma)``);
    finite where ``alpha_t = 0``. ``x``, ``x0``: states of the same structure.
    """
    ratio, phi = coefs.first_order[i]
    return ratio * x + phi * x0


IndexedStep = Callable[[State, Denoised, int], State]


def single_evaluation_loop(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext, step: IndexedStep,
                           coefs: GridCoefficients | None = None) -> State:
    """Walk ``grid`` with one network evaluation per step.

    ``step(x, d, i)`` maps the state at ``grid[i]`` and the estimate ``d`` there to the state at
    ``grid[i + 1]`` (the step reads its coefficients from ``coefs``, evaluated once before the loop);
    a step that lands on ``t = 0`` returns ``d.x0``. State corrections and the step report are applied
    after every step.
    """
    n = len(grid) - 1
    coefs = coefs or grid_coefficients(ctx, grid, x)
    times = coefs.times
    last_is_zero = is_final(grid[-1])
    for i in range(n):
        t, s = times[i], times[i + 1]
        d = estimate(model, x, t, ctx)
        x = d.x0 if (last_is_zero and i == n - 1) else step(x, d, i)
        if ctx.corrections:
            x = ctx.correct(x, s)
        if ctx.keep_trajectory or ctx.callback is not None:
            ctx.report(i, n, t, s, x, d.x0)
    return x
