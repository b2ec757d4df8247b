"""Exact symmetry tests in float64 (issue 12 acceptance): the EGNN and e3nn denoisers and a whole sampling run.

* the denoiser's estimates are equivariant under rotations, reflections and atom permutations (rows
  shuffled across the whole ragged batch, segment ids with them), and invariant under translations of
  the input (the outputs live in the zero-centre-of-mass subspace);
* a whole ``mixed-ancestral`` run whose randomness is rotated and permuted returns the rotated and
  permuted molecules: the sampling map commutes with the group (noise drawn by a space that rotates
  and permutes the draws of the reference run, so the same random numbers reach the same atoms);
* positions stay centred after every step.

The tolerances are float64 round-off: sums over at most a few hundred terms of O(1) values, so 1e-10
leaves a wide margin over the ~1e-13 measured (printed with ``-s``).
"""

from __future__ import annotations

import math

import pytest
import torch

from polydiff.spaces import CompositeSpace, RaggedSpace, ZeroCoMSpace
from polydiff.state import StateDict
from polydiff_molecules.config import ModelConfig
from polydiff_molecules.recipes import build_denoiser
from polydiff_molecules.tasks import molecule_space, pair_index

SIZES = torch.tensor([4, 7, 5])
COUNTS = {"atom_types": torch.tensor([50.0, 20.0, 10.0, 3.0]), "charges": torch.tensor([5.0, 100.0, 2.0]),
          "bonds": torch.tensor([300.0, 60.0, 10.0, 3.0, 8.0])}
TOL = 1e-10


def _rotation(seed: int, reflect: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))[None, :]
    if (torch.det(q) < 0) != reflect:
        q = q.clone()
        q[:, 0] = -q[:, 0]
    return q


def _model(kernel: str, pos_prediction: str, bonds: bool, *, max_fully_connected: int = 32, backbone: str = "egnn"):
    torch.manual_seed(0)
    m = ModelConfig(hidden=16, layers=3, pos_prediction=pos_prediction, atom_kernel=kernel, charge_kernel=kernel, bond_kernel=kernel,
                    max_fully_connected=max_fully_connected, cutoff=2.5, backbone=backbone, vectors=4)
    model = build_denoiser(m, COUNTS, bonds=bonds).double().eval()
    if backbone == "egnn":  # the last coordinate layer starts near zero (gain 1e-3); make the coordinate path matter
        for layer in model.net.layers:
            torch.nn.init.normal_(layer.phi_x[-1].weight, std=0.3)
    return model


def _state(seed: int, model, bonds: bool):
    g = torch.Generator().manual_seed(seed)
    n = int(SIZES.sum())
    seg = torch.repeat_interleave(torch.arange(3), SIZES)
    bond_index, edge_seg = pair_index(SIZES)
    c = model.process.components
    x = {"pos": ZeroCoMSpace(seg).project(2.0 * torch.randn(n, 3, generator=g, dtype=torch.float64)),
         "atom_types": torch.randint(0, c["atom_types"].num_states, (n,), generator=g),
         "charges": torch.randint(0, c["charges"].num_states, (n,), generator=g)}
    if bonds:
        x["bonds"] = torch.randint(0, c["bonds"].num_states, (bond_index.shape[1],), generator=g)
    return StateDict(x), seg, bond_index, edge_seg


def _permute(x, seg, bond_index, edge_seg, perm: torch.Tensor, q: torch.Tensor, shift: torch.Tensor | None = None):
    """Atom ``k`` of the new batch is atom ``perm[k]`` of the old one; positions rotated by ``q`` (and shifted)."""
    inv = torch.argsort(perm)
    y = {"pos": x["pos"][perm] @ q.T, "atom_types": x["atom_types"][perm], "charges": x["charges"][perm]}
    if shift is not None:
        y["pos"] = y["pos"] + shift[seg[perm]]
    new_index = inv[bond_index]  # the same pairs, named by the new atom indices
    if "bonds" in x:
        y["bonds"] = x["bonds"]
    return StateDict(y), seg[perm], new_index, edge_seg


@torch.no_grad()
def _denoise(model, x, seg, bond_index, edge_seg, t, bonds: bool):
    space = molecule_space(seg, 3, edge_seg if bonds else None)
    return model.denoise(x, t, {"segment_ids": seg, "bond_index": bond_index}, space=space)


