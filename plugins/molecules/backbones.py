"""E(3)-equivariant denoisers for molecules as ragged graph batches (segment ids).

The networks are called as ``net(x_t, t, *, segment_ids, ...)`` by :class:`polydiff.Denoiser` with a
composite state ``x_t = {"pos": (N, 3), "atom_types": (N,), "charges": (N,)[, "bonds": (E,)]}`` of
``N`` atoms in ``B`` molecules (``segment_ids`` of shape ``(N,)``) and times ``t`` of shape ``(B,)``.
They return ``{"pos": (N, 3), "atom_types": (N, K_atom), "charges": (N, K_charge)[, "bonds": (E, K_bond)]}``:
positions in the denoiser's prediction space (``eps`` or ``x0``, projected to zero centre of mass)
and ``x0_logits`` for the categorical fields.

:class:`EGNN` (Satorras et al. 2021, as used by EDM) updates invariant node features from pairwise
squared distances and moves coordinates along relative vectors ``x_i - x_j`` scaled by invariant
weights, so it is exactly equivariant under rotations, reflections and permutations and invariant
under translations. The graph is fully connected within each molecule up to
``max_fully_connected`` atoms and a radius graph (``cutoff`` Å, built in plain torch from pairwise
distances; PyG's ``radius_graph`` needs ``pyg-lib``) above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from dataclasses import dataclass

import torch
from torch import Tensor, nn


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """``out[k] = sum_{e: index[e] = k} src[e]``; ``src`` ``(E, ...)`` -> ``(dim_size, ...)``.

    torch_geometric's ``utils.scatter`` when it is installed (the molecules extra), else ``index_add_``.
    """
    try:
        from torch_geometric.utils import scatter
    except ImportError:  # the same sum without the optional dependency
        out = torch.zeros(dim_size, *src.shape[1:], dtype=src.dtype, device=src.device)
        return out.index_add_(0, index, src)
    return scatter(src, index, dim=0, dim_size=dim_size, reduce="sum")


def segment_mean(x: Tensor, segment_ids: Tensor, num_segments: int) -> Tensor:
    """Per-segment mean of the rows of ``x`` ``(N, d)``, shape ``(B, d)``."""
    total = scatter_sum(x, segment_ids, num_segments)
    counts = torch.bincount(segment_ids, minlength=num_segments).clamp(min=1).to(x.dtype)
    return total / counts.reshape(-1, *([1] * (x.ndim - 1)))


def remove_mean(x: Tensor, segment_ids: Tensor, num_segments: int) -> Tensor:
    """``x`` with its per-segment mean row removed (zero centre of mass), ``(N, d)``."""
    return x - segment_mean(x, segment_ids, num_segments)[segment_ids]


@dataclass(frozen=True)
class Edges:
    """Directed edges ``src -> dst`` within molecules, each ``(E,)`` int64 (no self loops)."""

    src: Tensor
    dst: Tensor


def molecule_pairs(segment_ids: Tensor, num_segments: int) -> Edges:
    """Every ordered pair ``(i, j)``, ``i != j``, of atoms in the same molecule (any row order of atoms)."""
    device = segment_ids.device
    order = torch.argsort(segment_ids, stable=True)
    sizes = torch.bincount(segment_ids, minlength=num_segments)
    ptr = torch.cumsum(sizes, 0) - sizes  # first sorted row of each molecule
    sq = sizes * sizes
    pair_ptr = torch.cumsum(sq, 0) - sq
    total = int(sq.sum())
    mol = torch.repeat_interleave(torch.arange(num_segments, device=device), sq)
    k = torch.arange(total, device=device) - pair_ptr[mol]
    n = sizes[mol]
    a, b = order[ptr[mol] + k // n], order[ptr[mol] + k % n]
    keep = a != b
    return Edges(src=a[keep], dst=b[keep])


def build_edges(pos: Tensor, segment_ids: Tensor, num_segments: int, *, max_fully_connected: int, cutoff: float) -> Edges:
    """Fully connected molecules up to ``max_fully_connected`` atoms; above, pairs closer than ``cutoff``.

    The rule depends only on atom counts and distances, so it commutes with rotations, translations
    and permutations of the atoms.
    """
    edges = molecule_pairs(segment_ids, num_segments)
    sizes = torch.bincount(segment_ids, minlength=num_segments)
    large = sizes[segment_ids[edges.src]] > max_fully_connected
    if not bool(large.any()):
        return edges
    d2 = (pos[edges.src] - pos[edges.dst]).pow(2).sum(-1)
    keep = ~large | (d2 < cutoff * cutoff)
    return Edges(src=edges.src[keep], dst=edges.dst[keep])


def time_features(t_node: Tensor, dim: int) -> Tensor:
    """``t`` itself and sinusoids of ``t`` at ``dim // 2`` frequencies: ``(N,) -> (N, 1 + 2 (dim // 2))``."""
    half = dim // 2
    freqs = math.pi * torch.exp(torch.linspace(0.0, math.log(100.0), half, device=t_node.device, dtype=t_node.dtype))
    ang = t_node[:, None] * freqs[None]
    return torch.cat([t_node[:, None], ang.sin(), ang.cos()], dim=-1)


