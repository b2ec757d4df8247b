"""The DataSpace contract: how per-sample scalars, noise and per-sample reductions act on a state."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..types import GeneratorLike

Draw = Callable[..., Tensor]  # torch.randn or torch.rand: (*shape, generator=, device=, dtype=) -> Tensor


def split_generator(generator: GeneratorLike, batch_size: int) -> list[torch.Generator] | torch.Generator | None:
    """Validate a generator argument: one generator, one per sample, or ``None``.

    Raises:
        ValueError: a sequence whose length is not ``batch_size``.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    gens = list(generator)
    if len(gens) != batch_size:
        raise ValueError(f"generator: got {len(gens)} generators for a batch of {batch_size} samples; pass one per sample")
    return gens


class DataSpace(ABC):
    """How a batch of ``B`` samples is laid out in a tensor.

    Every per-sample scalar in polydiff has shape ``(B,)``; a DataSpace expands it onto the data,
    draws noise (optionally one generator per sample, so a sample does not depend on what else is
    in its batch), takes per-sample sums and counts per-sample degrees of freedom.
    """

    @abstractmethod
    def batch_size(self, x: Tensor) -> int:
        """Number of samples ``B`` in ``x``."""

    @abstractmethod
    def expand(self, s: Tensor, x: Tensor) -> Tensor:
        """Expand a per-sample scalar ``s`` of shape ``(B,)`` so it broadcasts against ``x``."""

    @abstractmethod
    def sum(self, x: Tensor) -> Tensor:
        """Per-sample sum over every (valid) element of ``x``; returns shape ``(B,)``."""

    @abstractmethod
    def dof(self, x: Tensor) -> Tensor:
        """Per-sample degrees of freedom (number of free real coordinates); shape ``(B,)``."""

    @abstractmethod
    def _draw(self, x: Tensor, generator: GeneratorLike, draw: Draw, dtype: torch.dtype) -> Tensor:
        """Draw i.i.d. values shaped like ``x`` with ``draw`` (``torch.randn`` or ``torch.rand``)."""

    def project(self, x: Tensor) -> Tensor:
        """Project ``x`` onto the space (identity unless the space is a constrained subspace)."""
        return x

    def randn_like(self, x: Tensor, generator: GeneratorLike = None) -> Tensor:
        """Standard Gaussian noise in the space (projected: zero on padding, zero centre of mass, ...)."""
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        return self.project(self._draw(x, generator, torch.randn, dtype))

    def rand_like(self, x: Tensor, generator: GeneratorLike = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """Uniform ``[0, 1)`` values shaped like ``x`` (for discrete processes); float64 by default."""
        return self._draw(x, generator, torch.rand, dtype)

    def mean(self, x: Tensor) -> Tensor:
        """Per-sample mean over the valid elements; shape ``(B,)``."""
        return self.sum(x) / self.count(x)

    def count(self, x: Tensor) -> Tensor:
        """Per-sample number of valid elements of ``x`` (equals ``dof`` unless the space is constrained)."""
        return self.sum(torch.ones_like(x, dtype=torch.float64)).to(x.dtype if x.is_floating_point() else torch.float64)


def draw_batched(
    shape: Sequence[int], generator: GeneratorLike, draw: Draw, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Draw a ``(B, *rest)`` tensor, either in one call or one sample at a time per generator."""
    gens = split_generator(generator, shape[0])
    if isinstance(gens, list):
        if not gens:
            return torch.empty(tuple(shape), dtype=dtype, device=device)
        return torch.stack([_draw_on(draw, tuple(shape[1:]), g, dtype, device) for g in gens])
    return _draw_on(draw, tuple(shape), gens, dtype, device)


def _draw_on(draw: Draw, shape: tuple[int, ...], gen: torch.Generator | None, dtype: torch.dtype, device: Any) -> Tensor:
    """Draw on the generator's device, then move (CPU generators work for any target device)."""
    gen_device = gen.device if gen is not None else device
    out = draw(shape, generator=gen, dtype=dtype, device=gen_device)
    return out.to(device)
