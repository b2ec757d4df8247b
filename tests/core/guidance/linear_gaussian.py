"""A linear-Gaussian inverse problem with a closed-form posterior (helper for the guidance tests).

Prior ``x_0 ~ N(mu, diag(s^2))`` in ``D`` dimensions, measurements ``y = A x_0 + n`` with
``n ~ N(0, sigma_y^2 I_m)``. The posterior is ``N(m_post, P)`` with
``P = (S^-1 + A^T A / sigma_y^2)^-1`` and ``m_post = P (S^-1 mu + A^T y / sigma_y^2)``.
For the exact denoiser of this prior, ``x_0 | z_t`` is Gaussian with mean
``m_t = mu + k_t (z_t - alpha_t mu)``, ``k_t = alpha_t s^2 / (alpha_t^2 s^2 + sigma_t^2)`` and diagonal
covariance ``C_t = s^2 sigma_t^2 / (alpha_t^2 s^2 + sigma_t^2)``, so ``y | z_t ~ N(A m_t, A C_t A^T + sigma_y^2 I)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import polydiff
from polydiff.processes import gaussian
from polydiff.testing.oracles import GaussianOracleNet


@dataclass(frozen=True)
class LinearGaussianProblem:
    mu: torch.Tensor  # (D,)
    s: torch.Tensor  # (D,)
    A: torch.Tensor  # (m, D)
    sigma_y: float
    y: torch.Tensor  # (m,)
    x_true: torch.Tensor  # (D,)
    process: object
    model: object

    @property
    def D(self) -> int:
        return self.mu.shape[0]

    @property
    def m(self) -> int:
        return self.A.shape[0]

    def posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(m_post (D,), P (D, D))``."""
        S_inv = torch.diag(1.0 / self.s**2)
        P = torch.linalg.inv(S_inv + self.A.T @ self.A / self.sigma_y**2)
        return P @ (S_inv @ self.mu + self.A.T @ self.y / self.sigma_y**2), P

    def ys(self, b: int) -> torch.Tensor:
        """The measurement repeated for a batch, ``(b, m)``."""
        return self.y.expand(b, self.m).clone()

    def exact_log_likelihood(self, x_t: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """``log N(y; A m_t, A C_t A^T + sigma_y^2 I)`` up to a constant, shape ``(B,)``."""
        v = self.process.schedule(t)
        a, sg = v.alpha[:, None], v.sigma[:, None]
        s2 = self.s**2
        m_t = self.mu + a * s2 / (a * a * s2 + sg * sg) * (x_t - a * self.mu)
        c_t = s2 * sg * sg / (a * a * s2 + sg * sg)  # (B, D)
        cov = torch.einsum("id,bd,jd->bij", self.A, c_t, self.A) + self.sigma_y**2 * torch.eye(self.m, dtype=x_t.dtype)
        r = self.y - m_t @ self.A.T
        return -0.5 * (r * torch.linalg.solve(cov, r.unsqueeze(-1)).squeeze(-1)).sum(-1)


def make_problem(A: torch.Tensor, sigma_y: float, seed: int = 0) -> LinearGaussianProblem:
    g = torch.Generator().manual_seed(seed)
    D = A.shape[1]
    mu = 0.5 * torch.randn(D, generator=g, dtype=torch.float64)
    s = 0.5 + torch.rand(D, generator=g, dtype=torch.float64)
    x_true = mu + s * torch.randn(D, generator=g, dtype=torch.float64)
    y = A @ x_true + sigma_y * torch.randn(A.shape[0], generator=g, dtype=torch.float64)
    process = gaussian("vp-cosine")
    model = polydiff.Denoiser(GaussianOracleNet(process, mu, s), process, prediction="x0")
    return LinearGaussianProblem(mu, s, A, float(sigma_y), y, x_true, process, model)


def dense_problem_instance() -> LinearGaussianProblem:
    """``D = 6``, a random ``3 x 6`` operator, ``sigma_y = 0.2``."""
    g = torch.Generator().manual_seed(123)
    A = torch.randn(3, 6, generator=g, dtype=torch.float64) / math.sqrt(6)
    return make_problem(A, 0.2)


def pushforward_moments(model, D: int, steps: int, guidance=(), sampler: str = "euler"):
    """Exact output mean and covariance of a deterministic sampler whose guided model is affine in ``z``.

    The sampler map ``z_1 -> x`` is then affine, ``x = f(0) + J z_1`` with ``z_1 ~ N(0, sigma_1^2 I)``
    (what ``polydiff.sample`` draws at ``grid[0]``); ``J`` is read off by pushing the basis vectors.
    Returns ``(mean (D,), cov (D, D))``.
    """
    basis = torch.cat([torch.zeros(1, D, dtype=torch.float64), torch.eye(D, dtype=torch.float64)])
    out = polydiff.sample(model, x_start=basis, sampler=sampler, steps=steps, guidance=guidance(D + 1) if callable(guidance) else guidance)
    t0 = out.grid[0].reshape(1).to(torch.float64)
    sigma0 = float(model.process.schedule(t0).sigma)
    J = (out.x[1:] - out.x[0]).T  # (D, D): column i is f(e_i) - f(0)
    return out.x[0], sigma0**2 * J @ J.T


def product_oracle_model() -> tuple[polydiff.Denoiser, "polydiff.spaces.CompositeSpace"]:
    """A product of a vp-cosine Gaussian (``pos``, exact N(0, I) denoiser) and masked tokens (``tok``,
    vocabulary 3, uniform logits), with its composite space."""
    from polydiff.processes import MaskedProcess, ProductProcess
    from polydiff.spaces import CompositeSpace, DenseSpace

    gp = gaussian("vp-cosine")
    process = ProductProcess({"pos": gp, "tok": MaskedProcess(3)})
    oracle = GaussianOracleNet(gp, 0.0, 1.0)

    class Net(torch.nn.Module):
        def forward(self, x_t, t):
            return {"pos": oracle(x_t["pos"], t), "tok": torch.zeros(*x_t["tok"].shape, 3, dtype=torch.float64)}

    model = polydiff.Denoiser(Net(), process, prediction={"pos": "x0", "tok": "x0_logits"})
    return model, CompositeSpace({"pos": DenseSpace(), "tok": DenseSpace()})
