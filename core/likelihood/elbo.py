"""Evidence lower bounds of discrete diffusion models, in nats per sample, nats per token and bits per token.

Masked (absorbing) process — the continuous-time NELBO (MDLM, RADD):

    -ELBO(x_0) = ∫_0^1 -alpha'_t / (1 - alpha_t) · E_{x_t} [ sum_{i: x_t^i = mask} -log p(x_0^i | x_t) ] dt,

estimated by Monte Carlo with ``n_t`` stratified times per sample. Samplers start from the all-mask
state at ``t = 1`` while ``alpha_1 = eps > 0`` leaves a token clean with probability ``eps`` under
``q``; the prior term ``KL(q(x_1 | x_0) || all-mask)`` would then be infinite. We therefore evaluate the
bound of the generative process the samplers actually run: its forward kernel is the renormalised
``alpha~_t = (alpha_t - alpha_1) / (1 - alpha_1)`` (so ``x_1`` is all-mask and the prior term is exactly
0) with the same hazard ``-alpha~'_t / (1 - alpha~_t) = -alpha'_t / (1 - alpha_t)``; the network is still
queried at ``t``. With ``alpha_1 = 0`` this is MDLM's estimator exactly; otherwise it differs from it by
``O(alpha_1)`` and, unlike it, is a proper bound. For an exact, time-independent denoiser it equals
``-log p(x_0)`` (the NELBO is the any-order autoregressive loss averaged over orders).

Uniform process — the ``steps``-step discrete-time ELBO from exact posteriors (D3PM):

    -ELBO = E[-log p(x_0 | x_{1/T})] + sum_{k=2}^{T} E[KL(q(x_{s_k} | x_{t_k}, x_0) || p(x_{s_k} | x_{t_k}))]
            + KL(q(x_1 | x_0) || uniform),

where the reconstruction term is the ``k = 1`` KL (``q(x_0 | x_t, x_0)`` is a point mass). The sum over
``k`` is estimated with ``n_t`` stratified grid indices per sample (``T`` times the mean term); the prior
term is exact. It bounds ``-log`` of the likelihood of ``T``-step ancestral sampling from the uniform prior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..denoiser import DiscreteDenoised
from ..losses import discrete_time_elbo_term, masked_nelbo
from ..processes import DiscreteProcess, MaskedProcess, UniformProcess
from ..spaces import DataSpace, infer_space, split_generator
from ..types import Cond, GeneratorLike


@dataclass(frozen=True)
class ElboResult:
    """A discrete-diffusion ELBO estimate; every per-sample field has shape ``(B,)``.

    Attributes:
        nats: ``-ELBO`` per sample in nats (an upper bound on ``-log p_model(x_0)``, up to Monte-Carlo error).
        nats_per_token: ``nats / tokens``. bits_per_token: ``nats_per_token / ln 2``.
        tokens: number of (non-padding) tokens per sample.
        diffusion: the Monte-Carlo part of ``nats`` (continuous-time integral, or reconstruction + KL terms).
        prior: the prior term ``KL(q(x_1 | x_0) || pi)`` per sample (0 for the masked process, see module docstring).
        std_error: standard error of ``nats`` from the spread of the ``n_t`` time draws (stratification makes it conservative).
        n_t: Monte-Carlo time draws per sample. steps: ``T`` of the discrete-time ELBO (``None`` for continuous time).
    """

    nats: Tensor
    nats_per_token: Tensor
    bits_per_token: Tensor
    tokens: Tensor
    diffusion: Tensor
    prior: Tensor
    std_error: Tensor
    n_t: int
    steps: int | None

    @property
    def mean_bits_per_token(self) -> float:
        """Token-weighted bits per token over the batch: ``sum(nats) / (sum(tokens) ln 2)``."""
        return float(self.nats.sum() / self.tokens.sum()) / math.log(2.0)


def _uniforms(b: int, generator: GeneratorLike, device: torch.device) -> Tensor:
    """One float64 uniform per sample (one per generator when a list is given), shape ``(B,)``."""
    gens = split_generator(generator, b)
    if isinstance(gens, list):
        return torch.stack([torch.rand((), generator=g, dtype=torch.float64, device=g.device) for g in gens]).to(device)
    return torch.rand(b, generator=gens, dtype=torch.float64, device=gens.device if gens is not None else device).to(device)


def elbo(
    model,
    x_0: Tensor,
    *,
    n_t: int = 64,
    steps: int = 1000,
    generator: GeneratorLike = None,
    space: DataSpace | None = None,
    cond: Cond | None = None,
) -> ElboResult:
    """Monte-Carlo ``-ELBO`` of clean tokens ``x_0`` under a discrete diffusion model (see module docstring).

    Args:
        model: a :class:`~polydiff.Denoiser` (or guided model) of a masked or uniform process.
        x_0: clean tokens, shape ``(B, ...)``, int64.
        n_t: time draws per sample (stratified: draw ``j`` lies in ``[j/n_t, (j+1)/n_t)``).
        steps: ``T`` of the discrete-time ELBO (uniform process only).
        generator: one generator or one per sample (the estimate of a sample then does not depend on the batch).
        space: the data space (e.g. :class:`~polydiff.spaces.MaskedSpace` for padded sequences).
        cond: conditioning passed to the network.

    Returns:
        :class:`ElboResult` with nats per sample and per token and bits per token.
    """
    process = model.process
    if not isinstance(process, DiscreteProcess):
        raise ValueError(f"elbo() is for discrete processes; got {process.name!r} (use the ODE likelihood for Gaussian ones)")
    if not isinstance(x_0, Tensor) or x_0.dtype not in (torch.int64, torch.int32):
        raise ValueError("x_0 must be an integer token tensor of shape (B, ...)")
    if int(n_t) < 1:
        raise ValueError(f"n_t must be a positive integer, got {n_t!r}")
    if not isinstance(process, (MaskedProcess, UniformProcess)):
        raise ValueError(f"elbo() supports the masked and uniform processes, got {process.name!r}")
    if isinstance(process, UniformProcess) and int(steps) < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    space = space or infer_space(x_0)
    b = space.batch_size(x_0)
    draws = []
    with torch.no_grad():
        for j in range(int(n_t)):
            u = _uniforms(b, generator, x_0.device)
            frac = (j + u) / n_t  # stratified in (0, 1)
            if isinstance(process, MaskedProcess):
                draws.append(_masked_term(model, process, x_0, frac, generator, space, cond))
            else:
                draws.append(_uniform_term(model, process, x_0, frac, int(steps), generator, space, cond))
    terms = torch.stack(draws)  # (n_t, B)
    diffusion = terms.mean(0)
    std_error = terms.std(0, unbiased=True) / math.sqrt(n_t) if n_t > 1 else torch.full_like(diffusion, float("nan"))
    prior = _prior_kl(process, x_0, space)
    nats = diffusion + prior
    tokens = space.count(x_0).to(torch.float64)
    per_token = nats / tokens.clamp(min=1)
    return ElboResult(
        nats=nats,
        nats_per_token=per_token,
        bits_per_token=per_token / math.log(2.0),
        tokens=tokens,
        diffusion=diffusion,
        prior=prior,
        std_error=std_error,
        n_t=int(n_t),
        steps=int(steps) if isinstance(process, UniformProcess) else None,
    )


def _log_probs(model, x_t: Tensor, t: Tensor, cond: Cond | None, space: DataSpace) -> Tensor:
    d = model.denoise(x_t, t, cond, space=space)
    if not isinstance(d, DiscreteDenoised):
        raise TypeError(f"elbo() got {type(d).__name__} from the model; expected DiscreteDenoised")
    return d.log_probs.to(torch.float64)


def _masked_term(model, process: MaskedProcess, x_0: Tensor, t: Tensor, generator, space: DataSpace, cond) -> Tensor:
    """One draw of the continuous-time integrand at ``t`` (``(B,)``) with the renormalised kernel; returns ``(B,)``."""
    alpha_1 = float(process.schedule(torch.ones(1, dtype=torch.float64)).alpha[0])
    alpha = process.schedule(t).alpha.to(torch.float64)
    alpha_r = ((alpha - alpha_1) / (1.0 - alpha_1)).clamp(0.0, 1.0)
    masked = space.rand_like(x_0, generator) >= space.expand(alpha_r, x_0)
    x_t = torch.where(masked, torch.full_like(x_0, process.mask_id), x_0)
    log_p = _log_probs(model, x_t, t, cond, space)
    per, _ = masked_nelbo(process, log_p, x_0, x_t, t, space)
    return per.to(torch.float64)


def _uniform_term(model, process: UniformProcess, x_0: Tensor, frac: Tensor, steps: int, generator, space: DataSpace, cond) -> Tensor:
    """``T`` times one KL term at the grid index ``ceil(frac T)`` (``t = k / T``); returns ``(B,)``."""
    k = torch.ceil(frac * steps).clamp(1, steps)
    t = k / steps
    x_t = process.noise(x_0, t, generator=generator, space=space).x_t
    log_p = _log_probs(model, x_t, t, cond, space)
    # the loss maps a time to its grid index by ceil(t T); the interval midpoint is safe from rounding
    per, _ = discrete_time_elbo_term(process, log_p, x_0, x_t, (k - 0.5) / steps, space, steps=steps)
    return per.to(torch.float64)


def _prior_kl(process: DiscreteProcess, x_0: Tensor, space: DataSpace) -> Tensor:
    """``KL(q(x_1 | x_0) || pi)`` summed over tokens, ``(B,)``; 0 for the masked process (renormalised kernel)."""
    b = space.batch_size(x_0)
    if isinstance(process, MaskedProcess):
        return torch.zeros(b, dtype=torch.float64, device=x_0.device)
    ones = torch.ones(b, dtype=torch.float64, device=x_0.device)
    q = process.marginal_probs(x_0, space.expand(process.schedule(ones).alpha.to(torch.float64), x_0).expand_as(x_0))
    pi = process.limit_probs(x_0)
    kl = torch.where(q > 0, q * (q.clamp(min=1e-300).log() - pi.log()), torch.zeros_like(q)).sum(-1)
    return space.sum(kl)


__all__ = ["ElboResult", "elbo"]
