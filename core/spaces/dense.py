"""Dense tensors of any rank ``(B, ...)`` and padded tensors with a validity mask ``(B, L, ...)``."""

from __future__ import annotations

import torch
from torch import Tensor

from ..types import GeneratorLike
from .base import DataSpace, Draw, _draw_on, draw_batched, split_generator


class DenseSpace(DataSpace):
    """A batch is the leading dimension of a dense tensor of any rank: ``(B,)``, ``(B, D)``, ``(B, C, L)``, ..."""

    def batch_size(self, x: Tensor) -> int:
        return x.shape[0]

    def expand(self, s: Tensor, x: Tensor) -> Tensor:
        if s.ndim != 1 or s.shape[0] != x.shape[0]:
            raise ValueError(f"per-sample scalar must have shape ({x.shape[0]},), got {tuple(s.shape)}")
        return s.reshape(s.shape[0], *([1] * (x.ndim - 1)))

    def sum(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1).sum(dim=1)

    def dof(self, x: Tensor) -> Tensor:
        n = x[0].numel() if x.shape[0] else 0
        return torch.full((x.shape[0],), float(n), device=x.device, dtype=torch.float64)

    def _draw(self, x: Tensor, generator: GeneratorLike, draw: Draw, dtype: torch.dtype) -> Tensor:
        return draw_batched(x.shape, generator, draw, dtype, x.device)

    def __repr__(self) -> str:
        return "DenseSpace()"


class MaskedSpace(DenseSpace):
    """Padded sequences ``(B, L, ...)`` with a boolean mask ``(B, L)``; ``True`` marks real entries.

    Noise is zero on padding; sums and degrees of freedom count real entries only.
    """

    def __init__(self, mask: Tensor) -> None:
        if mask.dtype != torch.bool or mask.ndim != 2:
            raise ValueError(f"mask must be a bool tensor of shape (B, L), got dtype={mask.dtype} shape={tuple(mask.shape)}")
        self.mask = mask

    def _mask_for(self, x: Tensor) -> Tensor:
        if tuple(x.shape[:2]) != tuple(self.mask.shape):
            raise ValueError(f"state of shape {tuple(x.shape)} does not match mask of shape {tuple(self.mask.shape)}")
        return self.mask.reshape(*self.mask.shape, *([1] * (x.ndim - 2))).to(x.device)

    def project(self, x: Tensor) -> Tensor:
        return x * self._mask_for(x).to(x.dtype) if x.is_floating_point() else torch.where(self._mask_for(x), x, 0)

    def _draw(self, x: Tensor, generator: GeneratorLike, draw: Draw, dtype: torch.dtype) -> Tensor:
        """One generator: one draw for the batch. One per sample: each sample draws exactly its real
        entries (so the values do not depend on the padded length, i.e. on the rest of the batch)."""
        gens = split_generator(generator, x.shape[0])
        if not isinstance(gens, list):
            return _draw_on(draw, tuple(x.shape), gens, dtype, x.device)
        self._mask_for(x)
        out = torch.zeros(x.shape, dtype=dtype, device=x.device)
        mask = self.mask.to(x.device)
        for b, g in enumerate(gens):
            real = mask[b].nonzero(as_tuple=True)[0]
            out[b, real] = _draw_on(draw, (real.numel(), *x.shape[2:]), g, dtype, x.device)
        return out

    def sum(self, x: Tensor) -> Tensor:
        m = self._mask_for(x)
        return torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device)).reshape(x.shape[0], -1).sum(dim=1)

    def dof(self, x: Tensor) -> Tensor:
        per_entry = x[0, 0].numel() if x.shape[0] and x.shape[1] else 1
        return self.mask.to(x.device).sum(dim=1).to(torch.float64) * per_entry

    def __repr__(self) -> str:
        return f"MaskedSpace(mask={tuple(self.mask.shape)})"
