"""Shared type names: the prediction vocabulary, states and per-sample times.

Conventions (see docs/DESIGN.md §2):

* time ``t`` lies in ``[0, 1]``; ``t = 0`` is data and ``t = 1`` is noise;
* per-sample scalars (``t``, ``alpha_t``, ``sigma_t``, log-SNR) have shape ``(B,)``;
* a *state* is a tensor or a mapping of named tensors (a composite state);
  how per-sample scalars broadcast onto it is the job of a
  :class:`polydiff.spaces.DataSpace`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, TypeAlias

import torch
from torch import Tensor

State: TypeAlias = Tensor | Mapping[str, Tensor]
"""A dense tensor, or a mapping of component name to tensor (composite state)."""

Time: TypeAlias = Tensor
"""Per-sample times, shape ``(B,)``, values in ``[0, 1]``."""

Cond: TypeAlias = Mapping[str, Any]
"""Conditioning keyword arguments passed to the network as ``net(x_t, t, **cond)``."""

GeneratorLike: TypeAlias = torch.Generator | Sequence[torch.Generator] | None
"""One generator for the batch, one per sample (batch-composition independent), or none."""


class Prediction(StrEnum):
    """What a network predicts. Conversions between them are exact (see ``parameterisation``)."""

    EPS = "eps"
    X0 = "x0"
    V = "v"
    SCORE = "score"
    VELOCITY = "velocity"
    X0_LOGITS = "x0_logits"

    @classmethod
    def parse(cls, value: str | Prediction, *, field: str = "prediction") -> Prediction:
        """Return the member for ``value`` or raise a ``ValueError`` naming the valid ones."""
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise ValueError(f"{field}={value!r} is not a prediction type; expected one of: {valid}") from None


GAUSSIAN_PREDICTIONS = frozenset({Prediction.EPS, Prediction.X0, Prediction.V, Prediction.SCORE, Prediction.VELOCITY})
DISCRETE_PREDICTIONS = frozenset({Prediction.X0_LOGITS})

__all__ = [
    "Cond",
    "DISCRETE_PREDICTIONS",
    "GAUSSIAN_PREDICTIONS",
    "GeneratorLike",
    "Prediction",
    "State",
    "Time",
]
