"""The 2D recipes' parts: exact permutation equivariance of both graph backbones (float64), GDSS encoding / decoding,
the exact-posterior oracle reproducing a known graph distribution through the core's marginal kernels and
mixed-ancestral sampler, and valency correction checked against RDKit's own sanitisation."""

from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff import processes
from polydiff_molecules.data import Molecule, Vocabulary
from polydiff_molecules.graph2d import (
    DigressNet,
    GDSSNet,
    correct_valency,
    decode_gdss,
    decode_variant,
    dense_graphs,
    gdss_charges,
    gdss_space,
    ragged2d_space,
)
from polydiff_molecules.oracles import GraphSetOracle, small_graph_set
from polydiff_molecules.tasks import pair_index

VOCAB = Vocabulary(("C", "N", "O", "F"), (-1, 0, 1))


def _ragged_graphs(sizes, gen):
    sizes = torch.tensor(sizes)
    seg = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    bond_index, eseg = pair_index(sizes)
    n, e = int(sizes.sum()), bond_index.shape[1]
    x = {"atom_types": torch.randint(0, 4, (n,), generator=gen), "charges": torch.randint(0, 3, (n,), generator=gen),
         "bonds": torch.randint(0, 5, (e,), generator=gen)}
    return x, seg, bond_index, eseg


def test_digress_net_is_permutation_equivariant_float64():
    torch.manual_seed(0)
    net = DigressNet(4, 3, 5, 4, 3, 5, hidden=16, layers=2, heads=4).double()
    gen = torch.Generator().manual_seed(1)
    sizes = [5, 3, 6]
    x, seg, bi, _ = _ragged_graphs(sizes, gen)
    t = torch.tensor([0.3, 0.7, 0.9], dtype=torch.float64)
    with torch.no_grad():
        out = net(x, t, segment_ids=seg, bond_index=bi)
    # permute atoms within each molecule (and the molecules' atom rows), remap the pairs
    perm_local = [torch.randperm(n, generator=gen) for n in sizes]
    starts = [0, 5, 8]
    new_of_old = torch.cat([s + torch.argsort(p) for s, p in zip(starts, perm_local)])  # old row -> new row
    old_of_new = torch.argsort(new_of_old)
    bi_new = new_of_old[bi]
    lo, hi = torch.minimum(bi_new[0], bi_new[1]), torch.maximum(bi_new[0], bi_new[1])
    xp = {"atom_types": x["atom_types"][old_of_new], "charges": x["charges"][old_of_new], "bonds": x["bonds"]}
    with torch.no_grad():
        outp = net(xp, t, segment_ids=seg[old_of_new], bond_index=torch.stack([lo, hi]))
    torch.testing.assert_close(outp["atom_types"], out["atom_types"][old_of_new], rtol=0, atol=1e-11)
    torch.testing.assert_close(outp["charges"], out["charges"][old_of_new], rtol=0, atol=1e-11)
    torch.testing.assert_close(outp["bonds"], out["bonds"], rtol=0, atol=1e-11)  # pair e keeps its row, endpoints renamed
    # and the output is not trivially constant
    assert float(out["bonds"].std()) > 1e-6 and float(out["atom_types"].std()) > 1e-6


def test_gdss_net_is_permutation_equivariant_and_symmetric_float64():
    torch.manual_seed(0)
    net = GDSSNet(4, hidden=16, layers=2, heads=4).double()
    gen = torch.Generator().manual_seed(2)
    mask = torch.arange(7)[None] < torch.tensor([7, 4])[:, None]
    space = gdss_space(mask)
    like = {"x": torch.zeros(2, 7, 4, dtype=torch.float64), "adj": torch.zeros(2, 7, 7, dtype=torch.float64)}
    x = space.randn_like(like, gen)
    t = torch.tensor([0.2, 0.6], dtype=torch.float64)
    out = net(x, t, node_mask=mask)
    assert torch.equal(out["adj"], out["adj"].transpose(1, 2))
    assert float(out["adj"].diagonal(dim1=1, dim2=2).abs().max()) == 0.0
    assert float(out["adj"][1, 4:].abs().max()) == 0.0 and float(out["x"][1, 4:].abs().max()) == 0.0
    p = torch.randperm(7, generator=gen)
    p1 = torch.cat([torch.randperm(4, generator=gen), torch.arange(4, 7)])  # sample 1: permute its real nodes only
    xp = {"x": torch.stack([x["x"][0, p], x["x"][1, p1]]),
          "adj": torch.stack([x["adj"][0][p][:, p], x["adj"][1][p1][:, p1]])}
    outp = net(xp, t, node_mask=mask)
    torch.testing.assert_close(outp["x"][0], out["x"][0, p], rtol=0, atol=1e-11)
    torch.testing.assert_close(outp["adj"][0], out["adj"][0][p][:, p], rtol=0, atol=1e-11)
    torch.testing.assert_close(outp["adj"][1], out["adj"][1][p1][:, p1], rtol=0, atol=1e-11)
    assert float(out["adj"].std()) > 1e-6


