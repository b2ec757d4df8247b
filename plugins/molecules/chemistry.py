"""Chemistry: RDKit conversion both ways, bond inference and the versioned bond-length / valence tables.

Bond inference for 3D molecules without model bonds:

- ``edm-lookup`` — EDM's rule: a pair is bonded with order k (1..3) when its distance is below the typical
  length of a bond of that order plus a margin (10 / 5 / 3 pm), testing triple, then double, then single.
  Table :data:`BOND_TABLES` ``"edm-qm9-v1"``; lengths in pm.
- ``rdkit`` — ``rdDetermineBonds.DetermineBonds`` (connectivity from covalent radii, then bond orders with the
  molecule's total formal charge; needs explicit H).

Allowed valences (:data:`VALENCE_TABLES`): ``"edm-v1"`` (no charges: H1 C4 N3 O2 F1 ...) and ``"midi-v1"``
(indexed by formal charge, e.g. N+ 4, O- 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch

from polydiff.errors import DataError

from .data import Molecule, Vocabulary, _rdkit

BondSource = Literal["model", "edm-lookup", "rdkit"]

# typical bond lengths in pm (single / double / triple) used by EDM's QM9 metric, margins 10 / 5 / 3 pm
_SINGLE: dict[str, dict[str, int]] = {
    "H": {"H": 74, "C": 109, "N": 101, "O": 96, "F": 92, "B": 119, "Si": 148, "P": 144, "As": 152, "S": 134, "Cl": 127, "Br": 141, "I": 161},
    "C": {"H": 109, "C": 154, "N": 147, "O": 143, "F": 135, "Si": 185, "P": 184, "S": 182, "Cl": 177, "Br": 194, "I": 214},
    "N": {"H": 101, "C": 147, "N": 145, "O": 140, "F": 136, "Cl": 175, "Br": 214, "S": 168, "I": 222, "P": 177},
    "O": {"H": 96, "C": 143, "N": 140, "O": 148, "F": 142, "Br": 172, "S": 151, "P": 163, "Si": 163, "Cl": 164, "I": 194},
    "F": {"H": 92, "C": 135, "N": 136, "O": 142, "F": 142, "S": 158, "Si": 160, "Cl": 166, "Br": 178, "P": 156, "I": 187},
    "B": {"H": 119, "Cl": 175},
    "Si": {"Si": 233, "H": 148, "C": 185, "O": 163, "S": 200, "F": 160, "Cl": 202, "Br": 215, "I": 243},
    "Cl": {"Cl": 199, "H": 127, "C": 177, "N": 175, "O": 164, "P": 203, "S": 207, "B": 175, "Si": 202, "F": 166, "Br": 214},
    "S": {"H": 134, "C": 182, "N": 168, "O": 151, "S": 204, "F": 158, "Cl": 207, "Br": 225, "Si": 200, "P": 210, "I": 234},
    "Br": {"Br": 228, "H": 141, "C": 194, "O": 172, "N": 214, "Si": 215, "S": 225, "F": 178, "Cl": 214, "P": 222},
    "P": {"P": 221, "H": 144, "C": 184, "O": 163, "Cl": 203, "S": 210, "F": 156, "N": 177, "Br": 222},
    "I": {"H": 161, "C": 214, "Si": 243, "N": 222, "O": 194, "S": 234, "F": 187, "I": 266},
    "As": {"H": 152},
}
_DOUBLE: dict[str, dict[str, int]] = {
    "C": {"C": 134, "N": 129, "O": 120, "S": 160}, "N": {"C": 129, "N": 125, "O": 121}, "O": {"C": 120, "N": 121, "O": 121, "P": 150},
    "P": {"O": 150, "S": 186}, "S": {"P": 186},
}
_TRIPLE: dict[str, dict[str, int]] = {"C": {"C": 120, "N": 116, "O": 113}, "N": {"C": 116, "N": 110}, "O": {"C": 113}}

#: name -> (single, double, triple tables in pm, margins in pm)
BOND_TABLES: dict[str, tuple[dict, dict, dict, tuple[int, int, int]]] = {"edm-qm9-v1": (_SINGLE, _DOUBLE, _TRIPLE, (10, 5, 3))}

#: name -> element -> allowed total bond order; "edm-v1" ignores charges, "midi-v1" maps charge -> valences
VALENCE_TABLES: dict[str, dict[str, Any]] = {
    "edm-v1": {"H": 1, "C": 4, "N": 3, "O": 2, "F": 1, "B": 3, "Al": 3, "Si": 4, "P": [3, 5], "S": 4, "Cl": 1, "As": 3, "Br": 1,
               "I": 1, "Hg": [1, 2], "Bi": [3, 5]},
    "midi-v1": {"H": {0: 1, 1: 0, -1: 0}, "C": {0: [3, 4], 1: 3, -1: 3}, "N": {0: [2, 3], 1: [2, 3, 4], -1: 2},
                "O": {0: 2, 1: 3, -1: 1}, "F": {0: 1, -1: 0}, "B": 3, "Al": 3, "Si": 4, "P": {0: [3, 5], 1: 4},
                "S": {0: [2, 6], 1: [2, 3], 2: 4, 3: 5, -1: 3}, "Cl": 1, "As": 3, "Br": {0: 1, 1: 2}, "I": 1, "Hg": [1, 2],
                "Bi": [3, 5], "Se": [2, 4, 6]},
}


def allowed_valences(table: str, element: str, charge: int = 0) -> tuple[int, ...]:
    """Allowed total bond orders of ``element`` with formal ``charge`` in valence table ``table`` (empty if unknown)."""
    v = VALENCE_TABLES[table].get(element)
    if isinstance(v, dict):
        v = v.get(int(charge))
    if v is None:
        return ()
    return tuple(v) if isinstance(v, list) else (int(v),)


def edm_bond_order(a: str, b: str, distance: float, table: str = "edm-qm9-v1") -> int:
    """EDM lookup: bond order 0..3 of elements ``a``, ``b`` at ``distance`` Angstrom."""
    single, double, triple, (m1, m2, m3) = BOND_TABLES[table]
    d = 100.0 * distance
    s = single.get(a, {}).get(b)
    if s is None or d >= s + m1:
        return 0
    dd = double.get(a, {}).get(b)
    if dd is None or d >= dd + m2:
        return 1
    t = triple.get(a, {}).get(b)
    if t is None or d >= t + m3:
        return 2
    return 3


def edm_lookup_bonds(symbols: list[str], positions: torch.Tensor | np.ndarray, table: str = "edm-qm9-v1") -> np.ndarray:
    """``(N, N)`` int64 bond orders 0..3 from the EDM distance table (``positions`` ``(N, 3)`` Angstrom)."""
    x = np.asarray(positions, dtype=np.float64)
    n = len(symbols)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    out = np.zeros((n, n), dtype=np.int64)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = edm_bond_order(symbols[i], symbols[j], float(d[i, j]), table)
    return out


def bond_index(bond: Any) -> int:
    """Index into ``Vocabulary.BOND_TYPES`` of an RDKit bond (aromatic flag wins); DataError for other types."""
    Chem = _rdkit()
    if bond.GetIsAromatic():
        return 4
    t = bond.GetBondType()
    m = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3, Chem.BondType.AROMATIC: 4}
    if t not in m:
        raise DataError(f"bond type {t} between atoms {bond.GetBeginAtomIdx()} and {bond.GetEndAtomIdx()} is not supported")
    return m[t]


def _rd_bond_type(k: int) -> Any:
    Chem = _rdkit()
    return (None, Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE, Chem.BondType.AROMATIC)[int(k)]


def from_rdkit(rdmol: Any, vocab: Vocabulary, *, kekulize: bool = False, smiles: str | None = None,
               properties: Mapping[str, float] | None = None) -> Molecule:
    """A :class:`Molecule` from an RDKit Mol (positions from conformer 0, zeros without one).

    Bonds as in the Mol (aromatic stays 4 unless ``kekulize``). :class:`DataError` naming an element or formal
    charge outside ``vocab``. ``smiles`` defaults to RDKit's canonical SMILES without H (None if it fails).
    """
    Chem = _rdkit()
    m = Chem.Mol(rdmol)
    if kekulize:
        try:
            Chem.Kekulize(m, clearAromaticFlags=True)
        except Exception as e:  # noqa: BLE001
            raise DataError(f"cannot kekulize molecule ({e})") from None
    n = m.GetNumAtoms()
    types = [vocab.element_index(a.GetSymbol()) for a in m.GetAtoms()]
    charges = [vocab.charge_index(a.GetFormalCharge()) for a in m.GetAtoms()]
    pos = m.GetConformer().GetPositions() if m.GetNumConformers() else np.zeros((n, 3))
    bonds = np.zeros((n, n), dtype=np.int64)
    for b in m.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        bonds[i, j] = bonds[j, i] = bond_index(b)
    if smiles is None:
        try:
            smiles = Chem.MolToSmiles(Chem.RemoveAllHs(m, sanitize=False), isomericSmiles=False)
        except Exception:  # noqa: BLE001
            smiles = None
    props = dict(properties) if properties is not None else {k: float(v) for k, v in m.GetPropsAsDict().items()
                                                             if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return Molecule(torch.tensor(types, dtype=torch.int64), torch.tensor(charges, dtype=torch.int64),
                    torch.as_tensor(np.asarray(pos, dtype=np.float64)), torch.from_numpy(bonds), smiles, props)


def infer_bonds(mol: Molecule, vocab: Vocabulary, source: BondSource) -> np.ndarray | None:
    """``(N, N)`` bond-type indices from ``source``: the model's, the EDM lookup, or RDKit (None if it fails)."""
    if source == "model":
        return mol.bonds.numpy()
    if source == "edm-lookup":
        return edm_lookup_bonds(mol.symbols(vocab), mol.positions)
    if source == "rdkit":
        m = to_rdkit(mol, vocab, bonds="rdkit")
        if m is None:
            return None
        return from_rdkit(m, Vocabulary(vocab.elements, tuple(sorted(set(vocab.charges) | set(range(-3, 4)))))).bonds.numpy()
    raise ValueError(f"bond source {source!r} is not one of model, edm-lookup, rdkit")


