"""Gaussian samplers that step with the x0/eps estimate: DDIM(eta) and DDPM ancestral sampling."""

from __future__ import annotations

import math

from torch import Tensor

from ..types import State
from .base import SamplerContext, SamplerModel, SamplerSpec
from .gaussian_common import GridValues, first_order_step, grid_coefficients, projected_noise, single_evaluation_loop
from .grids import DDPM_GRIDS, EULER_GRIDS
from .registry import register_builtin


def ddim(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext) -> State:
    """DDIM (Song et al. 2021) for any Gaussian schedule, option ``eta`` in ``[0, 1]``.

    ``z_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c * noise`` where ``c = eta * std(q(z_s | z_t, x_0))``.
    ``eta = 0`` is deterministic DDIM (first-order DPM-Solver, the same step as ``euler``), written from the
    x0 estimate alone; ``eta = 1`` is DDPM's ancestral step. The step to ``t = 0`` returns ``x0_hat``.

    Shapes: ``x`` is any state; ``grid`` is ``(steps + 1,)``.
    """
    eta = float(ctx.option("eta", 0.0))
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"ddim: eta must be in [0, 1] (1 is DDPM's posterior variance), got {eta}")
    coefs = grid_coefficients(ctx, grid, x)
    if eta == 0.0:
        return single_evaluation_loop(model, x, grid, ctx, lambda x, d, i: first_order_step(coefs, x, d.x0, i), coefs)

    def step(x: State, d, i: int) -> State:
        c = coefs.coef(lambda v: eta * _posterior_std(v, i))
        a_s = coefs.coef(lambda v: v.alpha[i + 1])
        c_eps = coefs.coef(lambda v: math.sqrt(max(v.sigma[i + 1] ** 2 - (eta * _posterior_std(v, i)) ** 2, 0.0)))
        return a_s * d.x0 + c_eps * d.eps + c * projected_noise(ctx, x)

    return single_evaluation_loop(model, x, grid, ctx, step, coefs)


def _transition_ratio(v: GridValues, i: int) -> float:
    """``1 - exp(LSNR_t - LSNR_s) = sigma_{t|s}^2 / sigma_t^2`` for the step from grid point ``i`` to ``i + 1``."""
    return max(-math.expm1(2.0 * (v.lam[i] - v.lam[i + 1])), 0.0)


def _posterior_std(v: GridValues, i: int) -> float:
    """Std of ``q(z_s | z_t, x_0)``: ``sigma_s sqrt(1 - (alpha_t sigma_s / (alpha_s sigma_t))^2)``."""
    return v.sigma[i + 1] * math.sqrt(_transition_ratio(v, i))


def ddpm(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext) -> State:
    """DDPM ancestral sampling (Ho et al. 2020) for any Gaussian schedule: ``z_s ~ q(z_s | z_t, x0_hat)``.

    The exact Gaussian posterior for ``s < t``, with ``lambda = log(alpha^2 / sigma^2)`` and
    ``rho = sigma_{t|s}^2 / sigma_t^2 = 1 - exp(lambda_t - lambda_s)``:
    mean ``(sigma_s / sigma_t) exp((lambda_t - lambda_s) / 2) z_t + alpha_s rho x0_hat`` and
    variance ``sigma_s^2 rho``. The step to ``t = 0`` returns ``x0_hat``. One NFE per step.

    Shapes: ``x`` is any state; ``grid`` is ``(steps + 1,)``.
    """
    coefs = grid_coefficients(ctx, grid, x)

    def step(x: State, d, i: int) -> State:
        c_z = coefs.coef(lambda v: v.sigma[i + 1] / v.sigma[i] * math.exp(v.lam[i] - v.lam[i + 1]))
        c_x0 = coefs.coef(lambda v: v.alpha[i + 1] * _transition_ratio(v, i))
        std = coefs.coef(lambda v: _posterior_std(v, i))
        return c_z * x + c_x0 * d.x0 + std * projected_noise(ctx, x)

    return single_evaluation_loop(model, x, grid, ctx, step, coefs)


register_builtin(
    SamplerSpec("ddim", ddim, kind="gaussian", stochastic=True, options={"eta": 0.0}, default_grid=EULER_GRIDS, description="DDIM(eta): eta=0 deterministic, eta=1 DDPM ancestral")
)
register_builtin(
    SamplerSpec("ddpm", ddpm, kind="gaussian", stochastic=True, default_grid=DDPM_GRIDS, description="DDPM ancestral sampling from the exact Gaussian posterior q(z_s | z_t, x0_hat)")
)
