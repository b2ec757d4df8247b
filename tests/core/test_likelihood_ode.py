"""Probability-flow ODE likelihood against closed-form Gaussian densities.

For Gaussian data and the exact (oracle) denoiser the marginals are Gaussian,
``z_t ~ N(alpha_t mu, C_t)`` with ``C_t = alpha_t^2 Sigma + sigma_t^2 I``, and the probability-flow
ODE is the linear map ``z_t = alpha_t mu + C_t^{1/2} C_0^{-1/2} (z_0 - alpha_0 mu)``. So the model's
likelihood is known exactly:

``log p_model(x) = log N(x; t_start marginal) + [log p_prior(z_1) - log N(z_1; t_end marginal)]``,

where the bracket is the (known) mismatch between the process's prior and the true marginal at
``t_end``. Tolerances: RK4 has global error ``O(h^4)``, so by Richardson extrapolation the error of
the ``n``-step result is ``|L_n - L_{n/2}| / 15`` asymptotically; we allow ``|L_n - L_{n/2}| / 4``
(any order above ~2.3 passes; a bias that does not shrink with ``h`` fails) plus a float64 floor.
"""

from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff.likelihood import LikelihoodResult, log_likelihood
from polydiff.processes import get
from polydiff.spaces import ZeroCoMSpace
from polydiff.testing.oracles import CompositeOracleNet, GaussianOracleNet, gaussian_log_density

GAUSSIAN = ["vp-linear", "vp-cosine", "ve", "edm", "flow", "sub-vp"]
F64_FLOOR = 1e-9  # float64 rounding over ~100 network calls on O(10) values
MU = torch.tensor([0.5, -1.0, 0.0], dtype=torch.float64)
S = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)


def _vals(process, t: float):
    return process.schedule(torch.tensor([t], dtype=torch.float64))


def _exact_diag(process, x, mu, s, *, space=None, t0=None, t1=None):
    """Exact model log-likelihood for N(mu, diag s^2) data with the oracle (see module docstring)."""
    t0 = process.t_min if t0 is None else t0
    t1 = process.t_max if t1 is None else t1
    v0, v1 = _vals(process, t0), _vals(process, t1)
    sd0 = (v0.alpha**2 * s**2 + v0.sigma**2).sqrt()
    sd1 = (v1.alpha**2 * s**2 + v1.sigma**2).sqrt()
    z1 = v1.alpha * mu + sd1 / sd0 * (x - v0.alpha * mu)
    if space is not None:
        z1 = space.project(z1)
    mismatch = process.prior_log_prob(z1, space=space) - gaussian_log_density(z1, v1.alpha * mu, sd1, space)
    return gaussian_log_density(x, v0.alpha * mu, sd0, space) + mismatch


