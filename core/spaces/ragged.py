"""Ragged batches by segment ids (graph batches), and the zero-centre-of-mass subspace.

A ragged batch stacks the nodes of ``B`` samples of unequal sizes into one tensor
``(N_total, ...)``; ``segment_ids`` of shape ``(N_total,)`` says which sample each row belongs to
(PyTorch Geometric calls it ``batch``). No torch-geometric import is needed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..types import GeneratorLike
from .base import DataSpace, Draw, _draw_on, split_generator


class RaggedSpace(DataSpace):
    """Rows of ``B`` samples of unequal sizes, grouped by ``segment_ids`` (values in ``[0, B)``)."""

    def __init__(self, segment_ids: Tensor, num_segments: int | None = None) -> None:
        if segment_ids.ndim != 1 or segment_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"segment_ids must be an integer tensor of shape (N,), got dtype={segment_ids.dtype} shape={tuple(segment_ids.shape)}"
            )
        self.segment_ids = segment_ids.long()
        inferred = int(self.segment_ids.max().item()) + 1 if self.segment_ids.numel() else 0
        self.num_segments = inferred if num_segments is None else int(num_segments)
        if self.num_segments < inferred:
            raise ValueError(f"num_segments={self.num_segments} but segment_ids reach {inferred - 1}")
        if self.segment_ids.numel() and bool((self.segment_ids < 0).any()):
            raise ValueError("segment_ids must be non-negative")

    @property
    def sizes(self) -> Tensor:
        """Rows per sample, shape ``(B,)``."""
        return torch.bincount(self.segment_ids, minlength=self.num_segments)

    def _check(self, x: Tensor) -> None:
        if x.shape[0] != self.segment_ids.shape[0]:
            raise ValueError(f"state has {x.shape[0]} rows but segment_ids has {self.segment_ids.shape[0]}")

    def batch_size(self, x: Tensor) -> int:
        return self.num_segments

    def expand(self, s: Tensor, x: Tensor) -> Tensor:
        self._check(x)
        if s.ndim != 1 or s.shape[0] != self.num_segments:
            raise ValueError(f"per-sample scalar must have shape ({self.num_segments},), got {tuple(s.shape)}")
        return s[self.segment_ids.to(s.device)].reshape(x.shape[0], *([1] * (x.ndim - 1)))

    def sum(self, x: Tensor) -> Tensor:
        self._check(x)
        per_row = x.reshape(x.shape[0], -1).sum(dim=1)
        out = torch.zeros(self.num_segments, dtype=per_row.dtype, device=x.device)
        return out.index_add_(0, self.segment_ids.to(x.device), per_row)

    def dof(self, x: Tensor) -> Tensor:
        self._check(x)
        per_row = x[0].numel() if x.shape[0] else 0
        return self.sizes.to(x.device, torch.float64) * per_row

    def _draw(self, x: Tensor, generator: GeneratorLike, draw: Draw, dtype: torch.dtype) -> Tensor:
        self._check(x)
        gens = split_generator(generator, self.num_segments)
        if not isinstance(gens, list):
            return _draw_on(draw, tuple(x.shape), gens, dtype, x.device)
        out = torch.empty(x.shape, dtype=dtype, device=x.device)
        seg = self.segment_ids.to(x.device)
        for b, g in enumerate(gens):
            rows = (seg == b).nonzero(as_tuple=True)[0]
            out[rows] = _draw_on(draw, (rows.numel(), *x.shape[1:]), g, dtype, x.device)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_segments={self.num_segments}, rows={self.segment_ids.numel()})"


class ZeroCoMSpace(RaggedSpace):
    """Coordinates ``(N_total, 3)`` (or any width) whose per-sample mean is zero.

    Noise is projected onto the subspace, so it has ``(n_b - 1) * d`` degrees of freedom per sample
    of ``n_b`` rows in ``d`` dimensions: that is what likelihoods must use.
    """

    def centre_of_mass(self, x: Tensor) -> Tensor:
        """Per-sample mean row, shape ``(B, d)``."""
        self._check(x)
        seg = self.segment_ids.to(x.device)
        total = torch.zeros(self.num_segments, *x.shape[1:], dtype=x.dtype, device=x.device).index_add_(0, seg, x)
        counts = self.sizes.to(x.device).clamp(min=1).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return total / counts

    def project(self, x: Tensor) -> Tensor:
        return x - self.centre_of_mass(x)[self.segment_ids.to(x.device)]

    def dof(self, x: Tensor) -> Tensor:
        self._check(x)
        per_row = x[0].numel() if x.shape[0] else 0
        return (self.sizes.to(x.device, torch.float64) - 1).clamp(min=0) * per_row
