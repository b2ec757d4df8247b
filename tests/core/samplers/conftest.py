"""Fixtures for the Gaussian sampler tests: exact Gaussian data, oracle denoisers and exact marginals."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from polydiff import Denoiser, processes
from polydiff.processes import GaussianProcess
from polydiff.testing.oracles import GaussianOracleNet

GAUSSIAN_SCHEDULES = ("vp-linear", "vp-cosine", "ve", "edm", "flow", "sub-vp")


@dataclass(frozen=True)
class GaussianData:
    """``x_0 ~ N(mu, diag(s^2))`` in ``D`` dimensions (float64)."""

    mu: Tensor
    s: Tensor

    def marginal(self, process: GaussianProcess, t: float, n: int, generator: torch.Generator) -> Tensor:
        """Exact draws of ``z_t = alpha_t x_0 + sigma_t eps``: ``N(alpha mu, alpha^2 s^2 + sigma^2)``, shape ``(n, D)``."""
        v = process.schedule(torch.tensor([t], dtype=torch.float64))
        sd = torch.sqrt(v.alpha**2 * self.s**2 + v.sigma**2)
        return v.alpha * self.mu + sd * torch.randn(n, self.mu.numel(), generator=generator, dtype=torch.float64)

    def denoised_std(self, process: GaussianProcess, t: float) -> Tensor:
        """Std of ``E[x_0 | z_t]`` (what the final step to 0 returns from an exact ``z_t``): ``alpha s^2 / sqrt(alpha^2 s^2 + sigma^2)``."""
        v = process.schedule(torch.tensor([t], dtype=torch.float64))
        return v.alpha * self.s**2 / torch.sqrt(v.alpha**2 * self.s**2 + v.sigma**2)


@pytest.fixture
def gaussian_data() -> GaussianData:
    return GaussianData(
        mu=torch.tensor([0.0, 1.0, -2.0, 0.5, 3.0, -1.0], dtype=torch.float64),
        s=torch.tensor([1.0, 0.5, 2.0, 0.2, 1.5, 0.8], dtype=torch.float64),
    )


def _oracle_model(name: str, mu, s, space=None) -> Denoiser:
    p = processes.get(name)
    return Denoiser(GaussianOracleNet(p, mu, s, space=space), p, prediction="x0")


@pytest.fixture
def oracle_model():
    """``oracle_model(name, mu, s, space=None)``: the exact x0-denoiser for ``N(mu, diag(s^2))`` under process ``name``."""
    return _oracle_model