def _check_rk4(model, x, exact, n: int, **kw) -> LikelihoodResult:
    fine = log_likelihood(model, x, steps=n, **kw)
    coarse = log_likelihood(model, x, steps=n // 2, **kw)
    err = (fine.log_prob - exact).abs()
    tol = (fine.log_prob - coarse.log_prob).abs() / 4 + F64_FLOOR
    assert bool((err <= tol).all()), f"error {err.tolist()} exceeds Richardson bound {tol.tolist()}"
    return fine


@pytest.mark.parametrize("name", GAUSSIAN)
def test_gaussian_oracle_likelihood_every_schedule(name):
    torch.manual_seed(0)
    process = get(name)
    x = MU + S * torch.randn(4, 3, dtype=torch.float64)
    model = polydiff.Denoiser(GaussianOracleNet(process, MU, S), process, prediction="x0")
    res = _check_rk4(model, x, _exact_diag(process, x, MU, S), 32)
    assert res.log_prob.shape == (4,) and res.nfe == 4 * 32
    torch.testing.assert_close(res.log_prob, res.prior_log_prob + res.delta_log_prob, rtol=0, atol=1e-12)
    torch.testing.assert_close(res.bits_per_dim, -res.log_prob / (3 * math.log(2)), rtol=1e-12, atol=0)


@pytest.mark.parametrize(("method", "order"), [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_solver_order(method, order):
    """Halving h divides the error by about 2^order; require at least 2^(order - 0.5)."""
    torch.manual_seed(1)
    process = get("vp-cosine")
    x = MU + S * torch.randn(3, 3, dtype=torch.float64)
    model = polydiff.Denoiser(GaussianOracleNet(process, MU, S), process, prediction="x0")
    exact = _exact_diag(process, x, MU, S)
    e1 = (log_likelihood(model, x, steps=16, method=method).log_prob - exact).abs().max()
    e2 = (log_likelihood(model, x, steps=32, method=method).log_prob - exact).abs().max()
    assert float(e1 / e2) >= 2 ** (order - 0.5), (float(e1), float(e2))


def _correlated_model(process, sigma_data: torch.Tensor):
    class Net(torch.nn.Module):
        def forward(self, z, t):
            v = process.schedule(t)
            a, s = v.alpha[:, None, None], v.sigma[:, None, None]  # test-local net on (B, D) data
            eye = torch.eye(z.shape[1], dtype=z.dtype)
            gain = a * sigma_data @ torch.linalg.inv(a * a * sigma_data + s * s * eye)
            return (gain @ z[:, :, None])[:, :, 0]

    return polydiff.Denoiser(Net(), process, prediction="x0")


def test_correlated_gaussian_and_hutchinson_unbiased():
    """Full covariance (non-diagonal Jacobian, so Rademacher probes have non-zero variance)."""
    torch.manual_seed(2)
    process = get("vp-linear")
    a = torch.randn(3, 3, dtype=torch.float64)
    cov = a @ a.T + 0.2 * torch.eye(3, dtype=torch.float64)
    model = _correlated_model(process, cov)
    x = (torch.linalg.cholesky(cov) @ torch.randn(3, 2, dtype=torch.float64)).T
    v0, v1 = _vals(process, process.t_min), _vals(process, process.t_max)
    c0 = v0.alpha**2 * cov + v0.sigma**2 * torch.eye(3, dtype=torch.float64)
    c1 = v1.alpha**2 * cov + v1.sigma**2 * torch.eye(3, dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(cov)  # C_t^{1/2} C_0^{-1/2} is diagonal in Sigma's eigenbasis
    gain = evecs @ torch.diag(((v1.alpha**2 * evals + v1.sigma**2) / (v0.alpha**2 * evals + v0.sigma**2)).sqrt()) @ evecs.T
    z1 = x @ gain.T
    mvn = lambda c: torch.distributions.MultivariateNormal(torch.zeros(3, dtype=torch.float64), c)  # noqa: E731
    exact = mvn(c0).log_prob(x) + process.prior_log_prob(z1) - mvn(c1).log_prob(z1)
    res = _check_rk4(model, x, exact, 32)

    # Hutchinson: K copies of one point, one probe generator each; mean within 5 standard errors.
    k = 256
    xs = x[:1].expand(k, 3).clone()
    ex = log_likelihood(model, xs[:1], steps=8)
    gens = [torch.Generator().manual_seed(i) for i in range(k)]
    hu = log_likelihood(model, xs, steps=8, divergence="hutchinson", generator=gens)
    diff = hu.delta_log_prob - ex.delta_log_prob
    se = diff.std() / math.sqrt(k)
    assert float(diff.std()) > 0.0  # the estimator is genuinely random here
    assert abs(float(diff.mean())) <= 5 * float(se) + F64_FLOOR
    # per-sample generators: sample 3's estimate does not depend on the rest of the batch
    alone = log_likelihood(model, xs[3:4], steps=8, divergence="hutchinson", generator=[gens[3].manual_seed(3)])
    torch.testing.assert_close(alone.log_prob, hu.log_prob[3:4], rtol=0, atol=1e-12)
    assert res.nfe > 0


def test_zero_com_uses_d_times_n_minus_one_dof():
    torch.manual_seed(3)
    sizes = [3, 4, 5]
    seg = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    space = ZeroCoMSpace(seg)
    s = 0.7
    x = space.project(s * torch.randn(seg.numel(), 3, dtype=torch.float64))
    process = get("vp-cosine")
    model = polydiff.Denoiser(GaussianOracleNet(process, 0.0, s, space=space), process, prediction="x0")
    res = log_likelihood(model, x, steps=16, space=space)
    coarse = log_likelihood(model, x, steps=8, space=space)
    # isotropic Gaussian on the 3(N-1)-dimensional subspace, written out by hand
    v0, v1 = _vals(process, process.t_min), _vals(process, process.t_max)
    sd0 = float((v0.alpha**2 * s**2 + v0.sigma**2).sqrt())
    sd1 = float((v1.alpha**2 * s**2 + v1.sigma**2).sqrt())
    dof = 3 * (torch.tensor(sizes, dtype=torch.float64) - 1)
    sq = space.sum(x * x)

    def iso(sq, sd):
        return -0.5 * sq / sd**2 - 0.5 * dof * math.log(2 * math.pi * sd**2)

    z1 = x * (sd1 / sd0)
    exact = iso(sq, sd0) + process.prior_log_prob(z1, space=space) - iso(space.sum(z1 * z1), sd1)
    err = (res.log_prob - exact).abs()
    assert bool((err <= (res.log_prob - coarse.log_prob).abs() / 4 + F64_FLOOR).all())
    # the delta term alone is dof * log(sd1 / sd0): ambient 3N dimensions would be off by 3 log(sd1/sd0)
    torch.testing.assert_close(res.delta_log_prob, dof * math.log(sd1 / sd0), rtol=1e-5, atol=0)
    torch.testing.assert_close(res.bits_per_dim, -res.log_prob / (dof * math.log(2)), rtol=1e-12, atol=0)
    # Hutchinson probes are projected, so the estimate is unbiased for the subspace trace:
    # K copies of the first molecule, one generator each; mean within 5 standard errors.
    k = 128
    seg_k = torch.arange(k).repeat_interleave(sizes[0])
    space_k = ZeroCoMSpace(seg_k)
    xk = x[: sizes[0]].repeat(k, 1)
    model_k = polydiff.Denoiser(GaussianOracleNet(process, 0.0, s, space=space_k), process, prediction="x0")
    gens = [torch.Generator().manual_seed(i) for i in range(k)]
    hu = log_likelihood(model_k, xk, steps=8, space=space_k, divergence="hutchinson", generator=gens)
    ex = log_likelihood(model, x, steps=8, space=space)
    diff = hu.delta_log_prob - ex.delta_log_prob[0]
    assert float(diff.std()) > 0.0
    assert abs(float(diff.mean())) <= 5 * float(diff.std()) / math.sqrt(k) + F64_FLOOR


def test_mean_reverting_process_in_standard_coordinates():
    torch.manual_seed(4)
    process = get("ouve")
    y = torch.randn(4, 3, dtype=torch.float64)
    cond = {"y": y}
    x = MU + S * torch.randn(4, 3, dtype=torch.float64)
    model = polydiff.Denoiser(GaussianOracleNet(process, MU, S), process, prediction="x0")
    t0, t1 = process.t_min, process.t_max
    v0, v1 = _vals(process, t0), _vals(process, t1)
    sd0 = (v0.alpha**2 * S**2 + v0.sigma**2).sqrt()
    sd1 = (v1.alpha**2 * S**2 + v1.sigma**2).sqrt()
    z0 = x - (1 - v0.alpha) * y
    z1 = v1.alpha * MU + sd1 / sd0 * (z0 - v0.alpha * MU)
    x1 = z1 + (1 - v1.alpha) * y
    exact = (
        gaussian_log_density(z0, v0.alpha * MU, sd0)
        + process.prior_log_prob(x1, cond=cond)
        - gaussian_log_density(z1, v1.alpha * MU, sd1)
    )
    res = _check_rk4(model, x, exact, 32, cond=cond)
    torch.testing.assert_close(res.x_1, x1, rtol=0, atol=1e-4)


def test_product_of_gaussians_sums_components():
    torch.manual_seed(5)
    pa, pb = get("vp-linear"), get("ve")
    process = get("product", components={"a": pa, "b": pb})
    mu_b, s_b = torch.tensor([0.3, -0.2], dtype=torch.float64), torch.tensor([0.8, 1.5], dtype=torch.float64)
    x = {"a": MU + S * torch.randn(2, 3, dtype=torch.float64), "b": mu_b + s_b * torch.randn(2, 2, dtype=torch.float64)}
    net = CompositeOracleNet({"a": GaussianOracleNet(pa, MU, S), "b": GaussianOracleNet(pb, mu_b, s_b)})
    model = polydiff.Denoiser(net, process, prediction={"a": "x0", "b": "x0"})
    t0, t1 = process.t_min, process.t_max
    exact = _exact_diag(pa, x["a"], MU, S, t0=t0, t1=t1) + _exact_diag(pb, x["b"], mu_b, s_b, t0=t0, t1=t1)
    res = _check_rk4(model, x, exact, 32)
    torch.testing.assert_close(res.bits_per_dim, -res.log_prob / (5 * math.log(2)), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["ve", "edm"])
def test_start_at_t_zero_when_sigma_0_is_positive(name):
    """VE/EDM have sigma_0 > 0, so the ODE can start at t = 0: the density of N(mu, s^2 + sigma_0^2)."""
    torch.manual_seed(6)
    process = get(name)
    x = MU + S * torch.randn(3, 3, dtype=torch.float64)
    model = polydiff.Denoiser(GaussianOracleNet(process, MU, S), process, prediction="x0")
    exact = _exact_diag(process, x, MU, S, t0=0.0)
    with torch.no_grad():  # the likelihood enables autograd itself
        _check_rk4(model, x, exact, 32, t_start=0.0)


def test_rejects_discrete_and_bad_arguments():
    masked = get("masked", vocab_size=4)
    model = polydiff.Denoiser(torch.nn.Identity(), masked, prediction="x0_logits")
    with pytest.raises(ValueError, match="Gaussian"):
        log_likelihood(model, torch.zeros(2, 3, dtype=torch.long))
    process = get("flow")
    model = polydiff.Denoiser(GaussianOracleNet(process), process, prediction="x0")
    x = torch.zeros(2, 3, dtype=torch.float64)
    for kw, field in [({"method": "rk45"}, "method"), ({"divergence": "skilling"}, "divergence"), ({"steps": 0}, "steps"),
                      ({"t_end": 0.0005}, "t_start")]:
        with pytest.raises(ValueError, match=field):
            log_likelihood(model, x, **kw)
