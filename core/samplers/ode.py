"""Probability-flow ODE samplers: Euler (first order), Heun (EDM, second order, with churn), DPM-Solver++(2M) and (3M).

Each evaluates the schedule once per grid point before its loop (:func:`grid_coefficients`), so a step
costs the network call plus a handful of scalar-times-state operations.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..processes import ProductProcess
from ..state import StateDict

from ..types import State
from .base import SamplerContext, SamplerModel, SamplerSpec
from .gaussian_common import (
    GridCoefficients,
    GridValues,
    coef_pair,
    combine,
    first_order_step,
    estimate,
    grid_coefficients,
    is_final,
    shared_process,
    single_evaluation_loop,
    transition_var_ratio,
)
from .grids import DPM_GRIDS, EULER_GRIDS, HEUN_GRIDS
from .registry import register_builtin


def euler(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext) -> State:
    """Euler on the probability-flow ODE in EDM's variables ``y = z / alpha``, ``sigma~ = sigma / alpha``.

    There the ODE reads ``dy / dsigma~ = eps_hat`` (Karras et al. 2022; exactly EDM's ODE when ``alpha = 1``),
    and one Euler step is the DDIM step, k-diffusion's ``sample_euler`` on EDM and the heun sampler's
    predictor. Written with the x0 estimate only (so an x0-predicting model never converts to eps):
    ``z_s = (sigma_s / sigma_t) z_t + alpha_s (1 - r) x0_hat`` with ``r = sigma~_s / sigma~_t = exp(lambda_t - lambda_s)``,
    which stays finite where ``alpha_t = 0`` (``r = 0``). The step to ``t = 0`` returns ``x0_hat``.

    One network evaluation per step; first order. Shapes: ``x`` is any state; ``grid`` is ``(steps + 1,)``.
    """
    coefs = grid_coefficients(ctx, grid, x)
    return single_evaluation_loop(model, x, grid, ctx, lambda x, d, i: first_order_step(coefs, x, d.x0, i), coefs)


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
    coefs = grid_coefficients(ctx, grid, x)
    last_is_zero = is_final(grid[-1])
    for i in range(n):
        t, s = coefs.times[i], coefs.times[i + 1]
        if gamma > 0.0 and tmin <= float(grid[i]) <= tmax:
            x, t = _churn(x, t, gamma, s_noise, ctx)
            d = estimate(model, x, t, ctx)
            if last_is_zero and i == n - 1:
                x = d.x0
            else:  # the churned time is off the grid: its coefficients are evaluated here
                x_pred = combine(ctx, s, d.x0, d.eps)
                d_next = estimate(model, x_pred, s, ctx)
                c_z = coef_pair(ctx, t, s, x, lambda vt, vs: vs.alpha / vt.alpha)
                c_eps = coef_pair(ctx, t, s, x, lambda vt, vs: vs.sigma - vs.alpha * vt.sigma / vt.alpha)
                x = c_z * x + c_eps * (0.5 * (d.eps + d_next.eps))
        else:
            d = estimate(model, x, t, ctx)
            if last_is_zero and i == n - 1:
                x = d.x0
            else:
                x_pred = first_order_step(coefs, x, d.x0, i)  # Euler in (y, sigma~) = DDIM
                if coefs.any(lambda v: v.alpha[i] == 0.0):
                    x = x_pred
                else:
                    d_next = estimate(model, x_pred, s, ctx)
                    c_z = coefs.coef(lambda v: v.alpha[i + 1] / v.alpha[i])
                    c_eps = coefs.coef(lambda v: 0.5 * (v.sigma[i + 1] - v.alpha[i + 1] * v.sigma[i] / v.alpha[i]))
                    x = c_z * x + c_eps * (d.eps + d_next.eps)
        if ctx.corrections:
            x = ctx.correct(x, s)
        ctx.report(i, n, t, s, x, d.x0)
    return x


def _churn(x: State, t: Tensor, gamma: float, s_noise: float, ctx: SamplerContext) -> tuple[State, Tensor]:
    """Raise ``sigma/alpha`` by ``1 + gamma``: returns ``(z_that, t_hat)`` with ``z_that ~ q(z_that | z_t)``."""
    process = shared_process(ctx, "heun", "churn")
    t64 = t.to(torch.float64)
    lam_hat = process.log_snr(t64) - 2.0 * math.log1p(gamma)
    t_hat = torch.maximum(process.t_from_log_snr(lam_hat).clamp(max=1.0), t64).to(t.dtype)
    ratio = coef_pair(ctx, t_hat, t, x, lambda vh, vt: vh.alpha / vt.alpha)
    std = coef_pair(ctx, t_hat, t, x, lambda vh, vt: vh.sigma * transition_var_ratio(vh, vt).sqrt())
    return ratio * x + (s_noise * std) * ctx.space.randn_like(x, ctx.generator), t_hat


#: dpm++3m takes a step longer than this in ``lambda = log(alpha / sigma)`` (the SNR changes by more than
#: ``e^2`` ~ 7.4x) at second order: third-order extrapolation over such steps loses to 2M (measured, see dpmpp_3m).
THIRD_ORDER_MAX_STEP = 1.0


def dpmpp_2m(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext) -> State:
    """DPM-Solver++(2M) (Lu et al. 2022): multistep, data prediction, in ``lambda = log(alpha / sigma)``.

    ``z_s = (sigma_s / sigma_t) z_t - alpha_s expm1(-h) D`` with ``h = lambda_s - lambda_t`` and
    ``D = (1 + 1/(2r)) x0_hat_t - 1/(2r) x0_hat_prev``, ``r = h_prev / h`` (``D = x0_hat_t`` on the first
    step, which is therefore first order, i.e. DDIM). The step to ``t = 0`` returns ``x0_hat``.
    One network evaluation per step; second order. For product processes every coefficient (and ``r``)
    is taken per component from that component's schedule.

    Shapes: ``x`` is any state; ``grid`` is ``(steps + 1,)``.
    """
    return _dpmpp_multistep(model, x, grid, ctx, order=2)


def dpmpp_3m(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext) -> State:
    """DPM-Solver++(3M) (Lu et al. 2022): third-order multistep data-prediction solver; 1 NFE per step.

    The exact solution of the probability-flow ODE in ``lambda = log(alpha / sigma)`` is
    ``z_s = (sigma_s / sigma_t) z_t + alpha_s e^{-h} int_0^h e^tau x0(lambda_t + tau) dtau`` (``h = lambda_s - lambda_t``).
    Expanding ``x0`` to second order around ``lambda_t`` and integrating term by term gives
    ``z_s = (sigma_s / sigma_t) z_t + alpha_s [phi_1 x0 + h phi_2 x0' - h^2 phi_3 x0'']`` with
    ``phi_1 = -expm1(-h)``, ``phi_2 = 1 - phi_1 / h``, ``phi_3 = phi_2 / h - 1/2``. The derivatives come from the
    last three estimates at ``lambda_t``, ``lambda_t - h_0``, ``lambda_t - h_0 - h_1`` (divided differences,
    exact for quadratics): ``h x0' ~ d_0 + r_0 / (r_0 + r_1) (d_0 - d_1)`` and ``h^2 x0'' ~ 2 (d_0 - d_1) / (r_0 + r_1)``,
    ``d_0 = (x0_t - x0_prev) / r_0``, ``d_1 = (x0_prev - x0_prev2) / r_1``, ``r_k = h_k / h``.
    The first two steps are DDIM and 2M, as in DPM-Solver++(3M) everywhere. Long steps are 2M steps:
    third-order extrapolation amplifies the error over a step that more than doubles in ``lambda`` over the
    previous one (``r_0 < 1/2``: the last step of a uniform-in-t grid into ``t_min``; measured on flow, uniform
    grid, 10 NFE: max abs error from the exact map 5.5 -> 0.54) or that is longer than
    :data:`THIRD_ORDER_MAX_STEP` ``= 1`` (log-SNR grids below ~12 NFE; measured on vp-cosine, 10 NFE: 1.26 -> 0.15,
    so 3M is never worse than 2M there). The step to ``t = 0`` returns ``x0_hat``.

    Option ``second_order_start`` (default ``False``): begin with a DPM-Solver++(2S) step (one extra network
    evaluation). The DDIM start leaves a local error ``O(h^2)`` that no later step removes, so the global
    order is 3 only with this start (the convergence test uses it). From ``t_max`` at 15-30 NFE the extra
    step is worth more than the start's accuracy (log-SNR grids, same NFE, max abs error from the exact map:
    vp-linear 20 NFE 0.018 with the DDIM start vs 0.022, edm 15 NFE 0.063 vs 0.081), hence the default.

    Shapes: ``x`` is any state; ``grid`` is ``(steps + 1,)``.
    """
    return _dpmpp_multistep(model, x, grid, ctx, order=3, second_order_start=bool(ctx.option("second_order_start", False)))


def _dpmpp_multistep(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext, order: int,
                     second_order_start: bool = False) -> State:
    """DPM-Solver++ multistep of ``order`` 2 or 3 (lower on the first steps); see :func:`dpmpp_3m`."""
    n = len(grid) - 1
    coefs = grid_coefficients(ctx, grid, x)
    last_is_zero = is_final(grid[-1])
    history: list[State] = []  # x0 estimates at grid points i, i - 1, i - 2 (newest first)
    for i in range(n):
        t, s = coefs.times[i], coefs.times[i + 1]
        d = estimate(model, x, t, ctx)
        x0 = d.x0
        if last_is_zero and i == n - 1:
            x = x0
        else:
            k = min(order, len(history) + 1)
            if k == 3 and coefs.any(lambda v: _long_step(v, i)):
                k = 2  # 3rd-order extrapolation over this step would amplify the error
            ratio, phi1 = coefs.first_order[i]
            if k == 1 and second_order_start and not coefs.any(lambda v: v.alpha[i] == 0.0):
                x = _midpoint_step(model, x, x0, ctx, coefs, grid, ratio, phi1)
            elif k == 1:
                x = ratio * x + phi1 * x0
            elif k == 2:  # D = x0 + h x0' / 2: DPM-Solver++(2M)'s choice of phi_2 / phi_1 ~ 1/2
                c = coefs.coef(lambda v: 0.5 * (v.lam[i + 1] - v.lam[i]) / (v.lam[i] - v.lam[i - 1]))
                x = ratio * x + phi1 * (x0 + c * (x0 - history[0]))
            else:
                w0 = coefs.coef(lambda v: _third_order_weights(v, i)[0])
                w1 = coefs.coef(lambda v: _third_order_weights(v, i)[1])
                x = ratio * x + phi1 * x0 + w0 * (x0 - history[0]) + w1 * (history[0] - history[1])
        history = [x0, *history[: order - 2]] if order > 1 else []
        if ctx.corrections:
            x = ctx.correct(x, s)
        if ctx.keep_trajectory or ctx.callback is not None:
            ctx.report(i, n, t, s, x, x0)
    return x


def _midpoint_step(model: SamplerModel, x: State, x0: State, ctx: SamplerContext, coefs: GridCoefficients, grid: Tensor,
                   ratio: Any, phi1: Any) -> State:
    """The second-order start of 3M: a DPM-Solver++(2S) step from grid point 0 to 1 (one extra evaluation).

    A first-order start would leave a local error ``O(h^2)`` that no later step removes (global order 2);
    this step's is ``O(h^3)``. The intermediate time ``t_m`` halves the step in ``lambda`` (of the first
    component for a product); with ``r = (lambda_m - lambda_t) / h`` per component,
    ``u = (sigma_m / sigma_t) z_t + alpha_m (1 - e^{-r h}) x0_t`` and
    ``z_s = (sigma_s / sigma_t) z_t + alpha_s (1 - e^{-h}) [(1 - 1/(2r)) x0_t + 1/(2r) x0(u, t_m)]``.
    """
    process = ctx.process
    parts = list(process.components.values()) if isinstance(process, ProductProcess) else [process]
    ends = grid[:2].detach().to(device="cpu", dtype=torch.float64)
    t_m = float(parts[0].t_from_log_snr(parts[0].log_snr(ends).mean().reshape(1))[0])
    mid = grid_coefficients(ctx, torch.tensor([float(ends[0]), t_m], dtype=torch.float64), x)
    u = mid.coef(lambda v: v.sigma[1] / v.sigma[0]) * x + mid.coef(lambda v: v.alpha[1] * -math.expm1(v.lam[0] - v.lam[1])) * x0
    x0_m = estimate(model, u, mid.times[1], ctx).x0
    half_inv_r = {k: 0.5 * (coefs.parts[k].lam[1] - v.lam[0]) / (v.lam[1] - v.lam[0]) for k, v in mid.parts.items()}
    c = StateDict(half_inv_r) if mid.product else half_inv_r[""]
    return ratio * x + phi1 * (x0 + c * (x0_m - x0))


def _long_step(v: GridValues, i: int) -> bool:
    """Whether the step from grid point ``i`` is too long for third order: ``h > THIRD_ORDER_MAX_STEP`` or ``h > 2 h_prev``."""
    h = v.lam[i + 1] - v.lam[i]
    return h > THIRD_ORDER_MAX_STEP or h > 2.0 * (v.lam[i] - v.lam[i - 1])


def _third_order_weights(v: GridValues, i: int) -> tuple[float, float]:
    """Weights ``(w_0, w_1)`` of ``x0_t - x0_prev`` and ``x0_prev - x0_prev2`` in the 3M step from grid point ``i``.

    ``alpha_s phi_2`` multiplies ``h x0'`` and ``-alpha_s phi_3`` multiplies ``h^2 x0''``; the divided-difference
    estimates of both (see :func:`dpmpp_3m`) are regrouped on the two differences. An infinite earlier step
    (from ``alpha = 0``) gives ``r = inf`` and drops the corresponding term.
    """
    h = v.lam[i + 1] - v.lam[i]
    h0, h1 = v.lam[i] - v.lam[i - 1], v.lam[i - 1] - v.lam[i - 2]
    r0, r1 = h0 / h, h1 / h
    a_s = v.alpha[i + 1]
    phi1 = -math.expm1(-h)
    phi2 = 1.0 - phi1 / h
    phi3 = phi2 / h - 0.5
    b = a_s * phi2          # multiplies h x0'
    c = -a_s * phi3         # multiplies h^2 x0''
    # h x0' ~ d0/r0 * (1 + r0/(r0+r1)) - d1/r1 * r0/(r0+r1); h^2 x0'' ~ 2 (d0/r0 - d1/r1) / (r0 + r1)
    w0 = b * (1.0 + r0 / (r0 + r1)) / r0 + 2.0 * c / ((r0 + r1) * r0)
    w1 = -b * (r0 / (r0 + r1)) / r1 - 2.0 * c / ((r0 + r1) * r1)
    return w0, w1


register_builtin(
    SamplerSpec("euler", euler, kind="gaussian", default_grid=EULER_GRIDS,
                description="Euler on the probability-flow ODE in EDM variables (= DDIM step), 1st order (1 NFE/step)")
)
register_builtin(
    SamplerSpec(
        "heun",
        heun,
        kind="gaussian",
        stochastic=True,
        options={"churn": 0.0, "churn_tmin": 0.0, "churn_tmax": 1.0, "s_noise": 1.0},
        default_grid=HEUN_GRIDS,
        description="EDM Heun on the probability-flow ODE, 2nd order (2 NFE/step), optional churn",
    )
)
register_builtin(
    SamplerSpec("dpm++2m", dpmpp_2m, kind="gaussian", default_grid=DPM_GRIDS, description="DPM-Solver++(2M): multistep data-prediction ODE solver, 2nd order (1 NFE/step)")
)
register_builtin(
    SamplerSpec("dpm++3m", dpmpp_3m, kind="gaussian", default_grid=DPM_GRIDS, options={"second_order_start": False},
                description="DPM-Solver++(3M): multistep data-prediction ODE solver, 3rd order (1 NFE/step)")
)
