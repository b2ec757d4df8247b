"""Product processes: independent named components, each with its own process and loss weight.

A molecule is ``{"pos": Gaussian on a zero-CoM space, "atom_types": masked, "bonds": masked}``;
the state is a mapping with the same keys and the model predicts every component in one call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..spaces import CompositeSpace, DataSpace, infer_space
from ..state import StateDict, as_state
from ..types import Cond, GeneratorLike, State
from .base import ForwardProcess, Noised


class ProductProcess(ForwardProcess):
    """``q(x_t | x_0) = prod_k q_k(x_t[k] | x_0[k])`` over named components.

    Args:
        components: ``{name: process}``.
        weights: loss weight per component (default 1 each).
    """

    name = "product"

    def __init__(self, components: Mapping[str, ForwardProcess], weights: Mapping[str, float] | None = None) -> None:
        if not components:
            raise ValueError("ProductProcess needs at least one component")
        self.components = dict(components)
        weights = dict(weights or {})
        unknown = set(weights) - set(self.components)
        if unknown:
            raise ValueError(f"weights name unknown components {sorted(unknown)}; components are {sorted(self.components)}")
        self.weights = {k: float(weights.get(k, 1.0)) for k in self.components}

    @property
    def is_discrete_any(self) -> bool:
        """Whether any component is discrete."""
        return any(p.is_discrete for p in self.components.values())

    def schedule(self, t: Tensor) -> dict[str, Any]:
        """Per-component schedule values ``{name: values}``."""
        return {k: p.schedule(t) for k, p in self.components.items()}

    def _split(self, x: State, space: DataSpace | None) -> tuple[Mapping[str, Tensor], CompositeSpace]:
        if not isinstance(x, Mapping) or set(x) != set(self.components):
            got = sorted(x) if isinstance(x, Mapping) else type(x).__name__
            raise ValueError(f"product process expects a state with components {sorted(self.components)}, got {got}")
        space = space or infer_space(x)
        if not isinstance(space, CompositeSpace):
            raise ValueError("a product process needs a CompositeSpace")
        return x, space

    def noise(
        self, x_0: State, t: Tensor, *, generator: GeneratorLike = None, space: DataSpace | None = None, cond: Cond | None = None
    ) -> Noised:
        x_0, space = self._split(as_state(x_0), space)
        parts = {k: p.noise(x_0[k], t, generator=generator, space=space[k], cond=cond) for k, p in self.components.items()}
        return Noised(
            x_t=StateDict({k: n.x_t for k, n in parts.items()}), t=t, noise=StateDict({k: n.noise for k, n in parts.items()})
        )

    def prior_sample(
        self, like: State, *, generator: GeneratorLike = None, space: DataSpace | None = None, cond: Cond | None = None, t: float = 1.0
    ) -> StateDict:
        like, space = self._split(as_state(like), space)
        return StateDict(
            {k: p.prior_sample(like[k], generator=generator, space=space[k], cond=cond, t=t) for k, p in self.components.items()}
        )

    @property
    def t_min(self) -> float:
        return max(p.t_min for p in self.components.values())

    @property
    def t_max(self) -> float:
        return min(p.t_max for p in self.components.values())

    def config(self) -> dict[str, Any]:
        return {"components": {k: {"name": p.name, **p.config()} for k, p in self.components.items()}, "weights": self.weights}
