"""Classifier-free guidance in one batched forward: ``pred = uncond + w * (cond - uncond)``.

Scale conventions (docs/DESIGN.md §2): polydiff uses the Imagen / diffusers convention ``w``, where
``w = 1`` is the conditional model (no guidance) and ``w = 0`` the unconditional one. The original
formulation of Ho & Salimans writes ``(1 + w') cond - w' uncond``; convert with
:meth:`ClassifierFree.from_original_weight` (``w = 1 + w'``). Gaussian estimates are combined in
``eps`` and ``x0`` alike: both are affine in the same ``z_t`` (``x0 = (z_t - sigma eps) / alpha``),
so combining either gives the same guided pair, and so would ``v``, ``score`` or ``velocity``.
Discrete estimates are combined in log-probabilities and renormalised (``log_softmax``).

The unconditional half of the batch gets ``cond`` with some entries replaced by a *null* value:

* ``uncond={"label": null}`` — a mapping of overrides; each value is a tensor (broadcast to the
  conditional value's shape), a plain value, or a callable ``fn(cond_value) -> null_value``;
* ``drop_key="label", null=...`` — shorthand for ``uncond={"label": null}`` (``null`` defaults to
  ``torch.zeros_like``).

Tensor conditioning values must carry the batch (or row) axis first; shared values (non-tensors,
0-dim tensors) must be equal in both halves. The state, times and conditioning are concatenated
along the leading axis (``[cond, uncond]``) and
the data space is doubled accordingly (dense, masked, ragged and composite spaces are supported),
so the network runs once per step on ``2 B`` samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..denoiser import DiscreteDenoised, ProductDenoised
from ..parameterisation import Denoised
from ..spaces import CompositeSpace, DataSpace, DenseSpace, MaskedSpace, RaggedSpace
from ..state import StateDict
from ..types import Cond, State
from .base import GuidedModel
from .common import space_for


class ClassifierFree:
    """Classifier-free guidance (see the module docstring for conventions and the null condition).

    Args:
        scale: ``w``; ``1`` means no guidance.
        uncond: overrides that turn ``cond`` into the unconditional conditioning.
        drop_key, null: shorthand for ``uncond={drop_key: null}``.
        interval: ``(t_lo, t_hi)``: guide only samples with ``t_lo <= t <= t_hi`` (Kynkäänniemi et al.
            2024); when no sample of the batch is inside, only the conditional forward runs.
        batched: ``False`` runs two forwards instead of one batched forward (for spaces that cannot be doubled).
    """

    name: ClassVar[str] = "cfg"
    needs_grad: ClassVar[bool] = False

    def __init__(
        self,
        scale: float,
        uncond: Mapping[str, Any] | None = None,
        *,
        drop_key: str | None = None,
        null: Any = None,
        interval: tuple[float, float] | None = None,
        batched: bool = True,
    ) -> None:
        overrides = dict(uncond or {})
        if drop_key is not None:
            if drop_key in overrides:
                raise ValueError(f"ClassifierFree: drop_key={drop_key!r} is also given in uncond")
            overrides[drop_key] = torch.zeros_like if null is None else null
        if not overrides:
            raise ValueError("ClassifierFree: give the null condition as uncond={key: null_value} or drop_key=...")
        if interval is not None:
            lo, hi = (float(v) for v in interval)
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"ClassifierFree: interval must satisfy 0 <= t_lo <= t_hi <= 1, got {interval}")
            interval = (lo, hi)
        self.scale = float(scale)
        self.uncond = overrides
        self.interval = interval
        self.batched = bool(batched)

    @classmethod
    def from_original_weight(cls, weight: float, uncond: Mapping[str, Any] | None = None, **kwargs: Any) -> ClassifierFree:
        """From Ho & Salimans' ``(1 + w') cond - w' uncond`` convention: ``scale = 1 + weight``."""
        return cls(1.0 + float(weight), uncond, **kwargs)

    def null_cond(self, cond: Cond | None) -> dict[str, Any]:
        """The unconditional conditioning: ``cond`` with the overrides applied."""
        cond = dict(cond or {})
        missing = set(self.uncond) - set(cond)
        if missing:
            raise ValueError(f"ClassifierFree: cond has no key(s) {sorted(missing)} to replace by the null condition; cond has {sorted(cond)}")
        out = dict(cond)
        for k, null in self.uncond.items():
            value = null(cond[k]) if callable(null) else null
            if isinstance(cond[k], Tensor):
                value = torch.as_tensor(value, dtype=cond[k].dtype, device=cond[k].device)
                value = torch.broadcast_to(value, cond[k].shape)
            out[k] = value
        return out

    def weights(self, t: Tensor) -> Tensor:
        """Per-sample guidance scale ``(B,)``: ``scale`` inside the interval, ``1`` outside."""
        w = torch.full_like(t, self.scale, dtype=t.dtype if t.is_floating_point() else torch.float64)
        if self.interval is None:
            return w
        inside = (t >= self.interval[0]) & (t <= self.interval[1])
        return torch.where(inside, w, torch.ones_like(w))

    def wrap(self, model: Any) -> GuidedModel:
        """Return ``model`` with classifier-free guidance."""
        return ClassifierFreeModel(model, self)

    def __repr__(self) -> str:
        return f"ClassifierFree(scale={self.scale}, uncond={sorted(self.uncond)}, interval={self.interval})"


