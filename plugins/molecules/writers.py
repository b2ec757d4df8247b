"""Writers: SDF (3D coordinates, bonds, formal charges), a SMILES list, a PNG grid of 2D drawings (rdkit ``Draw``,
needs Pillow) and a PNG of 3D views (matplotlib Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .chemistry import BondSource, to_rdkit
from .data import Molecule, Vocabulary, _rdkit
from .metrics import canonical_smiles

#: CPK-like colours for the 3D view
_COLOURS = {"H": "#d9d9d9", "C": "#404040", "N": "#3050f8", "O": "#ff0d0d", "F": "#90e050", "S": "#e6c619", "Cl": "#1ff01f",
            "Br": "#a62929", "P": "#ff8000", "I": "#940094"}


@dataclass(frozen=True)
class MoleculeSamples:
    """Generated molecules, returned whole.

    Attributes:
        molecules: the samples (each ``atom_types (N,)``, ``positions (N, 3)`` Angstrom, ``bonds (N, N)``).
        vocab: the run's vocabulary.
        bonds: where bonds come from when writing: ``model`` (the molecules' own), ``edm-lookup`` or ``rdkit``.
        nfe: network evaluations used.
    """

    molecules: tuple[Molecule, ...]
    vocab: Vocabulary
    bonds: BondSource = "model"
    nfe: int = 0

    def rdkit_mols(self, *, sanitize: bool = False) -> list[Any]:
        """One RDKit Mol (or None) per molecule; ``sanitize``: None where ``SanitizeMol`` fails."""
        return [to_rdkit(m, self.vocab, bonds=self.bonds, sanitize=sanitize, charges=self.bonds != "edm-lookup") for m in self.molecules]


def write_sdf(s: MoleculeSamples, path: Path) -> Path:
    """All molecules as one SDF (3D coordinates, bonds, charges; unsanitised, so invalid ones are kept too).
    Records are named ``sample_<i>``; a molecule RDKit cannot build is written without bonds."""
    Chem = _rdkit()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with Chem.SDWriter(str(path)) as w:
        w.SetKekulize(False)
        for i, (m, rd) in enumerate(zip(s.molecules, s.rdkit_mols())):
            if rd is None:
                rd = to_rdkit(Molecule(m.atom_types, m.charges, m.positions, m.bonds * 0), s.vocab)
            rd = Chem.RWMol(rd)
            try:  # Kekule bonds where possible (aromatic bond type 4 in an SDF is meant for queries)
                Chem.FastFindRings(rd)
                Chem.Kekulize(rd, clearAromaticFlags=True)
            except Exception:  # noqa: BLE001 - keep aromatic bonds the model made that do not kekulise
                pass
            rd.SetProp("_Name", f"sample_{i}")
            w.write(rd)
    return path


def write_smiles(s: MoleculeSamples, path: Path) -> Path:
    """One line per molecule: canonical SMILES of the sanitised largest fragment, or ``INVALID``, then the index."""
    Chem = _rdkit()
    lines = []
    for i, rd in enumerate(s.rdkit_mols(sanitize=True)):
        smi = None
        if rd is not None:
            frags = Chem.GetMolFrags(rd, asMols=True)
            smi = canonical_smiles(max(frags, key=lambda f: f.GetNumAtoms()))
        lines.append(f"{smi or 'INVALID'}\tsample_{i}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_png_grid(s: MoleculeSamples, path: Path, *, max_molecules: int = 24, per_row: int = 6, size: int = 200) -> Path:
    """2D drawings of the first ``max_molecules`` molecules (H removed, invalid ones drawn unsanitised)."""
    Chem = _rdkit()
    from rdkit.Chem import Draw

    mols, legends = [], []
    for i, (m, ok) in enumerate(zip(s.rdkit_mols(), s.rdkit_mols(sanitize=True))):
        if i >= max_molecules:
            break
        d = Chem.Mol(ok if ok is not None else m)
        if ok is not None:
            d = Chem.RemoveHs(d)
        d.RemoveAllConformers()
        if ok is None:
            d.UpdatePropertyCache(strict=False)
        try:
            from rdkit.Chem import rdDepictor

            rdDepictor.Compute2DCoords(d)
        except Exception:  # noqa: BLE001
            pass
        if ok is None and not _drawable(d):  # degenerate depictions of invalid graphs: draw the atoms only
            bare = Chem.RWMol(d)
            for b in list(bare.GetBonds()):
                bare.RemoveBond(b.GetBeginAtomIdx(), b.GetEndAtomIdx())
            d = bare.GetMol()
            d.UpdatePropertyCache(strict=False)
            rdDepictor.Compute2DCoords(d)
        mols.append(d)
        legends.append(f"sample_{i}" + ("" if ok is not None else " (invalid)"))
    img = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(size, size), legends=legends, returnPNG=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(str(path))
    return path


def _drawable(m: Any) -> bool:
    from rdkit.Chem import Draw

    try:
        Draw.MolToImage(m, size=(60, 60))
    except Exception:  # noqa: BLE001 - RDKit's drawer raises RuntimeError on zero-length bond vectors
        return False
    return True


def write_3d_png(s: MoleculeSamples, path: Path, *, max_molecules: int = 6, per_row: int = 3) -> Path:
    """3D ball-and-stick views (matplotlib) of the first ``max_molecules`` molecules, bonds as used for writing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mols = list(s.molecules[:max_molecules])
    rds = MoleculeSamples(tuple(mols), s.vocab, s.bonds).rdkit_mols() if s.bonds != "model" else [None] * len(mols)
    rows = max(1, -(-len(mols) // per_row))
    fig = plt.figure(figsize=(4 * per_row, 4 * rows))
    for k, m in enumerate(mols):
        ax = fig.add_subplot(rows, per_row, k + 1, projection="3d")
        x = m.positions.numpy() - m.positions.numpy().mean(0)
        syms = m.symbols(s.vocab)
        b = m.bonds.numpy() if s.bonds == "model" else _bond_matrix(rds[k], len(syms))
        for i, j in zip(*np.nonzero(np.triu(b, 1))):
            ax.plot(*x[[i, j]].T, color="#808080", linewidth=1.0 + 0.8 * (min(int(b[i, j]), 4) - 1))
        ax.scatter(x[:, 0], x[:, 1], x[:, 2], c=[_COLOURS.get(e, "#ff69b4") for e in syms],
                   s=[40 if e == "H" else 120 for e in syms], edgecolors="black", depthshade=False)
        r = max(float(np.abs(x).max()), 1.0)
        ax.set_xlim(-r, r)
        ax.set_ylim(-r, r)
        ax.set_zlim(-r, r)
        ax.set_title(f"sample_{k} ({len(syms)} atoms)", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _bond_matrix(rd: Any, n: int) -> np.ndarray:
    from .chemistry import bond_index

    b = np.zeros((n, n), dtype=np.int64)
    if rd is None:
        return b
    for bd in rd.GetBonds():
        i, j = bd.GetBeginAtomIdx(), bd.GetEndAtomIdx()
        b[i, j] = b[j, i] = bond_index(bd)
    return b


def write_all(s: MoleculeSamples, out_dir: Path, stem: str = "samples", *, views_3d: bool = True) -> list[Path]:
    """SDF, SMILES, PNG grid and (``views_3d``) 3D-view PNG into ``out_dir``."""
    out_dir = Path(out_dir)
    files = [write_sdf(s, out_dir / f"{stem}.sdf"), write_smiles(s, out_dir / f"{stem}.smi"),
             write_png_grid(s, out_dir / f"{stem}_grid.png")]
    return files + [write_3d_png(s, out_dir / f"{stem}_3d.png")] if views_3d else files


def write_molecules(samples: Sequence[Molecule] | MoleculeSamples, out_dir: Path, vocab: Vocabulary | None = None, *,
                    bonds: BondSource = "model", nfe: int = 0, views_3d: bool = True) -> list[Path]:
    """What the recipes call: :func:`write_all` for a list of molecules (or a :class:`MoleculeSamples`); the 2D
    recipes pass ``views_3d=False`` (their molecules have no coordinates)."""
    if not isinstance(samples, MoleculeSamples):
        if vocab is None:
            raise ValueError("write_molecules needs the run's vocabulary for a list of molecules")
        samples = MoleculeSamples(tuple(samples), vocab, bonds, nfe)
    return write_all(samples, Path(out_dir), views_3d=views_3d)


def read_molecules(path: Path, vocab: Vocabulary | None = None, strict: bool = False) -> list[Molecule]:
    """Molecules of an SDF file or a folder of SDF / MOL2 / SMILES files (``polydiff evaluate --samples DIR``).

    Records are read without RDKit's sanitisation, so invalid molecules are kept and scored as invalid (a
    sanitising reader would drop them and inflate validity). Pass the run's ``vocab`` so atom-type indices
    match it (an element outside it is one DataError naming it);
    without it the vocabulary is built from the files and the indices refer to that one. In a folder that holds
    SDF or MOL2 files only those are read (a run's samples folder also holds the SMILES list of the same molecules).
    """
    from .data import MOL2_SUFFIXES, SDF_SUFFIXES, load_user_data

    path = Path(path)
    three_d = SDF_SUFFIXES + MOL2_SUFFIXES
    has_3d = path.is_dir() and any(p.suffix.lower() in three_d for p in path.rglob("*") if p.is_file())
    return load_user_data(path, vocab, strict, suffixes=three_d if has_3d else None, sanitize=False)[0]


__all__ = ["MoleculeSamples", "read_molecules", "write_3d_png", "write_all", "write_molecules", "write_png_grid", "write_sdf",
           "write_smiles"]
