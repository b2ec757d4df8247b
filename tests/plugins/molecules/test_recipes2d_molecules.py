"""The 2D recipes end to end on a small QM9 subset: registration, a few training steps, sampling that does not depend
on the batch it was drawn in, symmetric bonds, SDF/SMILES/PNG writing in the chosen decoding, and evaluation with
both named variants."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from polydiff.config import resolve_config
from polydiff.errors import UserInputError
from polydiff.recipes import RunDir
from polydiff.training import load_model, train
from polydiff_molecules import plugin
from polydiff_molecules.recipes2d import DigressRecipe, GDSSRecipe

SMALL = ["data.max_molecules=64", "train.steps=4", "train.batch_size=8", "train.checkpoint_every=4", "train.log_every=2",
         "model.hidden=16", "model.layers=2", "sample.batch_size=3", "eval.num_samples=6", "eval.steps=4",
         "eval.reference_molecules=24"]


def test_plugin_registers_the_2d_recipes(polydiff_plugins):
    regs = polydiff_plugins(plugin, "molecules")
    assert regs.status == "loaded", regs.error
    assert {"molecules/digress", "molecules/gdss"} <= set(regs.registered["recipes"])


@pytest.mark.parametrize("cls", [DigressRecipe, GDSSRecipe])
def test_train_sample_write_evaluate(cls, tmp_path: Path):
    recipe = cls()
    cfg = resolve_config(recipe, preset="tiny", overrides=SMALL)
    run = RunDir(tmp_path / "run").ensure()
    recipe.setup(cfg, run)
    train(recipe, cfg, run)
    model = load_model(recipe, cfg, run).double()
    stats = recipe.stats(cfg, run)
    mols = recipe.sample(model, cfg, run, num=5, sampler="mixed-ancestral", steps=6, seed=3, options={})
    assert len(mols) == 5
    hist = stats["atom_count_histogram"]
    for m in mols:
        n = m.num_atoms
        assert hist[n] > 0  # atom counts from the training p(N)
        assert m.bonds.shape == (n, n) and torch.equal(m.bonds, m.bonds.T) and int(m.bonds.diagonal().abs().sum()) == 0
        assert int(m.atom_types.max()) < len(stats["elements"]) and int(m.charges.max()) < len(stats["charges"])
    cfg5 = resolve_config(recipe, preset="tiny", overrides=[*SMALL, "sample.batch_size=5"])
    again = recipe.sample(model, cfg5, run, num=5, sampler="mixed-ancestral", steps=6, seed=3, options={})
    for a, b in zip(mols, again, strict=True):
        assert torch.equal(a.atom_types, b.atom_types) and torch.equal(a.bonds, b.bonds)
    for variant in ("raw", "valency-corrected"):
        out = tmp_path / f"samples_{variant}"
        decoded = recipe.sample(model, cfg, run, num=5, sampler="mixed-ancestral", steps=6, seed=3, options={"decode": variant})
        files = recipe.write_samples(decoded, out, cfg, run)
        assert {".sdf", ".smi", ".png"} <= {p.suffix for p in files}
        assert (out / "samples.sdf").read_text().count("$$$$") == 5
    with pytest.raises(UserInputError, match="sample.decode"):
        recipe.sample(model, cfg, run, num=2, sampler="mixed-ancestral", steps=3, seed=0, options={"decode": "bogus"})
    res = recipe.evaluate(model, cfg, run, None)
    for variant in ("raw", "valency-corrected"):
        assert res[f"n_molecules@{variant}"] == 6
        assert 0 <= res[f"validity/largest_fragment/model@{variant}"] <= 1
        assert math.isfinite(res[f"atom_type_tv@{variant}"])
    assert res["validity/largest_fragment/model@valency-corrected"] >= res["validity/largest_fragment/model@raw"]
    # scoring a folder of SDF files (any tool's) with the same metrics
    res_dir = recipe.evaluate(model, cfg, run, tmp_path / "samples_raw")
    assert res_dir["n_molecules@raw"] == 5  # invalid raw molecules are read back and scored as invalid, not dropped
