"""3-D reconstruction from the 2-D prior with z-TV by ADMM (polydiff_medical.volume3d) against analytic truth.

* ``D_z`` (and the in-plane differences) are checked against their adjoints.
* ADMM converges to the solution of the same convex problem found another way: the closed form
  ``(A^T A + mu)^{-1} (A^T y + mu c)`` when ``lam = 0``, and for ``lam > 0`` a long run of projected gradient on the
  dual (``x(p) = H^{-1}(b - D^T p)``, ``|p| <= lam``) with ``A`` = identity and a small dense operator.
* 1-D TV along z with ``A = I`` has a known threshold: the minimiser is constant along z (zero z-TV, every slice
  the mean) iff ``lam >= max_k |sum_{s <= k} (y_s - mean(y))|``; below it z-TV is not zero.
* The coupled sampler on a volume constant along z (identical measurements, different noise per slice) returns
  zero z-TV up to the ADMM's convergence, while the uncoupled one does not; flipping z flips the output.
"""

from __future__ import annotations

import pytest
import torch

from polydiff.errors import UserInputError
from polydiff.guidance import MatrixOperator
from polydiff_medical.oracles import dense_matrix, gaussian_image_model
from polydiff_medical.operators import CTOperator, normalised
from polydiff_medical.tasks import SolverSettings
from polydiff_medical.volume3d import TVADMM, CouplingSettings, diff, diff_adjoint, reconstruct_volume, z_tv

D64 = torch.float64


@pytest.mark.parametrize("axis", ["z", "y", "x"])
def test_difference_adjoint(axis: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 1, 4, 6, generator=g, dtype=D64)
    d = diff(x, axis)
    r = torch.randn(d.shape, generator=g, dtype=D64)
    assert d.shape[{"z": 0, "y": 2, "x": 3}[axis]] == x.shape[{"z": 0, "y": 2, "x": 3}[axis]] - 1
    torch.testing.assert_close((d * r).sum(), (x * diff_adjoint(r, axis)).sum(), rtol=1e-12, atol=1e-12)


