"""Helpers shared by the guidance wrappers: schedule coefficients on a state, gradients of states,
and score shifts applied to a :class:`~polydiff.Denoised` (or each Gaussian part of a product).

A score shift adds ``scale * g`` (``g = grad_{x_t} log p(y | x_t)``) to the model's score
``-eps / sigma``: ``eps' = eps - sigma * g`` and, keeping ``z_t = alpha x0 + sigma eps`` fixed,
``x0' = x0 + sigma^2 / alpha * g``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..denoiser import DiscreteDenoised, ProductDenoised
from ..parameterisation import Denoised
from ..processes import ForwardProcess, ProductProcess
from ..spaces import CompositeSpace, DataSpace, infer_space
from ..state import StateDict, first_leaf, tree_leaves
from ..types import State


def alpha_sigma(process: ForwardProcess, t: Tensor, like: State, space: DataSpace) -> tuple[State, State]:
    """``alpha_t`` and ``sigma_t`` of a Gaussian process expanded onto ``like`` (dtype of ``like``)."""
    v = process.schedule(t)
    dtype = first_leaf(like).dtype
    return space.expand(v.alpha.to(dtype), like), space.expand(v.sigma.to(dtype), like)


def requires_grad_copy(x: State) -> tuple[State, bool]:
    """Return ``(x', owned)``: ``x`` itself when a floating leaf already carries a graph (an outer
    wrapper differentiates through us), else a detached copy whose floating leaves require grad."""
    if any(v.requires_grad for v in tree_leaves(x)):
        return x, False
    if isinstance(x, Mapping):
        return StateDict({k: requires_grad_copy(v)[0] for k, v in x.items()}), True
    return (x.detach().requires_grad_(True) if x.is_floating_point() else x), True


def state_grad(value: Tensor, x: State, *, retain_graph: bool) -> State:
    """``grad_x value.sum()`` shaped like ``x``; integer (token) leaves get zeros of their shape (float)."""
    if isinstance(x, Mapping):
        keys = list(x)
        leaves = [x[k] for k in keys]
    else:
        keys, leaves = None, [x]
    diff = [v for v in leaves if v.requires_grad]
    grads = torch.autograd.grad(value.sum(), diff, retain_graph=retain_graph, allow_unused=True) if diff else ()
    it = iter(grads)
    out = []
    for v in leaves:
        g = next(it) if v.requires_grad else None
        out.append(torch.zeros_like(v, dtype=v.dtype if v.is_floating_point() else torch.get_default_dtype()) if g is None else g)
    return out[0] if keys is None else StateDict(dict(zip(keys, out, strict=True)))


def detach_denoised(d: Any) -> Any:
    """A copy of a denoised estimate with every tensor detached from the autograd graph."""
    if isinstance(d, Denoised):
        return Denoised(x0=_detach(d.x0), eps=_detach(d.eps))
    if isinstance(d, DiscreteDenoised):
        return DiscreteDenoised(d.log_probs.detach())
    if isinstance(d, ProductDenoised):
        return ProductDenoised({k: detach_denoised(p) for k, p in d.parts.items()})
    raise TypeError(f"cannot detach {type(d).__name__}")


def _detach(x: State) -> State:
    return StateDict({k: v.detach() for k, v in x.items()}) if isinstance(x, Mapping) else x.detach()


def x0_of(d: Any) -> State:
    """The clean estimate of a Gaussian estimate as a state; for a product, the Gaussian components only."""
    if isinstance(d, Denoised):
        return d.x0
    if isinstance(d, ProductDenoised):
        return StateDict({k: p.x0 for k, p in d.parts.items() if isinstance(p, Denoised)})
    raise TypeError(f"this guidance needs a Gaussian estimate (Denoised), got {type(d).__name__}")


def shift_score(d: Any, grad: State, process: ForwardProcess, t: Tensor, space: DataSpace) -> Any:
    """Add ``grad`` (already multiplied by the guidance scale) to the score of every Gaussian part of ``d``.

    Args:
        d: :class:`Denoised` (dense or composite state) or :class:`ProductDenoised`.
        grad: ``scale * grad_{x_t} log p(y | x_t)`` shaped like the state.
        process: the model's process; t: times ``(B,)``; space: the state's space.
    """
    if isinstance(d, Denoised):
        a, s = alpha_sigma(process, t, d.x0, space)
        return Denoised(x0=d.x0 + s * s / a * grad, eps=d.eps - s * grad)
    if isinstance(d, ProductDenoised):
        if not isinstance(process, ProductProcess) or not isinstance(space, CompositeSpace):
            raise ValueError("a ProductDenoised estimate needs a ProductProcess and a CompositeSpace")
        parts = {}
        for k, p in d.parts.items():
            parts[k] = shift_score(p, grad[k], process.components[k], t, space[k]) if isinstance(p, Denoised) else p
        return ProductDenoised(parts)
    raise TypeError(f"score guidance needs a Gaussian estimate, got {type(d).__name__}")


def space_for(x: State, space: DataSpace | None) -> DataSpace:
    """``space`` or the default space of ``x``."""
    return space if space is not None else infer_space(x)


__all__ = ["alpha_sigma", "detach_denoised", "requires_grad_copy", "shift_score", "space_for", "state_grad", "x0_of"]