def test_gdss_encoding_round_trips_and_thresholds():
    b = torch.tensor([[0, 1, 0, 0], [1, 0, 2, 0], [0, 2, 0, 3], [0, 0, 3, 0]])
    mols = [Molecule(torch.tensor([0, 0, 1, 2]), torch.ones(4, dtype=torch.int64), torch.zeros(4, 3), b),
            Molecule(torch.tensor([3, 0]), torch.ones(2, dtype=torch.int64), torch.zeros(2, 3), torch.tensor([[0, 1], [1, 0]]))]
    state, mask = dense_graphs(mols, 4, dtype=torch.float64)
    dec = decode_gdss(state["x"], state["adj"], mask)
    for m, d in zip(mols, dec):
        assert torch.equal(d["atom_types"], m.atom_types) and torch.equal(d["bonds"], m.bonds)
    # thresholds 0.5 / 1.5 / 2.5; orders clip at 3; the upper triangle decides
    adj = torch.tensor([[[0.0, 0.49, 0.51], [9.0, 0.0, 2.6], [9.0, 9.0, 0.0]]])
    d = decode_gdss(torch.zeros(1, 3, 4), adj, torch.ones(1, 3, dtype=torch.bool))[0]["bonds"]
    assert d.tolist() == [[0, 0, 1], [0, 0, 3], [1, 3, 0]]


def test_gdss_charge_rule():
    b = torch.zeros(5, 5, dtype=torch.int64)
    for j in range(1, 5):
        b[0, j] = b[j, 0] = 1  # N with four single bonds -> N+
    ch = gdss_charges(torch.tensor([1, 0, 0, 0, 0]), b, VOCAB)
    assert [VOCAB.charges[int(c)] for c in ch] == [1, 0, 0, 0, 0]


@pytest.mark.parametrize("steps", [200])
def test_marginal_kernels_and_sampler_reproduce_a_known_graph_distribution(steps):
    """Graphs from a fixed set of three, the exact p(x_0 | x_t) as the denoiser: the per-position atom-type and
    bond-type frequencies of M samples match the set's within 5 binomial standard errors sqrt(p (1 - p) / M)
    (plus 1 / M), every sampled atom count is n, and the bonds stay symmetric."""
    g = small_graph_set()
    comps = {"atom_types": processes.MarginalProcess([0.5, 0.3, 0.2], schedule="cosine"),
             "charges": processes.MarginalProcess([0.1, 0.8, 0.1], schedule="cosine"),
             "bonds": processes.MarginalProcess([0.6, 0.2, 0.1, 0.05, 0.05], schedule="cosine")}
    process = processes.ProductProcess(comps)
    model = polydiff.Denoiser(GraphSetOracle(g, process), process, prediction={k: "x0_logits" for k in comps})
    m_samples, n = 3000, g.num_atoms
    sizes = torch.full((m_samples,), n)
    seg = torch.repeat_interleave(torch.arange(m_samples), sizes)
    bi, eseg = pair_index(sizes)
    like = {"atom_types": torch.zeros(m_samples * n, dtype=torch.int64), "charges": torch.zeros(m_samples * n, dtype=torch.int64),
            "bonds": torch.zeros(bi.shape[1], dtype=torch.int64)}
    res = polydiff.sample(model, like=like, space=ragged2d_space(seg, m_samples, eseg), cond={"segment_ids": seg, "bond_index": bi},
                          sampler="mixed-ancestral", steps=steps, generator=torch.Generator().manual_seed(0))
    w = g.weights
    for key, k_cls in (("atom_types", 3), ("bonds", 5), ("charges", 3)):
        got = res.x[key].reshape(m_samples, -1)
        table = g.field(key)
        for pos in range(table.shape[1]):
            truth = torch.zeros(k_cls, dtype=torch.float64).index_add_(0, table[:, pos], w)
            freq = torch.bincount(got[:, pos], minlength=k_cls).to(torch.float64) / m_samples
            tol = 5 * torch.sqrt(truth * (1 - truth) / m_samples) + 1.0 / m_samples
            assert bool(((freq - truth).abs() <= tol).all()), f"{key}[{pos}]: {freq.tolist()} vs {truth.tolist()}"
    # whole graphs: the sampler's factorised steps may mix graphs only rarely with this many steps
    whole = torch.cat([res.x["atom_types"].reshape(m_samples, -1), res.x["bonds"].reshape(m_samples, -1)], 1)
    members = torch.cat([g.atom_types, g.bonds], 1)
    hit = (whole[:, None, :] == members[None]).all(-1).any(-1).to(torch.float64).mean()
    assert float(hit) >= 0.97


