"""Chemistry: Molecule <-> RDKit round trips and bond inference checked against RDKit's own molecules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")

from rdkit import Chem  # noqa: E402

from polydiff.errors import DataError  # noqa: E402
from polydiff_molecules.chemistry import (  # noqa: E402
    allowed_valences,
    edm_bond_order,
    edm_lookup_bonds,
    from_rdkit,
    infer_bonds,
    to_rdkit,
)
from polydiff_molecules.data import Vocabulary, load_user_data, rdkit_sdf  # noqa: E402


@pytest.fixture(scope="module")
def egfr():
    path = rdkit_sdf("egfr")
    return [m for m in Chem.SDMolSupplier(str(path), removeHs=False) if m is not None][:120]


VOCAB = Vocabulary(("H", "C", "N", "O", "F", "S", "Cl", "Br", "I", "P"), (-1, 0, 1))


def _canon(m):
    return Chem.MolToSmiles(Chem.RemoveAllHs(m), isomericSmiles=False)


def test_round_trip_molecule_rdkit(egfr):
    for r in egfr:
        m = from_rdkit(r, VOCAB)
        back = to_rdkit(m, VOCAB, bonds="model", sanitize=True)
        assert back is not None
        assert _canon(back) == _canon(r) == m.smiles
        np.testing.assert_array_equal(back.GetConformer().GetPositions(), r.GetConformer().GetPositions())
        assert [a.GetFormalCharge() for a in back.GetAtoms()] == [a.GetFormalCharge() for a in r.GetAtoms()]
        again = from_rdkit(back, VOCAB)
        assert torch.equal(again.bonds, m.bonds) and torch.equal(again.atom_types, m.atom_types)


def test_kekulize_option_has_no_aromatic_bonds_and_same_molecule(egfr):
    m = from_rdkit(egfr[0], VOCAB, kekulize=True)
    assert int((m.bonds == 4).sum()) == 0 and int((m.bonds == 2).sum()) > 0
    assert _canon(to_rdkit(m, VOCAB, sanitize=True)) == _canon(egfr[0])
    with pytest.raises(DataError, match="'Se'"):
        from_rdkit(Chem.AddHs(Chem.MolFromSmiles("C[Se]C")), VOCAB)


def _pairs(bonds):
    b = np.asarray(bonds)
    return set(zip(*np.nonzero(np.triu(b, 1))))


def test_rdkit_determine_bonds_recovers_rdkit_3d_molecules(egfr):
    """DetermineBonds on the 3D coordinates gives each molecule's own bonds (graph and SMILES) for most."""
    same_graph = same_smiles = 0
    for r in egfr:
        m = from_rdkit(r, VOCAB)
        rd = to_rdkit(m, VOCAB, bonds="rdkit")
        if rd is None:
            continue
        same_graph += _pairs(infer_bonds(m, VOCAB, "rdkit")) == _pairs(m.bonds)
        try:
            Chem.SanitizeMol(rd)
            same_smiles += _canon(rd) == _canon(r)
        except Exception:  # noqa: BLE001
            pass
    assert same_graph >= 0.95 * len(egfr), same_graph
    assert same_smiles >= 0.80 * len(egfr), same_smiles


def test_edm_lookup_connectivity_on_rdkit_3d_molecules(egfr):
    """EDM's distance table finds the bonded pairs of real 3D molecules (its orders are QM9-tuned)."""
    agree = total = 0
    for r in egfr:
        m = from_rdkit(r, VOCAB)
        got, want = _pairs(edm_lookup_bonds(m.symbols(VOCAB), m.positions)), _pairs(m.bonds)
        agree += len(got & want)
        total += len(got | want)
    assert agree / total >= 0.97, agree / total


def test_edm_bond_order_thresholds():
    # C-C: single 154, double 134, triple 120 pm with margins 10 / 5 / 3
    assert edm_bond_order("C", "C", 1.53) == 1
    assert edm_bond_order("C", "C", 1.35) == 2
    assert edm_bond_order("C", "C", 1.21) == 3
    assert edm_bond_order("C", "C", 1.64) == 0 and edm_bond_order("C", "C", 1.6399) == 1
    assert edm_bond_order("C", "H", 1.09) == 1 and edm_bond_order("H", "H", 0.9) == 0
    assert edm_bond_order("C", "F", 1.30) == 1                  # no double C=F in the table
    assert edm_bond_order("Xe", "C", 1.0) == 0
    b = edm_lookup_bonds(["C", "O"], np.array([[0.0, 0, 0], [1.22, 0, 0]]))
    assert b.tolist() == [[0, 2], [2, 0]]


def test_valence_tables():
    assert allowed_valences("edm-v1", "C") == (4,) and allowed_valences("edm-v1", "P") == (3, 5)
    assert allowed_valences("midi-v1", "N", 1) == (2, 3, 4) and allowed_valences("midi-v1", "O", -1) == (1,)
    assert allowed_valences("midi-v1", "F", 1) == ()


def test_cdk2_through_loader_and_back():
    mols, vocab = load_user_data(rdkit_sdf("cdk2"))
    ref = [m for m in Chem.SDMolSupplier(str(rdkit_sdf("cdk2")), removeHs=False)]
    for m, r in zip(mols, ref):
        assert _canon(to_rdkit(m, vocab, sanitize=True)) == _canon(r)