def to_rdkit(mol: Molecule, vocab: Vocabulary, *, bonds: BondSource = "model", sanitize: bool = False,
             charges: bool = True) -> Any:
    """An RDKit Mol with a 3D conformer from a :class:`Molecule`, or None when it cannot be built.

    ``bonds``: ``model`` (the molecule's bond tensor), ``edm-lookup`` (EDM distance table) or ``rdkit``
    (``DetermineBonds`` with the total formal charge; None when it fails). ``charges``: copy the formal
    charges (``edm-lookup`` metrics pass False: EDM has none). ``sanitize``: run ``SanitizeMol`` and return
    None if it fails; otherwise the Mol is returned unsanitised (property caches updated non-strictly).
    """
    Chem = _rdkit()
    syms = mol.symbols(vocab)
    fch = mol.formal_charges(vocab) if charges else [0] * len(syms)
    rw = Chem.RWMol()
    for s, c in zip(syms, fch):
        a = Chem.Atom(s)
        a.SetFormalCharge(int(c))
        rw.AddAtom(a)
    conf = Chem.Conformer(len(syms))
    pos = mol.positions.detach().cpu().double().numpy()
    for i in range(len(syms)):
        conf.SetAtomPosition(i, pos[i].tolist())
    conf.Set3D(bool(np.any(pos[:, 2] != 0)))
    rw.AddConformer(conf, assignId=True)
    if bonds == "rdkit":
        from rdkit.Chem import rdDetermineBonds

        try:
            rdDetermineBonds.DetermineBonds(rw, charge=int(sum(fch)))
        except Exception:  # noqa: BLE001 - RDKit raises assorted errors on impossible assignments
            return None
    else:
        b = mol.bonds.numpy() if bonds == "model" else edm_lookup_bonds(syms, pos)
        iu, ju = np.nonzero(np.triu(b, 1))
        for i, j in zip(iu.tolist(), ju.tolist()):
            rw.AddBond(i, j, _rd_bond_type(b[i, j]))
            if b[i, j] == 4:
                rw.GetBondBetweenAtoms(i, j).SetIsAromatic(True)
                rw.GetAtomWithIdx(i).SetIsAromatic(True)
                rw.GetAtomWithIdx(j).SetIsAromatic(True)
    m = rw.GetMol()
    if sanitize:
        try:
            Chem.SanitizeMol(m)
        except Exception:  # noqa: BLE001
            return None
    else:
        m.UpdatePropertyCache(strict=False)
    return m


__all__ = ["BOND_TABLES", "VALENCE_TABLES", "allowed_valences", "bond_index", "edm_bond_order", "edm_lookup_bonds", "from_rdkit",
           "infer_bonds", "to_rdkit"]