def _dense(m: int, d: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(m, d, generator=torch.Generator().manual_seed(seed), dtype=D64) / d**0.5


def _problem(kind: str, s: int = 5, h: int = 2, w: int = 3):
    """A per-slice operator on ``(s, 1, h, w)``, its dense matrix, measurements and a start."""
    g = torch.Generator().manual_seed(2)
    d = h * w
    mat = torch.eye(d, dtype=D64) if kind == "identity" else _dense(d + 2, d)
    op = MatrixOperator(mat, (1, h, w))
    x_true = torch.randn(s, 1, h, w, generator=g, dtype=D64).cumsum(0) * 0.3
    y = op.forward(x_true) + 0.1 * torch.randn(s, mat.shape[0], generator=g, dtype=D64)
    return op, mat, y, torch.randn(s, 1, h, w, generator=g, dtype=D64)


def _dz_matrix(s: int, d: int) -> torch.Tensor:
    """``D_z`` as a dense matrix on the volume flattened slice-major ``(s d,)``."""
    dz = torch.zeros(s - 1, s, dtype=D64)
    dz[torch.arange(s - 1), torch.arange(1, s)] = 1
    dz[torch.arange(s - 1), torch.arange(s - 1)] = -1
    return torch.kron(dz, torch.eye(d, dtype=D64))


def _dual_pg(mat: torch.Tensor, y: torch.Tensor, mu: torch.Tensor, center: torch.Tensor, lam: float, iters: int = 5000) -> torch.Tensor:
    """The same problem by projected gradient on the dual (a different method, run long)."""
    s, d = center.shape[0], mat.shape[1]
    big_a = torch.block_diag(*[mat] * s)
    dmat = _dz_matrix(s, d)
    mu_v = mu.repeat_interleave(d)
    hess = big_a.T @ big_a + torch.diag(mu_v)
    b = big_a.T @ y.reshape(-1) + mu_v * center.reshape(-1)
    hinv = torch.linalg.inv(hess)
    step = 1.0 / float(torch.linalg.matrix_norm(dmat @ hinv @ dmat.T, ord=2))
    p = torch.zeros(dmat.shape[0], dtype=D64)
    for _ in range(iters):
        x = hinv @ (b - dmat.T @ p)
        p = (p + step * (dmat @ x)).clamp(-lam, lam)
    return (hinv @ (b - dmat.T @ p)).reshape(center.shape)


@pytest.mark.parametrize("kind", ["identity", "dense"])
def test_admm_lambda0_is_the_closed_form(kind: str) -> None:
    op, mat, y, x0 = _problem(kind)
    mu = torch.tensor([0.0, 0.5, 1.0, 2.0, 0.1], dtype=D64)
    admm = TVADMM(op, y, lam=0.0, rho=0.5, iters=100, cg_iters=10)
    x = admm.solve(x0.clone(), mu, x0)
    for k in range(x0.shape[0]):
        hess = mat.T @ mat + mu[k] * torch.eye(mat.shape[1], dtype=D64)
        ref = torch.linalg.solve(hess, mat.T @ y[k] + mu[k] * x0[k].reshape(-1))
        torch.testing.assert_close(x[k].reshape(-1), ref, rtol=0, atol=1e-8)


@pytest.mark.parametrize("kind", ["identity", "dense"])
def test_admm_converges_to_the_dual_solution(kind: str) -> None:
    op, mat, y, x0 = _problem(kind)
    mu = torch.full((x0.shape[0],), 0.2, dtype=D64)
    lam = 0.15
    ref = _dual_pg(mat, y, mu, x0, lam)
    admm = TVADMM(op, y, lam=lam, rho=0.5, iters=150, cg_iters=10)
    x = admm.solve(x0.clone(), mu, x0)
    torch.testing.assert_close(x, ref, rtol=0, atol=1e-6)
    assert admm.objective(x, mu, x0) <= admm.objective(ref, mu, x0) + 1e-9
    # the TV term is active: the lam = 0 solution is different and has a larger z-TV
    x_free = TVADMM(op, y, lam=0.0, rho=0.5, iters=100, cg_iters=10).solve(x0.clone(), mu, x0)
    assert z_tv(x) < z_tv(x_free) - 0.1


def test_z_tv_threshold_gives_a_constant_volume() -> None:
    g = torch.Generator().manual_seed(3)
    s, h, w = 6, 2, 2
    op = MatrixOperator(torch.eye(h * w, dtype=D64), (1, h, w))
    ys = torch.randn(s, 1, h, w, generator=g, dtype=D64)
    y = ys.reshape(s, -1)
    thr = float((ys - ys.mean(0)).cumsum(0).abs().amax())
    above = TVADMM(op, y, lam=1.02 * thr, rho=1.0, iters=600, cg_iters=6).solve(torch.zeros_like(ys))
    assert z_tv(above) < 1e-6 * z_tv(ys)
    torch.testing.assert_close(above, ys.mean(0, keepdim=True).expand_as(ys), rtol=0, atol=1e-6)
    below = TVADMM(op, y, lam=0.9 * thr, rho=1.0, iters=600, cg_iters=6).solve(torch.zeros_like(ys))
    assert z_tv(below) > 1e-3 * z_tv(ys)


class _DenseImageOperator(MatrixOperator):
    def __init__(self, matrix: torch.Tensor, n: int) -> None:
        super().__init__(matrix, (1, n, n))
        self.image_shape = (n, n)


def _volume_problem(s: int = 4, n: int = 8):
    g = torch.Generator().manual_seed(4)
    mean = 0.2 * torch.randn(1, n, n, generator=g, dtype=D64)
    op = _DenseImageOperator(dense_matrix(normalised(CTOperator(n, 4)), (n, n)), n)  # 4-view CT as a matrix (fast)
    truth = (mean + 0.5 * torch.randn(1, 1, n, n, generator=g, dtype=D64)).expand(s, 1, n, n).clone()
    u = (truth + 1) / 2
    y = op.forward(u)  # identical noiseless measurements on every slice
    return op, y, gaussian_image_model(mean, 0.5)


def _gens(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(k) for k in seeds]


def test_constant_volume_is_reconstructed_with_zero_z_tv() -> None:
    op, y, model = _volume_problem()
    s = SolverSettings(solver="dc", steps=4, cg_iters=10)
    free, _, _ = reconstruct_volume(model, op, y, 0.0, s, CouplingSettings("none"), generator=_gens([0, 1, 2, 3]))
    coupled, nfe, _ = reconstruct_volume(model, op, y, 0.0, s, CouplingSettings("tv-z", lam=1.0, rho=1.0, admm_iters=20),
                                         generator=_gens([0, 1, 2, 3]))
    assert nfe == 4
    # without coupling the null space of A differs between slices; with it the minimiser (objective 0) is constant
    assert z_tv(free) > 0.5
    assert z_tv(coupled) < 1e-3 * z_tv(free)  # 4 steps x 20 ADMM iterations: 2e-4 measured
    # and it is still consistent with the measurements
    assert float((op.forward(coupled) - y).norm() / y.norm()) < 3e-3  # 8e-4 measured


@pytest.mark.parametrize("solver", ["dds", "dc"])
def test_flipping_z_flips_the_reconstruction(solver: str) -> None:
    op, y, model = _volume_problem()
    y = y + 0.01 * torch.randn(y.shape, generator=torch.Generator().manual_seed(5), dtype=D64) * torch.arange(1, 5, dtype=D64).reshape(-1, *[1] * (y.ndim - 1))
    s = SolverSettings(solver=solver, steps=6, cg_iters=5)
    c = CouplingSettings("tv-z", lam=0.05, rho=0.5, admm_iters=2)
    a, _, _ = reconstruct_volume(model, op, y, 0.01, s, c, generator=_gens([0, 1, 2, 3]))
    b, _, _ = reconstruct_volume(model, op, y.flip(0), 0.01, s, c, generator=_gens([3, 2, 1, 0]))
    torch.testing.assert_close(b, a.flip(0), rtol=0, atol=1e-9)
    # the coupling acts: an uncoupled run from the same noise differs
    free, _, _ = reconstruct_volume(model, op, y, 0.01, s, CouplingSettings("none"), generator=_gens([0, 1, 2, 3]))
    assert float((free - a).abs().max()) > 1e-3


def test_coupling_rejects_other_solvers() -> None:
    op, y, model = _volume_problem()
    with pytest.raises(UserInputError, match="--volume-coupling"):
        reconstruct_volume(model, op, y, 0.0, SolverSettings(solver="dps", steps=2), CouplingSettings("tv-z"))
    with pytest.raises(UserInputError, match="--volume-coupling"):
        reconstruct_volume(model, op, y, 0.0, SolverSettings(solver="dds", steps=2), CouplingSettings("tv-y"))
