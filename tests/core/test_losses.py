"""Training losses: weighting formulas, time-sampling distributions and the masked NELBO."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import polydiff
from polydiff import processes
from polydiff.losses import diffusion_loss, gaussian_weight, masked_nelbo, sample_time
from polydiff.parameterisation import Denoised, from_x0_eps


def test_weighting_formulas():
    v = processes.get("vp-cosine").schedule(torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
    snr = v.alpha**2 / v.sigma**2
    torch.testing.assert_close(gaussian_weight("uniform", v), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(gaussian_weight("snr", v), snr)
    torch.testing.assert_close(gaussian_weight("min-snr", v, min_snr_gamma=5.0), torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64)))
    s = v.sigma / v.alpha
    torch.testing.assert_close(gaussian_weight("edm", v, sigma_data=0.5), (s**2 + 0.25) / (s * 0.5) ** 2)
    with pytest.raises(ValueError, match="min-snr"):
        gaussian_weight("bogus", v)


class _Const(torch.nn.Module):
    """Predicts a fixed tensor (so the loss is an explicit function of the noise)."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x_t, t):
        return self.out.expand_as(x_t)


@pytest.mark.parametrize("weighting", ["uniform", "snr", "min-snr", "edm"])
@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_weighted_loss_is_weight_times_x0_error(weighting, prediction):
    process = processes.get("vp-linear")
    out = torch.tensor([0.2, -0.1, 0.4], dtype=torch.float64)
    model = polydiff.Denoiser(_Const(out), process, prediction=prediction)
    x0 = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0.1, 0.3, 0.6, 0.9], dtype=torch.float64)
    res = diffusion_loss(model, x0, t=t, generator=torch.Generator().manual_seed(0), weighting=weighting)
    eps = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = process.schedule(t)
    z = v.alpha[:, None] * x0 + v.sigma[:, None] * eps
    x0_hat = model.denoise(z, t).x0
    expected = gaussian_weight(weighting, v) * ((x0_hat - x0) ** 2).sum(1)
    torch.testing.assert_close(res.per_sample, expected)
    torch.testing.assert_close(res.loss, expected.sum() / 12)
    assert torch.equal(res.count, torch.full((4,), 3.0, dtype=torch.float64))


def test_default_weighting_is_mse_in_prediction_space():
    process = processes.get("flow")
    out = torch.tensor([0.5, 0.5], dtype=torch.float64)
    x0 = torch.randn(3, 2, dtype=torch.float64)
    t = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    eps = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = process.schedule(t)
    for pred in ("eps", "velocity", "v"):
        model = polydiff.Denoiser(_Const(out), process, prediction=pred)
        res = diffusion_loss(model, x0, t=t, generator=torch.Generator().manual_seed(0))
        target = from_x0_eps(Denoised(x0, eps), pred, v, polydiff.spaces.DenseSpace())
        torch.testing.assert_close(res.per_sample, ((out - target) ** 2).sum(1))