CASES = [(b, p, r, "egnn") for b in (False, True) for p in ("eps", "x0") for r in (False, True)]
CASES += [(b, "x0", r, "e3nn") for b in (False, True) for r in (False, True)]


@pytest.mark.parametrize(("bonds", "pos_prediction", "reflect", "backbone"), CASES,
                         ids=[f"{bk}-{'eqgat' if b else 'edm'}-{p}-{'reflection' if r else 'rotation'}" for b, p, r, bk in CASES])
def test_denoiser_is_equivariant(bonds, pos_prediction, reflect, backbone):
    model = _model("marginal", pos_prediction, bonds, backbone=backbone)
    x, seg, bidx, eseg = _state(1, model, bonds)
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    q = _rotation(2, reflect)
    perm = torch.randperm(int(SIZES.sum()), generator=torch.Generator().manual_seed(3))  # mixes molecules' rows
    d = _denoise(model, x, seg, bidx, eseg, t, bonds)
    y, seg2, bidx2, eseg2 = _permute(x, seg, bidx, eseg, perm, q)
    d2 = _denoise(model, y, seg2, bidx2, eseg2, t, bonds)
    errs = {
        "x0": (d2["pos"].x0 - d["pos"].x0[perm] @ q.T).abs().max(),
        "eps": (d2["pos"].eps - d["pos"].eps[perm] @ q.T).abs().max(),
        "atom_types": (d2["atom_types"].log_probs - d["atom_types"].log_probs[perm]).abs().max(),
        "charges": (d2["charges"].log_probs - d["charges"].log_probs[perm]).abs().max(),
    }
    if bonds:
        errs["bonds"] = (d2["bonds"].log_probs - d["bonds"].log_probs).abs().max()
    print({k: f"{float(v):.1e}" for k, v in errs.items()})
    for k, e in errs.items():
        assert float(e) < TOL, (k, float(e))
    assert float(d["pos"].x0.abs().max()) > 1e-3  # not trivially zero
    if pos_prediction == "x0":  # the network moves the atoms (the vector path is exercised, not only x_t passed through)
        assert float((d["pos"].x0 - x["pos"]).abs().max()) > 1e-3


