"""A synthetic molecule distribution with a known exact denoiser: a few fixed conformers plus Gaussian noise.

Data: pick template ``k`` with probability ``w_k``; atom types ``a_k`` and charges ``c_k`` are the
template's; positions are ``R_k + tau * xi`` with ``xi`` standard Gaussian noise in the zero-centre-of-mass
subspace (``R_k`` centred). Every molecule has the same ``n`` atoms, in template order.

Under the product process (positions ``z_t = alpha_t x_0 + sigma_t eps``; categorical fields with
kernels ``q(x_t | x_0)``) the posterior over the template is exact and enumerable:

``p(k | x_t) ∝ w_k N(z_t; alpha R_k, (alpha^2 tau^2 + sigma^2) P) prod_i q(a_t^i | a_k^i) q(c_t^i | c_k^i)``

(``P`` the CoM projector; every template has the same degrees of freedom, so the Gaussian normalisers
cancel), and given ``k`` the positions are Gaussian, so

* ``E[x_0 | x_t] = sum_k p(k | x_t) (R_k + alpha tau^2 / (alpha^2 tau^2 + sigma^2) (z_t - alpha R_k))``;
* ``p(a_0^i = a | x_t) = sum_k p(k | x_t) 1[a_k^i = a]`` (the same for charges).

:class:`ConformerMixtureOracle` returns these as an ``x0`` prediction and ``x0_logits`` (log-probabilities).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polydiff.processes import DiscreteProcess, GaussianProcess, ProductProcess


@dataclass(frozen=True)
class ConformerMixture:
    """``K`` templates of ``n`` atoms: positions ``R`` ``(K, n, 3)`` (centred), types ``(K, n)``, charges ``(K, n)``,
    weights ``(K,)`` and the positional noise ``tau`` (Å)."""

    positions: Tensor
    atom_types: Tensor
    charges: Tensor
    weights: Tensor
    tau: float

    @property
    def num_atoms(self) -> int:
        return int(self.positions.shape[1])

    def sample(self, num: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``num`` data molecules: ``(template (num,), pos (num, n, 3), types (num, n), charges (num, n))``, float64 positions."""
        k = torch.multinomial(self.weights, num, replacement=True, generator=generator)
        xi = torch.randn(num, self.num_atoms, 3, generator=generator, dtype=torch.float64)
        xi = xi - xi.mean(1, keepdim=True)
        return k, self.positions[k] + self.tau * xi, self.atom_types[k], self.charges[k]


def small_mixture(tau: float = 0.15) -> ConformerMixture:
    """Three 4-atom templates with distinct type patterns and geometries (a chain, a bent chain, a pyramid)."""
    r = [
        [[0.0, 0.0, 0.0], [1.54, 0.0, 0.0], [2.05, 1.45, 0.0], [3.6, 1.45, 0.0]],
        [[0.0, 0.0, 0.0], [1.47, 0.0, 0.0], [1.95, 0.0, 1.4], [0.5, -1.3, 0.6]],
        [[0.0, 0.0, 0.0], [1.43, 0.0, 0.0], [0.7, 1.25, 0.0], [0.7, 0.4, 1.2]],
    ]
    pos = torch.tensor(r, dtype=torch.float64)
    pos = pos - pos.mean(1, keepdim=True)
    types = torch.tensor([[0, 0, 2, 1], [0, 1, 0, 0], [2, 0, 0, 0]])  # classes of a 3-element vocabulary (C, N, O)
    charges = torch.tensor([[1, 1, 1, 1], [1, 2, 1, 1], [1, 1, 1, 0]])  # classes of charges (-1, 0, +1)
    return ConformerMixture(pos, types, charges, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), tau)


