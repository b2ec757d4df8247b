"""Molecule data: vocabulary errors, users' SDF / MOL2 / SMILES files, QM9 parsing and splits."""

from __future__ import annotations

import collections
import importlib.util
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")

from rdkit import Chem  # noqa: E402

from polydiff.errors import DataError  # noqa: E402
from polydiff_molecules.data import (  # noqa: E402
    QM9_SPLIT_SIZES,
    Vocabulary,
    atom_count_histogram,
    embed_smiles,
    load_qm9,
    load_user_data,
    qm9_split_hashes,
    qm9_split_indices,
    rdkit_sdf,
)

HAS_QM9 = importlib.util.find_spec("qm9pack") is not None


def test_vocabulary_names_the_missing_element():
    v = Vocabulary(("C", "N", "O"), (-1, 0, 1))
    assert v.element_index("N") == 1 and v.charge_index(1) == 2
    with pytest.raises(DataError, match="'Cl'"):
        v.element_index("Cl")
    assert Vocabulary.from_dict(v.to_dict()) == v
    assert v.BOND_TYPES[4] == "aromatic"


def test_cdk2_sdf_reads_every_record_with_rdkit_counts():
    path = rdkit_sdf("cdk2")
    mols, vocab = load_user_data(path)
    ref = [m for m in Chem.SDMolSupplier(str(path), removeHs=False)]
    assert len(mols) == len(ref) == 47
    assert vocab.elements[0] == "H" and "C" in vocab.elements
    for m, r in zip(mols, ref):
        assert m.num_atoms == r.GetNumAtoms()
        assert [vocab.elements[i] for i in m.atom_types] == [a.GetSymbol() for a in r.GetAtoms()]
        assert int((m.bonds > 0).sum()) == 2 * r.GetNumBonds()
        assert m.positions.dtype == torch.float64 and m.bonds.dtype == torch.int64
        assert torch.equal(m.bonds, m.bonds.T) and int(m.bonds.diagonal().abs().sum()) == 0
        np.testing.assert_allclose(m.positions.numpy(), r.GetConformer().GetPositions())


def test_heavy_atom_vocab_drops_hydrogens():
    mols, vocab = load_user_data(rdkit_sdf("cdk2"), Vocabulary(("C", "N", "O", "F", "S", "Cl", "Br"), (-1, 0, 1)))
    ref = Chem.RemoveAllHs(next(iter(Chem.SDMolSupplier(str(rdkit_sdf("cdk2"))))))
    assert mols[0].num_atoms == ref.GetNumAtoms()


def _sdf_with_bad_record(tmp_path):
    good = Chem.MolToMolBlock(Chem.AddHs(Chem.MolFromSmiles("CCO")))
    bad = good.replace("  0  0  0  0  0  0  0  0  0  0999 V2000", "  0  0  0  0  0  0  0  0  0  0999 V2000", 1)
    bad = "\n".join(bad.splitlines()[:3]) + "\n  3  2  0  0  0  0  0  0  0  0999 V2000\n  garbage\nM  END"
    p = tmp_path / "mixed.sdf"
    p.write_text(good + "$$$$\n" + bad + "\n$$$$\n" + good + "$$$$\n")
    return p


def test_unreadable_record_is_skipped_and_named_or_refused_when_strict(tmp_path):
    p = _sdf_with_bad_record(tmp_path)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        mols, _ = load_user_data(p)
    assert len(mols) == 2
    msgs = [str(x.message) for x in w]
    assert any("1 molecule record" in m and f"{p} record 2" in m for m in msgs), msgs
    with pytest.raises(DataError, match=r"mixed.sdf: record 2"):
        load_user_data(p, strict=True)


def test_element_outside_vocabulary_is_one_error_naming_it(tmp_path):
    p = tmp_path / "x.smi"
    p.write_text("CCO\nCCCl\n")
    with pytest.raises(DataError, match=r"x.smi: record 2: element 'Cl'"):
        load_user_data(p, Vocabulary(("H", "C", "N", "O")))


def test_smiles_get_seeded_3d_conformers(tmp_path):
    p = tmp_path / "in.smi"
    p.write_text("SMILES\nc1ccccc1O phenol\nnot_a_smiles\nCC(=O)N\n")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        a, vocab = load_user_data(p, seed=3)
        b, _ = load_user_data(p, seed=3)
    assert len(a) == 2 and any("record 2" in str(x.message) for x in w)
    assert torch.equal(a[0].positions, b[0].positions)
    assert a[0].num_atoms == 13 and float(a[0].positions[:, 2].abs().max()) > 0.1   # explicit H, 3D
    # MMFF-relaxed C-C aromatic bonds are ~1.39 A
    m = embed_smiles("c1ccccc1", seed=0)
    d = [m.GetConformer().GetAtomPosition(b.GetBeginAtomIdx()).Distance(m.GetConformer().GetAtomPosition(b.GetEndAtomIdx()))
         for b in m.GetBonds() if b.GetBeginAtom().GetSymbol() == b.GetEndAtom().GetSymbol() == "C"]
    assert np.allclose(d, 1.39, atol=0.02)


MOL2_WATER = """@<TRIPOS>MOLECULE
water
 3 2 0 0 0
SMALL
NO_CHARGES

@<TRIPOS>ATOM
      1 O1          0.0000    0.0000    0.1173 O.3     1  HOH1        0.0000
      2 H1          0.0000    0.7572   -0.4692 H       1  HOH1        0.0000
      3 H2          0.0000   -0.7572   -0.4692 H       1  HOH1        0.0000
@<TRIPOS>BOND
     1     1     2    1
     2     1     3    1
"""