def _mol(types, bonds, charges=None):
    n = len(types)
    b = torch.zeros(n, n, dtype=torch.int64)
    for i, j, o in bonds:
        b[i, j] = b[j, i] = o
    c = torch.tensor(charges if charges is not None else [1] * n)
    return Molecule(torch.tensor(types), c, torch.zeros(n, 3, dtype=torch.float64), b)


def _rdkit_valid(mol):
    from rdkit import Chem

    from polydiff_molecules.chemistry import to_rdkit

    m = to_rdkit(mol, VOCAB, bonds="model")
    try:
        Chem.SanitizeMol(m)
    except Exception:  # noqa: BLE001
        return False
    return True


def test_valency_correction_fixes_over_valent_atoms_and_keeps_valid_ones():
    pentavalent = _mol([0, 0, 0, 0, 0, 0], [(0, 1, 1), (0, 2, 1), (0, 3, 1), (0, 4, 1), (0, 5, 1)])
    double_o = _mol([2, 0, 0], [(0, 1, 2), (0, 2, 1)])  # O with valence 3
    ok = _mol([0, 0, 2], [(0, 1, 2), (1, 2, 1)])  # C=C-O... C1 valence 3 is fine (implicit H)
    assert not _rdkit_valid(pentavalent) and not _rdkit_valid(double_o) and _rdkit_valid(ok)
    for bad in (pentavalent, double_o):
        fixed = correct_valency(bad, VOCAB)
        assert _rdkit_valid(fixed) and torch.equal(fixed.bonds, fixed.bonds.T)
        assert int(fixed.bonds.sum()) < int(bad.bonds.sum())  # only lowered
        assert bool((fixed.bonds <= bad.bonds).all())
    assert torch.equal(correct_valency(ok, VOCAB).bonds, ok.bonds)
    with pytest.raises(polydiff.errors.UserInputError, match="sample.decode"):
        decode_variant([ok], VOCAB, "fixed")


def test_correction_never_increases_invalid_molecules_on_random_graphs():
    gen = torch.Generator().manual_seed(3)
    mols = []
    for _ in range(40):
        n = int(torch.randint(2, 8, (1,), generator=gen))
        b = torch.randint(0, 4, (n, n), generator=gen).triu(1) * (torch.rand(n, n, generator=gen) < 0.4).triu(1)
        mols.append(Molecule(torch.randint(0, 4, (n,), generator=gen), torch.ones(n, dtype=torch.int64),
                             torch.zeros(n, 3, dtype=torch.float64), b + b.T))
    raw = [_rdkit_valid(m) for m in mols]
    fixed = [_rdkit_valid(m) for m in decode_variant(mols, VOCAB, "valency-corrected")]
    assert all(f for r, f in zip(raw, fixed) if r)  # a valid molecule stays valid
    assert sum(fixed) >= sum(raw) and sum(fixed) > sum(raw)  # and the random graphs do need correction
    # the raw variant reports what RDKit sees
    from polydiff_molecules.recipes2d import evaluate_2d

    res = evaluate_2d(mols, mols[:5], [], VOCAB, fcd_nspdk=False)
    assert math.isclose(res["validity/largest_fragment/model@raw"], sum(raw) / len(mols))
    assert math.isclose(res["validity/largest_fragment/model@valency-corrected"], sum(fixed) / len(mols))


def test_clamped_denoiser_keeps_x0_in_range_and_eps_consistent():
    from polydiff_molecules.graph2d import ClampedDenoiser

    torch.manual_seed(0)
    process = processes.ProductProcess({"x": processes.get("vp-cosine"), "adj": processes.get("vp-cosine")})
    model = ClampedDenoiser(GDSSNet(4, hidden=16, layers=1, heads=4).double(), process, {"x": "eps", "adj": "eps"},
                            {"x": (0.0, 1.0), "adj": (0.0, 3.0)})
    mask = torch.arange(5)[None] < torch.tensor([5, 3])[:, None]
    space = gdss_space(mask)
    like = {"x": torch.zeros(2, 5, 4, dtype=torch.float64), "adj": torch.zeros(2, 5, 5, dtype=torch.float64)}
    z = space.randn_like(like, torch.Generator().manual_seed(0))
    z = {k: 50 * v for k, v in z.items()}  # far outside the data range
    t = torch.tensor([0.99, 0.5], dtype=torch.float64)
    with torch.no_grad():
        d = model.denoise(z, t, {"node_mask": mask}, space=space)
    for k, hi in (("x", 1.0), ("adj", 3.0)):
        assert float(d[k].x0.min()) >= 0.0 and float(d[k].x0.max()) <= hi
        v = process.components[k].schedule(t)
        rebuilt = space[k].expand(v.alpha, z[k]) * d[k].x0 + space[k].expand(v.sigma, z[k]) * d[k].eps
        torch.testing.assert_close(rebuilt, space[k].project(z[k]), rtol=0, atol=1e-9)
    assert torch.equal(d["adj"].x0, d["adj"].x0.transpose(1, 2))