RBF_CENTRES = 8


def rbf(d2: Tensor, num: int = RBF_CENTRES, d_max: float = 6.0) -> Tensor:
    """Gaussian radial basis of the distance ``sqrt(d2)``: ``(E, 1) -> (E, num)``, centres evenly on ``[0, d_max]`` Å.

    A bounded, smooth function of an invariant, so layers stay stable for far-apart (noisy) atoms.
    """
    d = (d2 + 1e-12).sqrt()
    centres = torch.linspace(0.0, d_max, num, device=d2.device, dtype=d2.dtype)
    width = d_max / (num - 1)
    return torch.exp(-((d - centres) / width) ** 2)


def _mlp(d_in: int, d_hidden: int, d_out: int, *, last_act: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(d_in, d_hidden), nn.SiLU(), nn.Linear(d_hidden, d_out)]
    if last_act:
        layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def node_inputs(net: Any, x_t: Mapping[str, Tensor], t: Tensor, seg: Tensor, b: int, cond_props: Tensor | None) -> Tensor:
    """Per-atom network inputs ``(N, F)``: one-hot noisy atom type and charge, time features of the atom's
    molecule, and (for a conditioned ``net``) its molecule's properties ``cond_props`` ``(B, cond_dim)``."""
    dtype = x_t["pos"].dtype
    feats = [
        nn.functional.one_hot(x_t["atom_types"], net.atom_states).to(dtype),
        nn.functional.one_hot(x_t["charges"], net.charge_states).to(dtype),
        time_features(t.to(dtype)[seg], net.time_dim),
    ]
    if net.cond_dim:
        if cond_props is None:
            raise ValueError(f"this network is conditioned on {net.cond_dim} properties; pass cond_props (B, {net.cond_dim})")
        feats.append(cond_props.to(dtype).reshape(b, net.cond_dim)[seg])
    return torch.cat(feats, dim=-1)


def edge_inputs(net: Any, x_t: Mapping[str, Tensor], edges: Edges, bond_index: Tensor | None) -> Tensor:
    """Per-edge inputs ``(E, RBF_CENTRES [+ bond_states])``: the input distance's radial basis and, for a ``net``
    that models bonds, the one-hot noisy bond of the pair (looked up in ``x_t["bonds"]`` by ``bond_index``)."""
    pos = x_t["pos"]
    attr = rbf((pos[edges.dst] - pos[edges.src]).pow(2).sum(-1, keepdim=True))
    if not net.bond_states:
        return attr
    if bond_index is None or "bonds" not in x_t:
        raise ValueError("this network models bonds: the state needs a 'bonds' field and cond needs bond_index")
    e_state = x_t["bonds"][pair_lookup(bond_index.to(pos.device), pos.shape[0])(edges.src, edges.dst)]
    return torch.cat([attr, nn.functional.one_hot(e_state, net.bond_states).to(pos.dtype)], dim=-1)


def bond_logits(net: Any, h: Tensor, x: Tensor, x_t: Mapping[str, Tensor], bond_index: Tensor | None) -> Tensor:
    """Bond logits ``(E, bond_classes)`` for the pairs of ``bond_index``, symmetric in ``(i, j)``: from the atoms'
    scalar features ``h`` ``(N, H)``, the radial basis of their distance in ``x`` ``(N, 3)`` and the noisy bond."""
    assert bond_index is not None
    i, j = bond_index[0].to(x.device), bond_index[1].to(x.device)
    r = rbf((x[i] - x[j]).pow(2).sum(-1, keepdim=True))
    e_oh = nn.functional.one_hot(x_t["bonds"], net.bond_states).to(x.dtype)
    return net.bond_head(torch.cat([h[i] + h[j], r, e_oh], dim=-1))


