"""Exact denoisers for Gaussian windows ``x_0 ~ N(0, Sigma)`` with a full covariance (tests and benchmarks).

A window ``(L, C)`` is flattened to ``D = L C`` coordinates. In standard coordinates
``z_t = alpha x_0 + sigma eps`` the prior posterior mean is

    E[x_0 | z_t] = Sigma alpha (alpha^2 Sigma + sigma^2 I)^{-1} z_t.

With known entries ``x_O`` (mask ``cond_mask``) the conditional denoiser is the same formula for the
measurement ``u = A x_0 + n`` with ``A = diag(alpha on missing, 1 on known)`` and noise variance
``sigma^2`` on missing, 0 on known entries (``u = z_t`` on missing, ``x_O`` on known):

    E[x_0 | z_t, x_O] = Sigma A (A Sigma A + N)^{-1} u.

Both are exact for every Gaussian process; the matrix ``A Sigma A + N`` stays invertible at ``alpha = 0``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polydiff.processes import GaussianProcess


def ar1_covariance(length: int, phi: float, channels: int = 1) -> Tensor:
    """``Sigma_ij = phi^|i - j|`` over time, independent channels: shape ``(L C, L C)`` in ``(L, C)`` flattening order."""
    i = torch.arange(length, dtype=torch.float64)
    s_t = phi ** (i[:, None] - i[None, :]).abs()
    return torch.kron(s_t, torch.eye(channels, dtype=torch.float64))


def gaussian_conditional(sigma: Tensor, known: Tensor, x_known: Tensor) -> tuple[Tensor, Tensor]:
    """Closed-form law of the unknown coordinates given the known ones for ``N(0, Sigma)``.

    Args:
        sigma: ``(D, D)``. known: ``(D,)`` bool. x_known: ``(D,)`` values (only known entries are read).

    Returns:
        ``(mean, cov)`` over the unknown coordinates: ``(M,)`` and ``(M, M)``.
    """
    k, u = known, ~known
    s_ok = sigma[u][:, k]
    s_kk = sigma[k][:, k]
    gain = torch.linalg.solve(s_kk, s_ok.T).T
    mean = gain @ x_known[k]
    cov = sigma[u][:, u] - gain @ s_ok.T
    return mean, cov


class FullCovarianceOracleNet(nn.Module):
    """``net(x_t, t, cond_x=None, cond_mask=None) -> E[x_0 | ...]`` for windows ``(B, L, C) ~ N(0, Sigma)``.

    Without ``cond_mask`` it is the exact *prior* denoiser; with ``cond_mask`` (``(B, L, C)``, 1 = known)
    and ``cond_x`` (``(B, L, C)``) it is the exact *conditional* denoiser (known entries are returned as given).
    Use with ``Denoiser(net, process, prediction="x0")``. Computation is in float64.
    """

    def __init__(self, process: GaussianProcess, sigma: Tensor) -> None:
        super().__init__()
        self.process = process
        self.register_buffer("sigma", sigma.to(torch.float64))

    def forward(self, x_t: Tensor, t: Tensor, cond_x: Tensor | None = None, cond_mask: Tensor | None = None, **_: object) -> Tensor:
        b = x_t.shape[0]
        z = x_t.reshape(b, -1).to(torch.float64)
        v = self.process.schedule(t.to(torch.float64))
        alpha, sig = v.alpha.to(torch.float64), v.sigma.to(torch.float64)
        d = z.shape[1]
        if cond_mask is None:
            a = alpha[:, None].expand(b, d)
            noise = (sig**2)[:, None].expand(b, d)
            u = z
        else:
            known = cond_mask.reshape(b, -1).to(torch.bool)
            a = torch.where(known, torch.ones_like(z), alpha[:, None].expand(b, d))
            noise = torch.where(known, torch.zeros_like(z), (sig**2)[:, None].expand(b, d))
            u = torch.where(known, cond_x.reshape(b, -1).to(torch.float64), z)
        m = a[:, :, None] * self.sigma[None] * a[:, None, :] + torch.diag_embed(noise)
        w = torch.linalg.solve(m, u.unsqueeze(-1)).squeeze(-1)
        x0 = (self.sigma[None] @ (a * w).unsqueeze(-1)).squeeze(-1)
        return x0.reshape(x_t.shape).to(x_t.dtype)


__all__ = ["FullCovarianceOracleNet", "ar1_covariance", "gaussian_conditional"]
