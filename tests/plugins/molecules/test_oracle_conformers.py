"""Known-answer test (issue 12 acceptance): the product process and the mixed ancestral sampler, driven by the
exact denoiser of a conformer mixture (``polydiff_molecules.oracles``), reproduce the data's template (atom-type)
frequencies and its bond-length distribution.

The truth. The sampler's last step (from the last grid time ``t_L`` to 0) returns the posterior mean
``E[x_0 | x_{t_L}]``, which given the template is ``R_k + c (alpha tau xi + sigma eps)`` with
``c = alpha tau^2 / (alpha^2 tau^2 + sigma^2)``: the data distribution with ``tau`` replaced by
``tau_eff = tau * alpha tau / sqrt(alpha^2 tau^2 + sigma^2)`` at ``t_L``. That mixture is drawn i.i.d. 200,000
times (its own error is negligible next to the tolerances).

Tolerances. Template frequencies: four binomial standard errors ``sqrt(w (1 - w) / M)``. Bond length ``d_01``
per template: the mean within four standard errors ``sd / sqrt(m)`` and the standard deviation within four
standard errors of a normal sample's sd (``sd / sqrt(2 (m - 1))``), plus the discretisation bias, bounded by how
much the same differences change from 100 to 200 steps. Types that match no template (atoms of two templates
revealed in the same step and drawn independently: a factorisation error that vanishes as steps grow) must not
grow with the steps and stay below 5 % at 200 steps (measured: 0 for the marginal kernel, 2.0 % -> 1.0 % for the
masked kernel from 100 to 200 steps).
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

import polydiff
from polydiff_molecules.config import ModelConfig
from polydiff_molecules.oracles import ConformerMixtureOracle, small_mixture
from polydiff_molecules.recipes import build_process
from polydiff_molecules.tasks import sample_batch

M = 600


def _model(kernel: str, mix):
    w = mix.weights
    atom_counts = torch.zeros(3, dtype=torch.float64)
    charge_counts = torch.zeros(3, dtype=torch.float64)
    for k in range(3):
        atom_counts += w[k] * torch.bincount(mix.atom_types[k], minlength=3)
        charge_counts += w[k] * torch.bincount(mix.charges[k], minlength=3)
    m = ModelConfig(atom_kernel=kernel, charge_kernel=kernel)
    # counts scaled so the +1 pseudo-count of the marginal kernel is small
    process = build_process(m, {"atom_types": 1000 * atom_counts, "charges": 1000 * charge_counts}, bonds=False)
    net = ConformerMixtureOracle(mix, process)
    return polydiff.Denoiser(net, process, prediction={"pos": "x0", "atom_types": "x0_logits", "charges": "x0_logits"})


def _generate(model, steps: int, seed: int):
    """Samples and ``tau_eff / tau`` at the last grid time (see the module docstring)."""
    sizes = torch.full((M,), 4, dtype=torch.int64)
    last = []
    batch, _ = sample_batch(model, sizes, bonds=False, steps=steps, generators=torch.Generator().manual_seed(seed), dtype=torch.float64,
                            callback=lambda info: last.append(info.t[:1]))
    v = model.process.components["pos"].schedule(last[-1].to(torch.float64))
    tau = model.net.mixture.tau
    shrink = float(v.alpha * tau / (v.alpha**2 * tau**2 + v.sigma**2).sqrt())
    return batch.pos.reshape(M, 4, 3), batch.atom_types.reshape(M, 4), batch.charges.reshape(M, 4), shrink


def _assign(mix, types, charges):
    """Template index per sample whose types and charges match a template exactly, else -1."""
    match = (types[:, None] == mix.atom_types[None]).all(-1) & (charges[:, None] == mix.charges[None]).all(-1)  # (M, K)
    return torch.where(match.any(1), match.to(torch.int64).argmax(1), torch.full((M,), -1))


@pytest.mark.parametrize("kernel", ["marginal", "masked"])
def test_sampler_with_exact_denoiser_reproduces_types_and_bond_lengths(kernel):
    mix = small_mixture()
    model = _model(kernel, mix)
    report = {}
    for steps in (100, 200):
        pos, types, charges, shrink = _generate(model, steps, seed=1)
        truth = replace(mix, tau=mix.tau * shrink)
        k_true, pos_true, _, _ = truth.sample(200_000, torch.Generator().manual_seed(0))
        d_true = (pos_true[:, 0] - pos_true[:, 1]).norm(dim=-1)
        k = _assign(mix, types, charges)
        unmatched = float((k < 0).double().mean())
        freq = torch.stack([(k == j).double().mean() for j in range(3)])
        d = (pos[:, 0] - pos[:, 1]).norm(dim=-1)
        rows = []
        for j in range(3):
            dj, tj = d[k == j], d_true[k_true == j]
            rows.append((float(dj.mean() - tj.mean()), float(dj.std() - tj.std()), float(tj.std()), int(dj.numel())))
        # positions belong to the template the categorical fields chose (the components stay coupled)
        rms = torch.stack([(pos[i] - mix.positions[k[i]]).pow(2).sum(-1).mean().sqrt() for i in range(M) if k[i] >= 0])
        report[steps] = (unmatched, freq, rows, float(rms.max()))
    print({s: (f"unmatched {r[0]:.3f}", [round(float(f), 3) for f in r[1]], [(f"{a:+.4f}", f"{b:+.4f}") for a, b, _, _ in r[2]],
               f"max rms {r[3]:.3f}") for s, r in report.items()})
    unmatched, freq, rows, max_rms = report[200]
    assert unmatched <= report[100][0] and unmatched < 0.05
    for j in range(3):
        w = float(mix.weights[j])
        assert abs(float(freq[j]) - w) <= 4 * math.sqrt(w * (1 - w) / M), (j, float(freq[j]), w)
        d_mean, d_sd, sd, m = rows[j]
        assert abs(d_mean) <= 4 * sd / math.sqrt(m) + abs(report[100][2][j][0] - d_mean), (j, d_mean)
        assert abs(d_sd) <= 4 * sd / math.sqrt(2 * (m - 1)) + abs(report[100][2][j][1] - d_sd), (j, d_sd)
    assert max_rms < 6 * mix.tau  # no sample lies between templates


def test_oracle_is_the_exact_posterior_at_low_noise():
    """Near t = 0 the oracle's x0 is the clean data and its categorical estimate is the template's (a sanity check
    of the enumeration, independent of the sampler)."""
    mix = small_mixture()
    model = _model("marginal", mix)
    k, pos, types, charges = mix.sample(8, torch.Generator().manual_seed(3))
    t = torch.full((8,), 1e-4, dtype=torch.float64)
    x = {"pos": pos.reshape(-1, 3), "atom_types": types.reshape(-1), "charges": charges.reshape(-1)}
    out = model.net(x, t)
    assert float((out["pos"] - x["pos"]).abs().max()) < 1e-3
    assert torch.equal(out["atom_types"].argmax(-1), x["atom_types"])
    post = model.net.template_posterior(x, t).exp()
    assert torch.equal(post.argmax(1), k)
    torch.testing.assert_close(post.sum(1), torch.ones(8, dtype=torch.float64))
