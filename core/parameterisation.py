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

from collections.abc import Callable

from torch import Tensor

from .schedules import ScheduleValues
from .spaces import DataSpace
from .types import Prediction, State


class _Lazy:
    """A deferred value: ``fn()`` evaluated on first access (see :meth:`Denoised.lazy`)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], State]) -> None:
        self.fn = fn


class Denoised:
    """A Gaussian model's estimate at ``z_t``: ``x0`` and ``eps`` with ``z_t = alpha x0 + sigma eps``.

    Immutable. ``Denoised(x0, eps)`` holds two states (shaped like ``z_t``); :meth:`Denoised.lazy` defers
    either one to its first access (then cached), so a sampler that reads only ``x0`` never pays for
    the conversion to ``eps``.
    """

    __slots__ = ("_x0", "_eps")

    def __init__(self, x0: State, eps: State) -> None:
        object.__setattr__(self, "_x0", x0)
        object.__setattr__(self, "_eps", eps)

    @classmethod
    def lazy(cls, x0: State | Callable[[], State], eps: State | Callable[[], State]) -> Denoised:
        """An estimate whose ``x0`` and/or ``eps`` are zero-argument functions, each evaluated once on first access."""
        return cls(_Lazy(x0) if callable(x0) else x0, _Lazy(eps) if callable(eps) else eps)

    def _get(self, name: str) -> State:
        v = object.__getattribute__(self, name)
        if isinstance(v, _Lazy):
            v = v.fn()
            object.__setattr__(self, name, v)
        return v

    @property
    def x0(self) -> State:
        """The estimate of the clean data, shaped like ``z_t``."""
        return self._get("_x0")

    @property
    def eps(self) -> State:
        """The estimate of the noise, shaped like ``z_t``."""
        return self._get("_eps")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Denoised is immutable (cannot set {name!r})")

    def __repr__(self) -> str:
        return f"Denoised(x0={self.x0!r}, eps={self.eps!r})"

    def __reduce__(self) -> tuple[type, tuple[State, State]]:  # pickle / copy: both fields, evaluated
        return (Denoised, (self.x0, self.eps))


def to_x0_eps(
    out: State,
    prediction: Prediction | str,
    z_t: State,
    values: ScheduleValues | None,
    space: DataSpace,
    *,
    shared: tuple[float, float, float, float] | None = None,
) -> Denoised:
    """Convert a prediction ``out`` (shaped like ``z_t``) to :class:`Denoised`.

    ``x0`` from an ``eps`` prediction and ``eps`` from an ``x0`` prediction are converted on first access only.

    Args:
        out: the network output in ``prediction`` space, shaped like ``z_t``.
        prediction: one of ``eps``, ``x0``, ``v``, ``score``, ``velocity``.
        z_t: the state in standard coordinates.
        values: schedule values at ``t``, each ``(B,)`` (not read when ``shared`` is given).
        space: the data space (expands ``(B,)`` scalars onto the state).
        shared: ``(alpha, sigma, d_alpha, d_sigma)`` as numbers when every sample has the same ``t`` (a sampler's
            grid time): the conversion then multiplies by numbers instead of expanded ``(B,)`` tensors.
    """
    p = prediction if isinstance(prediction, Prediction) else Prediction.parse(prediction)
    if shared is not None:
        a, s, da, ds = shared
    else:
        assert values is not None, "to_x0_eps needs the schedule values or shared numbers"
        a = space.expand(values.alpha.to(_dt(z_t)), z_t)
        s = space.expand(values.sigma.to(_dt(z_t)), z_t)
    if p is Prediction.EPS:  # the other field is converted on first use only
        return Denoised.lazy(x0=lambda: (z_t - s * out) / a, eps=out)
    if p is Prediction.X0:
        return Denoised.lazy(x0=out, eps=lambda: (z_t - a * out) / s)
    if p is Prediction.SCORE:
        eps = -s * out
        return Denoised(x0=(z_t - s * eps) / a, eps=eps)
    if p is Prediction.V:
        norm = a * a + s * s
        return Denoised(x0=(a * z_t - s * out) / norm, eps=(s * z_t + a * out) / norm)
    if p is Prediction.VELOCITY:
        if shared is None:
            assert values is not None
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
    if isinstance(x, Tensor):
        return x.dtype
    from .state import first_leaf

    return first_leaf(x).dtype


__all__ = ["Denoised", "convert", "from_x0_eps", "to_x0_eps"]
