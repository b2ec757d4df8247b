"""Ancestral sampling of discrete (masked / uniform) diffusion, with optional network-output caching.

One step from ``t`` to ``s < t`` draws every token from the model's reverse kernel
``p(x_s | x_t) = sum_x0 q(x_s | x_t, x_0) p(x_0 | x_t)`` (:meth:`DiscreteProcess.posterior_probs`),
independently per token, in float64. For the masked process a masked token is revealed with
probability ``(alpha_s - alpha_t) / (1 - alpha_t)`` and then takes a value drawn from ``p(x_0 | x_t)``;
the final step (to ``t = 0``) reveals every remaining mask.

Exactness: given the exact denoiser the only error is that tokens revealed in the same step are drawn
independently of each other (a factorisation error); it vanishes as the number of steps grows, when
at most one token changes per step (MDLM, D3PM).

Caching (``cached``, masked process only; MDLM's ``ddpm_cache``, RADD's cache): when no token changed
in a step the next step reuses the previous ``p(x_0 | x_t)`` instead of calling the network. This is
*exact* when the network does not depend on ``t`` (RADD's time-independent parameterisation, where
``p(x_0 | x_t)`` depends only on the unmasked tokens; the exact denoiser of the masked process is of
this kind). With a time-conditioned network it is an approximation: the reused output was computed at
an earlier ``t`` (MDLM caches anyway). The uniforms drawn are the same with and without the cache, so
for a time-independent network ``cached`` and ``ancestral`` return identical samples from the same
generator; :attr:`SampleResult.nfe` counts only real network calls (RADD's E-NFE). The cache is per
sample: a call evaluates only the samples whose tokens changed (dense and padded spaces; other spaces
call the network on the whole batch when any sample changed), so its cost is proportional to them.
"""

from __future__ import annotations

from torch import Tensor

from .base import SamplerContext, SamplerModel, SamplerSpec
from .discrete_common import MaskedOnlySpec, draw, is_zero, require_discrete, reverse_probs, x0_probs, x0_probs_rows
from .registry import register_builtin


def declares_time_independent(model: object) -> bool:
    """Whether ``model`` or anything it wraps (``.model``, ``.inner``, ``.net``) sets ``time_independent = True``."""
    seen: set[int] = set()
    obj: object | None = model
    while obj is not None and id(obj) not in seen:
        seen.add(id(obj))
        if getattr(obj, "time_independent", False) is True:
            return True
        obj = next((o for o in (getattr(obj, k, None) for k in ("model", "inner", "net")) if o is not None), None)
    return False


def _ancestral(model: SamplerModel, x: Tensor, grid: Tensor, ctx: SamplerContext, *, cache: bool, name: str) -> Tensor:
    process = require_discrete(ctx, name, masked_only=cache)
    if cache and ctx.option("require_time_independent", False) and not declares_time_independent(model):
        raise ValueError(
            "cached: require_time_independent=True but the model does not declare time_independent=True; "
            "with a time-conditioned network caching is an approximation"
        )
    n = len(grid) - 1
    cached_x: Tensor | None = None
    cached_p0: Tensor | None = None
    for i in range(n):
        t, s = ctx.times(grid[i], x), ctx.times(grid[i + 1], x)
        if cache and cached_x is not None and cached_p0 is not None:
            changed = (cached_x != x).reshape(x.shape[0], -1).any(dim=1)
            if not bool(changed.any()):
                p0 = cached_p0
            else:  # call the network on the samples whose tokens changed, reuse the rest
                rows = changed.nonzero(as_tuple=True)[0]
                fresh = x0_probs_rows(model, x, t, ctx, rows) if rows.numel() < x.shape[0] else None
                if fresh is None:
                    p0 = x0_probs(model, x, t, ctx)
                else:
                    p0 = cached_p0.clone()
                    p0[rows] = fresh
            cached_x, cached_p0 = x, p0
        else:
            p0 = x0_probs(model, x, t, ctx)
            cached_x, cached_p0 = x, p0
        assert p0 is not None
        probs = reverse_probs(process, ctx.space, x, p0, t, s, final=is_zero(grid[i + 1]))
        x = ctx.correct(draw(ctx, x, probs), s)
        ctx.report(i, n, t, s, x, p0)
    return x


def ancestral(model: SamplerModel, x: Tensor, grid: Tensor, ctx: SamplerContext) -> Tensor:
    """Ancestral sampling ``x_s ~ p(x_s | x_t)`` for masked and uniform processes (see module docstring).

    Args:
        model: returns :class:`~polydiff.denoiser.DiscreteDenoised`; x: tokens ``(B, ...)`` at ``grid[0]``.
        grid: descending times ``(steps + 1,)``; ctx: the sampler context.

    Returns:
        tokens at ``grid[-1]``, shape ``(B, ...)``, int64.
    """
    return _ancestral(model, x, grid, ctx, cache=False, name="ancestral")


def cached(model: SamplerModel, x: Tensor, grid: Tensor, ctx: SamplerContext) -> Tensor:
    """Masked ancestral sampling that skips the network while no token changes (exact for time-independent networks).

    Option ``require_time_independent`` (default ``False``, MDLM's behaviour of caching anyway): raise a
    ``ValueError`` unless the model, or the network it wraps, declares ``time_independent = True``.
    """
    return _ancestral(model, x, grid, ctx, cache=True, name="cached")


register_builtin(
    SamplerSpec(
        "ancestral",
        ancestral,
        kind="discrete",
        exact=True,
        stochastic=True,
        description="discrete ancestral sampling p(x_s|x_t) (masked and uniform kernels; D3PM/MDLM)",
    )
)
register_builtin(
    MaskedOnlySpec(
        "cached",
        cached,
        kind="discrete",
        exact=True,
        stochastic=True,
        options={"require_time_independent": False},
        description="masked ancestral sampling reusing the network output while no token changes (MDLM ddpm_cache, RADD); exact for time-independent networks",
    )
)
