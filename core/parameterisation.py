"""Exact conversions between Gaussian prediction types.

With ``z_t = alpha x_0 + sigma eps`` (standard coordinates; ``z_t = x_t - m_t`` for processes with
a mean offset) the five prediction types are linear in ``(x_0, eps)``:

* ``eps``; ``x0``; ``score = -eps / sigma`` (the score of ``q(z_t)``);
* ``v = alpha eps - sigma x_0`` (Salimans & Ho 2022, written for any ``alpha``, ``sigma``);
* ``velocity = d_alpha x_0 + d_sigma eps`` (the probability-flow ODE velocity ``dz/dt``).

Each converts to ``(x_0, eps)`` given ``z_t`` by solving a 2x2 linear system in closed form.
Per-sample coefficients (shape ``(B,)``) are expanded onto the state by a
:class:`~polydiff.spaces.DataSpace`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .schedules import ScheduleValues
from .spaces import DataSpace
from .types import Prediction, State


@dataclass(frozen=True)
class Denoised:
    """A Gaussian model's estimate at ``z_t``: ``x0`` and ``eps`` with ``z_t = alpha x0 + sigma eps``."""

    x0: State
    eps: State


def to_x0_eps(out: State, prediction: Prediction | str, z_t: State, values: ScheduleValues, space: DataSpace) -> Denoised:
    """Convert a prediction ``out`` (shaped like ``z_t``) to :class:`Denoised`.

    Args:
        out: the network output in ``prediction`` space, shaped like ``z_t``.
        prediction: one of ``eps``, ``x0``, ``v``, ``score``, ``velocity``.
        z_t: the state in standard coordinates.
        values: schedule values at ``t``, each ``(B,)``.
        space: the data space (expands ``(B,)`` scalars onto the state).
    """
    p = Prediction.parse(prediction)
    a = space.expand(values.alpha.to(_dt(z_t)), z_t)
    s = space.expand(values.sigma.to(_dt(z_t)), z_t)
    if p is Prediction.EPS:
        return Denoised(x0=(z_t - s * out) / a, eps=out)
    if p is Prediction.X0:
        return Denoised(x0=out, eps=(z_t - a * out) / s)
    if p is Prediction.SCORE:
        eps = -s * out
        return Denoised(x0=(z_t - s * eps) / a, eps=eps)
    if p is Prediction.V:
        norm = a * a + s * s
        return Denoised(x0=(a * z_t - s * out) / norm, eps=(s * z_t + a * out) / norm)
    if p is Prediction.VELOCITY:
        da = space.expand(values.d_alpha.to(_dt(z_t)), z_t)
        ds = space.expand(values.d_sigma.to(_dt(z_t)), z_t)
        det = a * ds - s * da
        return Denoised(x0=(ds * z_t - s * out) / det, eps=(a * out - da * z_t) / det)
    raise ValueError(f"{p.value!r} is not a Gaussian prediction type")


def from_x0_eps(d: Denoised, prediction: Prediction | str, values: ScheduleValues, space: DataSpace) -> State:
    """Express :class:`Denoised` in ``prediction`` space (inverse of :func:`to_x0_eps`)."""
    p = Prediction.parse(prediction)
    like = d.x0
    if p is Prediction.X0:
        return d.x0
    if p is Prediction.EPS:
        return d.eps
    s = space.expand(values.sigma.to(_dt(like)), like)
    if p is Prediction.SCORE:
        return -d.eps / s
    a = space.expand(values.alpha.to(_dt(like)), like)
    if p is Prediction.V:
        return a * d.eps - s * d.x0
    if p is Prediction.VELOCITY:
        da = space.expand(values.d_alpha.to(_dt(like)), like)
        ds = space.expand(values.d_sigma.to(_dt(like)), like)
        return da * d.x0 + ds * d.eps
    raise ValueError(f"{p.value!r} is not a Gaussian prediction type")


def convert(
    out: State, *, src: Prediction | str, dst: Prediction | str, z_t: State, values: ScheduleValues, space: DataSpace
) -> State:
    """Convert a prediction from ``src`` to ``dst`` space exactly (shapes as ``z_t``)."""
    if Prediction.parse(src) == Prediction.parse(dst):
        return out
    return from_x0_eps(to_x0_eps(out, src, z_t, values, space), dst, values, space)


def _dt(x: State):
    from .state import first_leaf

    return first_leaf(x).dtype


__all__ = ["Denoised", "convert", "from_x0_eps", "to_x0_eps"]
