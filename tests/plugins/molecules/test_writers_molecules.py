"""Writers: SDF round trip through RDKit, SMILES list, PNG grid and 3D view."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")

from rdkit import Chem  # noqa: E402

from polydiff_molecules.data import Molecule, load_user_data, rdkit_sdf  # noqa: E402
from polydiff_molecules.writers import MoleculeSamples, write_all, write_sdf  # noqa: E402


@pytest.fixture(scope="module")
def samples():
    mols, vocab = load_user_data(rdkit_sdf("cdk2"))
    bad = Molecule(mols[0].atom_types[:6], mols[0].charges[:6], mols[0].positions[:6],
                   torch.tensor([[0, 3, 3, 3, 3, 3]] + [[3, 0, 0, 0, 0, 0]] * 5))   # pentavalent centre: invalid
    return MoleculeSamples(tuple(mols[:5]) + (bad,), vocab)


def test_samples_are_frozen(samples):
    with pytest.raises(dataclasses.FrozenInstanceError):
        samples.nfe = 3


def test_sdf_smiles_and_pngs(samples, tmp_path):
    sdf, smi, grid, view = write_all(samples, tmp_path)
    back = [m for m in Chem.SDMolSupplier(str(sdf), removeHs=False, sanitize=False)]
    assert len(back) == 6 and back[0].GetProp("_Name") == "sample_0"
    for m, r in zip(samples.molecules[:5], back):
        np.testing.assert_allclose(r.GetConformer().GetPositions(), m.positions.numpy(), atol=1e-4)   # 4 decimals in SDF
        Chem.SanitizeMol(r)
        assert Chem.MolToSmiles(Chem.RemoveAllHs(r), isomericSmiles=False) == m.smiles
    assert back[5].GetNumBonds() == 5
    lines = smi.read_text().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == [m.smiles for m in samples.molecules[:5]] + ["INVALID"]
    from PIL import Image

    with Image.open(grid) as im:
        assert im.size == (6 * 200, 200)
    with Image.open(view) as im:
        assert im.size[0] > 300 and im.size[1] > 300
        assert len(set(np.asarray(im.convert("L")).ravel().tolist())) > 10     # something was drawn


def test_edm_lookup_writer_infers_bonds(samples, tmp_path):
    no_bonds = tuple(Molecule(m.atom_types, m.charges, m.positions, torch.zeros_like(m.bonds)) for m in samples.molecules[:2])
    p = write_sdf(MoleculeSamples(no_bonds, samples.vocab, bonds="edm-lookup"), tmp_path / "x.sdf")
    back = [m for m in Chem.SDMolSupplier(str(p), removeHs=False, sanitize=False)]
    ref = [m for m in Chem.SDMolSupplier(str(rdkit_sdf("cdk2")), removeHs=False)][:2]
    for r, b in zip(ref, back):
        got = {tuple(sorted((x.GetBeginAtomIdx(), x.GetEndAtomIdx()))) for x in b.GetBonds()}
        want = {tuple(sorted((x.GetBeginAtomIdx(), x.GetEndAtomIdx()))) for x in r.GetBonds()}
        assert got == want


def test_recipe_helpers_write_and_read_back_in_the_run_vocabulary(samples, tmp_path):
    from polydiff_molecules.writers import read_molecules, write_molecules

    paths = write_molecules(list(samples.molecules[:3]), tmp_path, samples.vocab)
    assert [p.name for p in paths] == ["samples.sdf", "samples.smi", "samples_grid.png", "samples_3d.png"]
    back = read_molecules(tmp_path, samples.vocab)
    assert len(back) == 3
    for a, b in zip(samples.molecules[:3], back):
        assert torch.equal(a.atom_types, b.atom_types) and torch.equal(a.bonds, b.bonds) and a.smiles == b.smiles


def test_reading_samples_back_keeps_invalid_molecules(samples, tmp_path):
    """`polydiff evaluate --samples` must score what was written: a sanitising reader would drop the
    pentavalent molecule and report validity 5/5 instead of 5/6."""
    from polydiff_molecules.metrics import evaluate_molecules
    from polydiff_molecules.writers import read_molecules

    write_all(samples, tmp_path)
    back = read_molecules(tmp_path, samples.vocab)
    assert len(back) == 6
    assert torch.equal(back[5].bonds, samples.molecules[5].bonds)
    m = evaluate_molecules(back, list(samples.molecules[:5]), set(), samples.vocab, bonds="model", fcd_nspdk=False,
                           distributions=False, correct=False)
    assert m["validity/largest_fragment/model"] == pytest.approx(5 / 6)
