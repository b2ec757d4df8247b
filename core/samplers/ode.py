"""Probability-flow ODE samplers: Euler (first order), Heun (EDM, second order, with churn), DPM-Solver++(2M)."""

from __future__ import annotations

from torch import Tensor

from ..types import State
from .base import SamplerContext, SamplerModel, SamplerSpec
from .gaussian_common import estimate, is_final, velocity
from .registry import register_builtin


def euler(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext) -> State:
    """Euler steps on ``dz/dt = d_alpha x0_hat + d_sigma eps_hat``; the step to ``t = 0`` returns ``x0_hat``.

    One network evaluation per step. First order in the step size.
    """
    n = len(grid) - 1
    for i in range(n):
        t, t_next = ctx.times(grid[i], _leaf(x)), ctx.times(grid[i + 1], _leaf(x))
        d = estimate(model, x, t, ctx)
        if is_final(grid[i + 1]):
            x = d.x0
        else:
            x = x + _dt(ctx, t, t_next, x) * velocity(ctx, t, d)
        x = ctx.correct(x, t_next)
        ctx.report(i, n, t, t_next, x, d.x0)
    return x


def _dt(ctx: SamplerContext, t: Tensor, t_next: Tensor, x: State) -> State:
    """The step ``t_next - t`` expanded onto the state."""
    return ctx.space.expand((t_next - t).to(_leaf(x).dtype), x)


def _leaf(x: State) -> Tensor:
    from ..state import first_leaf

    return first_leaf(x)


register_builtin(SamplerSpec("euler", euler, kind="gaussian", description="Euler on the probability-flow ODE (1 NFE/step)"))
