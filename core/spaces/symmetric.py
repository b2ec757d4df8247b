"""Symmetric matrices with a node mask: weighted adjacency matrices of padded graphs (GDSS).

A batch is ``(B, L, L)`` (optionally ``(B, L, L, C)`` channels) with node flags ``(B, L)``; sample ``b`` has
``n_b`` real nodes. The free coordinates are the strictly upper-triangular entries between real nodes:
``n_b (n_b - 1) / 2`` of them (times ``C``). Noise is drawn there and mirrored, so it is exactly symmetric, and
the diagonal and every entry that touches a padded node are zero. Per-sample sums count each free coordinate
once (the upper triangle), so ``sum(noise ** 2)`` is chi-square with ``dof`` degrees of freedom.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..types import GeneratorLike
from .base import DataSpace, Draw, _draw_on, split_generator


class SymmetricMatrixSpace(DataSpace):
    """Symmetric ``(B, L, L[, C])`` matrices over the real nodes of ``mask`` ``(B, L)`` (bool), zero diagonal.

    Args:
        mask: ``True`` marks real nodes.
    """

    def __init__(self, mask: Tensor) -> None:
        if mask.dtype != torch.bool or mask.ndim != 2:
            raise ValueError(f"mask must be a bool tensor of shape (B, L), got dtype={mask.dtype} shape={tuple(mask.shape)}")
        self.mask = mask

    def _check(self, x: Tensor) -> None:
        b, n = self.mask.shape
        if x.ndim < 3 or tuple(x.shape[:3]) != (b, n, n):
            raise ValueError(f"state of shape {tuple(x.shape)} does not match node mask {tuple(self.mask.shape)}: expected ({b}, {n}, {n}, ...)")

    def free_mask(self, x: Tensor) -> Tensor:
        """Bool ``(B, L, L[, 1...])``: the free coordinates (upper triangle, both nodes real), broadcastable to ``x``."""
        self._check(x)
        m = self.mask.to(x.device)
        pair = m[:, :, None] & m[:, None, :]
        upper = torch.ones(m.shape[1], m.shape[1], dtype=torch.bool, device=x.device).triu(1)
        return (pair & upper).reshape(*pair.shape, *([1] * (x.ndim - 3)))

    def pair_mask(self, x: Tensor) -> Tensor:
        """Bool: off-diagonal entries between real nodes (both triangles), broadcastable to ``x``."""
        f = self.free_mask(x)
        return f | f.transpose(1, 2)

    def batch_size(self, x: Tensor) -> int:
        self._check(x)
        return x.shape[0]

    def expand(self, s: Tensor, x: Tensor) -> Tensor:
        if s.ndim != 1 or s.shape[0] != x.shape[0]:
            raise ValueError(f"per-sample scalar must have shape ({x.shape[0]},), got {tuple(s.shape)}")
        return s.reshape(s.shape[0], *([1] * (x.ndim - 1)))

    def project(self, x: Tensor) -> Tensor:
        """The symmetric part ``(x + x^T) / 2`` on real off-diagonal pairs, zero elsewhere (integers: upper triangle mirrored)."""
        pm = self.pair_mask(x)
        if x.is_floating_point():
            sym = 0.5 * (x + x.transpose(1, 2))
            return torch.where(pm, sym, torch.zeros((), dtype=x.dtype, device=x.device))
        up = torch.where(self.free_mask(x), x, 0)
        return up + up.transpose(1, 2)

    def sum(self, x: Tensor) -> Tensor:
        """Per-sample sum over the free coordinates (the upper triangle between real nodes)."""
        f = self.free_mask(x)
        return torch.where(f, x, torch.zeros((), dtype=x.dtype, device=x.device)).reshape(x.shape[0], -1).sum(dim=1)

    def dof(self, x: Tensor) -> Tensor:
        self._check(x)
        n = self.mask.to(x.device).sum(dim=1).to(torch.float64)
        per_entry = x[0, 0, 0].numel() if x.shape[0] and x.shape[1] else 1
        return n * (n - 1) / 2 * per_entry

    def _draw(self, x: Tensor, generator: GeneratorLike, draw: Draw, dtype: torch.dtype) -> Tensor:
        """Values on the free coordinates, mirrored. One generator per sample draws exactly that sample's
        ``n (n - 1) / 2`` entries (row-major over the upper triangle), independent of the padded size."""
        self._check(x)
        gens = split_generator(generator, x.shape[0])
        free = self.free_mask(x).reshape(x.shape[:3])
        rest = tuple(x.shape[3:])
        out = torch.zeros(x.shape, dtype=dtype, device=x.device)
        if isinstance(gens, list):
            for b, g in enumerate(gens):
                idx = free[b].nonzero(as_tuple=True)
                out[b][idx] = _draw_on(draw, (idx[0].numel(), *rest), g, dtype, x.device)
        else:
            full = _draw_on(draw, tuple(x.shape), gens, dtype, x.device)
            out = torch.where(free.reshape(*free.shape, *([1] * len(rest))), full, out)
        return out + out.transpose(1, 2)

    def __repr__(self) -> str:
        return f"SymmetricMatrixSpace(mask={tuple(self.mask.shape)})"


__all__ = ["SymmetricMatrixSpace"]
