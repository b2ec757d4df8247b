"""Molecules as ragged graph batches, and sampling them with the core's product process.

A batch of ``B`` molecules with ``N`` atoms in all is a composite state
``{"pos": (N, 3) float, "atom_types": (N,) int64, "charges": (N,) int64[, "bonds": (E,) int64]}`` in a
:class:`~polydiff.spaces.CompositeSpace` of a :class:`~polydiff.spaces.ZeroCoMSpace` (positions: zero
centre of mass, ``3 (n - 1)`` degrees of freedom per molecule) and :class:`~polydiff.spaces.RaggedSpace`
objects over atoms and over atom pairs (``bonds``: one entry per unordered pair ``i < j`` of a molecule,
so the bond field is symmetric by construction). The network reads the graph from the conditioning:
``segment_ids`` ``(N,)``, ``bond_index`` ``(2, E)`` and optionally ``cond_props`` ``(B, P + 1)``
(normalised properties and a 1 that says they are given; all zeros is the null condition of
classifier-free guidance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from polydiff.spaces import CompositeSpace, RaggedSpace, ZeroCoMSpace
from polydiff.state import StateDict


def pair_index(sizes: Tensor) -> tuple[Tensor, Tensor]:
    """Unordered atom pairs ``i < j`` of every molecule of a batch laid out molecule after molecule.

    Args:
        sizes: atoms per molecule, ``(B,)``.

    Returns:
        ``(bond_index (2, E), edge_segment_ids (E,))`` with ``E = sum n (n - 1) / 2``.
    """
    idx, seg = [], []
    start = 0
    for b, n in enumerate(sizes.tolist()):
        iu = torch.triu_indices(n, n, offset=1)
        idx.append(iu + start)
        seg.append(torch.full((iu.shape[1],), b, dtype=torch.int64))
        start += n
    if not idx:
        return torch.zeros(2, 0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    return torch.cat(idx, 1), torch.cat(seg)


@dataclass(frozen=True)
class MoleculeBatch:
    """A collated batch (see the module docstring).

    Attributes:
        pos: ``(N, 3)`` centred per molecule. atom_types, charges: ``(N,)`` class indices.
        segment_ids: ``(N,)``. sizes: ``(B,)``. bond_index: ``(2, E)``; bonds: ``(E,)`` classes 0..4 (0 = none).
        edge_segment_ids: ``(E,)``. props: ``(B, P + 1)`` conditioning or ``None``.
    """

    pos: Tensor
    atom_types: Tensor
    charges: Tensor
    segment_ids: Tensor
    sizes: Tensor
    bond_index: Tensor
    bonds: Tensor
    edge_segment_ids: Tensor
    props: Tensor | None = None

    @property
    def num_molecules(self) -> int:
        return int(self.sizes.shape[0])

    def to(self, device: Any) -> MoleculeBatch:
        """The batch on ``device`` (the training engine moves batches with ``.to``)."""
        moved = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()}
        return MoleculeBatch(**moved)

    def state(self, *, bonds: bool) -> StateDict:
        """The clean composite state ``x_0``."""
        s = {"pos": self.pos, "atom_types": self.atom_types, "charges": self.charges}
        if bonds:
            s["bonds"] = self.bonds
        return StateDict(s)

    def space(self, *, bonds: bool) -> CompositeSpace:
        """The composite data space of :meth:`state`."""
        return molecule_space(self.segment_ids, self.num_molecules, self.edge_segment_ids if bonds else None)

    def cond(self) -> dict[str, Tensor]:
        """What the network reads besides the state: the graph (and the properties when given)."""
        c = {"segment_ids": self.segment_ids, "bond_index": self.bond_index}
        if self.props is not None:
            c["cond_props"] = self.props
        return c


def molecule_space(segment_ids: Tensor, num_molecules: int, edge_segment_ids: Tensor | None) -> CompositeSpace:
    """Zero-CoM positions and ragged categorical fields over atoms (and over atom pairs when ``edge_segment_ids``)."""
    spaces = {
        "pos": ZeroCoMSpace(segment_ids, num_molecules),
        "atom_types": RaggedSpace(segment_ids, num_molecules),
        "charges": RaggedSpace(segment_ids, num_molecules),
    }
    if edge_segment_ids is not None:
        spaces["bonds"] = RaggedSpace(edge_segment_ids, num_molecules)
    return CompositeSpace(spaces)


def collate_molecules(mols: Sequence[Any], *, props: Tensor | None = None, dtype: torch.dtype = torch.float32) -> MoleculeBatch:
    """Collate ``Molecule`` objects (``atom_types``, ``charges``, ``positions``, ``bonds`` (n, n)) into a batch.

    Positions are centred per molecule; ``props`` ``(B, P + 1)`` is attached as given.
    """
    sizes = torch.tensor([int(m.atom_types.shape[0]) for m in mols], dtype=torch.int64)
    seg = torch.repeat_interleave(torch.arange(len(mols)), sizes)
    pos = torch.cat([m.positions.to(torch.float64) - m.positions.to(torch.float64).mean(0, keepdim=True) for m in mols])
    bond_index, edge_seg = pair_index(sizes)
    bonds = []
    for m in mols:
        n = int(m.atom_types.shape[0])
        iu = torch.triu_indices(n, n, offset=1)
        bonds.append(m.bonds[iu[0], iu[1]].to(torch.int64))
    return MoleculeBatch(
        pos=pos.to(dtype),
        atom_types=torch.cat([m.atom_types.to(torch.int64) for m in mols]),
        charges=torch.cat([m.charges.to(torch.int64) for m in mols]),
        segment_ids=seg,
        sizes=sizes,
        bond_index=bond_index,
        bonds=torch.cat(bonds) if bonds else torch.zeros(0, dtype=torch.int64),
        edge_segment_ids=edge_seg,
        props=props,
    )


def template_batch(sizes: Tensor, *, dtype: torch.dtype = torch.float32, device: Any = "cpu", props: Tensor | None = None) -> MoleculeBatch:
    """An all-zero batch with the given atom counts ``(B,)`` (the shape template for sampling)."""
    n = int(sizes.sum())
    seg = torch.repeat_interleave(torch.arange(int(sizes.shape[0])), sizes)
    bond_index, edge_seg = pair_index(sizes)
    return MoleculeBatch(
        pos=torch.zeros(n, 3, dtype=dtype), atom_types=torch.zeros(n, dtype=torch.int64), charges=torch.zeros(n, dtype=torch.int64),
        segment_ids=seg, sizes=sizes.clone(), bond_index=bond_index, bonds=torch.zeros(bond_index.shape[1], dtype=torch.int64),
        edge_segment_ids=edge_seg, props=props,
    ).to(device)


def sample_batch(
    model: Any,
    sizes: Tensor,
    *,
    bonds: bool,
    sampler: str = "mixed-ancestral",
    steps: int = 100,
    generators: Any = None,
    props: Tensor | None = None,
    guidance_scale: float = 1.0,
    dtype: torch.dtype = torch.float32,
    device: Any = "cpu",
    callback: Any = None,
) -> tuple[MoleculeBatch, int]:
    """Sample molecules with the given atom counts; returns the batch (positions centred) and the NFE.

    ``props`` ``(B, P + 1)`` conditions the model; ``guidance_scale != 1`` adds classifier-free guidance
    toward it (the null condition is all zeros).
    """
    import polydiff
    from polydiff.guidance import ClassifierFree

    tpl = template_batch(sizes, dtype=dtype, device=device, props=props)
    guidance: Any = ()
    if props is not None and guidance_scale != 1.0:
        guidance = (ClassifierFree(guidance_scale, uncond={"cond_props": torch.zeros_like}, batched=False),)
    res = polydiff.sample(model, like=tpl.state(bonds=bonds), space=tpl.space(bonds=bonds), cond=tpl.cond(), sampler=sampler,
                          steps=steps, generator=generators, guidance=guidance, callback=callback)
    x = res.x
    out = replace(tpl, pos=x["pos"], atom_types=x["atom_types"], charges=x["charges"], bonds=x["bonds"] if bonds else tpl.bonds)
    return out, int(res.nfe)


def split_molecules(batch: MoleculeBatch) -> list[dict[str, Tensor]]:
    """Per-molecule tensors ``{"atom_types", "charges", "positions" (n, 3) float64, "bonds" (n, n)}`` on the CPU."""
    out = []
    b = batch.to("cpu")
    starts = torch.cumsum(b.sizes, 0) - b.sizes
    for k, (s, n) in enumerate(zip(starts.tolist(), b.sizes.tolist(), strict=True)):
        adj = torch.zeros(n, n, dtype=torch.int64)
        sel = b.edge_segment_ids == k
        if bool(sel.any()):
            i, j = b.bond_index[:, sel] - s
            adj[i, j] = b.bonds[sel]
            adj[j, i] = b.bonds[sel]
        out.append({"atom_types": b.atom_types[s:s + n].clone(), "charges": b.charges[s:s + n].clone(),
                    "positions": b.pos[s:s + n].to(torch.float64).clone(), "bonds": adj})
    return out


def draw_atom_counts(histogram: Tensor, generators: Sequence[torch.Generator]) -> Tensor:
    """One atom count per generator from ``p(N)`` (``histogram[n]`` = count of molecules with ``n`` atoms); ``(B,)``."""
    p = histogram.to(torch.float64)
    cdf = torch.cumsum(p / p.sum(), 0)
    u = torch.stack([torch.rand((), generator=g, dtype=torch.float64, device=g.device).cpu() for g in generators])
    n = torch.searchsorted(cdf, u, right=True).clamp(max=len(p) - 1)
    return n.to(torch.int64).clamp(min=1)


__all__ = ["MoleculeBatch", "collate_molecules", "draw_atom_counts", "molecule_space", "pair_index", "sample_batch",
           "split_molecules", "template_batch"]