def test_mol2_folder(tmp_path):
    (tmp_path / "w.mol2").write_text(MOL2_WATER + MOL2_WATER.replace("water", "water2"))
    (tmp_path / "e.smi").write_text("CCO\n")
    mols, vocab = load_user_data(tmp_path)
    assert [m.num_atoms for m in mols] == [9, 3, 3]          # files sorted: e.smi, w.mol2
    assert mols[1].smiles == "O" and vocab.elements == ("H", "C", "O")
    with pytest.raises(DataError, match="no such file"):
        load_user_data(tmp_path / "missing.sdf")


def test_atom_count_histogram_matches_counter():
    mols, _ = load_user_data(rdkit_sdf("cdk2"))
    h = atom_count_histogram(mols)
    c = collections.Counter(m.num_atoms for m in mols)
    assert int(h.sum()) == len(mols) and all(int(h[n]) == k for n, k in c.items())


def test_split_rule_sizes_disjoint_and_hashed():
    s = qm9_split_indices()
    assert {k: len(v) for k, v in s.items()} == QM9_SPLIT_SIZES
    allidx = np.concatenate(list(s.values()))
    assert len(np.unique(allidx)) == 130_831 and allidx.min() == 0
    h = qm9_split_hashes()
    assert h == qm9_split_hashes() and len(set(h.values())) == 3
    assert h["test"].startswith("6b2a97c86b37a248")   # the split must not move silently


@pytest.mark.skipif(not HAS_QM9, reason="qm9pack (QM9 CSVs) not installed")
def test_qm9_rows_map_smiles_bonds_onto_xyz_order():
    from polydiff_molecules.chemistry import to_rdkit
    from polydiff_molecules.data import _parse_qm9, _unpack, qm9_data_dir, qm9_vocabulary, read_qm9_rows

    recs = read_qm9_rows(nrows=512, files=[qm9_data_dir() / "qm9_part1.csv"])
    assert len(recs) == 512
    packed, bad = _parse_qm9(recs)
    assert len(bad) <= 0.02 * len(recs) and len(packed["smiles"]) + len(bad) == 512
    mols = _unpack(packed, np.arange(len(packed["smiles"])), hydrogens=True)
    vocab = qm9_vocabulary(True)
    by_row = {r["row"]: r for r in recs}
    for m, row in zip(mols, packed["rows"].tolist()):
        rec = by_row[row]
        assert m.symbols(vocab) == rec["elements"]                     # XYZ order kept
        np.testing.assert_array_equal(m.positions.numpy(), rec["positions"])
        rd = to_rdkit(m, vocab, bonds="model", sanitize=True)
        assert rd is not None
        expect = Chem.MolToSmiles(Chem.MolFromSmiles(rec["smiles"]), isomericSmiles=False)
        assert Chem.MolToSmiles(Chem.RemoveAllHs(rd), isomericSmiles=False) == expect == m.smiles
    heavy = _unpack(packed, np.arange(len(mols)), hydrogens=False, kekulize=False)
    for h, m in zip(heavy, mols):
        keep = m.atom_types != 0
        assert torch.equal(h.bonds, m.bonds[keep][:, keep]) and torch.equal(h.atom_types, m.atom_types[keep] - 1)
    # the default heavy-atom variant is kekulised, and every molecule sanitises back to its SMILES
    heavy = _unpack(packed, np.arange(len(mols)), hydrogens=False)
    assert sum(int((h.bonds == 4).sum()) for h in heavy) == 0
    assert sum(int((m.bonds == 4).sum()) for m in mols) > 0
    for h in heavy:
        rd = to_rdkit(h, qm9_vocabulary(False), sanitize=True)
        assert rd is not None and Chem.MolToSmiles(rd, isomericSmiles=False) == h.smiles


@pytest.mark.skipif(not HAS_QM9, reason="qm9pack (QM9 CSVs) not installed")
def test_load_qm9_subset_is_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYDIFF_CACHE", str(tmp_path))           # no cache file: a subset is parsed directly
    a, va = load_qm9(hydrogens=False, split="test", max_molecules=20)
    b, _ = load_qm9(hydrogens=False, split="test", max_molecules=20)
    assert len(a) == 20 and va.elements == ("C", "N", "O", "F")
    assert [m.smiles for m in a] == [m.smiles for m in b]
    assert all(m.num_atoms <= 9 for m in a) and "alpha" in a[0].properties
    with pytest.raises(DataError, match="split 'dev'"):
        load_qm9(hydrogens=False, split="dev")


def test_heavy_atom_files_round_trip_through_rdkit(tmp_path):
    """Without H, aromatic [nH] cannot be rebuilt from aromatic bonds: heavy-atom molecules are read as Kekule."""
    from polydiff_molecules.chemistry import to_rdkit

    p = tmp_path / "a.smi"
    p.write_text("c1cc[nH]c1\nc1ccc2[nH]ccc2c1\nCC[NH3+]\n")
    vocab = Vocabulary(("C", "N", "O"), (-1, 0, 1))
    mols, _ = load_user_data(p, vocab)
    for m, smi in zip(mols, ["c1cc[nH]c1", "c1ccc2[nH]ccc2c1", "CC[NH3+]"]):
        assert int((m.bonds == 4).sum()) == 0
        rd = to_rdkit(m, vocab, sanitize=True)
        assert rd is not None and Chem.MolToSmiles(rd) == Chem.MolToSmiles(Chem.MolFromSmiles(smi))
    aromatic, _ = load_user_data(p, vocab, kekulize=False)
    assert to_rdkit(aromatic[0], vocab, sanitize=True) is None         # why the default kekulises
