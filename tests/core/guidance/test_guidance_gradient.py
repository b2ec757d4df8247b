"""Classifier-gradient and reconstruction (DPS) guidance: the score shift, checked in closed form."""

from __future__ import annotations

import pytest
import torch

import polydiff
from polydiff.guidance import DPS, ClassifierGradient, MaskOperator, MatrixOperator, Reconstruction, guided
from polydiff.processes import gaussian
from polydiff.state import StateDict
from polydiff.testing.oracles import GaussianOracleNet

from linear_gaussian import product_oracle_model

D = 4
TOL = dict(rtol=1e-11, atol=1e-11)  # float64 rounding of a few dozen operations


def _setup(b: int = 3, t: float = 0.4):
    process = gaussian("vp-cosine")
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(D, generator=g, dtype=torch.float64)
    s = 0.5 + torch.rand(D, generator=g, dtype=torch.float64)
    model = polydiff.Denoiser(GaussianOracleNet(process, mu, s), process, prediction="x0")
    x = torch.randn(b, D, generator=g, dtype=torch.float64)
    tt = torch.full((b,), t, dtype=torch.float64)
    v = process.schedule(tt)
    k = v.alpha[:, None] * s**2 / (v.alpha[:, None] ** 2 * s**2 + v.sigma[:, None] ** 2)  # d x0_hat / d x_t (diagonal)
    return model, x, tt, v, k


def _quadratic(c: torch.Tensor, kappa: float):
    return lambda x_t, t, cond: -0.5 * kappa * ((x_t - c) ** 2).sum(-1)


@pytest.mark.parametrize("no_grad", [False, True])
def test_classifier_gradient_shifts_the_score(no_grad):
    model, x, t, v, _ = _setup()
    c = torch.linspace(-1, 1, D, dtype=torch.float64)
    base = model.denoise(x, t)
    with torch.no_grad() if no_grad else torch.enable_grad():
        out = ClassifierGradient(_quadratic(c, 2.0), scale=1.5).wrap(model).denoise(x, t)
    grad = -2.0 * (x - c)
    a, s = v.alpha[:, None], v.sigma[:, None]
    torch.testing.assert_close(out.eps, base.eps - s * 1.5 * grad, **TOL)
    torch.testing.assert_close(a * out.x0 + s * out.eps, x, **TOL)  # same z_t
    assert not out.x0.requires_grad and not out.eps.requires_grad


def test_nested_gradient_guidance_adds():
    model, x, t, _, _ = _setup()
    c1, c2 = torch.zeros(D, dtype=torch.float64), torch.ones(D, dtype=torch.float64)
    f1, f2 = _quadratic(c1, 1.0), _quadratic(c2, 0.5)
    nested = guided(model, ClassifierGradient(f1), ClassifierGradient(f2)).denoise(x, t)
    single = ClassifierGradient(lambda x_t, t, cond: f1(x_t, t, cond) + f2(x_t, t, cond)).wrap(model).denoise(x, t)
    torch.testing.assert_close(nested.x0, single.x0, **TOL)
    torch.testing.assert_close(nested.eps, single.eps, **TOL)


@pytest.mark.parametrize("norm", ["l2sq", "l2"])
def test_reconstruction_gradient_goes_through_the_network(norm):
    """For the Gaussian oracle x0_hat = mu + k (x_t - alpha mu), so grad_x ||r||^2/2 = -k A^T r."""
    model, x, t, v, k = _setup()
    g = torch.Generator().manual_seed(5)
    A = torch.randn(2, D, generator=g, dtype=torch.float64)
    y = torch.randn(3, 2, generator=g, dtype=torch.float64)
    base = model.denoise(x, t)
    out = Reconstruction(MatrixOperator(A), y, scale=0.7, noise_std=0.5, norm=norm).wrap(model).denoise(x, t)
    r = (y - base.x0 @ A.T) / 0.5
    g_ll = 0.7 * k * (r @ A) / 0.5  # grad of -0.7 ||r||^2 / 2
    if norm == "l2":
        g_ll = g_ll / r.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(out.eps, base.eps - v.sigma[:, None] * g_ll, **TOL)
    assert DPS(MatrixOperator(A), y).norm == "l2" and Reconstruction(MatrixOperator(A), y).norm == "l2sq"


def test_guidance_is_per_sample():
    model, x, t, _, _ = _setup(b=4)
    y = torch.randn(4, D, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    mask = torch.tensor([[1, 0, 1, 0]] * 2 + [[0, 1, 1, 1]] * 2)
    full = DPS(MaskOperator(mask), y, scale=2.0).wrap(model).denoise(x, t)
    for i in range(4):
        one = DPS(MaskOperator(mask[i : i + 1]), y[i : i + 1], scale=2.0).wrap(model).denoise(x[i : i + 1], t[i : i + 1])
        torch.testing.assert_close(one.x0, full.x0[i : i + 1], **TOL)


def test_reconstruction_on_a_product_state_leaves_tokens_alone():
    model, space = product_oracle_model()
    x = StateDict({"pos": torch.randn(2, D, dtype=torch.float64), "tok": torch.full((2, 5), 3)})
    t = torch.full((2,), 0.5, dtype=torch.float64)
    y = StateDict({"pos": torch.ones(2, D, dtype=torch.float64)})
    base = model.denoise(x, t, space=space)
    out = Reconstruction(MaskOperator({"pos": torch.ones(D, dtype=torch.bool)}), y).wrap(model).denoise(x, t, space=space)
    assert torch.equal(out["tok"].log_probs, base["tok"].log_probs)
    v = model.process.components["pos"].schedule(t)
    k = (v.alpha / (v.alpha**2 + v.sigma**2))[:, None]
    torch.testing.assert_close(out["pos"].eps, base["pos"].eps - v.sigma[:, None] * k * (y["pos"] - base["pos"].x0), **TOL)


def test_classifier_gradient_validates():
    with pytest.raises(ValueError, match="callable"):
        ClassifierGradient(3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="norm"):
        Reconstruction(MatrixOperator(torch.eye(2)), torch.zeros(1, 2), norm="l1")
    model, x, t, _, _ = _setup()
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        ClassifierGradient(lambda x_t, t, c: x_t).wrap(model).denoise(x, t)
