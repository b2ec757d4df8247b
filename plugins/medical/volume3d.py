"""3-D volumes from the 2-D prior: slices as the batch, total variation along z solved by ADMM (DiffusionMBIR).

DiffusionMBIR (Chung et al., CVPR 2023) and DDS's 3-D mode reconstruct a volume ``(S, 1, n, n)`` with a prior
trained on 2-D slices: at every reverse diffusion step each slice gets its own denoiser update (the slices are
the batch), and the data consistency is solved *jointly over the volume* with a model-based regulariser along the
remaining axis. Here, at every model call, the Tweedie estimate ``x0_hat`` ``(S, 1, n, n)`` is replaced by a few
ADMM iterations on

    ``min_x 1/2 ||A x - y||^2 + 1/2 sum_s mu_s ||x_s - x0_hat_s||^2 + lam ||D x||_1``

with ``A`` the task's 2-D operator applied per slice, ``D = D_z`` the forward difference along the slices
(``(S - 1, 1, n, n)``; ``axes=("z", "y", "x")`` adds the in-plane differences: anisotropic 3-D TV), and
``mu_s = 1 / gamma_t`` (DDS: the prox of the data term at ``x0_hat``, ``gamma_t = r_t^2 / sigma_y^2``) or
``mu = 0`` (``dc``: the data-consistent solution nearest the CG start). Scaled-form ADMM with the splitting
``w = D x``:

* x-update: ``(A^T A + mu + rho D^T D) x = A^T y + mu x0_hat + rho D^T (w - u)`` by ``cg_iters`` conjugate-gradient
  iterations (the core's :func:`polydiff.guidance.cg_solve`, one joint system for the whole volume) from the
  current estimate;
* w-update: ``w = soft(D x + u, lam / rho)`` (soft thresholding);
* u-update: ``u = u + D x - w``.

``w`` and ``u`` are warm-started across diffusion steps (DiffusionMBIR keeps them as globals, initialised at 0),
``admm_iters`` ADMM iterations per model call (DiffusionMBIR: 1 ADMM iteration, 1 CG step; rho = 10 and
lam = 0.04 for its un-normalised Radon transform). The noise estimate is recomputed from the same ``z_t``
(``eps' = eps + alpha_t (x0_hat - x0') / sigma_t``) so DDIM's next step stays consistent; there is no
backpropagation through the network and NFE = steps.

Scales: the solver works on the prior's ``x = 2u - 1`` with the task's normalised operator (``||A|| = 1``), so
``lam`` is in those units (``lam ||D x||_1 = 2 lam ||D u||_1``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from polydiff.errors import UserInputError
from polydiff.guidance import DDS, GuidedModel, cg_solve
from polydiff.parameterisation import Denoised
from polydiff.spaces import DenseSpace

from .tasks import DATA_STD, SolverSettings, reconstruct

COUPLINGS = ("none", "tv-z")
AXES_DIM = {"z": 0, "y": -2, "x": -1}


# ---------------------------------------------------------------- finite differences


def diff(x: Tensor, axis: str = "z") -> Tensor:
    """Forward difference of a volume ``(S, C, H, W)`` along ``axis`` (z: slices; y, x: in-plane); one shorter there."""
    d = AXES_DIM[axis]
    n = x.shape[d]
    return x.narrow(d, 1, n - 1) - x.narrow(d, 0, n - 1)


def diff_adjoint(g: Tensor, axis: str = "z") -> Tensor:
    """Adjoint of :func:`diff`: ``(.., n - 1, ..)`` -> ``(.., n, ..)``, ``(D^T g)_k = g_{k-1} - g_k`` (zero outside)."""
    d = AXES_DIM[axis] % g.ndim
    n = g.shape[d]
    out = g.new_zeros((*g.shape[:d], n + 1, *g.shape[d + 1:]))
    out.narrow(d, 1, n).add_(g)
    out.narrow(d, 0, n).sub_(g)
    return out


def z_tv(x: Tensor) -> float:
    """``||D_z x||_1`` of a volume ``(S, C, H, W)``."""
    return float(diff(x, "z").abs().sum()) if x.shape[0] > 1 else 0.0


def soft_threshold(v: Tensor, tau: float) -> Tensor:
    """``sign(v) max(|v| - tau, 0)``: the prox of ``tau ||.||_1``."""
    return torch.sign(v) * (v.abs() - tau).clamp(min=0)


# ---------------------------------------------------------------- ADMM


class TVADMM:
    """Scaled-form ADMM for ``min_x 1/2 ||A x - y||^2 + 1/2 sum_s mu_s ||x_s - c_s||^2 + lam sum_axes ||D_a x||_1``
    over a volume ``x`` ``(S, C, H, W)`` (``A`` per slice); the split variables ``w`` and duals ``u`` persist
    between calls of :meth:`solve` (warm start, as in DiffusionMBIR); :meth:`reset` clears them.

    Args:
        operator: linear (``forward``, ``adjoint``) on ``(S, C, H, W)`` slice batches.
        y: measurements ``operator.forward(x)``-shaped.
        lam: TV weight ``>= 0``. rho: ADMM penalty ``> 0``.
        iters: ADMM iterations per :meth:`solve`. cg_iters: CG iterations per x-update.
        axes: differences taken along these axes (``("z",)``: DiffusionMBIR's z-TV; ``("z", "y", "x")``: 3-D TV).
    """

    def __init__(self, operator: Any, y: Tensor, lam: float, rho: float, *, iters: int = 1, cg_iters: int = 5,
                 axes: Sequence[str] = ("z",)) -> None:
        if not float(lam) >= 0 or not float(rho) > 0:
            raise UserInputError(f"--tv-lambda {lam} / --tv-rho {rho}: expected lambda >= 0 and rho > 0")
        if int(iters) < 1 or int(cg_iters) < 1:
            raise UserInputError(f"tv-z coupling: expected at least 1 ADMM and 1 CG iteration, got {iters} and {cg_iters}")
        bad = [a for a in axes if a not in AXES_DIM]
        if bad or not axes:
            raise UserInputError(f"tv-z coupling axes {list(axes)}: expected a non-empty subset of z, y, x")
        self.operator, self.y = operator, y
        self.lam, self.rho = float(lam), float(rho)
        self.iters, self.cg_iters = int(iters), int(cg_iters)
        self.axes = tuple(axes)
        self.w: list[Tensor] | None = None
        self.u: list[Tensor] | None = None

    def reset(self) -> None:
        self.w = self.u = None

    def d(self, x: Tensor) -> list[Tensor]:
        """``D x``: one difference per axis."""
        return [diff(x, a) for a in self.axes]

    def dt(self, g: Sequence[Tensor]) -> Tensor:
        """``D^T g``."""
        out = diff_adjoint(g[0], self.axes[0])
        for a, gi in zip(self.axes[1:], g[1:], strict=True):
            out = out + diff_adjoint(gi, a)
        return out

    def objective(self, x: Tensor, mu: Tensor | None = None, center: Tensor | None = None) -> float:
        """The convex objective at ``x`` (float64 sum over the volume)."""
        r = self.operator.forward(x) - self.y
        val = 0.5 * float((r.abs() ** 2).sum()) + self.lam * sum(float(g.abs().sum()) for g in self.d(x))
        if mu is not None and center is not None:
            val += 0.5 * float((_per_slice(mu, x) * (x - center) ** 2).sum())
        return val

    def solve(self, x: Tensor, mu: Tensor | None = None, center: Tensor | None = None) -> Tensor:
        """``iters`` ADMM iterations from ``x`` ``(S, C, H, W)``; ``mu`` ``(S,)`` (or ``None``: 0) weights the
        proximal term towards ``center`` (default: ``x``). Returns the x-iterate ``(S, C, H, W)``."""
        op, rho = self.operator, self.rho
        center = x if center is None else center
        m = None if mu is None else _per_slice(mu.to(x.dtype), x)
        if self.w is None or self.u is None or self.w[0].shape != diff(x, self.axes[0]).shape:
            self.w = [torch.zeros_like(g) for g in self.d(x)]
            self.u = [torch.zeros_like(g) for g in self.w]
        aty = op.adjoint(self.y).to(x.dtype)
        base = aty if m is None else aty + m * center

        def apply(v: Tensor) -> Tensor:
            out = op.adjoint(op.forward(v)).to(v.dtype) + rho * self.dt(self.d(v))
            return out if m is None else out + m * v

        shape, space = x.shape, DenseSpace()
        for _ in range(self.iters):
            rhs = base + rho * self.dt([w - u for w, u in zip(self.w, self.u, strict=True)])
            x = cg_solve(lambda v: apply(v.reshape(shape)).reshape(1, -1), rhs.reshape(1, -1), x.reshape(1, -1), self.cg_iters,
                         space).reshape(shape)
            dx = self.d(x)
            self.w = [soft_threshold(g + u, self.lam / rho) for g, u in zip(dx, self.u, strict=True)]
            self.u = [u + g - w for u, g, w in zip(self.u, dx, self.w, strict=True)]
        return x


def _per_slice(s: Tensor, like: Tensor) -> Tensor:
    return s.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


# ---------------------------------------------------------------- the sampler wrapper


class ZTVCoupling:
    """Guidance (model wrapper): the volume's Tweedie estimate made data consistent jointly with z-TV by :class:`TVADMM`.

    Args:
        admm: the ADMM state (operator, y, lam, rho, iterations).
        dds: ``None`` for hard data consistency (``mu = 0``), or the core :class:`polydiff.guidance.DDS` whose
            ``gamma_t`` gives ``mu = 1 / gamma_t``.
    """

    name: ClassVar[str] = "tv-z"
    needs_grad: ClassVar[bool] = False

    def __init__(self, admm: TVADMM, dds: DDS | None = None) -> None:
        self.admm = admm
        self.dds = dds

    def wrap(self, model: Any) -> GuidedModel:
        return ZTVModel(model, self)


class ZTVModel(GuidedModel):
    """The guided model of :class:`ZTVCoupling`: the batch of ``x_t`` ``(S, 1, n, n)`` is the volume's slices."""

    def __init__(self, inner: Any, guidance: ZTVCoupling) -> None:
        super().__init__(inner)
        self.guidance = guidance

    def denoise(self, x_t: Tensor, t: Tensor, cond: Any = None, *, space: Any = None) -> Denoised:
        d = self.inner.denoise(x_t, t, cond, space=space)
        if not isinstance(d, Denoised):
            raise TypeError(f"tv-z coupling needs a Gaussian estimate (Denoised), got {type(d).__name__}")
        g = self.guidance
        gamma = None if g.dds is None else g.dds.gamma_t(self.process, t)
        mu = None if gamma is None else 1.0 / gamma.clamp(min=1e-30)
        x0 = g.admm.solve(d.x0.detach(), mu, d.x0.detach())
        v = self.process.schedule(t)
        a, s = _per_slice(v.alpha, x0), _per_slice(v.sigma, x0)
        return Denoised(x0=x0, eps=d.eps + a * (d.x0 - x0) / s)


RHO_OVER_LAM = 50.0  # default rho = 50 lam: soft threshold lam / rho = 0.02 on z-differences of x = 2u - 1


@dataclass(frozen=True)
class CouplingSettings:
    """``--volume-coupling``: ``none`` (slice by slice) or ``tv-z``; ADMM ``lam``, ``rho`` (``None``: ``50 lam``) and
    ``admm_iters`` per model call. The default ``lam = 3e-4`` is the one the benchmark's 3-D row picked on training
    slices (32 x 32 head CT, 16 views; ``benchmarks/medical/RESULTS.md``)."""

    kind: str = "none"
    lam: float = 3e-4
    rho: float | None = None
    admm_iters: int = 1

    @property
    def rho_value(self) -> float:
        return float(self.rho) if self.rho is not None else RHO_OVER_LAM * float(self.lam)


def coupling_for(c: CouplingSettings, s: SolverSettings, op: Any, y_x: Tensor, sigma_x: float) -> ZTVCoupling:
    """The coupled guidance for solver ``dds`` (prox weight ``1 / gamma_t``) or ``dc`` (``mu = 0``)."""
    if s.solver not in ("dds", "dc"):
        raise UserInputError(f"--volume-coupling {c.kind}: works with --solver dds or dc, got {s.solver!r}")
    cg = max(s.cg_iters, 10) if s.solver == "dc" else s.cg_iters
    admm = TVADMM(op, y_x, c.lam, c.rho_value, iters=c.admm_iters, cg_iters=cg)
    dds = None
    if s.solver == "dds":
        dds = DDS(op, y_x, noise_std=sigma_x, iters=s.cg_iters, gamma=s.dds_gamma) if s.dds_gamma > 0 else \
            DDS(op, y_x, noise_std=sigma_x, iters=s.cg_iters, data_std=DATA_STD)
    return ZTVCoupling(admm, dds)


def reconstruct_volume(model: Any, op: Any, y: Tensor, sigma: float, s: SolverSettings, c: CouplingSettings, *,
                       generator: Any = None, init: Tensor | None = None) -> tuple[Tensor, int, float]:
    """Reconstruct a volume ``u`` ``(S, 1, n, n)`` (slices in order) from per-slice measurements ``y``.

    ``c.kind == "none"``: the solver slice by slice (:func:`polydiff_medical.tasks.reconstruct`); ``"tv-z"``: the
    joint ADMM data consistency above. ``generator``: one ``torch.Generator`` or one per slice. Returns
    ``(u, nfe, seconds)``.
    """
    import polydiff

    if c.kind not in COUPLINGS:
        raise UserInputError(f"--volume-coupling {c.kind!r}: expected one of {', '.join(COUPLINGS)}")
    if c.kind == "none":
        return reconstruct(model, op, y, sigma, s, generator=generator, init=init)
    p = next(model.parameters(), None) if hasattr(model, "parameters") else None
    dtype = p.dtype if p is not None else torch.float64
    y = y.to(dtype)
    y_x = 2 * y - op.forward(torch.ones((1, 1, *op.image_shape), dtype=dtype))
    sigma_x = max(2 * sigma, 1e-6)
    start = time.perf_counter()
    g = coupling_for(c, s, op, y_x, sigma_x)
    opts = {"eta": s.dds_eta} if s.sampler == "ddim" else {}
    out = polydiff.sample(model, shape=(y.shape[0], 1, *op.image_shape), dtype=dtype, sampler=s.sampler, steps=s.steps, guidance=[g],
                          generator=generator, **opts)
    u = ((out.x.detach() + 1) / 2).to(torch.float64)
    return u, int(out.nfe), time.perf_counter() - start


def tv3d_reconstruction(op: Any, y: Tensor, lam: float, *, iters: int = 100, rho: float | None = None, cg_iters: int = 5,
                        axes: Sequence[str] = ("z", "y", "x"), init: Tensor | None = None) -> Tensor:
    """Model-based baseline: ``argmin_u 1/2 ||A u - y||^2 + lam ||D u||_1`` (anisotropic 3-D TV by default) over the
    volume ``(S, 1, n, n)`` by ``iters`` ADMM iterations from ``init`` (default FBP / zero-filled)."""
    u0 = (op.pinv(y) if init is None else init).to(torch.float64)
    admm = TVADMM(op, y.to(torch.float64), lam, rho if rho is not None else 20 * lam, iters=iters, cg_iters=cg_iters, axes=axes)
    with torch.no_grad():
        return admm.solve(u0)


__all__ = ["COUPLINGS", "RHO_OVER_LAM", "CouplingSettings", "TVADMM", "ZTVCoupling", "ZTVModel", "coupling_for", "diff", "diff_adjoint",
           "reconstruct_volume", "soft_threshold", "tv3d_reconstruction", "z_tv"]
