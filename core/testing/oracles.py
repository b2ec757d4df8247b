"""Analytic oracles: exact denoisers for Gaussian data, usable by any test and by plugin authors.

For data ``x_0 ~ N(mu, diag(s^2))`` (element-wise independent) and any Gaussian process in
standard coordinates ``z_t = alpha_t x_0 + sigma_t eps`` the posterior mean is exact:
``E[x_0 | z_t] = mu + alpha s^2 / (alpha^2 s^2 + sigma^2) (z_t - alpha mu)``. On a zero-CoM space the
data are isotropic Gaussian on the subspace (``mu = 0``) and the same formula holds after projection.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..processes import GaussianProcess
from ..spaces import DataSpace, DenseSpace


class GaussianOracleNet(nn.Module):
    """``net(x_t, t) -> E[x_0 | x_t]`` for ``x_0 ~ N(mu, diag(s^2))``: use with ``prediction="x0"``.

    Args:
        process: the Gaussian process (offsets are removed with ``cond`` when present).
        mu, s: mean and standard deviation, broadcastable to one sample (shape ``state.shape[1:]``) or scalars.
        space: the data space (dense by default); for zero-CoM spaces ``mu`` must be 0.
    """

    def __init__(self, process: GaussianProcess, mu: float | Tensor = 0.0, s: float | Tensor = 1.0, space: DataSpace | None = None) -> None:
        super().__init__()
        self.process = process
        self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float64))
        self.register_buffer("s", torch.as_tensor(s, dtype=torch.float64))
        self.space = space or DenseSpace()

    def forward(self, x_t: Tensor, t: Tensor, **cond) -> Tensor:
        v = self.process.schedule(t)
        a = self.space.expand(v.alpha.to(x_t.dtype), x_t)
        sig = self.space.expand(v.sigma.to(x_t.dtype), x_t)
        z = x_t
        m = self.process.offset(t, x_t, space=self.space, cond=cond)
        if m is not None:
            z = x_t - m
        mu, s2 = self.mu.to(x_t.dtype), (self.s**2).to(x_t.dtype)
        x0 = mu + a * s2 / (a * a * s2 + sig * sig) * (z - a * mu)
        return self.space.project(x0)


class CompositeOracleNet(nn.Module):
    """Per-component Gaussian oracles for a product of Gaussian processes: returns ``{name: x0}``."""

    def __init__(self, oracles: Mapping[str, GaussianOracleNet]) -> None:
        super().__init__()
        self.oracles = nn.ModuleDict(dict(oracles))

    def forward(self, x_t: Mapping[str, Tensor], t: Tensor, **cond) -> dict[str, Tensor]:
        return {k: o(x_t[k], t, **cond) for k, o in self.oracles.items()}


def gaussian_log_density(x: Tensor, mu: float | Tensor, s: float | Tensor, space: DataSpace | None = None) -> Tensor:
    """``log N(x; mu, diag(s^2))`` per sample, shape ``(B,)``, over the space's degrees of freedom.

    For a zero-CoM space (isotropic ``s`` and ``mu = 0``) the density is on the ``(n - 1) d`` dimensional subspace.
    """
    space = space or DenseSpace()
    mu = torch.as_tensor(mu, dtype=x.dtype)
    s = torch.as_tensor(s, dtype=x.dtype)
    z = (x - mu) / s
    sq = space.sum(z * z).to(torch.float64)
    dof = space.dof(x)
    log_s = space.sum(torch.log(s).expand_as(x)).to(torch.float64) * (dof / space.count(x).to(torch.float64))
    return -0.5 * sq - log_s - 0.5 * dof * math.log(2 * math.pi)


def pf_ode_map(process: GaussianProcess, mu: Tensor, s: Tensor, z: Tensor, t_from: float, t_to: float) -> Tensor:
    """The exact probability-flow ODE map from ``t_from`` to ``t_to`` for ``x_0 ~ N(mu, diag(s^2))``.

    The ODE transports ``z_t = alpha_t mu + sqrt(alpha_t^2 s^2 + sigma_t^2) xi`` with ``xi`` fixed (standard
    coordinates; ``mu``, ``s`` of shape ``(D,)``, ``z`` of shape ``(n, D)``), so the map is affine and closed-form.
    """
    t = torch.tensor([t_from, t_to], dtype=torch.float64)
    v = process.schedule(t)
    a0, a1, s0, s1 = v.alpha[0], v.alpha[1], v.sigma[0], v.sigma[1]
    xi = (z - a0 * mu) / torch.sqrt(a0**2 * s**2 + s0**2)
    return a1 * mu + torch.sqrt(a1**2 * s**2 + s1**2) * xi


def ideal_sampler_output(process: GaussianProcess, mu: Tensor, s: Tensor, z: Tensor, t_from: float, t_last: float) -> Tensor:
    """What a Gaussian sampler converges to from ``z`` at ``t_from`` on a grid whose last time before 0 is ``t_last``:
    the exact PF-ODE map to ``t_last`` followed by the exact ``E[x_0 | z_{t_last}]`` (the step to ``t = 0``).

    Shapes as :func:`pf_ode_map`; returns ``(n, D)``.
    """
    z1 = pf_ode_map(process, mu, s, z, t_from, t_last)
    v = process.schedule(torch.tensor([t_last], dtype=torch.float64))
    a, sig = v.alpha[0], v.sigma[0]
    return mu + a * s**2 / (a**2 * s**2 + sig**2) * (z1 - a * mu)
