"""Inverse-problem solvers for linear measurements ``y = A x_0 + n``: DDS, hard data consistency, ΠGDM, RED-diff.

* :class:`DDS` (Chung et al. 2024, *Decomposed Diffusion Sampler*) — a model wrapper: at every model call the
  Tweedie estimate ``x0_hat`` is replaced by a few conjugate-gradient iterations on the proximal problem
  ``(I + gamma_t A^T A) x = x0_hat + gamma_t A^T y`` started at ``x0_hat`` (no network Jacobian). ``gamma_t``
  is a constant (DDS's default ``1``) or, with ``data_std=c``, ``r_t^2 / sigma_y^2`` where
  ``r_t^2 = c^2 sigma_t^2 / (alpha_t^2 c^2 + sigma_t^2)`` is the Tweedie posterior variance of a ``N(., c^2 I)``
  prior — then the corrected estimate is the exact ``E[x_0 | z_t, y]`` for that prior (converged CG). Without
  ``noise_std`` it solves ``A^T A x = A^T y`` from ``x0_hat`` (DDS's noiseless variant).
* :class:`DataConsistency` — hard data consistency: the projection of ``x0_hat`` onto ``{x : A x = y}``
  (CG on ``A^T A x = A^T y`` from ``x0_hat`` converges to it; a mask / k-space replacement in one step).
  Under an isotropic prior ``N(m, c^2 I)`` and noiseless data the projection *is* ``E[x_0 | z_t, y]``.
* :class:`PiGDM` (Song et al. 2023, pseudo-inverse guided diffusion) — score guidance by
  ``log N(y; A x0_hat, r_t^2 A A^T + sigma_y^2 I)``: the gradient ``J^T A^T v`` with
  ``v = (r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0_hat)`` (CG in measurement space; ``v`` is held constant)
  and ``J = d x0_hat / d z_t`` (a vector-Jacobian product through the network). Exact for a Gaussian
  prior ``N(m, c^2 I)`` with ``data_std=c``.
* :class:`REDDiff` (Mardani et al. 2023) — variational: Adam on the image ``mu`` while ``t`` walks from
  ``t_max`` to ``t_min``; loss ``0.5 ||y - A mu||^2 / sigma_y^2 + lam w_t <sg(eps_hat(z_t) - eps), mu>`` with
  ``z_t = alpha_t mu + sigma_t eps`` and SNR weighting ``w_t = (sigma_t / alpha_t)^p`` (``p = 1`` "sqrt",
  ``p = 2`` "linear" = ``SNR^-1``). No network Jacobian; one model call per step. It is a solver, not a
  sampler wrapper: :meth:`REDDiff.solve` returns the estimate.

Conventions as everywhere in polydiff: ``t = 0`` data, ``t = 1`` noise, times are per-sample ``(B,)``; the
state ``z_t = alpha_t x_0 + sigma_t eps`` is in the process's standard coordinates. Operators are linear
(``forward``, ``adjoint``; optional ``range_space``), batch first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..parameterisation import Denoised
from ..spaces import DataSpace, infer_space
from ..types import Cond, State
from .base import GuidedModel
from .classifier import ScoreGuidance
from .common import alpha_sigma, space_for, x0_of
from .data_consistency import _with_x0
from .data_consistency import cg_solve as cg
from .operators import measurement_sum


def _range_space(operator: Any, space: DataSpace, y: Tensor) -> DataSpace:
    return operator.range_space(space) if hasattr(operator, "range_space") else infer_space(y)


def _check_linear(name: str, operator: Any) -> None:
    if not (hasattr(operator, "forward") and hasattr(operator, "adjoint")):
        raise ValueError(f"{name}: operator must be linear with forward() and adjoint(), got {type(operator).__name__}")


def tweedie_variance(process: Any, t: Tensor, data_std: float) -> Tensor:
    """``r_t^2 = c^2 sigma_t^2 / (alpha_t^2 c^2 + sigma_t^2)`` per sample ``(B,)``: ``Var[x_0 | z_t]`` for a ``N(m, c^2 I)`` prior."""
    v = process.schedule(t)
    c2 = float(data_std) ** 2
    return c2 * v.sigma**2 / (v.alpha**2 * c2 + v.sigma**2)


class DDS:
    """Decomposed Diffusion Sampler data consistency (see the module docstring).

    Args:
        operator: linear operator (``forward``, ``adjoint``).
        y: measurements shaped like ``operator.forward(x0)``.
        noise_std: ``sigma_y``; ``None`` or ``0`` for the noiseless variant (CG on ``A^T A x = A^T y``).
        iters: CG iterations per model call (DDS uses 5).
        gamma: constant proximal weight (DDS's ``gamma = 1``) when ``data_std`` is not given.
        data_std: prior scale ``c`` for the adaptive ``gamma_t = r_t^2 / sigma_y^2`` (exact for ``N(m, c^2 I)``).
    """

    name: ClassVar[str] = "dds"
    needs_grad: ClassVar[bool] = False

    def __init__(self, operator: Any, y: State, noise_std: float | None = None, iters: int = 5, gamma: float = 1.0,
                 data_std: float | None = None) -> None:
        _check_linear(type(self).__name__, operator)
        if int(iters) < 1:
            raise ValueError(f"{type(self).__name__}: iters must be >= 1, got {iters}")
        if noise_std is not None and float(noise_std) < 0:
            raise ValueError(f"{type(self).__name__}: noise_std must be >= 0, got {noise_std}")
        if not float(gamma) > 0:
            raise ValueError(f"{type(self).__name__}: gamma must be > 0, got {gamma}")
        self.operator = operator
        self.y = y
        self.noise_std = float(noise_std) if noise_std else 0.0
        self.iters = int(iters)
        self.gamma = float(gamma)
        self.data_std = None if data_std is None else float(data_std)

    def gamma_t(self, process: Any, t: Tensor) -> Tensor | None:
        """Per-sample proximal weight ``(B,)``, or ``None`` for the noiseless projection."""
        if self.noise_std == 0:
            return None
        if self.data_std is None:
            return torch.full_like(t, self.gamma, dtype=torch.float64)
        return tweedie_variance(process, t, self.data_std) / self.noise_std**2

    def project(self, x0: Tensor, gamma: Tensor | None, space: DataSpace) -> Tensor:
        """The CG solution started at ``x0``."""
        op, y = self.operator, self.y
        if gamma is None:
            return cg(lambda v: op.adjoint(op.forward(v)), op.adjoint(y), x0, self.iters, space)
        g = space.expand(gamma.to(x0.dtype), x0)
        return cg(lambda v: v + g * op.adjoint(op.forward(v)), x0 + g * op.adjoint(y), x0, self.iters, space)

    def wrap(self, model: Any) -> GuidedModel:
        """``model`` with its clean estimate made data consistent."""
        return DDSModel(model, self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(operator={self.operator!r}, noise_std={self.noise_std}, iters={self.iters}, gamma={self.gamma}, data_std={self.data_std})"


class DataConsistency(DDS):
    """Hard data consistency: project ``x0_hat`` onto ``{x : A x = y}`` (CG on the normal equations from ``x0_hat``).

    Args:
        operator, y: as for :class:`DDS`. iters: CG iterations (enough to converge; a mask needs one).
    """

    name: ClassVar[str] = "dc"

    def __init__(self, operator: Any, y: State, iters: int = 20) -> None:
        super().__init__(operator, y, noise_std=None, iters=iters)


class DDSModel(GuidedModel):
    """The guided model made by :meth:`DDS.wrap` (Gaussian dense states)."""

    def __init__(self, inner: Any, guidance: DDS) -> None:
        super().__init__(inner)
        self.guidance = guidance

    def denoise(self, x_t: State, t: Tensor, cond: Cond | None = None, *, space: DataSpace | None = None) -> Any:
        space = space_for(x_t, space)
        d = self.inner.denoise(x_t, t, cond, space=space)
        if not isinstance(d, Denoised):
            raise TypeError(f"{self.guidance.name} needs a Gaussian estimate (Denoised), got {type(d).__name__}")
        x0 = self.guidance.project(d.x0, self.guidance.gamma_t(self.process, t), space)
        return _with_x0(d, x0, self.process, t, space)


class PiGDM(ScoreGuidance):
    """Pseudo-inverse guided diffusion (see the module docstring).

    Args:
        operator: linear operator. y: measurements.
        noise_std: ``sigma_y`` (``0`` is allowed; a tiny ridge keeps the system positive definite).
        data_std: prior scale ``c`` in ``r_t^2`` (images in [-1, 1]: about 0.5; the exact value for a Gaussian prior).
        scale: guidance strength (``1`` = the ΠGDM likelihood).
        iters: CG iterations for ``v`` in measurement space.
        min_snr: below ``SNR = alpha_t^2 / sigma_t^2 = min_snr`` the log-likelihood is damped by ``SNR / min_snr``
            (``0``: never). The score shift moves ``x0_hat`` by ``sigma^2 / alpha`` times the gradient; a learned
            network's Jacobian does not vanish like the exact denoiser's ``~ alpha`` as ``alpha -> 0``, so without
            damping the first steps of a vp-cosine grid (``alpha ~ 2e-4``) explode.
    """

    name: ClassVar[str] = "pigdm"

    def __init__(self, operator: Any, y: State, noise_std: float = 0.0, data_std: float = 1.0, scale: float = 1.0, iters: int = 20,
                 min_snr: float = 0.0) -> None:
        _check_linear("PiGDM", operator)
        if float(noise_std) < 0 or not float(data_std) > 0 or int(iters) < 1:
            raise ValueError(f"PiGDM: need noise_std >= 0, data_std > 0, iters >= 1; got {noise_std}, {data_std}, {iters}")
        self.operator = operator
        self.y = y
        self.noise_std = float(noise_std)
        self.data_std = float(data_std)
        self.scale = float(scale)
        self.iters = int(iters)
        self.min_snr = float(min_snr)

    def solve_v(self, r: Tensor, r2: Tensor, space: DataSpace) -> Tensor:
        """``v = (r_t^2 A A^T + sigma_y^2 I)^{-1} r`` per sample by CG in measurement space."""
        op = self.operator
        rs = _range_space(op, space, r)
        ridge = max(self.noise_std**2, 1e-12)
        g = rs.expand(r2.to(r.dtype), r)
        return cg(lambda u: g * op.forward(op.adjoint(u)) + ridge * u, r, torch.zeros_like(r), self.iters, rs)

    def log_likelihood(self, x_t: State, t: Tensor, cond: Cond | None, d: Any, space: DataSpace) -> Tensor:
        x0 = x0_of(d)
        ax0 = self.operator.forward(x0)
        r = (self.y - ax0).detach()
        r2 = tweedie_variance(self._process, t, self.data_std)
        v = self.solve_v(r, r2, space).detach()
        ll = self.scale * measurement_sum(self.operator, v * ax0, space)
        if self.min_snr > 0:
            sched = self._process.schedule(t)
            ll = ll * (sched.alpha**2 / (self.min_snr * sched.sigma**2)).clamp(max=1.0).to(ll.dtype)
        return ll

    def wrap(self, model: Any) -> GuidedModel:
        """``model`` guided by the ΠGDM likelihood (``r_t`` follows the model's process)."""
        self._process = model.process
        return super().wrap(model)

    def __repr__(self) -> str:
        return f"PiGDM(operator={self.operator!r}, noise_std={self.noise_std}, data_std={self.data_std}, scale={self.scale}, iters={self.iters})"


@dataclass(frozen=True)
class SolveResult:
    """What :meth:`REDDiff.solve` returns: the estimate ``x`` ``(B, ...)``, model calls ``nfe`` and ``seconds``."""

    x: Tensor
    nfe: int
    seconds: float


class REDDiff:
    """RED-diff variational solver (see the module docstring).

    Args:
        operator: linear or differentiable operator (``forward``). y: measurements.
        noise_std: ``sigma_y`` dividing the data term (``None``: 1).
        lam: regularisation weight ``lambda`` (RED-diff: 0.25).
        lr: Adam learning rate (RED-diff: 0.1–0.5); betas: Adam betas (RED-diff: (0.9, 0.99)).
        weight: ``"sqrt"`` (``w_t = sigma_t / alpha_t``), ``"linear"`` (``SNR^-1``) or ``"const"``.
        t_min, t_max: the range ``t`` walks (descending, ``steps`` points).
    """

    name: ClassVar[str] = "red-diff"
    needs_grad: ClassVar[bool] = True

    def __init__(self, operator: Any, y: Tensor, noise_std: float | None = None, lam: float = 0.25, lr: float = 0.1,
                 betas: tuple[float, float] = (0.9, 0.99), weight: str = "sqrt", t_min: float = 0.02, t_max: float = 0.98) -> None:
        if not hasattr(operator, "forward"):
            raise ValueError(f"REDDiff: operator must have forward(x), got {type(operator).__name__}")
        if weight not in ("sqrt", "linear", "const"):
            raise ValueError(f"REDDiff: weight must be 'sqrt', 'linear' or 'const', got {weight!r}")
        if not (0 <= t_min < t_max <= 1):
            raise ValueError(f"REDDiff: need 0 <= t_min < t_max <= 1, got {t_min}, {t_max}")
        self.operator = operator
        self.y = y
        self.noise_std = 1.0 if not noise_std else float(noise_std)
        self.lam = float(lam)
        self.lr = float(lr)
        self.betas = tuple(betas)
        self.weight = weight
        self.t_min, self.t_max = float(t_min), float(t_max)

    def weights(self, process: Any, t: Tensor) -> Tensor:
        """``w_t`` per sample ``(B,)``."""
        v = process.schedule(t)
        ratio = v.sigma / v.alpha.clamp(min=1e-12)
        return {"sqrt": ratio, "linear": ratio**2, "const": torch.ones_like(ratio)}[self.weight]

    def solve(self, model: Any, init: Tensor, *, steps: int = 100, generator: torch.Generator | None = None,
              space: DataSpace | None = None, cond: Cond | None = None) -> SolveResult:
        """Optimise ``mu`` from ``init`` (e.g. the pseudo-inverse ``A^+ y``) for ``steps`` model calls."""
        start = time.perf_counter()
        space = space_for(init, space)
        mu = init.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([mu], lr=self.lr, betas=self.betas)  # type: ignore[arg-type]
        b = init.shape[0]
        ts = torch.linspace(self.t_max, self.t_min, steps, dtype=torch.float64)
        process = model.process
        for k in range(steps):
            t = ts[k].expand(b).to(init.device)
            eps = space.randn_like(mu.detach(), generator)
            a, s = alpha_sigma(process, t, mu, space)
            with torch.no_grad():
                z = a * mu.detach() + s * eps
                d = model.denoise(z, t, cond, space=space)
                eps_hat = d.eps if isinstance(d, Denoised) else None
                if eps_hat is None:
                    raise TypeError(f"REDDiff needs a Gaussian estimate (Denoised), got {type(d).__name__}")
                w = space.expand(self.weights(process, t).to(mu.dtype), mu)
                reg_grad = self.lam * w * (eps_hat - eps)
            r = (self.y - self.operator.forward(mu)) / self.noise_std
            data = 0.5 * measurement_sum(self.operator, r * r, space).sum()
            loss = data + space.sum(reg_grad * mu).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return SolveResult(x=mu.detach(), nfe=steps, seconds=time.perf_counter() - start)

    def __repr__(self) -> str:
        return f"REDDiff(operator={self.operator!r}, noise_std={self.noise_std}, lam={self.lam}, lr={self.lr}, weight={self.weight!r})"


__all__ = ["DDS", "DDSModel", "DataConsistency", "PiGDM", "REDDiff", "SolveResult", "tweedie_variance"]
