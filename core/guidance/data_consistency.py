"""Conjugate-gradient data consistency in Tweedie space (DDS, Chung et al. 2024).

At every model call the clean estimate ``x0_hat`` is replaced by

    ``x0' = argmin_x ||y - A x||^2 + lam ||x - x0_hat||^2``,

i.e. the solution of ``(A^T A + lam I) x = A^T y + lam x0_hat``, found by ``iters`` conjugate-gradient
iterations started at ``x0_hat`` (per sample: inner products are per-sample sums of the data space).
``lam = 0`` gives DDS's noiseless variant (CG on ``A^T A x = A^T y`` from ``x0_hat``). The noise
estimate is then recomputed from the same ``z_t`` so that the sampler's next step stays consistent
(``eps' = (z_t - alpha_t x0') / sigma_t = eps + alpha_t (x0_hat - x0') / sigma_t``, DDIM-style).
There is no backpropagation through the network. Linear operators only (``forward`` and ``adjoint``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..denoiser import ProductDenoised
from ..parameterisation import Denoised
from ..processes import ProductProcess
from ..spaces import CompositeSpace, DataSpace
from ..state import StateDict, first_leaf
from ..types import Cond, State
from .base import GuidedModel
from .common import alpha_sigma, space_for


class ConjugateGradientConsistency:
    """DDS-style data consistency by conjugate gradients (see the module docstring).

    Args:
        operator: a linear operator with ``forward`` and ``adjoint`` (e.g.
            :class:`~polydiff.guidance.operators.MatrixOperator`, :class:`~polydiff.guidance.operators.MaskOperator`).
        y: measurements shaped like ``operator.forward(x0)``.
        lam: proximal weight ``lam >= 0`` (DDS's ``1 / gamma``).
        iters: CG iterations per model call (DDS uses 5).
    """

    name: ClassVar[str] = "cg"
    needs_grad: ClassVar[bool] = False

    def __init__(self, operator: Any, y: State, lam: float = 1.0, iters: int = 5) -> None:
        if not (hasattr(operator, "forward") and hasattr(operator, "adjoint")):
            raise ValueError(f"ConjugateGradientConsistency: operator must be linear with forward() and adjoint(), got {type(operator).__name__}")
        if not float(lam) >= 0:
            raise ValueError(f"ConjugateGradientConsistency: lam must be >= 0, got {lam}")
        if int(iters) < 1:
            raise ValueError(f"ConjugateGradientConsistency: iters must be >= 1, got {iters}")
        self.operator = operator
        self.y = y
        self.lam = float(lam)
        self.iters = int(iters)

    def project(self, x0: State, space: DataSpace) -> State:
        """The CG solution started at ``x0`` (shape of ``x0``)."""
        op, lam = self.operator, self.lam
        rhs = op.adjoint(self.y) + lam * x0 if lam else op.adjoint(self.y)
        return cg_solve(lambda v: op.adjoint(op.forward(v)) + lam * v if lam else op.adjoint(op.forward(v)), rhs, x0, self.iters, space)

    def wrap(self, model: Any) -> GuidedModel:
        """Return ``model`` with data consistency applied to its clean estimate."""
        return ConjugateGradientModel(model, self)

    def __repr__(self) -> str:
        return f"ConjugateGradientConsistency(operator={self.operator!r}, lam={self.lam}, iters={self.iters})"


class ConjugateGradientModel(GuidedModel):
    """The guided model made by :meth:`ConjugateGradientConsistency.wrap`."""

    def __init__(self, inner: Any, guidance: ConjugateGradientConsistency) -> None:
        super().__init__(inner)
        self.guidance = guidance

    def denoise(self, x_t: State, t: Tensor, cond: Cond | None = None, *, space: DataSpace | None = None) -> Any:
        space = space_for(x_t, space)
        d = self.inner.denoise(x_t, t, cond, space=space)
        if isinstance(d, Denoised):
            x0 = self.guidance.project(d.x0, space)
            return _with_x0(d, x0, self.process, t, space)
        if isinstance(d, ProductDenoised):
            if not isinstance(self.process, ProductProcess) or not isinstance(space, CompositeSpace):
                raise ValueError("a ProductDenoised estimate needs a ProductProcess and a CompositeSpace")
            keys = [k for k, p in d.parts.items() if isinstance(p, Denoised)]
            sub = CompositeSpace({k: space[k] for k in keys})
            x0 = self.guidance.project(StateDict({k: d.parts[k].x0 for k in keys}), sub)
            parts = dict(d.parts)
            for k in keys:
                parts[k] = _with_x0(d.parts[k], x0[k], self.process.components[k], t, space[k])
            return ProductDenoised(parts)
        raise TypeError(f"ConjugateGradientConsistency needs a Gaussian estimate, got {type(d).__name__}")


def _with_x0(d: Denoised, x0: State, process: Any, t: Tensor, space: DataSpace) -> Denoised:
    a, s = alpha_sigma(process, t, d.x0, space)
    return Denoised(x0=x0, eps=d.eps + a * (d.x0 - x0) / s)


def cg_solve(apply: Callable[[State], State], b: State, x: State, iters: int, space: DataSpace, rtol: float = 1e-10) -> State:
    """At most ``iters`` conjugate-gradient iterations for the symmetric positive (semi-)definite system ``apply(x) = b``.

    Every sample is solved independently: inner products are ``space.sum`` (shape ``(B,)``) and the
    step sizes are expanded back onto the state by ``space.expand``. A sample stops once its residual
    norm falls below ``rtol`` times its initial one — so a singular system (``A^T A`` of an
    under-determined ``A``) converges instead of dividing by round-off — and never goes below round-off
    of the right-hand side (at least ``100 eps`` of the dtype, float32: 1.2e-5): past that CG only
    amplifies round-off, and a start that already solves the system must not be "refined" from it.
    """
    r = b - apply(x)
    p = r
    rs = space.sum(r * r)
    floor = 100 * torch.finfo(first_leaf(x).dtype).eps
    rtol = max(float(rtol), floor)
    stop = torch.maximum(rs * rtol**2, space.sum(b * b) * floor**2)
    for _ in range(iters):
        active = rs > stop
        if not bool(active.any()):
            break
        ap = apply(p)
        pap = space.sum(p * ap)
        ok = active & (pap > 0)
        step = torch.where(ok, _safe_div(rs, pap), torch.zeros_like(rs))
        x = x + _expand(space, step, x) * p
        r = r - _expand(space, step, x) * ap
        rs_new = space.sum(r * r)
        p = r + _expand(space, torch.where(ok, _safe_div(rs_new, rs), torch.zeros_like(rs)), x) * p
        rs = torch.where(ok, rs_new, rs)
    return x


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    ok = den.abs() > torch.finfo(den.dtype).tiny
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def _expand(space: DataSpace, s: Tensor, like: State) -> State:
    dtype = first_leaf(like).dtype
    return space.expand(s.to(dtype), like)


__all__ = ["ConjugateGradientConsistency", "ConjugateGradientModel", "cg_solve"]