class ClassifierFreeModel(GuidedModel):
    """The guided model made by :meth:`ClassifierFree.wrap`."""

    def __init__(self, inner: Any, guidance: ClassifierFree) -> None:
        super().__init__(inner)
        self.guidance = guidance

    def denoise(self, x_t: State, t: Tensor, cond: Cond | None = None, *, space: DataSpace | None = None) -> Any:
        g = self.guidance
        space = space_for(x_t, space)
        w = g.weights(t)
        if bool((w == 1.0).all()):
            return self.inner.denoise(x_t, t, cond, space=space)
        ucond = g.null_cond(cond)
        if g.batched:
            both = self.inner.denoise(_cat(x_t, x_t), torch.cat([t, t]), _cat_cond(dict(cond or {}), ucond), space=double_space(space))
            d_c, d_u = _split(both)
        else:
            d_c = self.inner.denoise(x_t, t, cond, space=space)
            d_u = self.inner.denoise(x_t, t, ucond, space=space)
        return combine(d_c, d_u, w, space)


def combine(d_c: Any, d_u: Any, w: Tensor, space: DataSpace) -> Any:
    """``d_u + w (d_c - d_u)`` per sample (``w`` shape ``(B,)``); discrete log-probs are renormalised."""
    if isinstance(d_c, Denoised):
        ww = space.expand(w.to(_dtype(d_c.x0)), d_c.x0)
        return Denoised(x0=d_u.x0 + ww * (d_c.x0 - d_u.x0), eps=d_u.eps + ww * (d_c.eps - d_u.eps))
    if isinstance(d_c, DiscreteDenoised):
        lc, lu = d_c.log_probs, d_u.log_probs
        ww = space.expand(w.to(lc.dtype), lc[..., 0]).unsqueeze(-1)
        mixed = torch.where(lc == lu, lc, lu + ww * (lc - lu))  # equal entries (incl. -inf carry-overs) stay exact
        return DiscreteDenoised(torch.log_softmax(mixed, dim=-1))
    if isinstance(d_c, ProductDenoised):
        if not isinstance(space, CompositeSpace):
            raise ValueError("a ProductDenoised estimate needs a CompositeSpace")
        return ProductDenoised({k: combine(p, d_u[k], w, space[k]) for k, p in d_c.parts.items()})
    raise TypeError(f"ClassifierFree cannot combine {type(d_c).__name__}")


def double_space(space: DataSpace) -> DataSpace:
    """The space of a batch concatenated with itself along the leading axis."""
    if isinstance(space, CompositeSpace):
        return CompositeSpace({k: double_space(s) for k, s in space.spaces.items()})
    if isinstance(space, RaggedSpace):
        seg = space.segment_ids
        return type(space)(torch.cat([seg, seg + space.num_segments]), 2 * space.num_segments)
    if isinstance(space, MaskedSpace):
        return MaskedSpace(torch.cat([space.mask, space.mask]))
    if type(space) is DenseSpace:
        return space
    if hasattr(space, "repeat_batch"):
        return space.repeat_batch(2)
    raise ValueError(f"ClassifierFree cannot double the batch of {type(space).__name__}; pass batched=False (two forwards)")


def _cat(a: State, b: State) -> State:
    if isinstance(a, Mapping):
        return StateDict({k: _cat(a[k], b[k]) for k in a})
    return torch.cat([a, b], dim=0)


def _cat_cond(c: dict[str, Any], u: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in c.items():
        if isinstance(v, Tensor) and v.ndim == 0 and (u[k] is v or (isinstance(u[k], Tensor) and torch.equal(u[k], v))):
            out[k] = v  # a shared scalar, not per sample
        elif isinstance(v, Tensor):
            out[k] = torch.cat([v, u[k]], dim=0)
        elif isinstance(v, Mapping):
            out[k] = _cat_cond(dict(v), dict(u[k]))
        elif v is u[k] or _equal(v, u[k]):
            out[k] = v
        else:
            raise ValueError(f"ClassifierFree: cond[{k!r}] is not a tensor and differs in the null condition; cannot batch it (pass batched=False)")
    return out


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001  (objects without a boolean ==)
        return False


def _split(d: Any) -> tuple[Any, Any]:
    """Split an estimate of a doubled batch into its two halves along the leading axis."""
    if isinstance(d, Denoised):
        x0c, x0u = _split_state(d.x0)
        ec, eu = _split_state(d.eps)
        return Denoised(x0c, ec), Denoised(x0u, eu)
    if isinstance(d, DiscreteDenoised):
        c, u = _split_state(d.log_probs)
        return DiscreteDenoised(c), DiscreteDenoised(u)
    if isinstance(d, ProductDenoised):
        halves = {k: _split(p) for k, p in d.parts.items()}
        return ProductDenoised({k: h[0] for k, h in halves.items()}), ProductDenoised({k: h[1] for k, h in halves.items()})
    raise TypeError(f"ClassifierFree cannot split {type(d).__name__}")


def _split_state(x: State) -> tuple[State, State]:
    if isinstance(x, Mapping):
        parts = {k: _split_state(v) for k, v in x.items()}
        return StateDict({k: p[0] for k, p in parts.items()}), StateDict({k: p[1] for k, p in parts.items()})
    half = x.shape[0] // 2
    return x[:half], x[half:]


def _dtype(x: State) -> torch.dtype:
    return next(iter(x.values())).dtype if isinstance(x, Mapping) else x.dtype


__all__ = ["ClassifierFree", "ClassifierFreeModel", "combine", "double_space"]