class EGNNLayer(nn.Module):
    """One E(n)-equivariant graph convolution (EDM's ``E_GCL`` + ``EquivCoordsUpdate``).

    ``m_ij = phi_e(h_i, h_j, rbf(|x_i - x_j|), a_ij)`` gated by ``sigmoid(phi_att(m_ij))``;
    ``h_i += phi_h(h_i, sum_j m_ij / norm)``;
    ``x_i += sum_j (x_i - x_j) / (|x_i - x_j| + 1) * coords_range * tanh(phi_x(h'_i, h'_j, rbf(|x_i - x_j|), a_ij)) / norm``.
    """

    def __init__(self, hidden: int, edge_dim: int, *, coords_range: float = 15.0, norm: float = 1.0) -> None:
        super().__init__()
        self.phi_e = _mlp(2 * hidden + RBF_CENTRES + edge_dim, hidden, hidden, last_act=True)
        self.phi_att = nn.Linear(hidden, 1)
        self.phi_h = _mlp(2 * hidden, hidden, hidden)
        self.phi_x = nn.Sequential(nn.Linear(2 * hidden + RBF_CENTRES + edge_dim, hidden), nn.SiLU(), nn.Linear(hidden, 1, bias=False))
        nn.init.xavier_uniform_(self.phi_x[-1].weight, gain=0.001)  # start near the identity on coordinates (EDM)
        self.coords_range = float(coords_range)
        self.norm = float(norm)

    def forward(self, h: Tensor, x: Tensor, edges: Edges, edge_attr: Tensor) -> tuple[Tensor, Tensor]:
        """``h`` ``(N, hidden)``, ``x`` ``(N, 3)``, ``edge_attr`` ``(E, edge_dim)`` -> updated ``(h, x)``."""
        i, j = edges.dst, edges.src
        diff = x[i] - x[j]
        d2 = diff.pow(2).sum(-1, keepdim=True)
        r = rbf(d2)
        m = self.phi_e(torch.cat([h[i], h[j], r, edge_attr], dim=-1))
        m = m * torch.sigmoid(self.phi_att(m))
        agg = scatter_sum(m, i, h.shape[0]) / self.norm
        h = h + self.phi_h(torch.cat([h, agg], dim=-1))
        # the coordinate weights read the updated h (as EDM's code does; its issue #30)
        w = torch.tanh(self.phi_x(torch.cat([h[i], h[j], r, edge_attr], dim=-1))) * self.coords_range
        trans = diff / (d2.sqrt() + 1.0) * w
        x = x + scatter_sum(trans, i, x.shape[0]) / self.norm
        return h, x


