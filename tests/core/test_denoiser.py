"""The Denoiser: EDM preconditioning, prediction conversions, SUBS carry-over and input validation."""

from __future__ import annotations

import pytest
import torch

import polydiff
from polydiff import processes
from polydiff.denoiser import DiscreteDenoised, EDMPreconditioner
from polydiff.parameterisation import from_x0_eps
from polydiff.spaces import DenseSpace
from polydiff.testing.oracles import GaussianOracleNet


class _IdealF(torch.nn.Module):
    """Returns the F that makes ``c_skip z/alpha + c_out F`` equal the known ``x0`` (from the net's own inputs)."""

    def __init__(self, x0: torch.Tensor, sigma_data: float) -> None:
        super().__init__()
        self.x0, self.sd = x0, sigma_data

    def forward(self, x_in, c_noise):
        s = torch.exp(4 * c_noise)[:, None]  # sigma / alpha, recovered from c_noise = log(s)/4
        c_in = 1 / (s**2 + self.sd**2).sqrt()
        c_skip = self.sd**2 / (s**2 + self.sd**2)
        c_out = s * self.sd / (s**2 + self.sd**2).sqrt()
        z_over_alpha = x_in / c_in
        return (self.x0 - c_skip * z_over_alpha) / c_out


@pytest.mark.parametrize("name", ["edm", "ve", "vp-linear", "flow"])
def test_edm_preconditioning_identity(name):
    process = processes.get(name)
    x0 = torch.randn(3, 4, dtype=torch.float64)
    t = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    v = process.schedule(t)
    z = v.alpha[:, None] * x0 + v.sigma[:, None] * torch.randn(3, 4, dtype=torch.float64)
    model = polydiff.Denoiser(_IdealF(x0, 0.5), process, prediction="x0", precond=EDMPreconditioner(0.5))
    d = model.denoise(z, t)
    torch.testing.assert_close(d.x0, x0, rtol=1e-10, atol=1e-10)
    c_skip, c_out, c_in, _ = model.precond.scalings(v.alpha, v.sigma)
    s = v.sigma / v.alpha
    # EDM's unit-variance design: Var(c_in x) = 1 and Var(target) = 1 for Var(x0) = sigma_data^2
    torch.testing.assert_close(c_in**2 * (0.25 + s**2), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close((1 - c_skip) ** 2 * 0.25 + c_skip**2 * s**2, c_out**2)


def test_edm_preconditioning_rejects_bad_setups():
    with pytest.raises(ValueError, match="x0"):
        polydiff.Denoiser(torch.nn.Identity(), processes.get("edm"), prediction="eps", precond=EDMPreconditioner())
    with pytest.raises(ValueError, match="offset"):
        polydiff.Denoiser(torch.nn.Identity(), processes.get("ouve"), prediction="x0", precond=EDMPreconditioner())


@pytest.mark.parametrize("as_", ["eps", "x0", "v", "score", "velocity"])
def test_predict_as_matches_conversions(as_):
    process = processes.get("vp-cosine")
    model = polydiff.Denoiser(GaussianOracleNet(process, 0.3, 0.9), process, prediction="x0")
    z = torch.randn(3, 2, dtype=torch.float64)
    t = torch.tensor([0.1, 0.4, 0.7], dtype=torch.float64)
    d = model.denoise(z, t)
    torch.testing.assert_close(model.predict(z, t, as_=as_), from_x0_eps(d, as_, process.schedule(t), DenseSpace()))
    # the (x0, eps) estimate is consistent with z: z = alpha x0 + sigma eps
    v = process.schedule(t)
    torch.testing.assert_close(v.alpha[:, None] * d.x0 + v.sigma[:, None] * d.eps, z)


def test_bad_prediction_names_list_valid_ones():
    with pytest.raises(ValueError) as info:
        polydiff.Denoiser(torch.nn.Identity(), processes.get("flow"), prediction="epsilon")
    for valid in ("eps", "x0", "v", "score", "velocity", "x0_logits"):
        assert valid in str(info.value)
    with pytest.raises(ValueError, match="x0_logits"):
        polydiff.Denoiser(torch.nn.Identity(), processes.get("masked", vocab_size=3), prediction="eps")
    with pytest.raises(ValueError, match="Gaussian"):
        polydiff.Denoiser(torch.nn.Identity(), processes.get("flow"), prediction="x0_logits")
    flow = processes.get("flow")
    model = polydiff.Denoiser(GaussianOracleNet(flow), flow, prediction="x0")
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(2, 3), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="epsilon"):
        model.predict(torch.zeros(2, 3), torch.full((2,), 0.5), as_="epsilon")


def test_masked_subs_carry_over():
    process = processes.get("masked", vocab_size=3)

    class Net(torch.nn.Module):
        def forward(self, x_t, t):
            return torch.zeros(*x_t.shape, 3)

    model = polydiff.Denoiser(Net(), process, prediction="x0_logits")
    x_t = torch.tensor([[0, 3, 2], [3, 3, 1]])
    d = model.denoise(x_t, torch.full((2,), 0.5))
    assert isinstance(d, DiscreteDenoised)
    probs = d.probs
    torch.testing.assert_close(probs[0, 0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(probs[1, 2], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(probs[0, 1], torch.full((3,), 1 / 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="vocab_size"):
        polydiff.Denoiser(lambda_net(4), process, prediction="x0_logits").denoise(x_t, torch.full((2,), 0.5))


def lambda_net(v: int) -> torch.nn.Module:
    class Net(torch.nn.Module):
        def forward(self, x_t, t):
            return torch.zeros(*x_t.shape, v)

    return Net()
