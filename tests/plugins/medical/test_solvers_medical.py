"""Every solver with every medical operator on a linear-Gaussian problem (prior N(m, c^2 I) on 12x12 images).

Exact solvers (DDS with the posterior-variance gamma_t, ΠGDM with data_std=c, hard data consistency with
noiseless data) map the true mean of z_{t0} | y to the closed-form posterior mean through a deterministic sampler
(see tests/core/guidance/test_inverse_solvers_lg.py for the derivation): tolerance 1e-7 (converged CG).
Approximate solvers (DDS gamma=1 with 5 CG iterations, DPS, RED-diff): regression bounds on the relative
posterior-mean error (1.5x measured) and the residual at most twice the noise level.
"""

from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff.guidance import DDS, DPS, DataConsistency, PiGDM, REDDiff
from polydiff_medical.operators import CTOperator, MRIOperator, mri_mask, normalised, simulate_coil_maps
from polydiff_medical.oracles import gaussian_image_model, gaussian_posterior_mean

N_PIX, C, SY = 12, 0.5, 0.05


def _op(name: str):
    if name == "ct-sparse":
        return normalised(CTOperator(N_PIX, 6))
    if name == "ct-limited":
        return normalised(CTOperator(N_PIX, 8, span=100.0))
    if name == "mri":
        return MRIOperator(mri_mask("equispaced1d", (N_PIX, N_PIX), 3, center_fraction=0.17))
    return MRIOperator(mri_mask("random2d", (N_PIX, N_PIX), 3, center_fraction=0.17), coil_maps=simulate_coil_maps(3, (N_PIX, N_PIX)))


OPS = ["ct-sparse", "ct-limited", "mri", "mri-multicoil"]


def _problem(name: str, sigma_y: float):
    g = torch.Generator().manual_seed(0)
    op = _op(name)
    mean = 0.3 + 0.1 * torch.randn(1, N_PIX, N_PIX, generator=g, dtype=torch.float64)
    x = mean + C * torch.randn(1, 1, N_PIX, N_PIX, generator=g, dtype=torch.float64)
    ax = op.forward(x)
    y = ax + sigma_y * torch.randn(ax.shape, generator=g, dtype=torch.float64)
    post = gaussian_posterior_mean(op, y[0], mean, C, sigma_y)
    return op, y, post, gaussian_image_model(mean, C)


@pytest.mark.parametrize("solver", ["dds-adaptive", "pigdm", "dc"])
@pytest.mark.parametrize("name", OPS)
def test_exact_solvers_with_medical_operators(name: str, solver: str) -> None:
    if solver == "dc" and name == "ct-limited":
        pytest.skip("noiseless limited-angle CT: smallest nonzero singular value 4e-9, the projection is not computable to 1e-7")
    sy = 0.0 if solver == "dc" else SY
    op, y, post, model = _problem(name, sy)
    guide = {"dds-adaptive": DDS(op, y, noise_std=sy, iters=150, data_std=C),
             "pigdm": PiGDM(op, y, noise_std=sy, data_std=C, iters=150),
             "dc": DataConsistency(op, y, iters=400)}[solver]
    t0 = torch.tensor([0.9999], dtype=torch.float64)
    a0 = float(model.process.schedule(t0).alpha)
    out = polydiff.sample(model, x_start=(a0 * post)[None], sampler="euler", steps=6, guidance=[guide])
    assert abs(float(out.grid[0]) - 0.9999) < 1e-12
    assert float((out.x[0] - post).abs().max()) <= 1e-7 * max(1.0, float(post.abs().max()))


B = 32
# relative posterior-mean error ||mean - mu*|| / ||mu*||, measured (seed 0) x 1.5
# (ct-sparse: 0.50, 0.27, 0.42; mri: 0.17, 0.11, 0.20 for dds-gamma1, dps, red-diff)
BOUNDS = {("ct-sparse", "dds-gamma1"): 0.75, ("ct-sparse", "dps"): 0.41, ("ct-sparse", "red-diff"): 0.63,
          ("mri", "dds-gamma1"): 0.25, ("mri", "dps"): 0.16, ("mri", "red-diff"): 0.30}


@pytest.mark.parametrize("name,solver", sorted(BOUNDS))
def test_approximate_solvers_with_medical_operators(name: str, solver: str) -> None:
    op, y, post, model = _problem(name, SY)
    ys = y.expand(B, *y.shape[1:]).clone()
    gen = torch.Generator().manual_seed(1)
    if solver == "red-diff":
        x = REDDiff(op, ys, noise_std=SY).solve(model, op.adjoint(ys), steps=60, generator=gen).x
    else:
        guide = DDS(op, ys, noise_std=SY, iters=5) if solver == "dds-gamma1" else DPS(op, ys, scale=1.0, noise_std=SY, norm="l2sq")
        x = polydiff.sample(model, shape=(B, 1, N_PIX, N_PIX), dtype=torch.float64, sampler="ddim", steps=30, guidance=[guide], generator=gen).x
    mean = x.mean(0, keepdim=True)
    err = float((mean[0] - post).norm() / post.norm())
    residual = float((op.forward(mean) - y).norm())
    noise = SY * math.sqrt(y.numel())
    print(f"\nmeasured {name} {solver}: relative posterior-mean error {err:.4f}, residual/noise {residual / noise:.3f}")
    assert residual <= 2 * noise
    assert err <= BOUNDS[name, solver]