class ConformerMixtureOracle(nn.Module):
    """The exact denoiser of a :class:`ConformerMixture` under ``process`` (positions as ``x0``, categoricals as log-probabilities).

    Called like the EGNN: ``net(x_t, t, *, segment_ids)`` with molecules of ``n`` atoms each, rows grouped by
    molecule in template order; returns ``{"pos": (N, 3), "atom_types": (N, K_a), "charges": (N, K_c)}``.
    """

    def __init__(self, mixture: ConformerMixture, process: ProductProcess) -> None:
        super().__init__()
        self.mixture = mixture
        self.process = process
        self.register_buffer("_dummy", torch.zeros(1, dtype=torch.float64))

    def template_posterior(self, x_t: Mapping[str, Tensor], t: Tensor) -> Tensor:
        """``log p(k | x_t)``, shape ``(B, K)``."""
        mix, n = self.mixture, self.mixture.num_atoms
        pos_p = self.process.components["pos"]
        assert isinstance(pos_p, GaussianProcess)
        v = pos_p.schedule(t.to(torch.float64))
        a, s = v.alpha[:, None], v.sigma[:, None]  # (B, 1)
        z = x_t["pos"].to(torch.float64).reshape(-1, n, 3)
        var = a**2 * mix.tau**2 + s**2  # (B, 1)
        sq = (z[:, None] - a[:, :, None, None] * mix.positions[None]).pow(2).sum((-1, -2))  # (B, K)
        logp = torch.log(mix.weights)[None] - 0.5 * sq / var
        for key, table in (("atom_types", mix.atom_types), ("charges", mix.charges)):
            proc = self.process.components[key]
            assert isinstance(proc, DiscreteProcess)
            alpha = proc.schedule(t.to(torch.float64)).alpha  # (B,)
            xt = x_t[key].reshape(-1, n)  # (B, n)
            # q(x_t^i | x_0^i = table[k, i]) for every template: marginal_probs over num_states, read at x_t
            q = proc.marginal_probs(table[None].expand(xt.shape[0], -1, -1), alpha[:, None, None].expand(-1, table.shape[0], n))
            lik = q.gather(-1, xt[:, None, :, None].expand(-1, table.shape[0], -1, 1)).squeeze(-1)  # (B, K, n)
            logp = logp + torch.log(lik.clamp(min=1e-300)).sum(-1)
        return torch.log_softmax(logp, dim=-1)

    def forward(self, x_t: Mapping[str, Tensor], t: Tensor, *, segment_ids: Tensor | None = None, **_: object) -> dict[str, Tensor]:
        mix, n = self.mixture, self.mixture.num_atoms
        post = self.template_posterior(x_t, t).exp()  # (B, K)
        v = self.process.components["pos"].schedule(t.to(torch.float64))  # type: ignore[union-attr]
        a, s = v.alpha[:, None, None, None], v.sigma[:, None, None, None]
        z = x_t["pos"].to(torch.float64).reshape(-1, n, 3)[:, None]  # (B, 1, n, 3)
        gain = a * mix.tau**2 / (a**2 * mix.tau**2 + s**2)
        mean_k = mix.positions[None] + gain * (z - a * mix.positions[None])  # (B, K, n, 3)
        x0 = (post[:, :, None, None] * mean_k).sum(1).reshape(-1, 3)
        out = {"pos": x0.to(x_t["pos"].dtype)}
        for key, table in (("atom_types", mix.atom_types), ("charges", mix.charges)):
            k_cls = self.process.components[key].vocab_size  # type: ignore[union-attr]
            onehot = nn.functional.one_hot(table, k_cls).to(torch.float64)  # (K, n, C)
            probs = torch.einsum("bk,knc->bnc", post, onehot).reshape(-1, k_cls)
            out[key] = torch.log(probs.clamp(min=1e-300))
        return out