class EGNN(nn.Module):
    """An EGNN denoiser for the molecule product state (see the module docstring).

    Args:
        atom_states: values a noisy atom type can take (``vocab_size``, plus one for a mask).
        charge_states: values a noisy charge can take.
        atom_classes, charge_classes: clean classes (the logits' widths).
        hidden, layers: width and depth.
        pos_prediction: ``eps`` (EDM: the coordinate displacement ``x_L - x_t``) or ``x0`` (``x_L``);
            both projected to zero centre of mass.
        bond_states, bond_classes: for a state with a ``bonds`` field (0 = no bonds field).
        cond_dim: width of the per-molecule conditioning vector ``cond_props`` ``(B, cond_dim)`` (0 = none).
        max_fully_connected, cutoff: the graph rule of :func:`build_edges`.
        norm: aggregation normaliser (sum / norm).
    """

    def __init__(
        self,
        atom_states: int,
        charge_states: int,
        atom_classes: int,
        charge_classes: int,
        *,
        hidden: int = 64,
        layers: int = 4,
        pos_prediction: str = "eps",
        bond_states: int = 0,
        bond_classes: int = 0,
        cond_dim: int = 0,
        time_dim: int = 8,
        max_fully_connected: int = 32,
        cutoff: float = 5.0,
        coords_range: float = 15.0,
        norm: float = 1.0,
    ) -> None:
        super().__init__()
        if pos_prediction not in ("eps", "x0"):
            raise ValueError(f"pos_prediction must be 'eps' or 'x0', got {pos_prediction!r}")
        self.atom_states, self.charge_states = int(atom_states), int(charge_states)
        self.atom_classes, self.charge_classes = int(atom_classes), int(charge_classes)
        self.bond_states, self.bond_classes = int(bond_states), int(bond_classes)
        self.cond_dim, self.time_dim = int(cond_dim), int(time_dim)
        self.pos_prediction = pos_prediction
        self.max_fully_connected, self.cutoff = int(max_fully_connected), float(cutoff)
        t_width = 1 + 2 * (self.time_dim // 2)
        self.embed = nn.Linear(self.atom_states + self.charge_states + t_width + self.cond_dim, hidden)
        edge_dim = RBF_CENTRES + self.bond_states  # the input distance (EDM's edge attribute) and the noisy bond
        self.layers = nn.ModuleList([EGNNLayer(hidden, edge_dim, coords_range=coords_range, norm=norm) for _ in range(layers)])
        self.atom_head = _mlp(hidden, hidden, self.atom_classes)
        self.charge_head = _mlp(hidden, hidden, self.charge_classes)
        self.bond_head = _mlp(hidden + RBF_CENTRES + self.bond_states, hidden, self.bond_classes) if self.bond_classes else None

    def forward(
        self,
        x_t: Mapping[str, Tensor],
        t: Tensor,
        *,
        segment_ids: Tensor,
        bond_index: Tensor | None = None,
        cond_props: Tensor | None = None,
        **_: object,
    ) -> dict[str, Tensor]:
        """See the module docstring; ``bond_index`` ``(2, E)`` (``i < j``) names the pairs of ``x_t["bonds"]``."""
        pos = x_t["pos"]
        seg = segment_ids.to(pos.device)
        b = int(t.shape[0])
        h = self.embed(node_inputs(self, x_t, t, seg, b, cond_props))
        edges = build_edges(pos, seg, b, max_fully_connected=self.max_fully_connected, cutoff=self.cutoff)
        edge_attr = edge_inputs(self, x_t, edges, bond_index)
        x = pos
        for layer in self.layers:
            h, x = layer(h, x, edges, edge_attr)
        out_pos = x - pos if self.pos_prediction == "eps" else x
        out = {
            "pos": remove_mean(out_pos, seg, b),
            "atom_types": self.atom_head(h),
            "charges": self.charge_head(h),
        }
        if self.bond_head is not None:
            out["bonds"] = bond_logits(self, h, x, x_t, bond_index)
        return out


class E3Layer(nn.Module):
    """One tensor-product convolution on scalar + vector features (TFN / NequIP style, e3nn).

    ``m_ij = TP_w(r_ij)(h_j, Y(x_i - x_j))`` with spherical harmonics ``Y`` (l <= 1) and tensor-product
    weights from a radial MLP of ``rbf(|x_i - x_j|)`` (and the edge attributes); ``h_i <- h_i + Gate(lin(h_i) +
    sum_j m_ij / norm)``. Every operation is O(3)-equivariant (vectors ``1o`` flip under reflections).
    """

    def __init__(self, scalars: int, vectors: int, edge_dim: int, *, norm: float = 1.0) -> None:
        super().__init__()
        from e3nn import o3
        from e3nn.nn import Gate

        self.irreps = o3.Irreps(f"{scalars}x0e + {vectors}x1o")
        self.irreps_sh = o3.Irreps("1x0e + 1x1o")
        self.gate = Gate(f"{scalars}x0e", [nn.functional.silu], f"{vectors}x0e", [torch.sigmoid], f"{vectors}x1o")
        self.tp = o3.FullyConnectedTensorProduct(self.irreps, self.irreps_sh, self.gate.irreps_in, shared_weights=False)
        self.radial = _mlp(RBF_CENTRES + edge_dim, scalars, self.tp.weight_numel)
        self.self_int = o3.Linear(self.irreps, self.gate.irreps_in)
        self.norm = float(norm)

    def forward(self, h: Tensor, x: Tensor, edges: Edges, edge_attr: Tensor) -> Tensor:
        """``h`` ``(N, irreps.dim)``, ``x`` ``(N, 3)``, ``edge_attr`` ``(E, edge_dim)`` -> updated ``h``."""
        from e3nn import o3

        i, j = edges.dst, edges.src
        vec = x[i] - x[j]
        sh = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        w = self.radial(torch.cat([rbf(vec.pow(2).sum(-1, keepdim=True)), edge_attr], dim=-1))
        msg = self.tp(h[j], sh, w)
        agg = scatter_sum(msg, i, h.shape[0]) / self.norm
        return h + self.gate(self.self_int(h) + agg)


class E3NN(nn.Module):
    """A tensor-product (e3nn) denoiser with scalar and vector features; the same interface as :class:`EGNN`.

    Positions: a ``1o`` output per atom, the displacement ``eps`` or added to ``x_t`` for ``x0``, projected to
    zero centre of mass. Categorical logits read the scalar channels. ``vectors`` sets the number of ``1o`` channels.
    """

    def __init__(
        self,
        atom_states: int,
        charge_states: int,
        atom_classes: int,
        charge_classes: int,
        *,
        hidden: int = 64,
        vectors: int = 16,
        layers: int = 4,
        pos_prediction: str = "x0",
        bond_states: int = 0,
        bond_classes: int = 0,
        cond_dim: int = 0,
        time_dim: int = 8,
        max_fully_connected: int = 32,
        cutoff: float = 5.0,
        norm: float = 1.0,
        **_: object,
    ) -> None:
        super().__init__()
        from e3nn import o3

        if pos_prediction not in ("eps", "x0"):
            raise ValueError(f"pos_prediction must be 'eps' or 'x0', got {pos_prediction!r}")
        self.atom_states, self.charge_states = int(atom_states), int(charge_states)
        self.bond_states, self.bond_classes = int(bond_states), int(bond_classes)
        self.cond_dim, self.time_dim = int(cond_dim), int(time_dim)
        self.pos_prediction = pos_prediction
        self.max_fully_connected, self.cutoff = int(max_fully_connected), float(cutoff)
        self.hidden, self.vectors = int(hidden), int(vectors)
        t_width = 1 + 2 * (self.time_dim // 2)
        self.embed = nn.Linear(self.atom_states + self.charge_states + t_width + self.cond_dim, hidden)
        edge_dim = RBF_CENTRES + self.bond_states
        self.layers = nn.ModuleList([E3Layer(hidden, vectors, edge_dim, norm=norm) for _ in range(layers)])
        irreps = self.layers[0].irreps
        self.vec_out = o3.Linear(irreps, o3.Irreps("1x1o"))
        self.atom_head = _mlp(hidden, hidden, int(atom_classes))
        self.charge_head = _mlp(hidden, hidden, int(charge_classes))
        self.bond_head = _mlp(hidden + RBF_CENTRES + self.bond_states, hidden, self.bond_classes) if self.bond_classes else None

    def forward(self, x_t: Mapping[str, Tensor], t: Tensor, *, segment_ids: Tensor, bond_index: Tensor | None = None,
                cond_props: Tensor | None = None, **_: object) -> dict[str, Tensor]:
        """As :meth:`EGNN.forward`."""
        pos = x_t["pos"]
        seg = segment_ids.to(pos.device)
        b = int(t.shape[0])
        scal = self.embed(node_inputs(self, x_t, t, seg, b, cond_props))
        h = torch.cat([scal, torch.zeros(pos.shape[0], 3 * self.vectors, dtype=pos.dtype, device=pos.device)], dim=-1)
        edges = build_edges(pos, seg, b, max_fully_connected=self.max_fully_connected, cutoff=self.cutoff)
        edge_attr = edge_inputs(self, x_t, edges, bond_index)
        for layer in self.layers:
            h = layer(h, pos, edges, edge_attr)
        disp = self.vec_out(h)  # (N, 3): e3nn 0.6 orders l = 1 as (x, y, z), as its spherical harmonics
        out_pos = disp if self.pos_prediction == "eps" else pos + disp
        scal = h[:, : self.hidden]
        out = {"pos": remove_mean(out_pos, seg, b), "atom_types": self.atom_head(scal), "charges": self.charge_head(scal)}
        if self.bond_head is not None:
            out["bonds"] = bond_logits(self, scal, pos, x_t, bond_index)
        return out


def pair_lookup(bond_index: Tensor, num_atoms: int):
    """A function ``(src, dst) -> row of bond_index`` for unordered pairs listed once in ``bond_index`` ``(2, E)``."""
    lo = torch.minimum(bond_index[0], bond_index[1])
    hi = torch.maximum(bond_index[0], bond_index[1])
    keys = lo * num_atoms + hi
    order = torch.argsort(keys)
    sorted_keys = keys[order]

    def find(src: Tensor, dst: Tensor) -> Tensor:
        k = torch.minimum(src, dst) * num_atoms + torch.maximum(src, dst)
        pos = torch.searchsorted(sorted_keys, k).clamp(max=max(len(sorted_keys) - 1, 0))
        if k.numel() and not bool((sorted_keys[pos] == k).all()):
            raise ValueError("bond_index does not list every atom pair the graph uses")
        return order[pos]

    return find


__all__ = ["E3NN", "E3Layer", "EGNN", "EGNNLayer", "Edges", "build_edges", "molecule_pairs", "pair_lookup", "remove_mean", "scatter_sum", "segment_mean"]
