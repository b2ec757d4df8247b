"""Reconstruction tasks: the operator of a task, simulated measurements, baselines (FBP / zero-filled, TV) and the
diffusion solvers, each mapped to a core guidance class.

Images are windowed slices ``u`` in [0, 1] (``(B, 1, n, n)``); the prior works on ``x = 2u - 1``. A linear
measurement ``y = A u + n`` becomes ``y_x = 2 y - A 1 = A x + 2 n`` for the prior, so every solver sees the same
linear operator with noise ``2 sigma``. CT operators are normalised to ``||A|| = 1`` (scale-free CG and step sizes).

Solvers (``sample.solver`` / ``--solver``):

| name | core class | network Jacobian | NFE |
|---|---|---|---|
| ``dps`` | :class:`polydiff.guidance.DPS` (un-squared norm, step ``dps_scale``) | yes | steps |
| ``dds`` | :class:`polydiff.guidance.DDS` (``cg_iters`` CG on the prox, ``gamma_t = r_t^2 / sigma_y^2``), DDIM ``eta`` | no | steps |
| ``pigdm`` | :class:`polydiff.guidance.PiGDM` | yes | steps |
| ``dc`` | :class:`polydiff.guidance.DataConsistency` (projection onto ``A x = y``) | no | steps |
| ``red-diff`` | :class:`polydiff.guidance.REDDiff` (Adam on the image, from the baseline) | no | steps |
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from polydiff.errors import UserInputError

from .operators import CTOperator, MRIOperator, add_noise, mri_mask, normalised, simulate_coil_maps

SOLVERS = ("dps", "dds", "red-diff", "pigdm", "dc")
MIN_SNR = 1e-2  # guidance (DPS, PiGDM) damped below this SNR
DATA_STD = 0.5  # prior scale c of images in [-1, 1] used by DDS's gamma_t and PiGDM's r_t


@dataclass(frozen=True)
class Task:
    """A reconstruction task.

    Attributes:
        kind: ``ct`` or ``mri``.
        views, span, fan_beam: CT projections (``span < 180``: limited angle).
        acceleration, mask, coils, center_fraction: MRI sampling (``coils = 0``: single coil).
        noise: measurement noise std relative to the RMS of the clean measurement.
    """

    kind: str = "ct"
    views: int = 16
    span: float = 180.0
    fan_beam: bool = False
    acceleration: float = 4.0
    mask: str = "random1d"
    coils: int = 0
    center_fraction: float = 0.08
    noise: float = 0.005

    def describe(self) -> str:
        if self.kind == "ct":
            geo = "fan" if self.fan_beam else "parallel"
            return f"CT {geo} {self.views} views over {self.span:g} deg"
        return f"MRI {self.acceleration:g}x {self.mask}" + (f" {self.coils} coils" if self.coils else "")

    @property
    def baseline_name(self) -> str:
        return "fbp" if self.kind == "ct" else "zero-filled"


def make_task(kind: str, **kw: Any) -> Task:
    if kind not in ("ct", "mri"):
        raise UserInputError(f"--task {kind!r}: expected ct or mri (or generate)")
    t = Task(kind=kind, **{k: v for k, v in kw.items() if v is not None})
    if t.kind == "ct" and (t.views < 1 or not 0 < t.span <= 360):
        raise UserInputError(f"--views {t.views} / --span {t.span}: expected at least 1 view over 0 < span <= 360 degrees")
    if t.kind == "mri" and t.acceleration < 1:
        raise UserInputError(f"--acceleration {t.acceleration}: expected >= 1")
    return t


def make_operator(task: Task, size: int, seed: int = 0) -> Any:
    """The task's operator on ``(B, 1, size, size)`` images (CT normalised to unit norm)."""
    if task.kind == "ct":
        return normalised(CTOperator(size, task.views, span=task.span, fan_beam=task.fan_beam))
    try:
        mask = mri_mask(task.mask, (size, size), task.acceleration, center_fraction=task.center_fraction, seed=seed)  # type: ignore[arg-type]
    except ValueError as e:
        raise UserInputError(f"--mask {task.mask!r}: {e}") from None
    coils = simulate_coil_maps(task.coils, (size, size)) if task.coils else None
    return MRIOperator(mask, coil_maps=coils)


def measure(op: Any, u: Tensor, task: Task, generator: torch.Generator | None = None) -> tuple[Tensor, float]:
    """Noisy measurements of ``u`` and the absolute noise std ``sigma`` (Gaussian, relative to the RMS of ``A u``)."""
    clean = op.forward(u)
    sigma = float(task.noise) * float(clean.pow(2).mean().sqrt())
    return add_noise(clean, "gaussian", sigma, generator=generator), sigma


def baseline(op: Any, y: Tensor) -> Tensor:
    """FBP (CT) or zero-filled magnitude (MRI), in image units ``u``."""
    return op.pinv(y)


