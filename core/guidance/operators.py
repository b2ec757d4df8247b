"""Measurement operators ``y = A(x) + n`` for reconstruction guidance and data consistency.

An operator maps a state ``x`` (a batch of ``B`` samples) to a measurement ``A(x)``; linear ones
also have the adjoint ``A^T``. Two built-ins:

* :class:`MatrixOperator`: a dense matrix ``A`` of shape ``(m, D)`` acting on each flattened sample
  of a dense state ``(B, *event_shape)`` with ``prod(event_shape) = D``; measurements ``(B, m)``.
* :class:`MaskOperator`: ``A x = mask * x`` (observe some entries), measurements shaped like the
  state; self-adjoint. Masks may differ per sample and per component of a composite state, which
  makes it the operator for imputation and forecasting.

:func:`check_adjoint` tests ``<A x, y> = <x, A^T y>`` on random draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..spaces import CompositeSpace, DataSpace, DenseSpace, infer_space
from ..state import StateDict, first_leaf
from ..types import State


@runtime_checkable
class MeasurementOperator(Protocol):
    """``forward(x) -> A(x)``; linear operators add ``adjoint(y) -> A^T y`` (shaped like a state).

    ``range_space(space)`` (optional) names the :class:`~polydiff.spaces.DataSpace` of measurements
    given the state's space, so per-sample norms of residuals are taken correctly; when absent the
    measurement's default space is used (a dense ``(B, ...)`` tensor).
    """

    def forward(self, x: State) -> State: ...


class MatrixOperator:
    """A dense linear operator ``A`` of shape ``(m, D)`` on dense states ``(B, *event_shape)``.

    Args:
        matrix: ``A``, shape ``(m, D)``.
        event_shape: the shape of one sample (default ``(D,)``); its element count must be ``D``.
    """

    linear = True

    def __init__(self, matrix: Tensor, event_shape: Sequence[int] | None = None) -> None:
        if not isinstance(matrix, Tensor) or matrix.ndim != 2:
            raise ValueError(f"MatrixOperator: matrix must be a 2-D tensor (m, D), got {getattr(matrix, 'shape', type(matrix))}")
        self.matrix = matrix
        self.event_shape = tuple(event_shape) if event_shape is not None else (matrix.shape[1],)
        if int(torch.tensor(self.event_shape).prod()) != matrix.shape[1]:
            raise ValueError(f"MatrixOperator: event_shape {self.event_shape} has not D={matrix.shape[1]} elements")

    def forward(self, x: Tensor) -> Tensor:
        """``A x`` per sample: ``(B, *event_shape) -> (B, m)``."""
        if not isinstance(x, Tensor) or tuple(x.shape[1:]) != self.event_shape:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"MatrixOperator.forward: expected a tensor (B, {', '.join(map(str, self.event_shape))}), got {got}")
        return x.reshape(x.shape[0], -1) @ self.matrix.to(device=x.device, dtype=x.dtype).T

    def adjoint(self, y: Tensor) -> Tensor:
        """``A^T y`` per sample: ``(B, m) -> (B, *event_shape)``."""
        if y.ndim != 2 or y.shape[1] != self.matrix.shape[0]:
            raise ValueError(f"MatrixOperator.adjoint: expected a tensor (B, {self.matrix.shape[0]}), got {tuple(y.shape)}")
        return (y @ self.matrix.to(device=y.device, dtype=y.dtype)).reshape(y.shape[0], *self.event_shape)

    def range_space(self, space: DataSpace) -> DataSpace:
        """Measurements are dense ``(B, m)``."""
        return DenseSpace()

    def __repr__(self) -> str:
        return f"MatrixOperator(m={self.matrix.shape[0]}, event_shape={self.event_shape})"


class MaskOperator:
    """Observe the entries where ``mask`` is true: ``A x = mask * x`` (self-adjoint projection).

    Args:
        mask: bool or 0/1 tensor broadcastable to the state by the usual trailing-axis rules
            (``(B, ...)`` per sample, or one sample's shape ``(...)`` for all; give ``(B, L, 1)``
            to observe whole rows of a ``(B, L, C)`` state), or for a composite state a mapping ``{component: mask}``; components
            absent from the mapping are unobserved.
    """

    linear = True

    def __init__(self, mask: Tensor | Mapping[str, Tensor]) -> None:
        if isinstance(mask, Mapping):
            self.mask: Tensor | dict[str, Tensor] = {k: _as_bool(v, f"mask[{k!r}]") for k, v in mask.items()}
        else:
            self.mask = _as_bool(mask, "mask")

    def _apply(self, x: State) -> State:
        if isinstance(self.mask, dict):
            if not isinstance(x, Mapping):
                raise ValueError(f"MaskOperator: a per-component mask needs a composite state, got {type(x).__name__}")
            unknown = set(self.mask) - set(x)
            if unknown:
                raise ValueError(f"MaskOperator: mask names components {sorted(unknown)} that the state lacks ({sorted(x)})")
            return StateDict({k: _masked(v, self.mask.get(k)) for k, v in x.items()})
        if isinstance(x, Mapping):
            return StateDict({k: _masked(v, self.mask) for k, v in x.items()})
        return _masked(x, self.mask)

    def forward(self, x: State) -> State:
        """``mask * x``, shaped like ``x`` (zeros where unobserved)."""
        return self._apply(x)

    def adjoint(self, y: State) -> State:
        """``mask * y`` (the operator is a self-adjoint projection)."""
        return self._apply(y)

    def range_space(self, space: DataSpace) -> DataSpace:
        """Measurements live in the state's own space."""
        return space

    def __repr__(self) -> str:
        return f"MaskOperator(components={sorted(self.mask)})" if isinstance(self.mask, dict) else f"MaskOperator(shape={tuple(self.mask.shape)})"


