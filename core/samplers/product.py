"""Ancestral sampling of product (mixed continuous / discrete) processes, as in MiDi-style molecules.

One network call per step returns a :class:`~polydiff.denoiser.ProductDenoised`; every component
then takes its own exact ancestral step from ``t`` to ``s``:

* Gaussian components (standard coordinates, no mean offset): the DDPM step
  ``z_s ~ q(z_s | z_t, x_0 = x0_hat)``, i.e. ``z_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c n`` with
  ``c`` the posterior std and ``n`` drawn by ``space.randn_like`` (projected: zero centre of mass,
  zero on padding); the step to ``t = 0`` returns ``x0_hat``;
* discrete components: ``x_s ~ p(x_s | x_t)`` by :meth:`DiscreteProcess.posterior_probs` in float64
  (masked components leave no mask after the step to ``t = 0``).

A lone discrete process is sampled by plain ``ancestral``. Randomness is drawn component by component in the process's key order, so per-sample generators
keep results independent of the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..denoiser import DiscreteDenoised, ProductDenoised
from ..parameterisation import Denoised
from ..processes import DiscreteProcess, GaussianProcess, ProductProcess, sample_categorical
from ..spaces import CompositeSpace
from ..state import StateDict, tree_leaves
from ..types import State
from .base import SamplerContext, SamplerModel, SamplerSpec
from .discrete_common import is_zero, keep_padding, reverse_probs
from .gaussian_common import posterior_std
from .registry import register_builtin


def _check(ctx: SamplerContext) -> ProductProcess:
    process = ctx.process
    if not isinstance(process, ProductProcess):
        raise ValueError(f"sampler 'mixed-ancestral' needs a ProductProcess, got {process.name!r}")
    if not isinstance(ctx.space, CompositeSpace):
        raise ValueError("sampler 'mixed-ancestral' needs a CompositeSpace")
    for k, p in process.components.items():
        if isinstance(p, GaussianProcess):
            if p.has_offset:
                raise ValueError(f"mixed-ancestral: component {k!r} has a mean offset; only offset-free Gaussian components are supported")
        elif not isinstance(p, DiscreteProcess):
            raise ValueError(f"mixed-ancestral: component {k!r} is {type(p).__name__}; expected a Gaussian or discrete process")
    return process


def _time_like(x: State) -> Tensor:
    leaves = tree_leaves(x)
    return next((leaf for leaf in leaves if leaf.is_floating_point()), leaves[0])


def mixed_ancestral(model: SamplerModel, x: State, grid: Tensor, ctx: SamplerContext) -> State:
    """Ancestral sampling of a product process (see module docstring).

    Args:
        model: returns :class:`~polydiff.denoiser.ProductDenoised`; x: composite state at ``grid[0]``.
        grid: descending times ``(steps + 1,)``; ctx: the sampler context (composite space).

    Returns:
        the composite state at ``grid[-1]``.
    """
    if isinstance(ctx.process, DiscreteProcess):  # a lone discrete process: plain ancestral sampling
        from .discrete_ancestral import ancestral

        return ancestral(model, x, grid, ctx)  # type: ignore[arg-type]
    process = _check(ctx)
    space = ctx.space
    assert isinstance(space, CompositeSpace)
    n = len(grid) - 1
    for i in range(n):
        like = _time_like(x)
        t, s = ctx.times(grid[i], like), ctx.times(grid[i + 1], like)
        d = model.denoise(x, t, ctx.cond, space=space)
        if not isinstance(d, ProductDenoised):
            raise TypeError(f"mixed-ancestral got {type(d).__name__} from the model; expected ProductDenoised")
        out = {}
        for k, p in process.components.items():
            xk, dk, sp = x[k], d[k], space[k]
            if isinstance(p, GaussianProcess):
                if not isinstance(dk, Denoised):
                    raise TypeError(f"component {k!r}: expected a Gaussian estimate, got {type(dk).__name__}")
                if is_zero(grid[i + 1]):
                    out[k] = dk.x0
                    continue
                vt, vs = p.schedule(t), p.schedule(s)
                c = sp.expand(posterior_std(vt, vs).to(xk.dtype), xk)
                sig_s = sp.expand(vs.sigma.to(xk.dtype), xk)
                a_s = sp.expand(vs.alpha.to(xk.dtype), xk)
                out[k] = a_s * dk.x0 + (sig_s * sig_s - c * c).clamp(min=0).sqrt() * dk.eps + c * sp.randn_like(xk, ctx.generator)
            else:
                assert isinstance(p, DiscreteProcess)
                if not isinstance(dk, DiscreteDenoised):
                    raise TypeError(f"component {k!r}: expected a DiscreteDenoised estimate, got {type(dk).__name__}")
                probs = reverse_probs(p, sp, xk, dk.probs, t.to(torch.float64), s.to(torch.float64), final=is_zero(grid[i + 1]))
                out[k] = keep_padding(sp, xk, sample_categorical(probs, sp.rand_like(xk, ctx.generator)))
        x = ctx.correct(StateDict(out), s)
        ctx.report(i, n, t, s, x, d)
    return x


register_builtin(
    SamplerSpec(
        "mixed-ancestral",
        mixed_ancestral,
        kind="discrete",
        exact=True,
        stochastic=True,
        supports_product=True,
        description="ancestral sampling of product processes: DDPM steps for Gaussian parts, posterior draws for discrete parts",
    )
)