@dataclass(frozen=True)
class GraphSet:
    """``K`` fixed 2D molecular graphs of ``n`` atoms, drawn with probabilities ``weights`` ``(K,)``: atom types and
    charges ``(K, n)`` (class indices), bond classes on the pairs ``i < j`` ``(K, n (n - 1) / 2)`` (row-major upper
    triangle, as ``torch.triu_indices(n, n, 1)``)."""

    atom_types: Tensor
    charges: Tensor
    bonds: Tensor
    weights: Tensor

    @property
    def num_atoms(self) -> int:
        return int(self.atom_types.shape[1])

    def field(self, key: str) -> Tensor:
        return {"atom_types": self.atom_types, "charges": self.charges, "bonds": self.bonds}[key]


def small_graph_set() -> GraphSet:
    """Three 3-atom graphs over types (C, N, O), charges (-1, 0, +1) and bonds (none, single, double, triple, aromatic),
    pairs ordered (0, 1), (0, 2), (1, 2): C=C-O (weight 0.5), N#C-C (0.3) and a charged O-C-N triangle (0.2)."""
    types = torch.tensor([[0, 0, 2], [1, 0, 0], [2, 0, 1]])
    charges = torch.tensor([[1, 1, 1], [1, 1, 1], [0, 1, 2]])
    bonds = torch.tensor([[2, 0, 1], [3, 0, 1], [1, 1, 0]])
    return GraphSet(types, charges, bonds, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))


class GraphSetOracle(nn.Module):
    """The exact ``p(x_0 | x_t)`` of a :class:`GraphSet` under a product of categorical processes
    ``{"atom_types", "charges", "bonds"}``: ``p(k | x_t) ∝ w_k prod_fields prod_tokens q(x_t^i | g_k^i)``, and per token
    ``p(x_0^i = c | x_t) = sum_k p(k | x_t) 1[g_k^i = c]``, returned as log-probabilities (``x0_logits``).

    Called like :class:`~.graph2d.DigressNet` (``net(x_t, t, *, segment_ids, bond_index)``) on molecules of ``n``
    atoms laid out molecule after molecule, atoms in graph order, pairs as ``tasks.pair_index``.
    """

    def __init__(self, graphs: GraphSet, process: ProductProcess) -> None:
        super().__init__()
        self.graphs = graphs
        self.process = process
        self.register_buffer("_dummy", torch.zeros(1, dtype=torch.float64))

    def graph_posterior(self, x_t: Mapping[str, Tensor], t: Tensor) -> Tensor:
        """``log p(k | x_t)``, ``(B, K)``."""
        g = self.graphs
        logp = torch.log(g.weights)[None].expand(t.shape[0], -1)
        for key in ("atom_types", "charges", "bonds"):
            proc = self.process.components[key]
            assert isinstance(proc, DiscreteProcess)
            table = g.field(key)  # (K, m)
            alpha = proc.schedule(t.to(torch.float64)).alpha
            xt = x_t[key].reshape(t.shape[0], -1)  # (B, m)
            q = proc.marginal_probs(table[None].expand(xt.shape[0], -1, -1), alpha[:, None, None].expand(-1, *table.shape))
            lik = q.gather(-1, xt[:, None, :, None].expand(-1, table.shape[0], -1, 1)).squeeze(-1)  # (B, K, m)
            logp = logp + torch.log(lik.clamp(min=1e-300)).sum(-1)
        return torch.log_softmax(logp, dim=-1)

    def forward(self, x_t: Mapping[str, Tensor], t: Tensor, **_: object) -> dict[str, Tensor]:
        post = self.graph_posterior(x_t, t).exp()
        out = {}
        for key in ("atom_types", "charges", "bonds"):
            k_cls = self.process.components[key].vocab_size  # type: ignore[union-attr]
            onehot = nn.functional.one_hot(self.graphs.field(key), k_cls).to(torch.float64)
            probs = torch.einsum("bk,kmc->bmc", post, onehot).reshape(-1, k_cls)
            out[key] = torch.log(probs.clamp(min=1e-300))
        return out


__all__ = ["ConformerMixture", "ConformerMixtureOracle", "GraphSet", "GraphSetOracle", "small_graph_set", "small_mixture"]
