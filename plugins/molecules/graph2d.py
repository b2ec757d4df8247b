"""2D molecular graphs: a permutation-equivariant dense graph transformer, the two 2D state layouts, and decoding.

Backbone. :class:`GraphTransformer` reads node features ``(B, L, F_node)``, edge features ``(B, L, L, F_edge)``
(symmetric) and node flags ``(B, L)``. Each layer: multi-head attention over the real nodes of a graph whose
logits get an additive bias and a multiplicative gate from the edge features (DiGress's FiLM of the attention
by edges), a feed-forward block, and an edge update from ``(e_ij, h_i + h_j, h_i * h_j)`` — symmetric in
``i, j``, so symmetric edge inputs give exactly symmetric edge outputs. Every operation acts per node, per
pair or as a sum over the nodes of a graph, so the network is permutation equivariant (to rounding).

Two wrappers put it under :class:`polydiff.Denoiser`:

* :class:`DigressNet` — DiGress-style ragged categorical state ``{"atom_types": (N,), "charges": (N,),
  "bonds": (E,)}`` (bonds on the unordered pairs ``i < j`` of ``bond_index``, so symmetric by construction),
  returning ``x0`` logits for each field;
* :class:`GDSSNet` — GDSS-style dense continuous state ``{"x": (B, L, K) one-hot atom types, "adj": (B, L, L)
  bond orders}`` with node flags ``node_mask`` ``(B, L)``, returning the prediction (``eps`` or ``x0``) for
  both, zero on padding, ``adj`` symmetric with zero diagonal.

Decoding: :func:`decode_gdss` thresholds ``adj`` at 0.5 / 1.5 / 2.5 into bond orders and takes the argmax of
``x``; :func:`correct_valency` lowers bonds at over-valent atoms (GDSS / DiGress post-processing) and is the
``valency-corrected`` variant of every 2D recipe; ``raw`` leaves the molecule as generated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from polydiff import Denoiser
from polydiff.spaces import CompositeSpace, MaskedSpace, RaggedSpace, SymmetricMatrixSpace
from polydiff.state import StateDict

#: bond class -> bond order (none, single, double, triple, aromatic)
BOND_ORDERS = (0.0, 1.0, 2.0, 3.0, 1.5)
DecodeVariant = Literal["raw", "valency-corrected"]
DECODE_VARIANTS: tuple[str, ...] = ("raw", "valency-corrected")


def time_embedding(t: Tensor, dim: int) -> Tensor:
    """``t`` ``(B,)`` -> ``(B, 1 + 2 (dim // 2))``: ``t`` and sinusoids at geometric frequencies."""
    half = max(dim // 2, 1)
    freqs = math.pi * torch.exp(torch.linspace(0.0, math.log(100.0), half, device=t.device, dtype=t.dtype))
    ang = t[:, None] * freqs[None]
    return torch.cat([t[:, None], ang.sin(), ang.cos()], dim=-1)


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden={hidden} must be a multiple of heads={heads}")
        self.heads, self.dh = heads, hidden // heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.e_bias = nn.Linear(hidden, heads)
        self.e_gate = nn.Linear(hidden, heads)
        self.out = nn.Linear(hidden, hidden)
        self.ff = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden))
        self.edge = nn.Sequential(nn.Linear(3 * hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden))
        self.n1, self.n2, self.n3 = nn.LayerNorm(hidden), nn.LayerNorm(hidden), nn.LayerNorm(hidden)

    def forward(self, h: Tensor, e: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        b, n, _ = h.shape
        q, k, v = self.qkv(h).reshape(b, n, 3, self.heads, self.dh).unbind(2)  # (B, L, H, dh)
        logits = torch.einsum("bihd,bjhd->bijh", q, k) / math.sqrt(self.dh)
        logits = logits * (1.0 + torch.tanh(self.e_gate(e))) + self.e_bias(e)
        keep = mask[:, None, :, None]
        logits = logits.masked_fill(~keep, float("-inf"))
        att = torch.softmax(logits, dim=2)
        att = torch.where(keep & mask[:, :, None, None], att, torch.zeros((), dtype=att.dtype, device=att.device))
        msg = torch.einsum("bijh,bjhd->bihd", att, v).reshape(b, n, -1)
        h = self.n1(h + self.out(msg))
        h = self.n2(h + self.ff(h))
        pair = torch.cat([e, h[:, :, None] + h[:, None, :], h[:, :, None] * h[:, None, :]], dim=-1)
        e = self.n3(e + self.edge(pair))
        return h, e


class GraphTransformer(nn.Module):
    """See the module docstring. ``forward(nodes, edges, mask, t) -> (node_out (B, L, node_out), edge_out (B, L, L, edge_out))``;
    padded nodes and pairs are zero, ``edge_out`` is symmetric with a zero diagonal."""

    def __init__(self, node_in: int, edge_in: int, node_out: int, edge_out: int, *, hidden: int = 64, layers: int = 4,
                 heads: int = 4, time_dim: int = 16) -> None:
        super().__init__()
        self.time_dim = time_dim
        tdim = 1 + 2 * max(time_dim // 2, 1)
        self.node_in = nn.Sequential(nn.Linear(node_in + tdim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.edge_in = nn.Sequential(nn.Linear(edge_in + tdim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.layers = nn.ModuleList([_Layer(hidden, heads) for _ in range(layers)])
        self.node_head = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, node_out))
        self.edge_head = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, edge_out))

    def forward(self, nodes: Tensor, edges: Tensor, mask: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        b, n, _ = nodes.shape
        mask = mask.to(torch.bool)
        te = time_embedding(t.to(nodes.dtype), self.time_dim)
        h = self.node_in(torch.cat([nodes, te[:, None, :].expand(b, n, -1)], dim=-1))
        e = self.edge_in(torch.cat([edges, te[:, None, None, :].expand(b, n, n, -1)], dim=-1))
        nm = mask[:, :, None].to(h.dtype)
        pm = (mask[:, :, None] & mask[:, None, :] & ~torch.eye(n, dtype=torch.bool, device=mask.device))[..., None].to(h.dtype)
        h, e = h * nm, e * pm
        for layer in self.layers:
            h, e = layer(h, e, mask)
            h, e = h * nm, e * pm
        eo = self.edge_head(e)
        eo = 0.5 * (eo + eo.transpose(1, 2))
        return self.node_head(h) * nm, eo * pm


# ------------------------------------------------------------------------------------------------- DiGress (ragged, categorical)

def local_index(segment_ids: Tensor, num_segments: int) -> Tensor:
    """Each row's position inside its segment (rows in any order; ties keep the row order): ``(N,)``."""
    order = torch.argsort(segment_ids, stable=True)
    sizes = torch.bincount(segment_ids, minlength=num_segments)
    ptr = torch.cumsum(sizes, 0) - sizes
    out = torch.empty_like(segment_ids)
    out[order] = torch.arange(segment_ids.numel(), device=segment_ids.device) - ptr[segment_ids[order]]
    return out


class DigressNet(nn.Module):
    """DiGress-style denoiser on ragged categorical graphs (module docstring); ``x0`` logits for every field."""

    def __init__(self, atom_states: int, charge_states: int, bond_states: int, atom_classes: int, charge_classes: int,
                 bond_classes: int, *, hidden: int = 64, layers: int = 4, heads: int = 4, time_dim: int = 16) -> None:
        super().__init__()
        self.atom_states, self.charge_states, self.bond_states = atom_states, charge_states, bond_states
        self.atom_classes, self.charge_classes, self.bond_classes = atom_classes, charge_classes, bond_classes
        self.net = GraphTransformer(atom_states + charge_states, bond_states, atom_classes + charge_classes, bond_classes,
                                    hidden=hidden, layers=layers, heads=heads, time_dim=time_dim)

    def forward(self, x_t: Mapping[str, Tensor], t: Tensor, *, segment_ids: Tensor, bond_index: Tensor, **_: object) -> dict[str, Tensor]:
        dtype = next(self.parameters()).dtype
        seg = segment_ids.to(t.device)
        b = int(t.shape[0])
        loc = local_index(seg, b)
        width = int(loc.max()) + 1 if loc.numel() else 1
        nodes = torch.zeros(b, width, self.atom_states + self.charge_states, dtype=dtype, device=t.device)
        nodes[seg, loc] = torch.cat([nn.functional.one_hot(x_t["atom_types"], self.atom_states),
                                     nn.functional.one_hot(x_t["charges"], self.charge_states)], dim=-1).to(dtype)
        mask = torch.zeros(b, width, dtype=torch.bool, device=t.device)
        mask[seg, loc] = True
        i, j = bond_index[0].to(t.device), bond_index[1].to(t.device)
        eseg, li, lj = seg[i], loc[i], loc[j]
        edges = torch.zeros(b, width, width, self.bond_states, dtype=dtype, device=t.device)
        oh = nn.functional.one_hot(x_t["bonds"], self.bond_states).to(dtype)
        edges[eseg, li, lj] = oh
        edges[eseg, lj, li] = oh
        node_out, edge_out = self.net(nodes, edges, mask, t.to(dtype))
        no = node_out[seg, loc]
        return {"atom_types": no[:, : self.atom_classes], "charges": no[:, self.atom_classes:], "bonds": edge_out[eseg, li, lj]}


def ragged2d_space(segment_ids: Tensor, num_molecules: int, edge_segment_ids: Tensor) -> CompositeSpace:
    """Ragged categorical fields over atoms and over unordered atom pairs."""
    return CompositeSpace({"atom_types": RaggedSpace(segment_ids, num_molecules), "charges": RaggedSpace(segment_ids, num_molecules),
                           "bonds": RaggedSpace(edge_segment_ids, num_molecules)})


# ------------------------------------------------------------------------------------------------- GDSS (dense, continuous)

class GDSSNet(nn.Module):
    """GDSS-style denoiser on dense ``{"x", "adj"}`` (module docstring). Edge inputs are ``A`` and ``A^2`` (GDSS's
    GMH attention reads powers of the adjacency), node inputs ``X`` and the weighted degree ``A 1``."""

    def __init__(self, atom_classes: int, *, hidden: int = 64, layers: int = 4, heads: int = 4, time_dim: int = 16) -> None:
        super().__init__()
        self.atom_classes = atom_classes
        self.net = GraphTransformer(atom_classes + 1, 2, atom_classes, 1, hidden=hidden, layers=layers, heads=heads, time_dim=time_dim)

    def forward(self, x_t: Mapping[str, Tensor], t: Tensor, *, node_mask: Tensor, **_: object) -> dict[str, Tensor]:
        x, a = x_t["x"], x_t["adj"]
        mask = node_mask.to(torch.bool)
        n = a.shape[1]
        pm = (mask[:, :, None] & mask[:, None, :] & ~torch.eye(n, dtype=torch.bool, device=a.device)).to(a.dtype)
        a = a * pm
        a2 = torch.einsum("bij,bjk->bik", a, a) * pm / 4.0
        nodes = torch.cat([x, a.sum(-1, keepdim=True) / 4.0], dim=-1) * mask[..., None].to(x.dtype)
        node_out, edge_out = self.net(nodes, torch.stack([a, a2], dim=-1), mask, t.to(x.dtype))
        return {"x": node_out, "adj": edge_out[..., 0]}


class ClampedDenoiser(Denoiser):
    """A :class:`polydiff.Denoiser` whose Gaussian components' ``x0`` estimates are clipped to the data's range
    (``ranges = {name: (lo, hi)}``; GDSS: one-hot ``X`` in [0, 1], bond orders ``A`` in [0, 3]) and whose ``eps``
    is recomputed from the clipped ``x0`` (``eps = (x_t - alpha x0) / sigma``), as DDPM's ``clip_denoised``.
    Without it an ``eps`` model's ``x0 = (x_t - sigma eps) / alpha`` amplifies its error by ``1 / alpha`` near
    ``t = 1`` and the ancestral sampler diverged (adjacency entries in the hundreds after 50 steps)."""

    def __init__(self, net: nn.Module, process: Any, prediction: Any, ranges: Mapping[str, tuple[float, float]]) -> None:
        super().__init__(net, process, prediction=prediction)
        self.ranges = {k: (float(a), float(b)) for k, a, b in ((k, *v) for k, v in ranges.items())}

    def interpret(self, out: Any, x_t: Any, t: Tensor, cond: Any, *, space: Any) -> Any:
        from polydiff.denoiser import ProductDenoised
        from polydiff.parameterisation import Denoised

        d = super().interpret(out, x_t, t, cond, space=space)
        if not isinstance(d, ProductDenoised):
            return d
        parts = dict(d.parts)
        for k, (lo, hi) in self.ranges.items():
            v = self.process.components[k].schedule(t)
            sp = space[k]
            x0 = sp.project(parts[k].x0.clamp(lo, hi))
            a, s = sp.expand(v.alpha.to(x0.dtype), x0), sp.expand(v.sigma.to(x0.dtype), x0)
            parts[k] = Denoised(x0, sp.project((x_t[k] - a * x0) / s.clamp(min=1e-12)))
        return ProductDenoised(parts)


def gdss_space(node_mask: Tensor) -> CompositeSpace:
    """Node features in a :class:`MaskedSpace` (zero on padding), the adjacency in a :class:`SymmetricMatrixSpace`."""
    return CompositeSpace({"x": MaskedSpace(node_mask), "adj": SymmetricMatrixSpace(node_mask)})


def dense_graphs(mols: Sequence[Any], num_atom_classes: int, *, dtype: torch.dtype = torch.float32) -> tuple[StateDict, Tensor]:
    """``({"x": (B, L, K) one-hot, "adj": (B, L, L) bond orders}, node_mask (B, L))`` for molecules (``L`` = largest)."""
    sizes = [int(m.atom_types.shape[0]) for m in mols]
    width = max(sizes) if sizes else 1
    b = len(mols)
    x = torch.zeros(b, width, num_atom_classes, dtype=dtype)
    a = torch.zeros(b, width, width, dtype=dtype)
    mask = torch.zeros(b, width, dtype=torch.bool)
    orders = torch.tensor(BOND_ORDERS, dtype=dtype)
    for k, (m, n) in enumerate(zip(mols, sizes)):
        x[k, :n] = nn.functional.one_hot(m.atom_types.to(torch.int64), num_atom_classes).to(dtype)
        a[k, :n, :n] = orders[m.bonds.to(torch.int64)]
        mask[k, :n] = True
    return StateDict({"x": x, "adj": a}), mask


def decode_gdss(x: Tensor, adj: Tensor, node_mask: Tensor) -> list[dict[str, Tensor]]:
    """Per graph: atom types (argmax of ``x``) and bond classes (``adj`` rounded at 0.5 / 1.5 / 2.5, clipped to 0..3,
    upper triangle mirrored) of the real nodes."""
    out = []
    for k in range(x.shape[0]):
        n = int(node_mask[k].sum())
        types = x[k, :n].argmax(-1).to(torch.int64).cpu()
        a = adj[k, :n, :n].to(torch.float64).cpu().contiguous()
        orders = torch.bucketize(a, torch.tensor([0.5, 1.5, 2.5], dtype=torch.float64)).triu(1)
        out.append({"atom_types": types, "bonds": orders + orders.T})
    return out


# ------------------------------------------------------------------------------------------------- valency

def gdss_charges(types: Tensor, bonds: Tensor, vocab: Any) -> Tensor:
    """Charge indices by GDSS's construction rule: N (O, S) whose bond-order sum exceeds its valence 3 (2, 2)
    by exactly one gets charge +1 (when ``vocab`` has it); everything else neutral."""
    zero = vocab.charge_index(0)
    plus = vocab.charges.index(1) if 1 in vocab.charges else None
    out = torch.full_like(types, zero)
    if plus is None:
        return out
    val = torch.tensor(BOND_ORDERS, dtype=torch.float64)[bonds].sum(-1)
    for i, s in enumerate(types.tolist()):
        base = {"N": 3, "O": 2, "S": 2}.get(vocab.elements[s])
        if base is not None and abs(float(val[i]) - (base + 1)) < 1e-9:
            out[i] = plus
    return out


def correct_valency(mol: Any, vocab: Any, max_steps: int = 200) -> Any:
    """The ``valency-corrected`` variant of a molecule: while RDKit reports an over-valent atom, lower that atom's
    highest-order bond by one (a single bond is removed; an aromatic bond counts 1.5 and is removed); aromatic
    bonds that RDKit cannot kekulise become single. Atoms, types and charges are kept. A molecule RDKit
    finds no valence problem in comes back unchanged, so the correction never makes a valid molecule invalid."""
    from .chemistry import to_rdkit
    from .data import Molecule, _rdkit

    Chem = _rdkit()
    bonds = mol.bonds.clone().to(torch.int64)
    for _ in range(max_steps):
        rd = to_rdkit(Molecule(mol.atom_types, mol.charges, mol.positions, bonds), vocab, bonds="model")
        if rd is None:
            break
        found = list(Chem.DetectChemistryProblems(rd))
        problems = [p for p in found if p.GetType() == "AtomValenceException"]
        if not problems:
            if any("Kekulize" in p.GetType() for p in found) and bool((bonds == 4).any()):
                bonds = torch.where(bonds == 4, 1, bonds)  # aromatic bonds that do not kekulise: single
                continue
            break
        i = problems[0].GetAtomIdx()
        row = torch.tensor([BOND_ORDERS[int(c)] for c in bonds[i].tolist()])
        if float(row.max()) <= 0:
            break
        j = int(torch.argmax(row))  # highest order; ties: lowest index
        c = int(bonds[i, j])
        new = 0 if c in (1, 4) else c - 1
        bonds[i, j] = bonds[j, i] = new
    return Molecule(mol.atom_types, mol.charges, mol.positions, bonds, getattr(mol, "smiles", None))


def decode_variant(mols: Sequence[Any], vocab: Any, variant: str) -> list[Any]:
    """``raw`` (as generated) or ``valency-corrected`` (:func:`correct_valency`) molecules."""
    if variant == "raw":
        return list(mols)
    if variant == "valency-corrected":
        return [correct_valency(m, vocab) for m in mols]
    from polydiff.errors import UserInputError

    raise UserInputError(f"sample.decode={variant!r}: expected one of {', '.join(DECODE_VARIANTS)}")


__all__ = ["BOND_ORDERS", "ClampedDenoiser", "DECODE_VARIANTS", "DigressNet", "GDSSNet", "GraphTransformer", "correct_valency", "decode_gdss",
           "decode_variant", "dense_graphs", "gdss_charges", "gdss_space", "local_index", "ragged2d_space", "time_embedding"]
