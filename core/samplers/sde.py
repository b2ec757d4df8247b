"""Reverse-SDE samplers: Euler–Maruyama and predictor–corrector (Song et al. 2021) for any Gaussian schedule.

The reverse SDE in standard coordinates is ``dz = [f z - g^2 score] dt + g dw_bar`` with
``f = d log alpha / dt``, ``g^2 = d sigma^2/dt - 2 f sigma^2`` (:class:`~polydiff.schedules.ScheduleValues`)
and ``score = -eps_hat / sigma``. Both samplers return ``x0_hat`` on the step to ``t = 0``.
"""

from __future__ import annotations

from torch import Tensor

from ..state import first_leaf
from ..types import State
from .base import SamplerContext, SamplerModel, SamplerSpec
from .gaussian_common import check_finite, coef, estimate, is_final, projected_noise, single_evaluation_loop
from .registry import register_builtin


def euler_maruyama(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext) -> State:
    """Euler–Maruyama on the reverse SDE; one NFE per step; weak order 1.

    ``z_s = z_t + (s - t) (f z_t + g^2 eps_hat / sigma_t) + g sqrt(t - s) xi``. The reverse SDE is singular
    where ``alpha_t = 0`` (``t = 1`` of the flow schedule): such a grid is rejected with a ``ValueError``.

    Shapes: ``x`` is any state; ``grid`` is ``(steps + 1,)``.
    """
    return single_evaluation_loop(model, x, grid, ctx, lambda x, d, t, s: _em_step(ctx, x, d.eps, t, s, "euler-maruyama"))


def _em_step(ctx: SamplerContext, x: State, eps: State, t: Tensor, s: Tensor, name: str) -> State:
    """One Euler–Maruyama step of the reverse SDE from ``t`` to ``s < t``."""
    dt = s - t  # negative, shape (B,)
    c_x = coef(ctx, t, x, lambda v: 1.0 + dt * check_finite(v.drift, "the drift f(t)", name, t))
    c_eps = coef(ctx, t, x, lambda v: dt * check_finite(v.diffusion_sq / v.sigma, "g(t)^2 / sigma_t", name, t))
    c_noise = coef(ctx, t, x, lambda v: (v.diffusion_sq.clamp(min=0.0) * (-dt)).sqrt())
    return c_x * x + c_eps * eps + c_noise * projected_noise(ctx, x)


def predictor_corrector(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext) -> State:
    """Predictor–corrector sampling (Song et al. 2021, Alg. 1/2) for any Gaussian schedule.

    At each grid time ``t``: ``corrector_steps`` Langevin steps on ``p_t`` (1 NFE each), then one
    Euler–Maruyama (reverse-diffusion) predictor step to the next time (1 NFE; the step to ``t = 0``
    returns ``x0_hat``). NFE: ``steps * (1 + corrector_steps)``.

    Step size: Song et al.'s signal-to-noise rule ``epsilon = 2 (snr ||xi|| / ||score||)^2`` uses norms
    averaged over the *batch*, which makes a sample depend on its batch; with per-sample norms the step
    depends on the state, and without a Metropolis correction that biases Langevin's stationary law
    (measured: +12 % std on a 16-dimensional Gaussian). We therefore use the rule at its expected norms in
    the noise-dominated regime, ``||xi||^2 ~ dof`` and ``||score||^2 ~ dof / sigma_t^2``:
    ``epsilon = 2 (snr sigma_t)^2`` (times ``alpha_i = 1``), per component for product processes. Then
    ``epsilon <= 2 snr^2 Var`` for any data, and the Langevin discretisation inflates variances by at most
    a factor ``1 / (1 - snr^2)``.

    Options:
        corrector_steps: Langevin steps per grid time (default 1). snr: the signal-to-noise ratio (0.16).

    Shapes: ``x`` is any state; ``grid`` is ``(steps + 1,)``.
    """
    k = ctx.option("corrector_steps", 1)
    snr = float(ctx.option("snr", 0.16))
    if int(k) != k or int(k) < 0:
        raise ValueError(f"pc: corrector_steps must be a non-negative integer, got {k!r}")
    if snr <= 0.0:
        raise ValueError(f"pc: snr must be > 0, got {snr}")
    n = len(grid) - 1
    for i in range(n):
        leaf = first_leaf(x)
        t, s = ctx.times(grid[i], leaf), ctx.times(grid[i + 1], leaf)
        for _ in range(int(k)):
            x = _langevin_step(model, x, t, snr, ctx)
        d = estimate(model, x, t, ctx)
        x = d.x0 if is_final(grid[i + 1]) else _em_step(ctx, x, d.eps, t, s, "pc")
        x = ctx.correct(x, s)
        ctx.report(i, n, t, s, x, d.x0)
    return x


def _langevin_step(model: SamplerModel, x: State, t: Tensor, snr: float, ctx: SamplerContext) -> State:
    """``z + epsilon score + sqrt(2 epsilon) xi`` with ``epsilon = 2 (snr sigma_t)^2`` and ``score = -eps_hat / sigma_t``.

    Written without dividing by ``sigma_t``: ``z - 2 snr^2 sigma_t eps_hat + 2 snr sigma_t xi``.
    """
    d = estimate(model, x, t, ctx)
    sigma = coef(ctx, t, x, lambda v: v.sigma)
    return x - (2.0 * snr**2) * sigma * d.eps + (2.0 * snr) * sigma * projected_noise(ctx, x)


register_builtin(
    SamplerSpec(
        "euler-maruyama",
        euler_maruyama,
        kind="gaussian",
        stochastic=True,
        description="Euler-Maruyama on the reverse SDE (1 NFE/step)",
    )
)
register_builtin(
    SamplerSpec(
        "pc",
        predictor_corrector,
        kind="gaussian",
        stochastic=True,
        options={"corrector_steps": 1, "snr": 0.16},
        description="predictor-corrector: reverse-SDE Euler-Maruyama predictor + Langevin corrector (snr rule)",
    )
)