@pytest.mark.parametrize("pos_prediction", ["eps", "x0"])
def test_network_output_is_translation_invariant(pos_prediction):
    """The raw prediction (zero-CoM eps or x0) is unchanged when each molecule's input is translated:
    the sampler's states are projected onto the CoM subspace, so this is the translation symmetry that matters."""
    model = _model("uniform", pos_prediction, bonds=False)
    x, seg, bidx, eseg = _state(4, model, False)
    t = torch.tensor([0.3, 0.6, 0.95], dtype=torch.float64)
    shift = 10.0 * torch.randn(3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    cond = {"segment_ids": seg, "bond_index": bidx}
    moved = StateDict({**x, "pos": x["pos"] + shift[seg]})
    with torch.no_grad():
        out, out2 = model.net(x, t, **cond), model.net(moved, t, **cond)
    err = max(float((out2[k] - out[k]).abs().max()) for k in out)
    print(f"translation: {err:.1e}")
    assert err < TOL
    com = torch.zeros(3, 3, dtype=torch.float64).index_add_(0, seg, out["pos"])
    assert float(com.abs().max()) < TOL


def test_radius_graph_keeps_the_symmetry():
    """Above ``max_fully_connected`` atoms the graph is a radius graph; distances are invariant, so the symmetry holds."""
    model = _model("masked", "eps", bonds=False, max_fully_connected=3)
    x, seg, bidx, eseg = _state(6, model, False)
    t = torch.tensor([0.1, 0.4, 0.7], dtype=torch.float64)
    q = _rotation(7, True)
    perm = torch.randperm(int(SIZES.sum()), generator=torch.Generator().manual_seed(8))
    d = _denoise(model, x, seg, bidx, eseg, t, False)
    y, seg2, bidx2, eseg2 = _permute(x, seg, bidx, eseg, perm, q)
    d2 = _denoise(model, y, seg2, bidx2, eseg2, t, False)
    err = float((d2["pos"].eps - d["pos"].eps[perm] @ q.T).abs().max())
    assert err < TOL
    from polydiff_molecules.backbones import build_edges, molecule_pairs

    full = molecule_pairs(seg, 3).src.numel()
    assert build_edges(x["pos"], seg, 3, max_fully_connected=3, cutoff=2.5).src.numel() < full  # the cutoff removed edges


class _Transformed:
    """Mixin: draws are those of the reference (unpermuted) space, permuted (and rotated for positions)."""

    def __init__(self, base, perm: torch.Tensor, q: torch.Tensor | None, segment_ids: torch.Tensor, num: int) -> None:
        super().__init__(segment_ids, num)  # type: ignore[call-arg]
        self.base, self.perm, self.q = base, perm, q

    def _draw(self, x, generator, draw, dtype):
        inv = torch.argsort(self.perm)
        ref = self.base._draw(x[inv], generator, draw, dtype)  # the reference run's draws, in its row order
        out = ref[self.perm]
        if self.q is not None and draw is torch.randn:
            out = out @ self.q.T
        return out


class _TCoM(_Transformed, ZeroCoMSpace):
    pass


class _TRagged(_Transformed, RaggedSpace):
    pass


@pytest.mark.parametrize(("bonds", "backbone"), [(False, "egnn"), (True, "egnn"), (False, "e3nn")], ids=["edm", "eqgat", "e3nn-edm"])
def test_sampling_run_commutes_with_rotation_and_permutation(bonds, backbone):
    import polydiff

    model = _model("marginal", "eps" if not bonds else "x0", bonds, backbone=backbone)
    seg = torch.repeat_interleave(torch.arange(3), SIZES)
    bidx, eseg = pair_index(SIZES)
    n = int(SIZES.sum())
    like = {"pos": torch.zeros(n, 3, dtype=torch.float64), "atom_types": torch.zeros(n, dtype=torch.int64),
            "charges": torch.zeros(n, dtype=torch.int64)}
    if bonds:
        like["bonds"] = torch.zeros(bidx.shape[1], dtype=torch.int64)
    gens = lambda: [torch.Generator().manual_seed(100 + i) for i in range(3)]  # noqa: E731
    space = molecule_space(seg, 3, eseg if bonds else None)
    centred = []

    def track(info):
        com = torch.zeros(3, 3, dtype=torch.float64).index_add_(0, seg, info.x["pos"]) / SIZES[:, None]
        centred.append(float(com.abs().max()) / max(1.0, float(info.x["pos"].abs().max())))  # relative to the coordinates' size

    ref = polydiff.sample(model, like=StateDict(like), space=space, cond={"segment_ids": seg, "bond_index": bidx},
                          sampler="mixed-ancestral", steps=20, generator=gens(), callback=track).x
    q = _rotation(11, True)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(12))
    inv = torch.argsort(perm)
    seg2 = seg[perm]
    spaces = {"pos": _TCoM(space["pos"], perm, q, seg2, 3), "atom_types": _TRagged(space["atom_types"], perm, None, seg2, 3),
              "charges": _TRagged(space["charges"], perm, None, seg2, 3)}
    if bonds:
        spaces["bonds"] = space["bonds"]  # pairs keep their order; only their atom names change
    like2 = StateDict({k: (v[perm] if k != "bonds" else v) for k, v in like.items()})
    out = polydiff.sample(model, like=like2, space=CompositeSpace(spaces), cond={"segment_ids": seg2, "bond_index": inv[bidx]},
                          sampler="mixed-ancestral", steps=20, generator=gens()).x
    pos_err = float((out["pos"] - ref["pos"][perm] @ q.T).abs().max()) / max(1.0, float(ref["pos"].abs().max()))
    print(f"sampling run: pos (relative) {pos_err:.1e}, max |CoM| / max |x| along the run {max(centred):.1e}")
    assert pos_err < 1e-9  # round-off of 1e-13 per call, amplified over 20 steps of a random network (measured up to 2e-11)
    assert torch.equal(out["atom_types"], ref["atom_types"][perm])
    assert torch.equal(out["charges"], ref["charges"][perm])
    if bonds:
        assert torch.equal(out["bonds"], ref["bonds"])
    assert max(centred) < 1e-13
    assert math.isfinite(float(ref["pos"].abs().max())) and float(ref["pos"].std()) > 0.1
