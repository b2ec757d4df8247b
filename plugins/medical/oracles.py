"""Exact references for tests: a Gaussian image prior with its exact denoiser and the closed-form posterior.

Prior ``x_0 ~ N(m, c^2 I)`` on images ``(1, H, W)``; measurements ``y = A x_0 + n``, ``n ~ N(0, sigma_y^2 I)``.
The posterior mean is ``m + c^2 A^T (c^2 A A^T + sigma_y^2 I)^{-1} (y - A m)`` (``sigma_y = 0``: the projection of
``m`` onto ``{A x = y}``), computed from the dense matrix of ``A`` (small images only).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def dense_matrix(operator: Any, shape: tuple[int, int]) -> Tensor:
    """The ``(m, H W)`` float64 matrix of a linear image operator (columns = images of the basis vectors)."""
    d = shape[0] * shape[1]
    eye = torch.eye(d, dtype=torch.float64).reshape(d, 1, *shape)
    return operator.forward(eye).reshape(d, -1).T.contiguous()


def gaussian_posterior_mean(operator: Any, y: Tensor, mean: Tensor, c: float, sigma_y: float) -> Tensor:
    """Closed-form ``E[x_0 | y]`` ``(1, H, W)`` for the prior ``N(mean, c^2 I)``; ``y`` is one measurement (no batch axis)."""
    shape = tuple(mean.shape[-2:])
    A = dense_matrix(operator, shape)  # type: ignore[arg-type]
    r = y.reshape(-1).to(torch.float64) - A @ mean.reshape(-1).to(torch.float64)
    K = c**2 * (A @ A.T) + sigma_y**2 * torch.eye(A.shape[0], dtype=torch.float64)
    sol = torch.linalg.pinv(K, rtol=1e-10, hermitian=True) @ r if sigma_y == 0 else torch.linalg.solve(K, r)
    return (mean.reshape(-1) + c**2 * (A.T @ sol)).reshape(1, *shape)


def gaussian_image_model(mean: Tensor, c: float, process_name: str = "vp-cosine") -> Any:
    """A :class:`polydiff.Denoiser` with the exact denoiser of ``N(mean, c^2 I)`` (``mean`` ``(1, H, W)``)."""
    import polydiff
    from polydiff.processes import gaussian
    from polydiff.testing.oracles import GaussianOracleNet

    process = gaussian(process_name)
    return polydiff.Denoiser(GaussianOracleNet(process, mean.to(torch.float64), c), process, prediction="x0")


__all__ = ["dense_matrix", "gaussian_image_model", "gaussian_posterior_mean"]
