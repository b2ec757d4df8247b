"""Helpers shared by the discrete samplers: model estimates, per-token alphas, padding, categorical steps.

Discrete samplers walk a descending grid on token states ``x`` (integer tensors, shape ``(B, ...)``).
Each step turns one network call, ``p(x_0 | x_t)`` of shape ``(B, ..., vocab_size)``, into a
per-token distribution over the process's ``num_states`` and draws from it in float64 with one
uniform per token from ``ctx.space.rand_like(x, ctx.generator)`` (so per-sample generators give the
same sample alone or in a batch). Positions that a :class:`~polydiff.spaces.MaskedSpace` marks as
padding never change.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..denoiser import DiscreteDenoised
from dataclasses import dataclass

from ..processes import DiscreteProcess, ForwardProcess, MaskedProcess, sample_categorical
from ..spaces import DataSpace, DenseSpace, MaskedSpace
from .base import SamplerContext, SamplerModel, SamplerSpec


@dataclass(frozen=True)
class MaskedOnlySpec(SamplerSpec):
    """A sampler spec that supports only the masked (absorbing) process, so ``samplers.names`` lists it only there."""

    def supports(self, process: ForwardProcess) -> bool:
        return isinstance(process, MaskedProcess)


def require_discrete(ctx: SamplerContext, name: str, *, masked_only: bool = False) -> DiscreteProcess:
    """The context's process, checked to be discrete (masked when ``masked_only``)."""
    process = ctx.process
    if masked_only and not isinstance(process, MaskedProcess):
        raise ValueError(f"sampler {name!r} needs a MaskedProcess (absorbing kernel), got process {process.name!r}")
    if not isinstance(process, DiscreteProcess):
        raise ValueError(f"sampler {name!r} needs a discrete process, got {process.name!r}")
    return process


def x0_probs(model: SamplerModel, x: Tensor, t: Tensor, ctx: SamplerContext) -> Tensor:
    """One network call: ``p(x_0 | x_t)`` in float64, shape ``(B, ..., vocab_size)``."""
    d = model.denoise(x, t, ctx.cond, space=ctx.space)
    if not isinstance(d, DiscreteDenoised):
        raise TypeError(f"a discrete sampler got {type(d).__name__} from the model; expected DiscreteDenoised")
    return d.probs


def x0_probs_rows(model: SamplerModel, x: Tensor, t: Tensor, ctx: SamplerContext, rows: Tensor) -> Tensor | None:
    """``p(x_0 | x_t)`` for the samples ``rows`` only (one network call on ``len(rows)`` samples), or ``None``
    when the space or the conditioning cannot be restricted to a subset of the batch.

    Dense and padded spaces are supported; conditioning tensors whose leading dimension is the batch
    size are restricted to the same rows, and any other conditioning value is passed unchanged.
    """
    b = ctx.batch_size
    if type(ctx.space) is DenseSpace:
        space: DataSpace = ctx.space
    elif isinstance(ctx.space, MaskedSpace):
        space = MaskedSpace(ctx.space.mask[rows.to(ctx.space.mask.device)])
    else:
        return None
    cond = ctx.cond
    if cond:
        cond = {k: (v[rows.to(v.device)] if isinstance(v, Tensor) and v.ndim > 0 and v.shape[0] == b else v) for k, v in cond.items()}
    d = model.denoise(x[rows], t[rows], cond, space=space)
    if not isinstance(d, DiscreteDenoised):
        raise TypeError(f"a discrete sampler got {type(d).__name__} from the model; expected DiscreteDenoised")
    return d.probs


def reverse_probs(process: DiscreteProcess, space: DataSpace, x: Tensor, p0: Tensor, t: Tensor, s: Tensor, *, final: bool) -> Tensor:
    """``p(x_s | x_t)`` over ``num_states`` (float64, ``(B, ..., num_states)``) from ``p(x_0 | x_t)``.

    On the final step (``s = 0``) of a masked process the mask gets zero probability, so every
    remaining mask is revealed.
    """
    probs = process.posterior_probs(x, p0, token_alpha(process, space, t, x), token_alpha(process, space, s, x))
    if final and isinstance(process, MaskedProcess):
        probs = probs.clone()
        probs[..., process.mask_id] = 0.0
    return probs


def token_alpha(process: DiscreteProcess, space: DataSpace, t: Tensor, x: Tensor) -> Tensor:
    """``alpha_t`` (shape ``(B,)``) in float64 expanded by ``space`` so it broadcasts against tokens ``x``."""
    return space.expand(process.schedule(t).alpha.to(torch.float64), x)


def padding(space: DataSpace, x: Tensor) -> Tensor | None:
    """Boolean padding positions (``True`` = padding) broadcastable to ``x``, or ``None`` for unpadded spaces."""
    if isinstance(space, MaskedSpace):
        m = space.mask.to(x.device)
        return ~m.reshape(*m.shape, *([1] * (x.ndim - 2)))
    return None


def keep_padding(space: DataSpace, x_old: Tensor, x_new: Tensor) -> Tensor:
    """``x_new`` with padding positions restored from ``x_old``."""
    pad = padding(space, x_new)
    return x_new if pad is None else torch.where(pad, x_old, x_new)


def draw(ctx: SamplerContext, x: Tensor, probs: Tensor) -> Tensor:
    """Draw new tokens from per-token ``probs`` (shape ``(B, ..., K)``) with one uniform per token; padding kept."""
    u = ctx.space.rand_like(x, ctx.generator)
    return keep_padding(ctx.space, x, sample_categorical(probs, u))


def unmask_probs(process: MaskedProcess, x: Tensor, p0: Tensor, p_jump: Tensor) -> Tensor:
    """Per-token distribution over ``vocab_size + 1`` states when each masked token is revealed with probability ``p_jump``.

    Args:
        x: tokens ``(B, ...)``; p0: ``p(x_0 | x_t)`` ``(B, ..., vocab_size)``; p_jump: broadcastable to ``x``.

    Returns:
        ``p_jump * p0`` on the clean classes and ``1 - p_jump`` on the mask at masked positions, a
        point mass on the current token elsewhere; float64, shape ``(B, ..., vocab_size + 1)``.
    """
    pj = p_jump.to(torch.float64).unsqueeze(-1)
    out = torch.cat([pj * p0.to(torch.float64), (1 - pj).expand(*p0.shape[:-1], 1)], dim=-1)
    keep = torch.nn.functional.one_hot(x.clamp(max=process.num_states - 1), process.num_states).to(torch.float64)
    return torch.where((x == process.mask_id).unsqueeze(-1), out, keep)


def is_zero(t: Tensor | float) -> bool:
    """Whether a grid time is exactly ``0`` (the final step, after which no mask may remain)."""
    return float(t) == 0.0