def tv_reconstruction(op: Any, y: Tensor, lam: float, iters: int = 100) -> Tensor:
    """Total-variation regularised least squares ``argmin 0.5 ||A u - y||^2 + lam TV(u)`` by deepinv's proximal
    gradient (``optim_builder('PGD')`` with ``TVPrior``), step ``1 / ||A||^2``, from the baseline."""
    import deepinv as dinv
    from deepinv.optim import TVPrior, optim_builder
    from deepinv.optim.data_fidelity import L2

    physics = dinv.physics.LinearPhysics(A=op.forward, A_adjoint=op.adjoint)
    step = 1.0 / max(op.norm() ** 2, 1e-12)
    model = optim_builder(iteration="PGD", prior=TVPrior(n_it_max=30), data_fidelity=L2(), max_iter=iters,
                          params_algo={"stepsize": step, "lambda": lam}, custom_init=lambda yy, ph: {"est": (baseline(op, yy),)})
    with torch.no_grad():
        return model(y, physics)


@dataclass(frozen=True)
class SolverSettings:
    solver: str = "dds"
    steps: int = 50
    sampler: str = "ddim"
    dps_scale: float = 1.0
    cg_iters: int = 5
    dds_eta: float = 0.85
    red_lr: float = 0.1
    red_lam: float = 0.25
    dds_gamma: float = 0.0  # > 0: DDS's constant proximal weight; 0: gamma_t = r_t^2 / sigma_y^2
    pigdm_noise_floor: float = 0.05
    pigdm_scale: float = 1.0


class DampedDPS:
    """Factory for the core's DPS with its log-likelihood damped by ``SNR / min_snr`` below ``SNR = min_snr``
    (see :class:`polydiff.guidance.PiGDM`'s ``min_snr``: a learned network's Jacobian makes the undamped score
    shift ``sigma^2 / alpha * grad`` explode at the first steps, where ``alpha ~ 2e-4``)."""

    def __new__(cls, operator: Any, y: Tensor, scale: float, min_snr: float) -> Any:
        from polydiff.guidance import DPS

        class _Damped(DPS):
            def log_likelihood(self, x_t: Any, t: Tensor, cond: Any, d: Any, space: Any) -> Tensor:
                ll = super().log_likelihood(x_t, t, cond, d, space)
                v = self._process.schedule(t)
                return ll * (v.alpha**2 / (min_snr * v.sigma**2)).clamp(max=1.0).to(ll.dtype)

            def wrap(self, model: Any) -> Any:
                self._process = model.process
                return super().wrap(model)

        return _Damped(operator, y, scale=scale, norm="l2")


def guidance_for(s: SolverSettings, op: Any, y_x: Tensor, sigma_x: float) -> Any:
    """The core guidance object of a sampler-based solver (see the module table)."""
    from polydiff.guidance import DDS, DataConsistency, PiGDM

    if s.solver == "dps":
        return DampedDPS(op, y_x, s.dps_scale, MIN_SNR)
    if s.solver == "dds":
        if s.dds_gamma > 0:
            return DDS(op, y_x, noise_std=sigma_x, iters=s.cg_iters, gamma=s.dds_gamma)
        return DDS(op, y_x, noise_std=sigma_x, iters=s.cg_iters, data_std=DATA_STD)
    if s.solver == "pigdm":
        return PiGDM(op, y_x, noise_std=max(sigma_x, s.pigdm_noise_floor), data_std=DATA_STD, min_snr=MIN_SNR, scale=s.pigdm_scale)
    if s.solver == "dc":
        return DataConsistency(op, y_x, iters=max(s.cg_iters, 10))
    raise UserInputError(f"--solver {s.solver!r}: expected one of {', '.join(SOLVERS)}")


def reconstruct(model: Any, op: Any, y: Tensor, sigma: float, s: SolverSettings, *, generator: torch.Generator | None = None,
                init: Tensor | None = None) -> tuple[Tensor, int, float]:
    """Reconstruct images ``u`` ``(B, 1, n, n)`` from ``y`` with solver ``s``; returns ``(u, nfe, seconds)``."""
    import polydiff

    if s.solver not in SOLVERS:
        raise UserInputError(f"--solver {s.solver!r}: expected one of {', '.join(SOLVERS)}")
    p = next(model.parameters(), None) if hasattr(model, "parameters") else None
    dtype = p.dtype if p is not None else torch.float64
    y = y.to(dtype)
    ones = torch.ones((1, 1, *op.image_shape), dtype=dtype)
    y_x = 2 * y - op.forward(ones)
    sigma_x = max(2 * sigma, 1e-6)
    start = time.perf_counter()
    b = y.shape[0]
    shape = (b, 1, *op.image_shape)
    if s.solver == "red-diff":
        from polydiff.guidance import REDDiff

        u0 = baseline(op, y) if init is None else init
        res = REDDiff(op, y_x, noise_std=sigma_x, lam=s.red_lam, lr=s.red_lr).solve(model, (2 * u0 - 1).to(dtype), steps=s.steps, generator=generator)
        x, nfe = res.x, res.nfe
    else:
        g = guidance_for(s, op, y_x, sigma_x)
        opts = {"eta": s.dds_eta} if s.sampler == "ddim" and s.solver in ("dds", "dc") else {}
        out = polydiff.sample(model, shape=shape, dtype=dtype, sampler=s.sampler, steps=s.steps, guidance=[g], generator=generator, **opts)
        x, nfe = out.x, int(out.nfe)
    u = ((x.detach() + 1) / 2).to(torch.float64)
    return u, nfe, time.perf_counter() - start


__all__ = ["DATA_STD", "SOLVERS", "SolverSettings", "Task", "baseline", "guidance_for", "make_operator", "make_task", "measure",
           "reconstruct", "tv_reconstruction"]
