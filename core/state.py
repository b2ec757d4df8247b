"""Composite states: a mapping of named tensors that supports elementwise arithmetic.

Samplers and processes are written once, with ordinary arithmetic (``a * x0 + s * eps``).
For a dense state the operands are tensors; for a composite state (positions + atom types +
bonds, say) they are :class:`StateDict` objects whose operators act component-wise. A per-sample
scalar is first expanded onto the state by its :class:`~polydiff.spaces.DataSpace`, which returns a
tensor for a dense state and a ``StateDict`` of tensors for a composite one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor


class StateDict(dict):
    """A ``dict[str, Tensor]`` with component-wise ``+ - * /``, negation and ``.to``.

    A binary operation with another mapping requires the same keys; with a tensor or a number it
    broadcasts that operand to every component.
    """

    def _binary(self, other: Any, op: Callable[[Any, Any], Any], *, reflected: bool = False) -> StateDict:
        if isinstance(other, Mapping):
            if set(other) != set(self):
                raise ValueError(f"composite states have different components: {sorted(self)} vs {sorted(other)}")
            pairs = {k: (self[k], other[k]) for k in self}
        else:
            pairs = {k: (self[k], other) for k in self}
        if reflected:
            return StateDict({k: op(b, a) for k, (a, b) in pairs.items()})
        return StateDict({k: op(a, b) for k, (a, b) in pairs.items()})

    def __add__(self, o: Any) -> StateDict:
        return self._binary(o, lambda a, b: a + b)

    def __radd__(self, o: Any) -> StateDict:
        return self._binary(o, lambda a, b: a + b, reflected=True)

    def __sub__(self, o: Any) -> StateDict:
        return self._binary(o, lambda a, b: a - b)

    def __rsub__(self, o: Any) -> StateDict:
        return self._binary(o, lambda a, b: a - b, reflected=True)

    def __mul__(self, o: Any) -> StateDict:
        return self._binary(o, lambda a, b: a * b)

    def __rmul__(self, o: Any) -> StateDict:
        return self._binary(o, lambda a, b: a * b, reflected=True)

    def __truediv__(self, o: Any) -> StateDict:
        return self._binary(o, lambda a, b: a / b)

    def __rtruediv__(self, o: Any) -> StateDict:
        return self._binary(o, lambda a, b: a / b, reflected=True)

    def __pow__(self, o: Any) -> StateDict:
        return self._binary(o, lambda a, b: a**b)

    def __neg__(self) -> StateDict:
        return StateDict({k: -v for k, v in self.items()})

    def to(self, *args: Any, **kwargs: Any) -> StateDict:
        return StateDict({k: v.to(*args, **kwargs) for k, v in self.items()})

    def detach(self) -> StateDict:
        return StateDict({k: v.detach() for k, v in self.items()})

    def clone(self) -> StateDict:
        return StateDict({k: v.clone() for k, v in self.items()})


def as_state(x: Any) -> Any:
    """Return ``x`` unchanged if it is a tensor, or as a :class:`StateDict` if it is a mapping."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, Mapping):
        return StateDict({k: as_state(v) for k, v in x.items()})
    raise TypeError(f"a state must be a torch.Tensor or a mapping of name -> Tensor, got {type(x).__name__}")


def tree_map(fn: Callable[..., Tensor], x: Any, *rest: Any) -> Any:
    """Apply ``fn`` leaf-wise to a tensor or to matching components of composite states."""
    if isinstance(x, Mapping):
        return StateDict({k: tree_map(fn, x[k], *(r[k] for r in rest)) for k in x})
    return fn(x, *rest)


def tree_leaves(x: Any) -> list[Tensor]:
    """All tensors of a state, in key order for composite states."""
    if isinstance(x, Mapping):
        return [leaf for k in x for leaf in tree_leaves(x[k])]
    return [x]


def first_leaf(x: Any) -> Tensor:
    """The first tensor of a state (used for device and dtype)."""
    return tree_leaves(x)[0]


def zeros_like(x: Any) -> Any:
    """A state of zeros shaped like ``x``."""
    return tree_map(torch.zeros_like, x)


__all__ = ["StateDict", "as_state", "first_leaf", "tree_leaves", "tree_map", "zeros_like"]
