"""``mixed-ancestral`` on a product process (Gaussian positions + masked tokens) with exact oracles.

Data: positions ``~ N(0, s^2 I)`` independent of tokens ``~ joint`` (V = 3, L = 3). With the exact
denoisers the Gaussian part is a linear-Gaussian chain whose output variance follows exactly from the
recursion ``var_s = A^2 var_t + c^2`` (``A = alpha_s k_t + sqrt(sigma_s^2 - c^2)(1 - alpha_t k_t)/sigma_t``,
``k_t = alpha_t s^2 / (alpha_t^2 s^2 + sigma_t^2)``, ``c`` the DDPM posterior std), and the token part is the
masked chain enumerated by the oracle.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from polydiff.denoiser import Denoiser
from polydiff.processes import MaskedProcess, ProductProcess, get
from polydiff.samplers import sample
from polydiff.spaces import CompositeSpace, RaggedSpace, ZeroCoMSpace
from polydiff.testing import oracles
from polydiff.testing.discrete_oracles import (
    MaskedOracleNet,
    empirical_distribution,
    masked_chain_distribution,
    random_joint,
    tv_distance,
    tv_sampling_bound,
)

V, L, D, S = 3, 3, 2, 0.7
N = 8000


class ProductNet(nn.Module):
    def __init__(self, pos: nn.Module, tok: nn.Module) -> None:
        super().__init__()
        self.pos, self.tok = pos, tok

    def forward(self, x_t, t, **cond):
        return {"pos": self.pos(x_t["pos"], t), "tok": self.tok(x_t["tok"], t)}


def _setup():
    gauss = get("vp-cosine")
    masked = MaskedProcess(V)
    joint = random_joint(V, L, seed=1)
    tok_net = MaskedOracleNet(joint, V, L)
    net = ProductNet(oracles.GaussianOracleNet(gauss, mu=0.0, s=S), tok_net)
    model = Denoiser(net, ProductProcess({"pos": gauss, "tok": masked}), {"pos": "x0", "tok": "x0_logits"})
    return gauss, masked, joint, tok_net, model


def _exact_gaussian_variance(gauss, grid: torch.Tensor) -> float:
    var = float(gauss.schedule(grid[:1].double()).sigma[0]) ** 2
    for t, s in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        vt = gauss.schedule(torch.tensor([t, s], dtype=torch.float64))
        a_t, a_s = float(vt.alpha[0]), float(vt.alpha[1])
        g_t, g_s = float(vt.sigma[0]), float(vt.sigma[1])
        k = a_t * S**2 / (a_t**2 * S**2 + g_t**2)
        if s == 0.0:
            return k * k * var
        c = g_s * math.sqrt(max(0.0, 1.0 - (a_t * g_s / (a_s * g_t)) ** 2))
        A = a_s * k + math.sqrt(g_s**2 - c**2) * (1.0 - a_t * k) / g_t
        var = A * A * var + c * c
    return var


def test_mixed_ancestral_reproduces_both_components():
    gauss, masked, joint, tok_net, model = _setup()
    like = {"pos": torch.zeros(N, D, dtype=torch.float64), "tok": torch.zeros(N, L, dtype=torch.int64)}
    r = sample(model, like=like, sampler="mixed-ancestral", steps=12, generator=torch.Generator().manual_seed(0))
    assert r.nfe == r.steps == len(r.grid) - 1  # one network call per step
    # tokens: the exact chain of this grid (reveal (alpha_s - alpha_t) / (1 - alpha_t), all at t = 0)
    a = masked.schedule(r.grid).alpha.tolist()
    reveal = [1.0 if s == 0.0 else (a[i + 1] - a[i]) / (1 - a[i]) for i, s in enumerate(r.grid[1:].tolist())]
    chain = masked_chain_distribution(tok_net, reveal)
    assert tv_distance(empirical_distribution(r.x["tok"], V), chain) <= tv_sampling_bound(chain, N)
    # positions: mean 0 and the chain's exact variance, within 5 standard errors of n = N * D draws
    pos = r.x["pos"].reshape(-1)
    var = _exact_gaussian_variance(gauss, r.grid)
    n = pos.numel()
    assert abs(float(pos.mean())) <= 5 * math.sqrt(var / n)
    assert abs(float(pos.var()) - var) <= 5 * var * math.sqrt(2.0 / (n - 1))


def test_mixed_ancestral_on_graph_batches_keeps_zero_centre_of_mass():
    gauss, masked, joint, tok_net, _ = _setup()
    seg = torch.tensor([0, 0, 0, 1, 1, 1])  # two molecules of 3 atoms (3 tokens each, one per atom)
    pos_space = ZeroCoMSpace(seg)
    space = CompositeSpace({"pos": pos_space, "tok": RaggedSpace(seg)})

    class GraphNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = oracles.GaussianOracleNet(gauss, mu=0.0, s=S, space=pos_space)

        def forward(self, x_t, t, **cond):
            tok = tok_net(x_t["tok"].reshape(2, 3), t).reshape(6, V)
            return {"pos": self.pos(x_t["pos"], t), "tok": tok}

    model = Denoiser(GraphNet(), ProductProcess({"pos": gauss, "tok": masked}), {"pos": "x0", "tok": "x0_logits"})
    like = {"pos": torch.zeros(6, 3, dtype=torch.float64), "tok": torch.zeros(6, dtype=torch.int64)}
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    r = sample(model, like=like, sampler="mixed-ancestral", steps=8, space=space, generator=gens)
    assert float(pos_space.centre_of_mass(r.x["pos"]).abs().max()) < 1e-12
    assert bool((r.x["tok"] != V).all())
