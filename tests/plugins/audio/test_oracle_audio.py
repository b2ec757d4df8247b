"""Gaussian "speech" in the STFT domain: with the exact conditional denoiser, the enhancement samplers reproduce the
closed-form law of the clean spectrogram given the mixture (the Wiener posterior, shrunk by the final denoising step
at the grid's last time), within 5 standard errors plus a first-order discretisation allowance ``K / steps``.

``u = (x - mean) / std`` pooled over ``n = B * 2 * F * T`` independent entries is N(0, 1): standard errors
``1 / sqrt(n)`` (mean) and ``sqrt(2 / (n - 1))`` (variance). ``K`` is twice the worst measured ``|var(u) - 1| * steps``
(ddim: 2.0 on OUVE, 4.6 on SB-VE over 15-60 steps; the mean error is at the sampling noise). The PC sampler's Langevin
corrector may inflate variances by at most ``1 / (1 - r^2)`` (core ``pc`` docstring); r = 0.5 as in SGMSE+.
"""

from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff import processes
from polydiff_audio.oracles import GaussianSpeech, GaussianSpeechOracle

B, F, T = 64, 8, 16
N = B * 2 * F * T
SE_M, SE_V = 1 / math.sqrt(N), math.sqrt(2 / (N - 1))
K = {"ouve": 4.0, "sb-ve": 10.0}


def _setup(name: str):
    f = torch.arange(F, dtype=torch.float64)
    gs = GaussianSpeech(s2=0.3 * torch.exp(-f / 3) + 0.01, r2=torch.full((F,), 0.05, dtype=torch.float64))
    _, y1 = gs.draw(1, T, torch.Generator().manual_seed(0))
    y = y1.expand(B, -1, -1, -1).clone()
    p = processes.get(name)
    return gs, y, p, polydiff.Denoiser(GaussianSpeechOracle(gs, p), p, prediction="x0")


def _exact_start(gs, y, p, seed: int):
    g = torch.Generator().manual_seed(seed)
    m, v = gs.posterior(y)
    sv = p.schedule(torch.tensor([p.t_max], dtype=torch.float64))
    x0 = m + v.sqrt() * torch.randn(y.shape, generator=g, dtype=torch.float64)
    return y + sv.alpha * (x0 - y) + sv.sigma * torch.randn(y.shape, generator=g, dtype=torch.float64)


def _moments(gs, y, p, r, **start):
    mean, var = gs.ideal_output_law(p, y, float(r.grid[0]), float(r.grid[-2]), **start)
    u = (r.x - mean) / var.sqrt()
    return float(u.mean()), float(u.var())


def test_oracle_is_the_posterior_mean():
    gs, y, p, model = _setup("ouve")
    m, v = gs.posterior(y)
    # at t -> 0 the denoiser returns x_t itself; with sigma_t >> the posterior spread it returns the posterior mean
    t = torch.full((B,), 1e-9, dtype=torch.float64)
    x = torch.randn(y.shape, dtype=torch.float64)
    torch.testing.assert_close(model.net(x, t, y), x, atol=1e-6, rtol=0)
    # Monte Carlo: E[x0 | x_t, y] regresses x0 on x_t (posterior mean by least squares over many joint draws)
    x0, yy = gs.draw(4000, 1, torch.Generator().manual_seed(3))
    tt = torch.full((4000,), 0.5, dtype=torch.float64)
    xt = p.noise(x0, tt, generator=torch.Generator().manual_seed(4), cond={"y": yy}).x_t
    resid = x0 - model.net(xt, tt, yy)
    assert float(resid.mean().abs()) < 5 * float(resid.std()) / math.sqrt(resid.numel())
    assert float((resid * xt).mean().abs()) < 5 * float((resid * xt).std()) / math.sqrt(resid.numel())  # orthogonal


@pytest.mark.parametrize(("name", "steps"), [("ouve", 15), ("ouve", 60), ("sb-ve", 30)])
def test_ode_enhancement_reproduces_the_posterior_law(name, steps):
    gs, y, p, model = _setup(name)
    gens = [torch.Generator().manual_seed(i) for i in range(B)]
    r = polydiff.sample(model, x_start=_exact_start(gs, y, p, 1), sampler="ddim", steps=steps, cond={"y": y}, generator=gens)
    mu, var = _moments(gs, y, p, r)
    assert abs(mu) <= 5 * SE_M
    assert abs(var - 1) <= 5 * SE_V + K[name] / steps


def test_ode_error_falls_with_steps():
    gs, y, p, model = _setup("ouve")
    errs = []
    for steps in (8, 64):
        r = polydiff.sample(model, x_start=_exact_start(gs, y, p, 1), sampler="ddim", steps=steps, cond={"y": y})
        errs.append(abs(_moments(gs, y, p, r)[1] - 1))
    assert errs[1] < errs[0] / 3  # first order: 8x the steps, at least 3x smaller (measured ~7x)


def test_pc_sampler_as_in_sgmse_reproduces_the_posterior_law():
    gs, y, p, model = _setup("ouve")
    gens = [torch.Generator().manual_seed(100 + i) for i in range(B)]
    r = polydiff.sample(model, x_start=_exact_start(gs, y, p, 2), sampler="pc", steps=30, snr=0.5, corrector_steps=1,
                        cond={"y": y}, generator=gens)
    assert r.nfe == 60
    mu, var = _moments(gs, y, p, r)
    assert abs(mu) <= 5 * SE_M
    assert 1 - 5 * SE_V - K["ouve"] / 30 <= var <= 1 / (1 - 0.5**2) + 5 * SE_V + K["ouve"] / 30


def test_from_the_sgmse_prior_the_ode_output_follows_the_derived_affine_law():
    """Started at ``y + sigma_T eps`` (SGMSE's prior, not the exact marginal), the exact ODE is still affine, so the
    output law is closed-form; it differs from the posterior by the prior mismatch ``alpha_T (y - m)``."""
    gs, y, p, model = _setup("ouve")
    gens = [torch.Generator().manual_seed(200 + i) for i in range(B)]
    r = polydiff.sample(model, shape=y.shape, dtype=torch.float64, sampler="ddim", steps=60, cond={"y": y}, generator=gens)
    s_t = float(p.schedule(torch.tensor([float(r.grid[0])], dtype=torch.float64)).sigma)
    mu, var = _moments(gs, y, p, r, start_mean=y, start_var=torch.full_like(y, s_t**2))
    assert abs(mu) <= 5 * SE_M
    assert abs(var - 1) <= 5 * SE_V + K["ouve"] / 60
