"""Classifier guidance: add ``scale * grad_{x_t} log p(y | x_t)`` to the model's score.

With the score ``-eps / sigma_t`` of the model, the guided estimate is

    ``eps' = eps - sigma_t * scale * g``,    ``x0' = (z_t - sigma_t eps') / alpha_t = x0 + sigma_t^2 / alpha_t * scale * g``

with ``g = grad_{x_t} log p(y | x_t)`` (shape of the state). For a product process each Gaussian
component is shifted by its own component of ``g`` (discrete components are left alone). The
gradient is taken by autograd, so these wrappers set ``needs_grad = True`` and
:func:`polydiff.sample` runs with gradients enabled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..spaces import DataSpace
from ..types import Cond, State
from .base import GuidedModel
from .common import detach_denoised, requires_grad_copy, shift_score, space_for, state_grad


class ScoreGuidance:
    """Base for guidance by the gradient of a log-likelihood ``log p(y | x_t)`` (shape ``(B,)``).

    Subclasses implement :meth:`log_likelihood`, which may use the model's estimate ``d`` computed
    at the differentiable ``x_t`` (reconstruction guidance differentiates through the network).
    """

    name: ClassVar[str]  # set by concrete subclasses (the base is not registered)
    needs_grad: ClassVar[bool] = True

    def log_likelihood(self, x_t: State, t: Tensor, cond: Cond | None, d: Any, space: DataSpace) -> Tensor:
        """``scale * log p(y | x_t)`` up to a constant, shape ``(B,)``, differentiable in ``x_t``."""
        raise NotImplementedError

    def wrap(self, model: Any) -> GuidedModel:
        """Return ``model`` guided by this log-likelihood."""
        return ScoreGuidedModel(model, self)


class ScoreGuidedModel(GuidedModel):
    """``denoise`` of the wrapped model with its score shifted by ``grad_{x_t}`` of a guidance's log-likelihood.

    If ``x_t`` already carries a graph (an outer gradient guidance differentiates through this one)
    the result stays attached to it, with this wrapper's own gradient treated as a constant.
    """

    needs_grad = True

    def __init__(self, inner: Any, guidance: ScoreGuidance) -> None:
        super().__init__(inner)
        self.guidance = guidance

    def denoise(self, x_t: State, t: Tensor, cond: Cond | None = None, *, space: DataSpace | None = None) -> Any:
        space = space_for(x_t, space)
        with torch.enable_grad():
            x, owned = requires_grad_copy(x_t)
            d = self.inner.denoise(x, t, cond, space=space)
            ll = self.guidance.log_likelihood(x, t, cond, d, space)
            if ll.ndim != 1:
                raise ValueError(f"{self.guidance.name}: the log-likelihood must have shape (B,), got {tuple(ll.shape)}")
            g = state_grad(ll, x, retain_graph=not owned)
        out = shift_score(d, g, self.process, t, space)
        return detach_denoised(out) if owned else out


class ClassifierGradient(ScoreGuidance):
    """Classifier guidance with a differentiable ``log_prob_fn(x_t, t, cond) -> (B,)``.

    Args:
        log_prob_fn: ``log p(y | x_t)`` per sample, shape ``(B,)``; ``x_t`` is the sampler's state
            (in the process's own coordinates), ``t`` the times ``(B,)``, ``cond`` the conditioning.
        scale: guidance strength (``1`` adds the exact gradient: sampling ``p(x | y)`` when
            ``log_prob_fn`` is the true ``log p(y | x_t)``).
    """

    name: ClassVar[str] = "classifier"

    def __init__(self, log_prob_fn: Callable[[State, Tensor, Cond | None], Tensor], scale: float = 1.0) -> None:
        if not callable(log_prob_fn):
            raise ValueError(f"ClassifierGradient: log_prob_fn must be callable, got {type(log_prob_fn).__name__}")
        self.log_prob_fn = log_prob_fn
        self.scale = float(scale)

    def log_likelihood(self, x_t: State, t: Tensor, cond: Cond | None, d: Any, space: DataSpace) -> Tensor:
        return self.scale * self.log_prob_fn(x_t, t, cond)

    def __repr__(self) -> str:
        return f"ClassifierGradient(scale={self.scale})"


__all__ = ["ClassifierGradient", "ScoreGuidance", "ScoreGuidedModel"]
