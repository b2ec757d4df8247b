"""Composite spaces: a mapping of named components, each with its own space."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ..state import StateDict
from ..types import GeneratorLike
from .base import DataSpace, Draw


class CompositeSpace(DataSpace):
    """A state that is a mapping ``{name: tensor}``; component ``name`` lives in ``spaces[name]``.

    Per-sample sums and degrees of freedom add over components; :meth:`expand` returns a
    :class:`~polydiff.state.StateDict` so that ``expand(alpha, x) * x`` works component-wise.
    Generators are shared by components in key order, so per-sample draws stay reproducible.
    """

    def __init__(self, spaces: Mapping[str, DataSpace]) -> None:
        if not spaces:
            raise ValueError("CompositeSpace needs at least one component")
        self.spaces = dict(spaces)

    def _check(self, x: Mapping[str, Tensor]) -> None:
        if not isinstance(x, Mapping) or set(x) != set(self.spaces):
            got = sorted(x) if isinstance(x, Mapping) else type(x).__name__
            raise ValueError(f"composite state must have components {sorted(self.spaces)}, got {got}")

    def batch_size(self, x: Mapping[str, Tensor]) -> int:  # type: ignore[override]
        self._check(x)
        sizes = {k: s.batch_size(x[k]) for k, s in self.spaces.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"components disagree on the batch size: {sizes}")
        return next(iter(sizes.values()))

    def expand(self, s: Tensor, x: Mapping[str, Tensor]) -> StateDict:  # type: ignore[override]
        self._check(x)
        return StateDict({k: sp.expand(s, x[k]) for k, sp in self.spaces.items()})

    def sum(self, x: Mapping[str, Tensor]) -> Tensor:  # type: ignore[override]
        self._check(x)
        parts = [sp.sum(x[k]).to(torch.float64) for k, sp in self.spaces.items()]
        return torch.stack(parts).sum(0)

    def dof(self, x: Mapping[str, Tensor]) -> Tensor:  # type: ignore[override]
        self._check(x)
        return torch.stack([sp.dof(x[k]) for k, sp in self.spaces.items()]).sum(0)

    def count(self, x: Mapping[str, Tensor]) -> Tensor:  # type: ignore[override]
        self._check(x)
        return torch.stack([sp.count(x[k]).to(torch.float64) for k, sp in self.spaces.items()]).sum(0)

    def project(self, x: Mapping[str, Tensor]) -> StateDict:  # type: ignore[override]
        self._check(x)
        return StateDict({k: sp.project(x[k]) for k, sp in self.spaces.items()})

    def _draw(self, x, generator: GeneratorLike, draw: Draw, dtype: torch.dtype) -> StateDict:  # type: ignore[override]
        self._check(x)
        return StateDict({k: sp._draw(x[k], generator, draw, dtype) for k, sp in self.spaces.items()})

    def randn_like(self, x, generator: GeneratorLike = None) -> StateDict:  # type: ignore[override]
        self._check(x)
        return StateDict({k: sp.randn_like(x[k], generator) for k, sp in self.spaces.items()})

    def __getitem__(self, name: str) -> DataSpace:
        return self.spaces[name]

    def __repr__(self) -> str:
        return f"CompositeSpace({self.spaces!r})"


def infer_space(x: Tensor | Mapping[str, Tensor]) -> DataSpace:
    """The default space for a state: dense for a tensor, composite of dense spaces for a mapping."""
    from .dense import DenseSpace

    if isinstance(x, Tensor):
        return DenseSpace()
    if isinstance(x, Mapping):
        return CompositeSpace({k: infer_space(v) for k, v in x.items()})
    raise TypeError(f"cannot infer a DataSpace for {type(x).__name__}; pass space=...")
