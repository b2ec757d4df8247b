"""Probability-flow ODE samplers: Euler (first order), Heun (EDM, second order, with churn), DPM-Solver++(2M)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..processes import ProductProcess
from ..state import first_leaf
from ..types import State
from .base import SamplerContext, SamplerModel, SamplerSpec
from .gaussian_common import (
    single_evaluation_loop,
    coef_pair,
    coef_times,
    combine,
    estimate,
    half_log_snr,
    is_final,
    shared_process,
    transition_var_ratio,
    velocity,
)
from .registry import register_builtin


def euler(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext) -> State:
    """Euler steps on ``dz/dt = d_alpha x0_hat + d_sigma eps_hat``; the step to ``t = 0`` returns ``x0_hat``.

    One network evaluation per step. First order in the step size.
    """
    return single_evaluation_loop(model, x, grid, ctx, lambda x, d, t, s: x + _dt(ctx, t, s, x) * velocity(ctx, t, d))


def heun(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext) -> State:
    """EDM's second-order Heun sampler (Karras et al. 2022, Alg. 1/2) for any Gaussian schedule.

    EDM integrates the probability-flow ODE in the scaled variables ``y = z / alpha`` and
    ``sigma~ = sigma / alpha``, where it reads ``dy / dsigma~ = eps_hat`` (exactly EDM's ODE when
    ``alpha = 1``). Each step is an Euler predictor (a DDIM step) plus a trapezoidal corrector:
    ``z_s = (alpha_s / alpha_t) z_t + (sigma_s - alpha_s sigma_t / alpha_t) (eps_hat_t + eps_hat')/2``,
    2 NFE. The step to ``t = 0`` returns ``x0_hat`` (1 NFE), so a grid ending at 0 costs
    ``2 * steps - 1`` evaluations; a step that starts where ``alpha_t = 0`` (``t = 1`` of the flow
    schedule, ``sigma~ = inf``, where no trapezoid exists) is the predictor alone (1 NFE; its local error is
    ``O(h^2)``, like DPM-Solver++'s first-order first step).

    Options (EDM's stochastic sampler):
        churn: ``S_churn >= 0``; each step in ``[churn_tmin, churn_tmax]`` first raises the noise level
            ``sigma/alpha`` by the factor ``1 + gamma``, ``gamma = min(churn / steps, sqrt(2) - 1)``, by moving
            to ``t_hat = t(lambda_t - 2 log(1 + gamma))`` (the schedule's exact log-SNR inverse, clipped to 1)
            with fresh noise from the exact forward transition ``q(z_that | z_t)``.
        churn_tmin, churn_tmax: the time window (in ``t``) where churn applies.
        s_noise: EDM's ``S_noise`` (scale of the fresh noise; 1 is exact).

    Shapes: ``x`` is any state (tensor or composite); ``grid`` is ``(steps + 1,)``.
    """
    churn = float(ctx.option("churn", 0.0))
    tmin, tmax = float(ctx.option("churn_tmin", 0.0)), float(ctx.option("churn_tmax", 1.0))
    s_noise = float(ctx.option("s_noise", 1.0))
    if churn < 0.0:
        raise ValueError(f"heun: churn must be >= 0, got {churn}")
    if s_noise < 0.0:
        raise ValueError(f"heun: s_noise must be >= 0, got {s_noise}")
    n = len(grid) - 1
    gamma = min(churn / n, math.sqrt(2.0) - 1.0)
    if gamma > 0.0:
        shared_process(ctx, "heun", "churn")
    for i in range(n):
        leaf = first_leaf(x)
        t, s = ctx.times(grid[i], leaf), ctx.times(grid[i + 1], leaf)
        if gamma > 0.0 and tmin <= float(grid[i]) <= tmax:
            x, t = _churn(x, t, gamma, s_noise, ctx)
        d = estimate(model, x, t, ctx)
        if is_final(grid[i + 1]):
            x = d.x0
        else:
            x_pred = combine(ctx, s, d.x0, d.eps)  # Euler in (y, sigma~) = DDIM
            if _alpha_vanishes(ctx, t):
                x = x_pred
            else:
                d_next = estimate(model, x_pred, s, ctx)
                c_z = coef_pair(ctx, t, s, x, lambda vt, vs: vs.alpha / vt.alpha)
                c_eps = coef_pair(ctx, t, s, x, lambda vt, vs: vs.sigma - vs.alpha * vt.sigma / vt.alpha)
                x = c_z * x + c_eps * (0.5 * (d.eps + d_next.eps))
        x = ctx.correct(x, s)
        ctx.report(i, n, t, s, x, d.x0)
    return x


def _alpha_vanishes(ctx: SamplerContext, t: Tensor) -> bool:
    """Whether ``alpha_t = 0`` for the process (any component of a product)."""
    process = ctx.process
    procs = process.components.values() if isinstance(process, ProductProcess) else (process,)
    return any(bool((p.schedule(t).alpha == 0).any()) for p in procs)


def _churn(x: State, t: Tensor, gamma: float, s_noise: float, ctx: SamplerContext) -> tuple[State, Tensor]:
    """Raise ``sigma/alpha`` by ``1 + gamma``: returns ``(z_that, t_hat)`` with ``z_that ~ q(z_that | z_t)``."""
    process = shared_process(ctx, "heun", "churn")
    t64 = t.to(torch.float64)
    lam_hat = process.log_snr(t64) - 2.0 * math.log1p(gamma)
    t_hat = torch.maximum(process.t_from_log_snr(lam_hat).clamp(max=1.0), t64).to(t.dtype)
    ratio = coef_pair(ctx, t_hat, t, x, lambda vh, vt: vh.alpha / vt.alpha)
    std = coef_pair(ctx, t_hat, t, x, lambda vh, vt: vh.sigma * transition_var_ratio(vh, vt).sqrt())
    return ratio * x + (s_noise * std) * ctx.space.randn_like(x, ctx.generator), t_hat


def dpmpp_2m(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext) -> State:
    """DPM-Solver++(2M) (Lu et al. 2022): multistep, data prediction, in ``lambda = log(alpha / sigma)``.

    ``z_s = (sigma_s / sigma_t) z_t - alpha_s expm1(-h) D`` with ``h = lambda_s - lambda_t`` and
    ``D = (1 + 1/(2r)) x0_hat_t - 1/(2r) x0_hat_prev``, ``r = h_prev / h`` (``D = x0_hat_t`` on the first
    step, which is therefore first order, i.e. DDIM). The step to ``t = 0`` returns ``x0_hat``.
    One network evaluation per step; second order. For product processes every coefficient (and ``r``)
    is taken per component from that component's schedule.

    Shapes: ``x`` is any state; ``grid`` is ``(steps + 1,)``.
    """
    n = len(grid) - 1
    prev: tuple[Tensor, State] | None = None
    for i in range(n):
        leaf = first_leaf(x)
        t, s = ctx.times(grid[i], leaf), ctx.times(grid[i + 1], leaf)
        d = estimate(model, x, t, ctx)
        if is_final(grid[i + 1]):
            x_next = d.x0
        else:
            ratio = coef_pair(ctx, t, s, x, lambda vt, vs: vs.sigma / vt.sigma)
            phi = coef_pair(ctx, t, s, x, lambda vt, vs: -vs.alpha * torch.expm1(half_log_snr(vt) - half_log_snr(vs)))
            if prev is None:
                D = d.x0
            else:
                c = coef_times(ctx, (prev[0], t, s), x, _half_inverse_r)
                D = (1.0 + c) * d.x0 - c * prev[1]
            x_next = ratio * x + phi * D
        prev = (t, d.x0)
        x = ctx.correct(x_next, s)
        ctx.report(i, n, t, s, x, d.x0)
    return x


def _half_inverse_r(vp, vt, vs) -> Tensor:
    """``1 / (2 r)`` with ``r = h_prev / h`` (zero when the previous step was infinitely long)."""
    h_prev = half_log_snr(vt) - half_log_snr(vp)
    h = half_log_snr(vs) - half_log_snr(vt)
    return 0.5 * h / h_prev


def _dt(ctx: SamplerContext, t: Tensor, t_next: Tensor, x: State) -> State:
    """The step ``t_next - t`` expanded onto the state."""
    return ctx.space.expand((t_next - t).to(first_leaf(x).dtype), x)



register_builtin(SamplerSpec("euler", euler, kind="gaussian", description="Euler on the probability-flow ODE (1 NFE/step)"))
register_builtin(
    SamplerSpec(
        "heun",
        heun,
        kind="gaussian",
        stochastic=True,
        options={"churn": 0.0, "churn_tmin": 0.0, "churn_tmax": 1.0, "s_noise": 1.0},
        description="EDM Heun on the probability-flow ODE, 2nd order (2 NFE/step), optional churn",
    )
)
register_builtin(
    SamplerSpec("dpm++2m", dpmpp_2m, kind="gaussian", description="DPM-Solver++(2M): multistep data-prediction ODE solver, 2nd order (1 NFE/step)")
)
