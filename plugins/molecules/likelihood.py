"""The negative log-likelihood bound (VLB, nats per molecule) of the ``T``-step ancestral model of a molecule
product process, with the centre-of-mass subspace correction.

The generative model is the one ``mixed-ancestral`` runs on the uniform grid ``t_k = k / T``: the prior at
``t = 1`` (positions ``N(0, sigma_1^2 P)``, categorical fields their kernel's limit ``pi``), ancestral steps
``p(x_{t_{k-1}} | x_{t_k})`` built from the denoiser's estimates, and a last step to data. Then

``-log p(x_0) <= KL(q(x_1 | x_0) || p(x_1)) + sum_{k=2}^{T} E KL(q(x_{t_{k-1}} | x_{t_k}, x_0) || p(x_{t_{k-1}} | x_{t_k}))
+ E[-log p(x_0 | x_{t_1})]``, every term summed over the components (independent given ``x_t``):

* positions, ``k >= 2``: both kernels are Gaussians on the CoM subspace with the DDPM posterior variance ``c^2``
  and means that differ by ``A (x_0 - x0_hat)`` with ``A = alpha_s - sqrt(sigma_s^2 - c^2) alpha_t / sigma_t``
  (the step of the sampler), so the KL is ``A^2 |x_0 - x0_hat|^2 / (2 c^2)``;
* positions, ``k = 1``: ``p(x_0 | x_{t_1}) = N(x0_hat, (sigma_1 / alpha_1)^2 P)`` (EDM's choice for continuous
  features), whose normaliser counts ``3 (n - 1)`` degrees of freedom: the CoM correction;
* categorical fields: the D3PM terms of :func:`polydiff.losses.discrete_time_elbo_term` (exact posteriors;
  the ``k = 1`` term is ``-log p(x_0 | x_{t_1})``) and the exact prior KL.

Each ``E`` is one draw of ``x_{t_k}`` per term (a Monte-Carlo estimate whose mean is the bound). The bound is
invariant under rotations, reflections, translations and permutations when the denoiser is equivariant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from polydiff.losses import discrete_time_elbo_term
from polydiff.processes import DiscreteProcess, GaussianProcess, ProductProcess
from polydiff.spaces import CompositeSpace


@dataclass(frozen=True)
class NLLResult:
    """Per-molecule bound (``(B,)`` each): ``nats`` in all, and its ``prior``, ``diffusion`` (``k >= 2``) and
    ``reconstruction`` (``k = 1``) parts; ``per_component`` nats ``{name: (B,)}``."""

    nats: Tensor
    prior: Tensor
    diffusion: Tensor
    reconstruction: Tensor
    per_component: dict[str, Tensor]


def _gaussian_terms(p: GaussianProcess, x0: Tensor, x0_hat: Tensor, t: Tensor, s: Tensor, space: Any) -> Tensor:
    vt, vs = p.schedule(t.to(torch.float64)), p.schedule(s.to(torch.float64))
    err = space.sum((x0 - x0_hat).to(torch.float64) ** 2)  # |x0 - x0_hat|^2 in the subspace, (B,)
    if float(s[0]) == 0.0:  # reconstruction: N(x0_hat, (sigma/alpha)^2) on 3 (n - 1) dof
        var = (vt.sigma / vt.alpha) ** 2
        return 0.5 * err / var + 0.5 * space.dof(x0) * torch.log(2 * math.pi * var)
    var_ts = vt.sigma**2 - (vt.alpha / vs.alpha) ** 2 * vs.sigma**2  # sigma_{t|s}^2
    c2 = var_ts * vs.sigma**2 / vt.sigma**2
    a = vs.alpha - (vs.sigma**2 - c2).clamp(min=0).sqrt() * vt.alpha / vt.sigma
    return a**2 * err / (2 * c2)


def _discrete_prior_kl(p: DiscreteProcess, x0: Tensor, space: Any) -> Tensor:
    one = torch.ones(space.batch_size(x0), dtype=torch.float64, device=x0.device)
    q = p.marginal_probs(x0, space.expand(p.schedule(one).alpha, x0).expand_as(x0))  # (..., K)
    pi = p.limit_probs(x0).expand_as(q)
    kl = torch.where(q > 0, q * (q.clamp(min=1e-300).log() - pi.clamp(min=1e-300).log()), torch.zeros_like(q)).sum(-1)
    return space.sum(kl)


@torch.no_grad()
def molecule_nll(model: Any, x0: Any, space: CompositeSpace, cond: dict[str, Any] | None = None, *, steps: int = 100,
                 generator: Any = None) -> NLLResult:
    """The VLB of the module docstring for clean molecules ``x0`` (a composite state in ``space``).

    Args:
        model: a :class:`polydiff.Denoiser` of a :class:`~polydiff.processes.ProductProcess` (Gaussian positions,
            discrete other fields); x0: ``{"pos": (N, 3), ...}`` with positions centred per molecule.
        space: the molecules' composite space (``pos`` a ``ZeroCoMSpace``); cond: the network's graph inputs.
        steps: ``T``. generator: one generator or one per molecule (one draw of ``x_{t_k}`` per term).
    """
    process = model.process
    if not isinstance(process, ProductProcess):
        raise ValueError("molecule_nll needs a product process")
    b = space.batch_size(x0)
    dev = x0["pos"].device
    parts = {k: torch.zeros(b, dtype=torch.float64, device=dev) for k in process.components}
    prior = torch.zeros(b, dtype=torch.float64, device=dev)
    diffusion = torch.zeros(b, dtype=torch.float64, device=dev)
    recon = torch.zeros(b, dtype=torch.float64, device=dev)
    for name, p in process.components.items():
        if isinstance(p, GaussianProcess):
            one = torch.ones(b, dtype=torch.float64, device=dev)
            v = p.schedule(one)
            kl = space[name].sum(x0[name].to(torch.float64) ** 2) * v.alpha**2 / (2 * v.sigma**2)  # N(alpha x0, s^2) vs N(0, s^2)
        else:
            kl = _discrete_prior_kl(p, x0[name], space[name])
        parts[name] += kl
        prior += kl
    dtype = x0["pos"].dtype
    for k in range(1, steps + 1):
        t = torch.full((b,), k / steps, dtype=dtype, device=dev)
        s = torch.full((b,), (k - 1) / steps, dtype=dtype, device=dev)
        noised = process.noise(x0, t, generator=generator, space=space, cond=cond)
        out = model(noised.x_t, t, cond, space=space)
        d = model.interpret(out, noised.x_t, t, cond, space=space)
        for name, p in process.components.items():
            if isinstance(p, GaussianProcess):
                term = _gaussian_terms(p, x0[name], d[name].x0, t, s, space[name])
            else:
                # T * KL at the grid time t_k (its k = 1 case is -log p(x0 | x_{t_1})); divide T back out
                mid = torch.full_like(t, (k - 0.5) / steps)  # inside grid cell k: the term's time snaps to t_k exactly
                term, _ = discrete_time_elbo_term(p, out[name], x0[name], noised.x_t[name], mid, space[name], steps=steps)
                term = term.to(torch.float64) / steps
            parts[name] += term
            if k == 1:
                recon += term
            else:
                diffusion += term
    return NLLResult(nats=prior + diffusion + recon, prior=prior, diffusion=diffusion, reconstruction=recon, per_component=parts)


__all__ = ["NLLResult", "molecule_nll"]
