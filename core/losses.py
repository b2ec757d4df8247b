"""Training objectives: time sampling, loss weightings, and the discrete NELBO.

Gaussian weightings are stated on the x0 squared error, ``w(t) * ||x0_hat - x0||^2``:

* ``uniform`` — ``w = 1`` (plain x0 regression);
* ``snr`` — ``w = alpha^2 / sigma^2`` (equals the epsilon-MSE, DDPM's simple loss);
* ``min-snr`` — ``w = min(SNR, gamma)`` (Hang et al. 2023; ``gamma = 5``);
* ``truncated-snr`` — ``w = clamp(SNR, 0.05, 1.5)`` (EQGAT-diff's ``snr_t`` weighting);
* ``edm`` — ``w = (s^2 + sigma_data^2) / (s sigma_data)^2`` with ``s = sigma/alpha`` (Karras et al. 2022);
* ``default`` — the plain MSE in the network's own prediction space (eps-MSE for eps models, ...).

Time sampling: ``uniform`` on ``[t_min, t_max]``, ``stratified`` (one uniform offset, evenly
spaced: a low-variance uniform), ``logit-normal`` (``t = sigmoid(N(m, s^2))``, Esser et al. 2024)
and ``log-normal`` (``log(sigma/alpha) ~ N(P_mean, P_std^2)``, EDM), mapped through the exact
log-SNR inverse.

Discrete processes: the masked (absorbing) process uses the continuous-time NELBO of MDLM/RADD,
``E_t [ -alpha'_t / (1 - alpha_t) * sum_{masked i} -log p(x0_i | x_t) ]``; any discrete process can use the
``T``-step discrete-time ELBO built from exact posteriors (D3PM), and any can train on the plain x0
cross-entropy ``-log p(x_0 | x_t)`` (``ce``; DiGress, MiDi, EQGAT-diff).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .parameterisation import Denoised, from_x0_eps, to_x0_eps
from .processes import DiscreteProcess, ForwardProcess, GaussianProcess, MaskedProcess, ProductProcess
from .spaces import CompositeSpace, DataSpace, infer_space, split_generator
from .state import as_state, first_leaf

if TYPE_CHECKING:
    from .denoiser import Denoiser

WEIGHTINGS = ("default", "uniform", "snr", "min-snr", "truncated-snr", "edm")
TIME_SAMPLINGS = ("uniform", "stratified", "logit-normal", "log-normal")


@dataclass(frozen=True)
class LossOutput:
    """A training loss.

    Attributes:
        loss: scalar to minimise: ``per_sample.sum() / count.sum()``.
        per_sample: per-sample summed loss, shape ``(B,)`` (nats per sample for discrete NELBOs). For a
            product process it is the weighted sum of each component's per-element mean.
        count: per-sample number of elements (tokens, coordinates) the sum runs over, shape ``(B,)``
            (all ones for a product process, whose per-sample value is already a mean).
        t: the sampled times, shape ``(B,)``.
    """

    loss: Tensor
    per_sample: Tensor
    count: Tensor
    t: Tensor


def _uniforms(b: int, generator: Any, device: torch.device, dtype: torch.dtype) -> Tensor:
    gens = split_generator(generator, b)
    if isinstance(gens, list):
        return torch.stack([torch.rand((), generator=g, dtype=dtype, device=g.device) for g in gens]).to(device)
    return torch.rand(b, generator=gens, dtype=dtype, device=gens.device if gens is not None else device).to(device)


def sample_time(
    process: ForwardProcess,
    batch_size: int,
    *,
    kind: str = "uniform",
    generator: Any = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    t_range: tuple[float, float] | None = None,
    loc: float = 0.0,
    scale: float = 1.0,
    p_mean: float = -1.2,
    p_std: float = 1.2,
) -> Tensor:
    """Draw training times, shape ``(batch_size,)``, with the named strategy (see module docstring)."""
    device = torch.device(device)
    lo, hi = t_range if t_range is not None else _default_range(process)
    if kind == "uniform":
        u = _uniforms(batch_size, generator, device, torch.float64)
    elif kind == "stratified":
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(
                "time_sampling='stratified' spreads one offset over the batch, so it cannot honour per-sample "
                "generators; use 'uniform' with per-sample generators"
            )
        u0 = _uniforms(1, generator, device, torch.float64)
        u = (u0 + torch.arange(batch_size, device=device, dtype=torch.float64) / batch_size) % 1.0
    elif kind == "logit-normal":
        n = _normal(batch_size, generator, device)
        u = torch.sigmoid(loc + scale * n)
    elif kind == "log-normal":
        if not isinstance(process, GaussianProcess):
            raise ValueError("log-normal time sampling is defined through sigma/alpha: Gaussian processes only")
        log_s = p_mean + p_std * _normal(batch_size, generator, device)
        t = process.t_from_log_snr(-2.0 * log_s)
        return t.clamp(lo, hi).to(dtype)
    else:
        raise ValueError(f"unknown time sampling {kind!r}; expected one of: {', '.join(TIME_SAMPLINGS)}")
    return (lo + (hi - lo) * u).to(dtype)


def _normal(b: int, generator: Any, device: torch.device) -> Tensor:
    u1 = _uniforms(b, generator, device, torch.float64).clamp(min=1e-300)
    u2 = _uniforms(b, generator, device, torch.float64)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)  # Box-Muller keeps per-sample generators


def _default_range(process: ForwardProcess) -> tuple[float, float]:
    if isinstance(process, DiscreteProcess):
        return 0.0, 1.0
    if isinstance(process, ProductProcess):
        return max(_default_range(p)[0] for p in process.components.values()), min(_default_range(p)[1] for p in process.components.values())
    return process.t_min, process.t_max


def gaussian_weight(kind: str, values, *, min_snr_gamma: float = 5.0, sigma_data: float = 0.5) -> Tensor:
    """Per-sample weight on the x0 squared error for the named weighting; shape ``(B,)``."""
    snr = (values.alpha / values.sigma) ** 2
    if kind == "uniform":
        return torch.ones_like(snr)
    if kind == "snr":
        return snr
    if kind == "min-snr":
        return snr.clamp(max=min_snr_gamma)
    if kind == "truncated-snr":
        return snr.clamp(min=0.05, max=1.5)
    if kind == "edm":
        s = values.sigma / values.alpha
        return (s**2 + sigma_data**2) / (s * sigma_data) ** 2
    raise ValueError(f"unknown weighting {kind!r}; expected one of: {', '.join(WEIGHTINGS)}")


def diffusion_loss(
    model: Denoiser,
    x_0: Any,
    *,
    cond: Any = None,
    t: Tensor | None = None,
    generator: Any = None,
    space: DataSpace | None = None,
    weighting: str = "default",
    time_sampling: str = "uniform",
    time_params: dict[str, Any] | None = None,
    min_snr_gamma: float = 5.0,
    discrete_objective: str = "nelbo",
    elbo_steps: int = 1000,
) -> LossOutput:
    """The training loss of ``model`` on clean data ``x_0``.

    Args:
        model: a :class:`~polydiff.denoiser.Denoiser`.
        x_0: clean batch (tensor, token tensor or composite mapping).
        cond: conditioning passed to the network.
        t: times ``(B,)``; drawn with ``time_sampling`` when omitted.
        generator: one generator or one per sample.
        space: the data space (inferred when omitted).
        weighting: Gaussian loss weighting (see module docstring).
        discrete_objective: ``nelbo`` (continuous-time, masked process), ``elbo`` (``elbo_steps``-step, any kernel)
            or ``ce`` (x0 cross-entropy, any kernel; :func:`x0_cross_entropy`).
    """
    x_0 = as_state(x_0)
    space = space or infer_space(x_0)
    process = model.process
    b = space.batch_size(x_0)
    leaf = first_leaf(x_0)
    # times are at least float32 even for half-precision data (bf16 would quantise t)
    tdtype = torch.promote_types(leaf.dtype, torch.float32) if leaf.is_floating_point() else torch.float32
    if t is None:
        t = sample_time(process, b, kind=time_sampling, generator=generator, device=leaf.device, dtype=tdtype, **(time_params or {}))
        if discrete_objective == "elbo" and _is_discrete(process):
            # the discrete-time ELBO scores x_t against the posterior at grid times: noise at the grid time itself
            t = (torch.ceil(t.to(torch.float64) * elbo_steps).clamp(1, elbo_steps) / elbo_steps).to(tdtype)
    noised = process.noise(x_0, t, generator=generator, space=space, cond=cond)
    out = model(noised.x_t, t, cond, space=space)
    per, count = _component_loss(model, process, model.prediction, out, x_0, noised.x_t, noised.noise, t, cond, space,
                                 weighting=weighting, min_snr_gamma=min_snr_gamma,
                                 discrete_objective=discrete_objective, elbo_steps=elbo_steps)
    return LossOutput(loss=per.sum() / count.sum(), per_sample=per, count=count, t=t)


def _is_discrete(process: ForwardProcess) -> bool:
    if isinstance(process, ProductProcess):
        return any(_is_discrete(p) for p in process.components.values())
    return isinstance(process, DiscreteProcess)


def _component_loss(model, process, prediction, out, x_0, x_t, noise, t, cond, space, **kw) -> tuple[Tensor, Tensor]:
    if isinstance(process, ProductProcess):
        assert isinstance(space, CompositeSpace)
        total = None
        for k, p in process.components.items():
            per_k, count_k = _component_loss(model, p, prediction[k], out[k], x_0[k], x_t[k], noise[k], t, cond, space[k], **kw)
            term = process.weights[k] * per_k / count_k.clamp(min=1)
            total = term if total is None else total + term
        return total, torch.ones_like(total)
    if isinstance(process, DiscreteProcess):
        if kw["discrete_objective"] == "nelbo":
            return masked_nelbo(process, out, x_0, x_t, t, space)
        if kw["discrete_objective"] == "elbo":
            return discrete_time_elbo_term(process, out, x_0, x_t, t, space, steps=kw["elbo_steps"])
        if kw["discrete_objective"] == "ce":
            return x0_cross_entropy(process, out, x_0, x_t, space)
        raise ValueError(f"discrete_objective must be 'nelbo', 'elbo' or 'ce', got {kw['discrete_objective']!r}")
    assert isinstance(process, GaussianProcess)
    values = process.schedule(t)
    weighting = kw["weighting"]
    if weighting == "default" and model.precond is not None:
        weighting = "edm"
    count = space.count(x_0)
    if weighting == "default":
        target = from_x0_eps(Denoised(x0=x_0, eps=noise), prediction, values, space)
        return space.sum((out - target) ** 2), count
    z_t = x_t if not process.has_offset else x_t - process.offset(t, x_t, space=space, cond=cond)
    x0_hat = to_x0_eps(out, prediction, z_t, values, space).x0
    sigma_data = model.precond.sigma_data if model.precond is not None else kw.get("sigma_data", 0.5)
    w = gaussian_weight(weighting, values, min_snr_gamma=kw["min_snr_gamma"], sigma_data=sigma_data)
    return w * space.sum((x0_hat - x_0) ** 2), count


def masked_nelbo(process: DiscreteProcess, logits: Tensor, x_0: Tensor, x_t: Tensor, t: Tensor, space: DataSpace) -> tuple[Tensor, Tensor]:
    """MDLM/RADD continuous-time NELBO per sample (nats), and the token count; both ``(B,)``.

    ``-alpha'_t / (1 - alpha_t) * sum_{i: x_t^i = mask} -log p(x_0^i | x_t)`` (SUBS parameterisation).
    """
    if not isinstance(process, MaskedProcess):
        raise ValueError("the continuous-time NELBO is for the masked process; use discrete_objective='elbo' for other kernels")
    _check_logits(process, logits)
    v = process.schedule(t.to(torch.float64))  # float64: 1 - alpha_t cancels badly near t = 0 in float32
    log_p = torch.log_softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=-1)
    nll = -log_p.gather(-1, x_0.unsqueeze(-1)).squeeze(-1)
    masked = x_t == process.mask_id
    weight = (-v.d_alpha / (1.0 - v.alpha).clamp(min=torch.finfo(torch.float64).tiny)).to(nll.dtype)
    # only masked tokens carry weight; where() (not a product) keeps an infinite weight at t -> 0 out of unmasked tokens
    per_token = torch.where(masked, nll * space.expand(weight, nll), torch.zeros_like(nll))
    return space.sum(per_token), space.count(nll)


def x0_cross_entropy(process: DiscreteProcess, logits: Tensor, x_0: Tensor, x_t: Tensor, space: DataSpace) -> tuple[Tensor, Tensor]:
    """The x0 cross-entropy ``sum_i -log p(x_0^i | x_t)`` per sample, and the token count; both ``(B,)``.

    The x0-parameterised training loss of DiGress, MiDi and EQGAT-diff (any kernel; SUBS carry-over makes
    unmasked tokens of a masked process cost zero). Unweighted in time: not an ELBO.
    """
    _check_logits(process, logits)
    log_p = discrete_log_probs(process, logits, x_t)
    nll = -log_p.gather(-1, x_0.unsqueeze(-1)).squeeze(-1)
    return space.sum(nll), space.count(nll)


def _check_logits(process: DiscreteProcess, logits: Tensor) -> None:
    if logits.shape[-1] != process.vocab_size:
        raise ValueError(
            f"x0_logits must have last dimension vocab_size={process.vocab_size} (the mask is not a class of x_0), "
            f"got {logits.shape[-1]}"
        )


def discrete_log_probs(process: DiscreteProcess, logits: Tensor, x_t: Tensor) -> Tensor:
    """``log p(x_0 | x_t)`` from a network's ``x0_logits``, shape ``(..., vocab_size)``.

    SUBS for a masked process: a token of ``x_t`` that is not masked is carried over (probability 1).
    :meth:`polydiff.Denoiser.denoise` returns it as :class:`~polydiff.denoiser.DiscreteDenoised`.
    """
    log_probs = torch.log_softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=-1)
    if logits.shape[-1] != process.vocab_size:
        raise ValueError(f"x0_logits must have last dimension vocab_size={process.vocab_size}, got {logits.shape[-1]}")
    if isinstance(process, MaskedProcess):  # SUBS: carry over unmasked tokens
        unmasked = (x_t != process.mask_id).unsqueeze(-1)
        carry = torch.nn.functional.one_hot(x_t.clamp(max=process.vocab_size - 1), process.vocab_size).to(log_probs.dtype)
        log_probs = torch.where(unmasked, torch.log(carry), log_probs)
    return log_probs


def discrete_time_elbo_term(
    process: DiscreteProcess, logits: Tensor, x_0: Tensor, x_t: Tensor, t: Tensor, space: DataSpace, *, steps: int
) -> tuple[Tensor, Tensor]:
    """``steps`` times the KL term ``KL(q(x_s | x_t, x_0) || p(x_s | x_t))`` at ``s = t - 1/steps`` per sample.

    With ``t`` uniform on the grid ``{1/steps, ..., 1}`` its expectation is the diffusion part of the
    ``steps``-step ELBO (the reconstruction term is the ``s = 0`` case). Returns ``(per_sample, count)``.
    """
    _check_logits(process, logits)
    t_grid = (torch.ceil(t.to(torch.float64) * steps).clamp(1, steps)) / steps
    s_grid = t_grid - 1.0 / steps
    a_t = space.expand(process.schedule(t_grid).alpha, x_t)
    a_s = space.expand(process.schedule(s_grid).alpha, x_t)
    p0 = discrete_log_probs(process, logits, x_t).to(torch.float64).softmax(-1)
    onehot0 = torch.nn.functional.one_hot(x_0, process.vocab_size).to(torch.float64)
    q = process.posterior_probs(x_t, onehot0, a_t.expand_as(x_t), a_s.expand_as(x_t))
    p = process.posterior_probs(x_t, p0, a_t.expand_as(x_t), a_s.expand_as(x_t))
    kl = torch.where(q > 0, q * (torch.log(q.clamp(min=1e-300)) - torch.log(p.clamp(min=1e-300))), torch.zeros_like(q)).sum(-1)
    return space.sum(kl * steps).to(logits.dtype if logits.is_floating_point() else torch.float32), space.count(kl)


__all__ = ["LossOutput", "TIME_SAMPLINGS", "WEIGHTINGS", "diffusion_loss", "discrete_log_probs", "discrete_time_elbo_term", "gaussian_weight", "masked_nelbo", "sample_time", "x0_cross_entropy"]
