"""Gaussian samplers that step with the x0/eps estimate: DDIM(eta) and DDPM ancestral sampling."""

from __future__ import annotations

import torch
from torch import Tensor

from ..types import State
from .base import SamplerContext, SamplerModel, SamplerSpec
from .gaussian_common import coef, coef_pair, posterior_std, projected_noise, single_evaluation_loop, transition_var_ratio
from .registry import register_builtin


def ddim(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext) -> State:
    """DDIM (Song et al. 2021) for any Gaussian schedule, option ``eta`` in ``[0, 1]``.

    ``z_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c * noise`` where ``c = eta * std(q(z_s | z_t, x_0))``.
    ``eta = 0`` is deterministic DDIM (first-order DPM-Solver); ``eta = 1`` is DDPM's ancestral step.
    The step to ``t = 0`` returns ``x0_hat``.
    """
    eta = float(ctx.option("eta", 0.0))
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"ddim: eta must be in [0, 1] (1 is DDPM's posterior variance), got {eta}")

    def step(x: State, d, t: Tensor, s: Tensor) -> State:
        a_s = coef(ctx, s, x, lambda v: v.alpha)
        sig_s = coef(ctx, s, x, lambda v: v.sigma)
        c = coef_pair(ctx, t, s, x, lambda vt, vs: eta * posterior_std(vt, vs))
        x_s = a_s * d.x0 + (sig_s * sig_s - c * c) ** 0.5 * d.eps
        return x_s + c * projected_noise(ctx, x) if eta > 0 else x_s

    return single_evaluation_loop(model, x, grid, ctx, step)


def ddpm(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext) -> State:
    """DDPM ancestral sampling (Ho et al. 2020) for any Gaussian schedule: ``z_s ~ q(z_s | z_t, x0_hat)``.

    The exact Gaussian posterior for ``s < t``, with ``lambda = log(alpha^2 / sigma^2)`` and
    ``rho = sigma_{t|s}^2 / sigma_t^2 = 1 - exp(lambda_t - lambda_s)``:
    mean ``(sigma_s / sigma_t) exp((lambda_t - lambda_s) / 2) z_t + alpha_s rho x0_hat`` and
    variance ``sigma_s^2 rho``. The step to ``t = 0`` returns ``x0_hat``. One NFE per step.

    Shapes: ``x`` is any state; ``grid`` is ``(steps + 1,)``.
    """

    def step(x: State, d, t: Tensor, s: Tensor) -> State:
        c_z = coef_pair(ctx, t, s, x, lambda vt, vs: vs.sigma / vt.sigma * torch.exp(0.5 * (vt.log_snr - vs.log_snr)))
        c_x0 = coef_pair(ctx, t, s, x, lambda vt, vs: vs.alpha * transition_var_ratio(vt, vs))
        std = coef_pair(ctx, t, s, x, lambda vt, vs: vs.sigma * transition_var_ratio(vt, vs).sqrt())
        return c_z * x + c_x0 * d.x0 + std * projected_noise(ctx, x)

    return single_evaluation_loop(model, x, grid, ctx, step)


register_builtin(
    SamplerSpec("ddim", ddim, kind="gaussian", stochastic=True, options={"eta": 0.0}, description="DDIM(eta): eta=0 deterministic, eta=1 DDPM ancestral")
)
register_builtin(
    SamplerSpec("ddpm", ddpm, kind="gaussian", stochastic=True, description="DDPM ancestral sampling from the exact Gaussian posterior q(z_s | z_t, x0_hat)")
)
