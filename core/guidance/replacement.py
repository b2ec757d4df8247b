"""Replacement (inpainting / imputation): overwrite known entries of the state after every step.

After a step to ``t`` the entries where ``mask`` is true are set to a draw of ``q(x_t | x_known)``:

* Gaussian components: ``alpha_t x_known + sigma_t eps`` in the sampler's standard coordinates
  ``z_t = x_t - m_t`` (the state a sampler corrects; see :func:`polydiff.sample`), with
  ``eps`` drawn through ``ctx.space.randn_like(..., ctx.generator)`` (per-sample generators are
  respected); at ``t = 0`` exactly ``x_known``;
* discrete components: the known (clean) token, at every ``t``.

So the final sample equals ``x_known`` exactly where ``mask`` is true. This is the CSDI/RePaint-style
observed-value overwrite (without RePaint's resampling loops).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..processes import ForwardProcess, ProductProcess
from ..spaces import CompositeSpace, DataSpace
from ..state import StateDict, as_state
from ..types import State
from .operators import _as_bool


class Replacement:
    """A state correction that replaces known entries by their forward-noised values.

    Args:
        known: the known values, a state shaped like the samples (entries where ``mask`` is false
            are ignored); for a composite state a mapping with (at least) the masked components.
        mask: bool or 0/1 tensor broadcastable to the state (trailing-axis rules: ``(B, ...)`` per
            sample or one sample's shape for all), or ``{component: mask}`` for a composite state
            (components not named are never replaced).
    """

    name: ClassVar[str] = "replacement"

    def __init__(self, known: State, mask: Tensor | Mapping[str, Tensor]) -> None:
        self.known = as_state(known)
        if isinstance(mask, Mapping):
            if not isinstance(self.known, Mapping):
                raise ValueError("Replacement: a per-component mask needs known values as a mapping too")
            missing = set(mask) - set(self.known)
            if missing:
                raise ValueError(f"Replacement: mask names components {sorted(missing)} that known lacks ({sorted(self.known)})")
            self.mask: Tensor | dict[str, Tensor] = {k: _as_bool(v, f"mask[{k!r}]") for k, v in mask.items()}
        else:
            self.mask = _as_bool(mask, "mask")

    def correct(self, x: State, t: Tensor, ctx: Any) -> State:
        """Replace the known entries of ``x`` (the state at times ``t``, shape ``(B,)``)."""
        process, space = ctx.process, ctx.space
        if isinstance(x, Mapping):
            if not isinstance(space, CompositeSpace):
                raise ValueError("Replacement: a composite state needs a CompositeSpace")
            masks = self.mask if isinstance(self.mask, dict) else {k: self.mask for k in x}
            unknown = set(masks) - set(x)
            if unknown:
                raise ValueError(f"Replacement: mask names components {sorted(unknown)} that the state lacks ({sorted(x)})")
            out = dict(x)
            for k, m in masks.items():
                proc = process.components[k] if isinstance(process, ProductProcess) else process
                known = self.known[k] if isinstance(self.known, Mapping) else self.known
                out[k] = _replace(x[k], t, known, m, proc, space[k], ctx.generator)
            return StateDict(out)
        if isinstance(self.mask, dict) or isinstance(self.known, Mapping):
            raise ValueError("Replacement: known/mask are per component but the state is a single tensor")
        return _replace(x, t, self.known, self.mask, process, space, ctx.generator)

    def __repr__(self) -> str:
        return f"Replacement(components={sorted(self.mask)})" if isinstance(self.mask, dict) else "Replacement()"


def _replace(x: Tensor, t: Tensor, known: Tensor, mask: Tensor, process: ForwardProcess, space: DataSpace, generator: Any) -> Tensor:
    mask = mask.to(x.device)
    known = known.to(device=x.device, dtype=x.dtype)
    if process.is_discrete:
        return torch.where(mask, known, x)
    if bool((t == 0).all()):
        return torch.where(mask, known, x)
    v = process.schedule(t)
    a = space.expand(v.alpha.to(x.dtype), x)
    s = space.expand(v.sigma.to(x.dtype), x)
    noisy = a * known + s * space.randn_like(x, generator)
    at_zero = space.expand(t == 0, x)
    return torch.where(mask, torch.where(at_zero, known, noisy), x)


__all__ = ["Replacement"]
