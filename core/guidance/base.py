"""Guidance: transforms of a model's prediction, or corrections of the state after each step.

Two seams (docs/DESIGN.md §3):

* a :class:`Guidance` *wraps the model*: ``guidance.wrap(model)`` returns an object with the same
  ``denoise(x_t, t, cond, space=)`` method, so samplers never know guidance exists. Classifier-free
  guidance (one batched forward), classifier gradients, DPS and CG data consistency work here.
* a :class:`~polydiff.samplers.base.StateCorrection` has ``correct(x, t, ctx)`` and is applied by the
  sampler after every step (replacement of known entries, projections).

``guided(model, *guidance)`` applies the wrapping kind in order; :func:`polydiff.sample` accepts
both kinds in its ``guidance=`` argument.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from ..processes import ForwardProcess
from ..spaces import DataSpace
from ..types import Cond, State


@runtime_checkable
class Guidance(Protocol):
    """Something that wraps a sampler model into a guided one."""

    def wrap(self, model: Any) -> Any: ...


class GuidedModel:
    """Base for model wrappers: forwards ``process`` and ``denoise`` to the wrapped model.

    Subclasses override :meth:`denoise`; ``self.inner`` is the wrapped model.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.process: ForwardProcess = inner.process

    def denoise(self, x_t: State, t: Tensor, cond: Cond | None = None, *, space: DataSpace | None = None) -> Any:
        return self.inner.denoise(x_t, t, cond, space=space)

    def __getattr__(self, name: str) -> Any:  # prediction, net, precond... of the innermost model
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def guided(model: Any, *guidance: Any) -> Any:
    """Wrap ``model`` with each model-wrapping guidance in order; state corrections are skipped.

    Returns:
        a model with ``denoise`` that samplers use like any other.
    """
    for g in guidance:
        if hasattr(g, "wrap"):
            model = g.wrap(model)
        elif not hasattr(g, "correct"):
            raise TypeError(f"{type(g).__name__} is neither a guidance (wrap) nor a state correction (correct)")
    return model


def split_guidance(guidance: Any) -> tuple[list[Any], list[Any]]:
    """Split a guidance sequence into ``(model wrappers, state corrections)``; an object may be both."""
    if guidance is None:
        return [], []
    if hasattr(guidance, "wrap") or hasattr(guidance, "correct"):
        guidance = (guidance,)
    wrappers, corrections = [], []
    for g in guidance:
        if not hasattr(g, "wrap") and not hasattr(g, "correct"):
            raise TypeError(f"guidance item {g!r} has neither wrap() nor correct()")
        if hasattr(g, "wrap"):
            wrappers.append(g)
        if hasattr(g, "correct"):
            corrections.append(g)
    return wrappers, corrections