def test_time_sampling_supports_and_moments():
    process = processes.get("vp-linear")
    n = 20000
    u = sample_time(process, n, kind="uniform", generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert float(u.min()) >= process.t_min and float(u.max()) <= process.t_max
    mid = 0.5 * (process.t_min + process.t_max)
    width = process.t_max - process.t_min
    assert abs(float(u.mean()) - mid) <= 5 * width / math.sqrt(12 * n)
    s = sample_time(process, 8, kind="stratified", generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    strata = torch.floor((s - process.t_min) / width * 8).long()
    assert sorted(strata.tolist()) == list(range(8))  # one draw per stratum
    # logit-normal: logit(t) ~ N(loc, scale^2) on t_range (0, 1); mean s.e. scale/sqrt(n), variance s.e. scale^2 sqrt(2/(n-1))
    ln = sample_time(process, n, kind="logit-normal", generator=torch.Generator().manual_seed(2), dtype=torch.float64,
                     t_range=(0.0, 1.0), loc=0.5, scale=0.8)
    logit = torch.log(ln) - torch.log1p(-ln)
    assert float(ln.min()) > 0 and float(ln.max()) < 1
    assert abs(float(logit.mean()) - 0.5) <= 5 * 0.8 / math.sqrt(n)
    assert abs(float(logit.var()) - 0.64) <= 5 * 0.64 * math.sqrt(2 / (n - 1))
    # log-normal (EDM): log(sigma / alpha) ~ N(p_mean, p_std^2); EDM's range [0.002, 80] clips < 1e-4 of the mass
    edm = processes.get("edm")
    tl = sample_time(edm, n, kind="log-normal", generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    v = edm.schedule(tl)
    log_s = torch.log(v.sigma / v.alpha)
    assert float(tl.min()) >= edm.t_min and float(tl.max()) <= edm.t_max
    assert abs(float(log_s.mean()) + 1.2) <= 5 * 1.2 / math.sqrt(n)
    assert abs(float(log_s.var()) - 1.44) <= 5 * 1.44 * math.sqrt(2 / (n - 1))
    with pytest.raises(ValueError, match="logit-normal"):
        sample_time(process, 4, kind="nope")


def test_time_sampling_per_sample_generators():
    process = processes.get("flow")
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    a = sample_time(process, 4, generator=gens, dtype=torch.float64)
    b = sample_time(process, 1, generator=[torch.Generator().manual_seed(2)], dtype=torch.float64)
    assert float(a[2]) == float(b[0])


class _TinyLogits(torch.nn.Module):
    """Logits that depend on the whole noisy sequence (so every mask pattern matters)."""

    def forward(self, x_t, t):
        v = 3
        feats = torch.nn.functional.one_hot(x_t, v + 1).to(torch.float64)  # (B, L, V+1)
        mix = feats.sum(1, keepdim=True)  # (B, 1, V+1)
        w = torch.tensor([[0.3, -0.2, 0.5], [0.1, 0.4, -0.3], [-0.5, 0.2, 0.1], [0.7, -0.6, 0.2]], dtype=torch.float64)
        pos = torch.tensor([[0.0, 0.2, -0.1], [0.3, -0.2, 0.0]], dtype=torch.float64)
        return feats @ w + 0.5 * mix @ w + pos


def test_masked_nelbo_equals_brute_force_expectation():
    """E_t E_{mask}[NELBO] by Gauss-Legendre quadrature in t and enumeration of the 2^L mask patterns,
    against the Monte-Carlo mean of diffusion_loss (5 standard errors)."""
    v_size, length = 3, 2
    process = processes.get("masked", vocab_size=v_size)
    net = _TinyLogits()
    model = polydiff.Denoiser(net, process, prediction="x0_logits")
    x0 = torch.tensor([[2, 0]])
    nodes, weights = np.polynomial.legendre.leggauss(64)
    ts = torch.tensor((nodes + 1) / 2, dtype=torch.float64)
    ws = torch.tensor(weights / 2, dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    for pattern in itertools.product([False, True], repeat=length):
        m = torch.tensor([pattern])
        x_t = torch.where(m, torch.full_like(x0, v_size), x0).expand(len(ts), length)
        logits = net(x_t, ts)
        a = process.schedule(ts).alpha
        prob = torch.ones_like(ts)
        for masked in pattern:
            prob = prob * ((1 - a) if masked else a)
        nll, _ = masked_nelbo(process, logits, x0.expand(len(ts), length), x_t, ts, polydiff.spaces.DenseSpace())
        total = total + (ws * prob * nll).sum()
    n = 20000
    res = diffusion_loss(model, x0.expand(n, length).clone(), generator=torch.Generator().manual_seed(0))
    per = res.per_sample.to(torch.float64)
    se = float(per.std()) / math.sqrt(n)
    assert abs(float(per.mean()) - float(total)) <= 5 * se, (float(per.mean()), float(total), se)
