"""τ-leaping for the reverse CTMC of masked (absorbing) and uniform diffusion.

In continuous time a masked token at time ``t`` is revealed with rate
``r_t = -alpha'_t / (1 - alpha_t)`` and then takes value ``j`` with probability ``p(x_0 = j | x_t)``
(the reverse rate to ``j`` is ``r_t p(x_0 = j | x_t)``). τ-leaping freezes the rates at the start of
each interval ``[s, t]``: the state of the other tokens and the network output (as in any τ-leaping
step) *and* the schedule's rate ``r_t`` (first order in time), so each masked token jumps
independently with probability ``1 - exp(-(t - s) r_t)`` — a Poisson number of events with the
integrated frozen rate, of which an absorbing token can take only the first — to a value drawn from
``p(x_0 | x_t)``. The final step to ``t = 0`` reveals every remaining mask.

Uniform kernel: the forward CTMC resamples a token uniformly at rate ``beta_t = -alpha'_t / alpha_t``,
so the reverse rate from ``x`` to ``y != x`` is ``beta_t / V * sum_x0 p(x_0 | x_t) q_t(y | x_0) / q_t(x | x_0)``
(computed in ``O(V)`` per token). The marginal kernel (resampling from ``m`` instead of uniformly) is the
same with ``1/V`` replaced by ``m_x`` in front and ``m_y`` inside ``q_t``. Over ``[s, t]`` a token leaves ``x`` with probability
``1 - exp(-(t - s) sum_y R(x -> y))`` (rates frozen at ``t``, at most one jump per step) to ``y`` in
proportion to ``R(x -> y)``.

Approximations (both vanish as the steps shrink, so ``exact=True`` in the limit): the rate is frozen at
``t`` (integrating the schedule's rate exactly would give ``(alpha_s - alpha_t)/(1 - alpha_t)``, i.e.
the ancestral step), and tokens revealed in one interval are drawn independently.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..processes import DiscreteProcess, MarginalProcess, MaskedProcess, UniformProcess
from .base import SamplerContext, SamplerModel, SamplerSpec
from .discrete_common import draw, is_zero, require_discrete, unmask_probs, x0_probs
from .registry import register_builtin


def tau_leaping_jump_prob(process: MaskedProcess, t: Tensor, s: Tensor) -> Tensor:
    """Per-sample probability ``1 - exp(-(t - s) r_t)`` that a masked token is revealed in ``[s, t]``; shape ``(B,)``."""
    v = process.schedule(t)
    rate = (-v.d_alpha.to(torch.float64)) / (1.0 - v.alpha.to(torch.float64)).clamp(min=1e-300)
    return -torch.expm1(-(t.to(torch.float64) - s.to(torch.float64)) * rate)


def uniform_leap_probs(process: DiscreteProcess, x: Tensor, p0: Tensor, t: Tensor, s: Tensor, ctx: SamplerContext) -> Tensor:
    """Per-token τ-leaping distribution over ``vocab_size`` values for a uniform or marginal kernel, float64 ``(B, ..., V)``.

    The forward CTMC redraws a token from ``m`` (:meth:`~polydiff.processes.DiscreteProcess.limit_probs`; uniform:
    ``1/V``) at rate ``beta_t``, so the reverse rate from ``x`` to ``y != x`` is
    ``beta_t m_x sum_x0 p(x_0 | x_t) q_t(y | x_0) / q_t(x | x_0)`` with ``q_t(y | x_0) = alpha_t [y = x_0] + (1 - alpha_t) m_y``.
    """
    v = process.vocab_size
    m = process.limit_probs(x).to(torch.float64)  # (V,)
    val = process.schedule(t)
    a = ctx.space.expand(val.alpha.to(torch.float64), x).unsqueeze(-1)
    beta = ctx.space.expand((-val.d_alpha.to(torch.float64) / val.alpha.to(torch.float64).clamp(min=1e-300)), x).unsqueeze(-1)
    dt = ctx.space.expand((t - s).to(torch.float64), x).unsqueeze(-1)
    onehot = torch.nn.functional.one_hot(x, v).to(torch.float64)
    m_x = m[x].unsqueeze(-1)  # (B, ..., 1)
    w = p0.to(torch.float64) / (a * onehot + (1 - a) * m_x)  # p(x_0 | x_t) / q_t(x | x_0)
    rates = beta * m_x * (a * w + (1 - a) * m * w.sum(-1, keepdim=True)) * (1 - onehot)
    total = rates.sum(-1, keepdim=True)
    leave = -torch.expm1(-dt * total)
    return leave * rates / total.clamp(min=1e-300) + (1 - leave) * onehot


def tau_leaping(model: SamplerModel, x: Tensor, grid: Tensor, ctx: SamplerContext) -> Tensor:
    """τ-leaping for masked, uniform and marginal diffusion (see module docstring).

    Args:
        model: returns :class:`~polydiff.denoiser.DiscreteDenoised`; x: tokens ``(B, ...)`` at ``grid[0]``.
        grid: descending times ``(steps + 1,)``; ctx: the sampler context.

    Returns:
        tokens at ``grid[-1]``, shape ``(B, ...)``, int64 (no mask left when ``grid[-1] = 0``).
    """
    process = require_discrete(ctx, "tau-leaping")
    if not isinstance(process, (MaskedProcess, UniformProcess, MarginalProcess)):
        raise ValueError(f"sampler 'tau-leaping' supports the masked, uniform and marginal processes, got {process.name!r}")
    n = len(grid) - 1
    for i in range(n):
        t, s = ctx.times(grid[i], x), ctx.times(grid[i + 1], x)
        p0 = x0_probs(model, x, t, ctx)
        if isinstance(process, MaskedProcess):
            p_jump = torch.ones_like(t) if is_zero(grid[i + 1]) else tau_leaping_jump_prob(process, t, s)
            probs = unmask_probs(process, x, p0, ctx.space.expand(p_jump, x))
        else:
            probs = uniform_leap_probs(process, x, p0, t, s, ctx)
        x = ctx.correct(draw(ctx, x, probs), s)
        ctx.report(i, n, t, s, x, p0)
    return x


register_builtin(
    SamplerSpec(
        "tau-leaping",
        tau_leaping,
        kind="discrete",
        exact=True,
        stochastic=True,
        description="tau-leaping of the masked / uniform reverse CTMC (rates frozen per step; exact as steps grow)",
    )
)
