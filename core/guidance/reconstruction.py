"""Reconstruction guidance (DPS): differentiate a data-fidelity energy of ``x0_hat(x_t)`` through the network.

For measurements ``y = A(x_0) + n`` the intractable ``log p(y | x_t)`` is replaced by
``-E(y - A(x0_hat(x_t)))`` (Chung et al. 2023, *Diffusion Posterior Sampling*), where ``x0_hat`` is
the model's clean estimate. Its gradient w.r.t. ``x_t`` (backpropagated through ``model.denoise``)
is added to the score exactly like classifier guidance (see :mod:`polydiff.guidance.classifier`).

Energies (``r = (y - A(x0_hat)) / noise_std``, per-sample norms over the operator's range space):

* ``norm="l2sq"``: ``E = scale * ||r||^2 / 2`` — with ``scale = 1`` the Gaussian likelihood
  ``N(y; A x0_hat, noise_std^2 I)`` (TSDiff's MSE self-guidance and Diffusion-TS reconstruction
  guidance are this energy with a :class:`~polydiff.guidance.operators.MaskOperator`);
* ``norm="l2"``: ``E = scale * ||r||`` — DPS's un-squared norm, i.e. the squared norm's gradient
  with step ``scale / (2 ||r||)`` (the official code's ``zeta / ||y - A x0_hat||``);
* a callable ``norm(r, space) -> (B,)`` for any other energy (quantile/pinball losses, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..spaces import DataSpace
from ..types import Cond, State
from .classifier import ScoreGuidance
from .common import x0_of
from .operators import measurement_sum

Energy = Callable[[State, DataSpace], Tensor]


class Reconstruction(ScoreGuidance):
    """Guidance by ``-scale * E(y - A(x0_hat(x_t)))`` (see the module docstring).

    Args:
        operator: a measurement operator with ``forward(x0) -> A(x0)`` (differentiable; need not be linear).
        y: the measurements, shaped like ``operator.forward(x0)`` (batch ``B`` included).
        scale: guidance strength (``zeta`` in DPS).
        noise_std: measurement noise ``sigma_y`` dividing the residual (``None``: 1).
        norm: ``"l2sq"`` (default here), ``"l2"`` or a callable energy ``(r, range_space) -> (B,)``.
    """

    name: ClassVar[str] = "reconstruction"
    default_norm: ClassVar[str] = "l2sq"

    def __init__(self, operator: Any, y: State, scale: float = 1.0, noise_std: float | None = None, norm: str | Energy | None = None) -> None:
        if not hasattr(operator, "forward"):
            raise ValueError(f"{type(self).__name__}: operator must have forward(x), got {type(operator).__name__}")
        norm = self.default_norm if norm is None else norm
        if not callable(norm) and norm not in ("l2", "l2sq"):
            raise ValueError(f"{type(self).__name__}: norm must be 'l2', 'l2sq' or a callable, got {norm!r}")
        if noise_std is not None and not float(noise_std) > 0:
            raise ValueError(f"{type(self).__name__}: noise_std must be > 0, got {noise_std}")
        self.operator = operator
        self.y = y
        self.scale = float(scale)
        self.noise_std = None if noise_std is None else float(noise_std)
        self.norm = norm

    def residual(self, x0: State) -> State:
        """``(y - A(x0)) / noise_std``, shaped like ``y``."""
        r = self.y - self.operator.forward(x0)
        return r if self.noise_std is None else r / self.noise_std

    def energy(self, r: State, space: DataSpace) -> Tensor:
        """``E(r)`` per sample ``(B,)`` (before ``scale``)."""
        if callable(self.norm):
            return self.norm(r, space)
        sq = measurement_sum(self.operator, r * r, space)
        if self.norm == "l2sq":
            return 0.5 * sq
        return (sq + torch.finfo(sq.dtype).tiny).sqrt()

    def log_likelihood(self, x_t: State, t: Tensor, cond: Cond | None, d: Any, space: DataSpace) -> Tensor:
        return -self.scale * self.energy(self.residual(x0_of(d)), space)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(operator={self.operator!r}, scale={self.scale}, noise_std={self.noise_std}, norm={self.norm!r})"


class DPS(Reconstruction):
    """Diffusion Posterior Sampling: :class:`Reconstruction` with DPS's un-squared norm by default (``norm="l2"``)."""

    name: ClassVar[str] = "dps"
    default_norm: ClassVar[str] = "l2"


__all__ = ["DPS", "Energy", "Reconstruction"]
