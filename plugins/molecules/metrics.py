"""Molecule metrics (``molecules.md`` §2), each variant named in its key.

Keys of :func:`evaluate_molecules` (``{src}`` is the bond source the RDKit-based metrics used: ``model`` — the
molecules' own bonds and charges, ``edm-lookup`` — EDM's distance table, no charges, or ``rdkit`` —
``DetermineBonds``; reference molecules go through the same source):

- ``atom_stability/edm``, ``mol_stability/edm`` — EDM: bonds from the distance table (``edm-qm9-v1``), an atom is
  stable when its bond-order sum is an allowed valence of ``edm-v1`` (charges ignored); 3D molecules with explicit
  H only (without H the valences are incomplete).
- ``atom_stability/midi``, ``mol_stability/midi`` — MiDi: the molecules' own bonds and formal charges, valences
  of ``midi-v1`` by charge; aromatic bonds are kekulised by RDKit first (if that fails they count 1.5 and the sum
  is truncated). Only when the molecules have bonds and explicit H.
- ``validity/largest_fragment/{src}`` — EDM: ``SanitizeMol`` succeeds on the whole molecule (fragments allowed).
- ``validity/connected/{src}`` — EQGAT: sanitises and has exactly one fragment. ``connected/{src}``: one fragment.
- ``validity/corrected/{src}`` — GDSS: valency correction (lower the highest-order bond at an atom RDKit reports
  over-valent, repeat), then sanitise; the largest fragment is kept.
- ``uniqueness/{src}`` — distinct canonical SMILES (largest fragment, no H, no stereo) / valid;
  ``valid_and_unique/{src}`` = validity × uniqueness; ``novelty/{src}`` — unique SMILES not in the training set /
  unique.
- ``fcd/{src}`` — Fréchet ChemNet Distance (fcd_torch) between the valid generated SMILES and the reference SMILES.
- ``nspdk/{src}`` — NSPDK MMD² (EDeN, GDSS protocol) between the valid generated and reference molecules.
- ``atom_type_tv``, ``bond_type_tv/{src}`` — Σ|p − q| of the atom-type / bond-type (bonded pairs) histograms.
- ``valency_w1/{src}``, ``bond_length_w1/{src}`` (Å), ``bond_angle_w1/{src}`` (degrees) — see ``distributions``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import distributions as dist
from .chemistry import BondSource, allowed_valences, edm_lookup_bonds, to_rdkit
from .data import Molecule, Vocabulary, _rdkit

StabilityVariant = Literal["edm", "midi"]


# ------------------------------------------------------------------------------------------------- stability

def _kekule_orders(mol: Molecule, vocab: Vocabulary) -> np.ndarray:
    """``(N, N)`` float bond orders of the model bonds, aromatic bonds kekulised by RDKit (1.5 if that fails)."""
    b = mol.bonds.numpy()
    orders = dist.BOND_ORDER[b]
    if not (b == 4).any():
        return orders
    Chem = _rdkit()
    m = to_rdkit(mol, vocab, bonds="model")
    try:
        m = Chem.RWMol(m)
        Chem.FastFindRings(m)
        Chem.Kekulize(m, clearAromaticFlags=True)
    except Exception:  # noqa: BLE001
        return orders
    out = np.zeros_like(orders)
    for bd in m.GetBonds():
        i, j = bd.GetBeginAtomIdx(), bd.GetEndAtomIdx()
        out[i, j] = out[j, i] = bd.GetBondTypeAsDouble()
    return out


def atom_stable(mol: Molecule, vocab: Vocabulary, variant: StabilityVariant = "edm") -> np.ndarray:
    """``(N,)`` bool: which atoms have an allowed valence under ``variant`` (see the module docstring)."""
    syms = mol.symbols(vocab)
    if variant == "edm":
        val = edm_lookup_bonds(syms, mol.positions).sum(-1)
        return np.array([int(v) in allowed_valences("edm-v1", s) for s, v in zip(syms, val)], dtype=bool)
    if variant == "midi":
        val = np.trunc(_kekule_orders(mol, vocab).sum(-1) + 1e-9).astype(np.int64)
        ch = mol.formal_charges(vocab)
        return np.array([int(v) in allowed_valences("midi-v1", s, c) for s, v, c in zip(syms, val, ch)], dtype=bool)
    raise ValueError(f"stability variant {variant!r} is not one of edm, midi")


def stability(mols: Sequence[Molecule], vocab: Vocabulary, variant: StabilityVariant = "edm") -> tuple[float, float]:
    """``(atom stability, molecule stability)``: stable atoms / all atoms, all-stable molecules / molecules."""
    flags = [atom_stable(m, vocab, variant) for m in mols]
    n_atoms = sum(len(f) for f in flags)
    if not flags or n_atoms == 0:
        return float("nan"), float("nan")
    return float(sum(f.sum() for f in flags) / n_atoms), float(np.mean([bool(f.all()) for f in flags]))


# ------------------------------------------------------------------------------------------------- RDKit analysis

def canonical_smiles(smiles_or_mol: Any) -> str | None:
    """RDKit canonical SMILES without explicit H and stereo (None when it cannot be parsed/sanitised)."""
    Chem = _rdkit()
    m = Chem.MolFromSmiles(smiles_or_mol) if isinstance(smiles_or_mol, str) else smiles_or_mol
    if m is None:
        return None
    try:
        return Chem.MolToSmiles(Chem.RemoveAllHs(m), isomericSmiles=False)
    except Exception:  # noqa: BLE001
        return None


def _largest_fragment(m: Any) -> Any:
    Chem = _rdkit()
    frags = Chem.GetMolFrags(m, asMols=True, sanitizeFrags=False)
    return max(frags, key=lambda f: f.GetNumAtoms())


def correct_valence(mol: Any, max_steps: int = 100) -> Any:
    """GDSS-style valency correction: while RDKit reports an over-valent atom, lower its highest-order bond by one
    (removing a single bond). Returns the sanitised largest fragment, or None if sanitisation still fails."""
    Chem = _rdkit()
    m = Chem.RWMol(mol)
    for _ in range(max_steps):
        problems = [p for p in Chem.DetectChemistryProblems(m) if p.GetType() == "AtomValenceException"]
        if not problems:
            break
        a = m.GetAtomWithIdx(problems[0].GetAtomIdx())
        bonds = sorted(a.GetBonds(), key=lambda b: (-b.GetBondTypeAsDouble(), b.GetIdx()))
        if not bonds:
            break
        b = bonds[0]
        i, j, order = b.GetBeginAtomIdx(), b.GetEndAtomIdx(), int(round(b.GetBondTypeAsDouble()))
        m.RemoveBond(i, j)
        if order >= 2:
            m.AddBond(i, j, (None, Chem.BondType.SINGLE, Chem.BondType.DOUBLE)[order - 1])
    try:
        Chem.SanitizeMol(m)
        frag = _largest_fragment(m)
        Chem.SanitizeMol(frag)
        return frag
    except Exception:  # noqa: BLE001
        return None


@dataclass(frozen=True)
class RDKitResult:
    """What the RDKit metrics need from one molecule."""

    valid: bool            # sanitises (fragments allowed)
    n_fragments: int       # connected components of the bond graph
    smiles: str | None     # canonical SMILES of the largest fragment when valid
    fragment: Any          # sanitised largest fragment (RDKit Mol) when valid
    corrected_smiles: str | None  # canonical SMILES after valency correction (largest fragment)


def analyse(mol: Molecule, vocab: Vocabulary, bonds: BondSource = "model", *, correct: bool = True) -> RDKitResult:
    """Sanitisation, fragments and SMILES of one molecule with bonds from ``bonds``."""
    Chem = _rdkit()
    raw = to_rdkit(mol, vocab, bonds=bonds, charges=bonds != "edm-lookup")
    if raw is None:
        return RDKitResult(False, 0, None, None, None)
    n_frags = len(Chem.GetMolFrags(raw))
    m = Chem.Mol(raw)
    smiles, frag = None, None
    try:
        Chem.SanitizeMol(m)
        frag = _largest_fragment(m)
        Chem.SanitizeMol(frag)
        smiles = canonical_smiles(frag)
    except Exception:  # noqa: BLE001
        frag = None
    corrected = None
    if correct:
        corrected = smiles if smiles is not None and n_frags == 1 else None
        if corrected is None:
            c = correct_valence(raw)
            corrected = canonical_smiles(c) if c is not None else None
    return RDKitResult(smiles is not None, n_frags, smiles, frag, corrected)


# ------------------------------------------------------------------------------------------------- FCD, NSPDK

def fcd(gen_smiles: Sequence[str], ref_smiles: Sequence[str]) -> float:
    """Fréchet ChemNet Distance (fcd_torch, its bundled ChemNet weights, CPU) between two SMILES lists."""
    if len(gen_smiles) < 2 or len(ref_smiles) < 2:
        return float("nan")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from fcd_torch import FCD
    except ImportError:
        from polydiff.errors import MissingExtraError

        raise MissingExtraError("fcd_torch", "molecules") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(FCD(device="cpu", n_jobs=1)(list(ref_smiles), list(gen_smiles)))


# ------------------------------------------------------------------------------------------------- all together

def _has_bonds(mols: Iterable[Molecule]) -> bool:
    return any(bool((m.bonds > 0).any()) for m in mols)


def _is_3d(mols: Iterable[Molecule]) -> bool:
    return any(bool((m.positions != 0).any()) for m in mols)


@functools.lru_cache(maxsize=4)
def canonical_smiles_set(smiles: tuple[str, ...]) -> frozenset[str]:
    """The canonical forms (``canonical_smiles``) of ``smiles``, unparsable ones left out; cached, because novelty
    compares every evaluation against the same ~100k training SMILES (about a minute of RDKit work each time)."""
    return frozenset(c for c in (canonical_smiles(s) for s in smiles) if c is not None)


def evaluate_molecules(generated: Sequence[Molecule], reference: Sequence[Molecule], train_smiles: Iterable[str],
                       vocab: Vocabulary, *, bonds: BondSource | Literal["auto"] = "auto", fcd_nspdk: bool = True,
                       distributions: bool = True, correct: bool = True) -> dict[str, float]:
    """All metrics of the module docstring for ``generated`` against ``reference`` (e.g. the test split).

    Args:
        generated, reference: molecules in ``vocab``.
        train_smiles: training SMILES for novelty (canonicalised here: no H, no stereo).
        bonds: bond source of the RDKit metrics; ``auto`` = ``model`` when the generated molecules carry bonds,
            else ``edm-lookup``.
        fcd_nspdk: compute FCD and NSPDK (tens of seconds for thousands of molecules).
        distributions: compute the TV / W1 distances against ``reference``.
    """
    src: BondSource = ("model" if _has_bonds(generated) else "edm-lookup") if bonds == "auto" else bonds
    out: dict[str, float] = {"n_molecules": float(len(generated))}
    if not generated:
        return out
    if _is_3d(generated) and vocab.hydrogens:
        out["atom_stability/edm"], out["mol_stability/edm"] = stability(generated, vocab, "edm")
    if _has_bonds(generated) and vocab.hydrogens:
        out["atom_stability/midi"], out["mol_stability/midi"] = stability(generated, vocab, "midi")
    res = [analyse(m, vocab, src, correct=correct) for m in generated]
    n = len(res)
    valid = [r for r in res if r.valid]
    out[f"validity/largest_fragment/{src}"] = len(valid) / n
    out[f"validity/connected/{src}"] = sum(r.valid and r.n_fragments == 1 for r in res) / n
    out[f"connected/{src}"] = sum(r.n_fragments == 1 for r in res) / n
    if correct:
        out[f"validity/corrected/{src}"] = sum(r.corrected_smiles is not None for r in res) / n
    unique = {r.smiles for r in valid}
    out[f"uniqueness/{src}"] = len(unique) / len(valid) if valid else float("nan")
    out[f"valid_and_unique/{src}"] = len(unique) / n
    train = canonical_smiles_set(tuple(sorted(set(train_smiles))))
    if train:
        out[f"novelty/{src}"] = len(unique - train) / len(unique) if unique else float("nan")
    ref_res = [analyse(m, vocab, src, correct=False) for m in reference] if (fcd_nspdk and reference) else []
    if fcd_nspdk and reference:
        from .nspdk import mol_to_nx, nspdk_mmd

        ref_valid = [r for r in ref_res if r.valid]
        out[f"fcd/{src}"] = fcd([r.smiles for r in valid], [r.smiles for r in ref_valid])
        out[f"nspdk/{src}"] = nspdk_mmd([mol_to_nx(r.fragment) for r in valid], [mol_to_nx(r.fragment) for r in ref_valid])
    if distributions and reference:
        k = len(vocab.elements)
        gt, rt = [m.atom_types.numpy() for m in generated], [m.atom_types.numpy() for m in reference]
        out["atom_type_tv"] = dist.histogram_l1(dist.type_counts(gt, k), dist.type_counts(rt, k))
        gb = [_bonds_of(m, vocab, src) for m in generated]
        rb = [_bonds_of(m, vocab, src) for m in reference]
        out[f"bond_type_tv/{src}"] = dist.histogram_l1(dist.bond_counts(gb), dist.bond_counts(rb))
        out[f"valency_w1/{src}"] = dist.valency_w1(gt, gb, rt, rb)
        if _is_3d(generated) and _is_3d(reference):
            gp, rp = [m.positions.numpy() for m in generated], [m.positions.numpy() for m in reference]
            out[f"bond_length_w1/{src}"] = dist.bond_length_w1(gb, gp, rb, rp)
            out[f"bond_angle_w1/{src}"] = dist.bond_angle_w1(gt, gb, gp, rt, rb, rp)
    return out


def _bonds_of(mol: Molecule, vocab: Vocabulary, src: BondSource) -> np.ndarray:
    from .chemistry import infer_bonds

    b = infer_bonds(mol, vocab, src)
    return np.zeros((mol.num_atoms, mol.num_atoms), dtype=np.int64) if b is None else b


def read_samples(path: str | Path, vocab: Vocabulary | None = None, strict: bool = False) -> list[Molecule]:
    """Molecules of any SDF file or folder of SDF / MOL2 / SMILES files, for ``polydiff evaluate --samples DIR``.

    Elements outside ``vocab`` raise :class:`polydiff.errors.DataError` naming them; unreadable records are
    skipped with one warning (or refused when ``strict``). Same as ``writers.read_molecules``.
    """
    from .writers import read_molecules

    return read_molecules(Path(path), vocab, strict)


__all__ = ["RDKitResult", "analyse", "atom_stable", "canonical_smiles", "canonical_smiles_set", "correct_valence", "evaluate_molecules", "fcd", "read_samples",
           "stability"]
