"""Measurement operators, the adjointness check and conjugate-gradient data consistency."""

from __future__ import annotations

import pytest
import torch

import polydiff
from polydiff.guidance import ConjugateGradientConsistency, MaskOperator, MatrixOperator, cg_solve, check_adjoint
from polydiff.processes import gaussian
from polydiff.spaces import DenseSpace
from polydiff.state import StateDict
from polydiff.testing.oracles import GaussianOracleNet

from linear_gaussian import product_oracle_model

# float64 inner products of O(10) terms: an exact adjoint agrees to rounding (~1e-15 relative)
ADJ_TOL = 1e-12


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_matrix_operator_is_adjoint_and_a_wrong_adjoint_is_caught():
    A = torch.randn(5, 6, generator=_gen(), dtype=torch.float64)
    op = MatrixOperator(A, event_shape=(2, 3))
    x = torch.zeros(4, 2, 3, dtype=torch.float64)
    assert op.forward(x).shape == (4, 5) and op.adjoint(torch.zeros(4, 5, dtype=torch.float64)).shape == (4, 2, 3)
    assert check_adjoint(op, x, generator=_gen(1)).rel_error < ADJ_TOL

    class Wrong(MatrixOperator):
        def adjoint(self, y):
            return 2 * super().adjoint(y)

    assert check_adjoint(Wrong(A, (2, 3)), x, generator=_gen(1)).rel_error > 0.3  # |1 - 2| / (1 + 2)


def test_mask_operator_dense_and_composite():
    mask = torch.tensor([[1, 0, 1], [0, 1, 1]])
    op = MaskOperator(mask)
    x = torch.arange(6, dtype=torch.float64).reshape(2, 3) + 1
    assert op.forward(x).tolist() == [[1.0, 0.0, 3.0], [0.0, 5.0, 6.0]]
    assert check_adjoint(op, x, generator=_gen()).rel_error < ADJ_TOL
    comp = MaskOperator({"a": torch.tensor([True, False])})
    xs = StateDict({"a": torch.ones(3, 2, dtype=torch.float64), "b": torch.ones(3, 4, dtype=torch.float64)})
    out = comp.forward(xs)
    assert out["a"].tolist() == [[1.0, 0.0]] * 3 and out["b"].abs().sum() == 0
    assert check_adjoint(comp, xs, generator=_gen()).rel_error < ADJ_TOL


def test_operator_validation():
    with pytest.raises(ValueError, match="2-D"):
        MatrixOperator(torch.ones(3))
    with pytest.raises(ValueError, match="event_shape"):
        MatrixOperator(torch.ones(2, 6), event_shape=(4,))
    with pytest.raises(ValueError, match="0 and 1"):
        MaskOperator(torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="expected a tensor"):
        MatrixOperator(torch.ones(2, 3)).forward(torch.ones(4, 2))
    with pytest.raises(ValueError, match="linear"):
        ConjugateGradientConsistency(object(), torch.zeros(1))


def test_cg_solves_per_sample_systems_exactly_in_d_iterations():
    D, B = 5, 3
    M = torch.randn(B, D, D, generator=_gen(2), dtype=torch.float64)
    K = M @ M.transpose(1, 2) + 0.5 * torch.eye(D, dtype=torch.float64)  # a different SPD matrix per sample
    b = torch.randn(B, D, generator=_gen(3), dtype=torch.float64)
    x = cg_solve(lambda v: (K @ v.unsqueeze(-1)).squeeze(-1), b, torch.zeros(B, D, dtype=torch.float64), D, DenseSpace())
    torch.testing.assert_close(x, torch.linalg.solve(K, b), rtol=1e-8, atol=1e-8)  # CG in exact arithmetic: exact after D steps


def _oracle_model():
    process = gaussian("vp-cosine")
    return polydiff.Denoiser(GaussianOracleNet(process, 0.3, 1.2), process, prediction="x0")


def test_cg_consistency_is_the_proximal_solution_and_keeps_z():
    model = _oracle_model()
    D, m, B = 6, 3, 4
    A = torch.randn(m, D, generator=_gen(4), dtype=torch.float64)
    y = torch.randn(B, m, generator=_gen(5), dtype=torch.float64)
    x = torch.randn(B, D, generator=_gen(6), dtype=torch.float64)
    t = torch.full((B,), 0.3, dtype=torch.float64)
    base = model.denoise(x, t)
    out = ConjugateGradientConsistency(MatrixOperator(A), y, lam=0.1, iters=D).wrap(model).denoise(x, t)
    expect = torch.linalg.solve(A.T @ A + 0.1 * torch.eye(D, dtype=torch.float64), (y @ A + 0.1 * base.x0).T).T
    torch.testing.assert_close(out.x0, expect, rtol=1e-8, atol=1e-8)
    v = model.process.schedule(t)
    torch.testing.assert_close(v.alpha[:, None] * out.x0 + v.sigma[:, None] * out.eps, x, rtol=1e-10, atol=1e-10)


def test_cg_with_a_mask_on_a_product_state():
    """Diagonal case: observed entries become (y + lam x0_hat) / (1 + lam), the rest and the tokens are untouched."""
    model, space = product_oracle_model()
    x = StateDict({"pos": torch.randn(2, 4, generator=_gen(7), dtype=torch.float64), "tok": torch.full((2, 5), 3)})
    t = torch.full((2,), 0.5, dtype=torch.float64)
    mask = torch.tensor([True, False, True, False])
    y = StateDict({"pos": torch.ones(2, 4, dtype=torch.float64)})
    base = model.denoise(x, t, space=space)
    out = ConjugateGradientConsistency(MaskOperator({"pos": mask}), y, lam=0.5, iters=2).wrap(model).denoise(x, t, space=space)
    expect = torch.where(mask, (1.0 + 0.5 * base["pos"].x0) / 1.5, base["pos"].x0)
    torch.testing.assert_close(out["pos"].x0, expect, rtol=1e-12, atol=1e-12)
    assert torch.equal(out["tok"].log_probs, base["tok"].log_probs)
