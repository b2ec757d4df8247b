"""The SB-VE Schrödinger bridge: closed-form marginals against its SDE, its ends, and sampling with an exact denoiser."""

from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff import processes
from polydiff.processes import BridgeProcess, BridgeVE
from polydiff.testing.oracles import GaussianOracleNet


def test_bridge_is_registered_and_rebuilds_from_its_config():
    p = processes.get("sb-ve", k=3.0, c=0.5)
    assert isinstance(p, BridgeProcess) and p.has_offset
    q = processes.get("sb-ve", **p.config())
    t = torch.linspace(0.0, 0.99, 7, dtype=torch.float64)
    torch.testing.assert_close(q.schedule(t).sigma, p.schedule(t).sigma)
    with pytest.raises(ValueError):
        BridgeVE(k=0.5)


def test_bridge_closed_form_solves_the_h_transform_moment_odes():
    """The bridge SDE ``dx = g^2 (y - x) / sbar_t^2 dt + g dw`` is linear: its mean obeys ``alpha' = f alpha`` with
    ``f = -g^2 / sbar^2`` and its variance ``v' = 2 f v + g^2`` (v_0 = 0); the schedule must solve both."""
    sched = BridgeVE()
    t = torch.linspace(0.01, 0.99, 60, dtype=torch.float64).requires_grad_(True)
    v = sched(t)
    (d_alpha,) = torch.autograd.grad(v.alpha.sum(), t, retain_graph=True)
    (d_var,) = torch.autograd.grad((v.sigma**2).sum(), t)
    td = t.detach()
    g2 = sched.c * sched.k ** (2 * td)
    S = sched.c * (sched.k**2 - 1) / (2 * math.log(sched.k))
    sbar2 = S - sched.c * (sched.k ** (2 * td) - 1) / (2 * math.log(sched.k))
    f = -g2 / sbar2
    torch.testing.assert_close(d_alpha, f * v.alpha.detach())
    torch.testing.assert_close(d_var, 2 * f * v.sigma.detach() ** 2 + g2)
    torch.testing.assert_close(v.d_alpha.detach(), d_alpha)  # the schedule's own derivatives
    torch.testing.assert_close(v.diffusion_sq.detach(), g2)
    ends = sched(torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(ends.alpha, torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(ends.sigma, torch.zeros(2, dtype=torch.float64), atol=1e-7, rtol=0)


def test_bridge_marginal_matches_a_simulated_bridge_sde():
    """Euler-Maruyama on the h-transform SDE from ``x_0`` to ``t = 0.6`` (fine steps) against the closed form:
    mean within 5 standard errors plus the O(dt) bias bound, variance within 5 standard errors plus it."""
    sched = BridgeVE()
    n, steps, t_end = 20000, 2000, 0.6
    gen = torch.Generator().manual_seed(0)
    x0, y = 0.7, -1.3
    x = torch.full((n,), x0, dtype=torch.float64)
    dt = t_end / steps
    S = sched.total_var
    for i in range(steps):
        t = torch.tensor(i * dt, dtype=torch.float64)
        g2 = float(sched.g_sq(t))
        sbar2 = S - float(sched.s_sq(t))
        x = x + g2 * (y - x) / sbar2 * dt + math.sqrt(g2 * dt) * torch.randn(n, generator=gen, dtype=torch.float64)
    v = sched(torch.tensor([t_end], dtype=torch.float64))
    mean = y + float(v.alpha) * (x0 - y)
    var = float(v.sigma) ** 2
    bias = 2 * dt * 10  # Euler's weak error, O(dt) with a constant bounded by |f| + g^2 on [0, 0.6] (< 10)
    assert abs(float(x.mean()) - mean) <= 5 * math.sqrt(var / n) + bias
    assert abs(float(x.var()) - var) <= 5 * var * math.sqrt(2 / (n - 1)) + bias


def test_bridge_prior_sits_at_y():
    p = processes.get("sb-ve")
    y = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x1 = p.prior_sample(torch.zeros_like(y), cond={"y": y}, generator=torch.Generator().manual_seed(2))
    sigma = float(p.schedule(torch.tensor([p.t_max], dtype=torch.float64)).sigma)
    assert float((x1 - y).abs().max()) <= 6 * sigma and sigma < 0.06


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_bridge_samplers_with_an_exact_denoiser_recover_the_data_law(sampler):
    """Data ``x_0 ~ N(mu, s^2)`` bridged to a fixed ``y``; the exact denoiser E[x_0 | x_t] makes the bridge's ODE
    (DDIM) and SDE (posterior) samplers land on the data law. The start at t_max = 0.999 leaves a bias of
    ``alpha_{t_max} |mu - y| < 1e-2`` in the mean; 40 steps add a discretisation error measured below 0.03."""
    p = processes.get("sb-ve")
    mu, s = 0.4, 0.3
    n = 4000
    y = torch.full((n, 1), -0.8, dtype=torch.float64)
    model = polydiff.Denoiser(GaussianOracleNet(p, mu, s), p, prediction="x0")
    gens = [torch.Generator().manual_seed(i) for i in range(n)]
    out = polydiff.sample(model, shape=(n, 1), sampler=sampler, steps=40, cond={"y": y}, generator=gens, dtype=torch.float64)
    x = out.x[:, 0]
    se_m, se_v = s / math.sqrt(n), s**2 * math.sqrt(2 / (n - 1))
    assert abs(float(x.mean()) - mu) <= 5 * se_m + 0.03
    assert abs(float(x.std()) - s) <= 5 * se_v / (2 * s) + 0.03
