"""Confidence-ordered unmasking (MaskGIT; LLaDA's low-confidence remasking) for masked diffusion.

A heuristic, *not* a sampler of the model's distribution (``exact=False``): at each step the network
proposes a token for every masked position — drawn from ``p(x_0 | x_t)`` or, with ``greedy=True``, its
argmax — and only the ``k`` proposals with the highest probability are kept; the rest stay masked.
``k`` follows the schedule: after the step to ``s`` a fraction ``(1 - alpha_s) / (1 - alpha_{t_0})`` of the
``M_0`` positions masked at the start remains masked (rounded down), so the final step to ``t = 0``
reveals everything. Preferring confident tokens lowers diversity (repetitive text is a known effect,
MDLM issue #35).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..processes import MaskedProcess, sample_categorical
from .base import SamplerContext, SamplerModel
from .discrete_common import MaskedOnlySpec, keep_padding, padding, require_discrete, x0_probs
from .registry import register_builtin


def confidence(model: SamplerModel, x: Tensor, grid: Tensor, ctx: SamplerContext) -> Tensor:
    """Confidence-ordered unmasking (see module docstring); option ``greedy`` (bool).

    Args:
        model: returns :class:`~polydiff.denoiser.DiscreteDenoised`; x: tokens ``(B, ...)`` at ``grid[0]``.
        grid: descending times ``(steps + 1,)``; ctx: the sampler context.

    Returns:
        tokens at ``grid[-1]``, shape ``(B, ...)``, int64.
    """
    process = require_discrete(ctx, "confidence", masked_only=True)
    assert isinstance(process, MaskedProcess)
    greedy = bool(ctx.option("greedy", False))
    n = len(grid) - 1
    pad = padding(ctx.space, x)
    sid = sample_ids(ctx, x)

    def masked_positions(y: Tensor) -> Tensor:
        m = y == process.mask_id
        return m if pad is None else m & ~pad

    def per_sample_count(m: Tensor) -> Tensor:
        return torch.bincount(sid.reshape(-1)[m.reshape(-1)], minlength=ctx.batch_size).to(torch.float64)

    m0 = per_sample_count(masked_positions(x))  # (B,)
    a_start = float(process.schedule(torch.tensor([float(grid[0])], dtype=torch.float64)).alpha[0])
    for i in range(n):
        t, s = ctx.times(grid[i], x), ctx.times(grid[i + 1], x)
        p0 = x0_probs(model, x, t, ctx)
        if greedy:
            proposal = p0.argmax(-1)
        else:
            proposal = sample_categorical(p0, ctx.space.rand_like(x, ctx.generator))
        conf = p0.gather(-1, proposal.unsqueeze(-1)).squeeze(-1)
        is_masked = masked_positions(x)
        a_s = process.schedule(s).alpha.to(torch.float64)
        frac = ((1.0 - a_s) / max(1.0 - a_start, 1e-300)).clamp(0.0, 1.0)
        remaining = torch.floor(m0 * frac + 1e-9) if float(grid[i + 1]) > 0.0 else torch.zeros_like(m0)
        k = (per_sample_count(is_masked) - remaining).clamp(min=0).to(torch.int64)  # (B,)
        rank = rank_within_sample(torch.where(is_masked, conf, torch.full_like(conf, -1.0)), sid, ctx.batch_size)
        reveal = (rank < k[sid]) & is_masked
        x = keep_padding(ctx.space, x, torch.where(reveal, proposal, x))
        x = ctx.correct(x, s)
        ctx.report(i, n, t, s, x, p0)
    return x


def sample_ids(ctx: SamplerContext, x: Tensor) -> Tensor:
    """The sample each token belongs to, shape of ``x``, int64 (dense, padded and ragged layouts alike)."""
    ids = torch.arange(ctx.batch_size, dtype=torch.float64, device=x.device)
    return ctx.space.expand(ids, x).expand_as(x).to(torch.int64)


def rank_within_sample(score: Tensor, sid: Tensor, batch_size: int) -> Tensor:
    """Rank (0 = highest ``score``) of each token among the tokens of its sample; ties keep memory order."""
    flat, ids = score.reshape(-1), sid.reshape(-1)
    order = torch.argsort(flat, descending=True, stable=True)
    order = order[torch.argsort(ids[order], stable=True)]  # grouped by sample, descending score within
    counts = torch.bincount(ids, minlength=batch_size)
    starts = counts.cumsum(0) - counts
    rank = torch.empty_like(ids)
    rank[order] = torch.arange(ids.numel(), device=ids.device) - starts[ids[order]]
    return rank.reshape(score.shape)


register_builtin(
    MaskedOnlySpec(
        "confidence",
        confidence,
        kind="discrete",
        exact=False,
        stochastic=True,
        options={"greedy": False},
        description="confidence-ordered unmasking (MaskGIT/LLaDA): a heuristic, does not sample the model's distribution",
    )
)