def _as_bool(m: Tensor, name: str) -> Tensor:
    if not isinstance(m, Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(m).__name__}")
    if m.dtype == torch.bool:
        return m
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError(f"{name} must be boolean or contain only 0 and 1")
    return m.to(torch.bool)


def _masked(v: Tensor, m: Tensor | None) -> Tensor:
    if m is None:
        return torch.zeros_like(v)
    m = m.to(v.device)
    if m.ndim > v.ndim:
        raise ValueError(f"mask of shape {tuple(m.shape)} has more dimensions than the state {tuple(v.shape)}")
    return torch.where(m, v, torch.zeros((), dtype=v.dtype, device=v.device))


def measurement_sum(operator: Any, r: State, space: DataSpace) -> Tensor:
    """Per-sample sum ``(B,)`` of a measurement-shaped ``r`` over the operator's range space."""
    rs = operator.range_space(space) if hasattr(operator, "range_space") else infer_space(r)
    return _restrict(rs, r).sum(r)


def _restrict(space: DataSpace, r: State) -> DataSpace:
    """A composite space restricted to the components of ``r`` (e.g. the Gaussian parts of a product)."""
    if isinstance(space, CompositeSpace) and isinstance(r, Mapping) and set(r) != set(space.spaces):
        return CompositeSpace({k: space[k] for k in r})
    return space


def measurement_count(operator: Any, y: State, space: DataSpace) -> Tensor:
    """Number of measured entries per sample ``(B,)``: nonzero entries of ``A(1)`` for a mask, else the size of ``y``."""
    if isinstance(operator, MaskOperator):
        ones = StateDict({k: torch.ones_like(v) for k, v in y.items()}) if isinstance(y, Mapping) else torch.ones_like(y)
        return measurement_sum(operator, operator.forward(ones), space)
    rs = operator.range_space(space) if hasattr(operator, "range_space") else infer_space(y)
    return _restrict(rs, y).count(y)


@dataclass(frozen=True)
class AdjointCheck:
    """Result of :func:`check_adjoint`: ``lhs = <A x, y>``, ``rhs = <x, A^T y>`` per sample ``(B,)`` and the worst relative error."""

    lhs: Tensor
    rhs: Tensor
    rel_error: float


def check_adjoint(operator: Any, x: State, *, space: DataSpace | None = None, generator: torch.Generator | None = None) -> AdjointCheck:
    """Test ``<A u, v> = <u, A^T v>`` with ``u``, ``v`` standard normal draws (``u`` shaped like ``x``).

    Args:
        operator: a linear operator with ``forward`` and ``adjoint``.
        x: a template state ``(B, ...)`` (values unused; shapes, dtype and device are).
        space: the state's space (inferred when omitted); generator: for the draws.

    Returns:
        :class:`AdjointCheck`; an exact adjoint gives ``rel_error`` at rounding level.
    """
    if not hasattr(operator, "adjoint"):
        raise ValueError(f"{type(operator).__name__} has no adjoint(); check_adjoint needs a linear operator")
    space = space or infer_space(x)
    u = space.randn_like(x, generator)
    au = operator.forward(u)
    v = infer_space(au).randn_like(au, generator) if not hasattr(operator, "range_space") else operator.range_space(space).randn_like(au, generator)
    lhs = measurement_sum(operator, au * v, space).to(torch.float64)
    rhs = space.sum(u * operator.adjoint(v)).to(torch.float64)
    scale = (lhs.abs() + rhs.abs()).clamp(min=torch.finfo(first_leaf(x).dtype).tiny)
    return AdjointCheck(lhs=lhs, rhs=rhs, rel_error=float(((lhs - rhs).abs() / scale).max()))


__all__ = ["AdjointCheck", "MaskOperator", "MatrixOperator", "MeasurementOperator", "check_adjoint", "measurement_count", "measurement_sum"]
