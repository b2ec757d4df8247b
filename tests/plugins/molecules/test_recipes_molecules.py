"""The 3D molecule recipes end to end on a small QM9 subset: registration, a few training steps, sampling that does
not depend on the batch it was drawn in, SDF/PNG writing and reading back, property conditioning with
classifier-free guidance, and the user errors they raise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polydiff.config import resolve_config
from polydiff.errors import DataError, UserInputError
from polydiff.recipes import RunDir
from polydiff.training import load_model, train
from polydiff_molecules import plugin
from polydiff_molecules.recipes import EDMRecipe, EQGATRecipe

SMALL = ["data.max_molecules=64", "train.steps=4", "train.batch_size=8", "train.checkpoint_every=4", "train.log_every=2",
         "model.hidden=16", "model.layers=2", "sample.batch_size=3"]


def test_plugin_registers_the_recipes(polydiff_plugins):
    regs = polydiff_plugins(plugin, "molecules")
    assert regs.status == "loaded", regs.error
    assert {"molecules/edm", "molecules/eqgat"} <= set(regs.registered["recipes"])


def _trained(recipe, tmp_path: Path, extra: list[str] = ()):
    cfg = resolve_config(recipe, preset="tiny", overrides=[*SMALL, *extra])
    run = RunDir(tmp_path / "run").ensure()
    recipe.setup(cfg, run)
    train(recipe, cfg, run)
    return cfg, run, load_model(recipe, cfg, run).double()


@pytest.mark.parametrize("cls", [EDMRecipe, EQGATRecipe])
def test_train_sample_write_read(cls, tmp_path):
    recipe = cls()
    cfg, run, model = _trained(recipe, tmp_path)
    mols = recipe.sample(model, cfg, run, num=5, sampler="mixed-ancestral", steps=6, seed=3, options={})
    assert len(mols) == 5
    vocab = recipe.vocabulary(recipe.stats(cfg, run))
    for m in mols:
        n = m.num_atoms
        assert m.positions.shape == (n, 3) and m.bonds.shape == (n, n) and torch.equal(m.bonds, m.bonds.T)
        assert int(m.atom_types.max()) < len(vocab.elements) and int(m.charges.max()) < len(vocab.charges)
        assert float(m.positions.mean(0).abs().max()) < 1e-9  # centred
    # sample i depends on its own generator only: chunks of 3 or 5 give the same molecules
    cfg5 = resolve_config(recipe, preset="tiny", overrides=[*SMALL, "sample.batch_size=5"])
    again = recipe.sample(model, cfg5, run, num=5, sampler="mixed-ancestral", steps=6, seed=3, options={})
    for a, b in zip(mols, again, strict=True):
        assert torch.equal(a.atom_types, b.atom_types)
        torch.testing.assert_close(a.positions, b.positions, rtol=0, atol=1e-10)
    data, _ = recipe._load(cfg, "train")
    nll = recipe.nll(model, data[:4], recipe.stats(cfg, run), steps=5)
    assert all(torch.isfinite(torch.tensor(v)) for v in nll.values()) and "nll/T5/nats_per_molecule" in nll
    out = tmp_path / "samples"
    files = recipe.write_samples(mols, out, cfg, run)
    suffixes = {p.suffix for p in files}
    assert {".sdf", ".png"} <= suffixes
    sdf = next(p for p in files if p.suffix == ".sdf")
    assert sdf.read_text().count("$$$$") == 5  # every molecule written, valid or not
    try:  # the reader keeps what RDKit can sanitise (an untrained model's molecules rarely are)
        back = recipe.read_samples(out)
    except DataError as e:
        assert str(out) in str(e)
    else:
        assert len(back) <= 5


def test_property_conditioned_sampling_with_guidance(tmp_path):
    recipe = EDMRecipe()
    cfg, run, model = _trained(recipe, tmp_path, ["model.cond_property=alpha"])
    stats = recipe.stats(cfg, run)
    assert stats["property"]["name"] == "alpha" and stats["property"]["std"] > 0
    mols = recipe.sample(model, cfg, run, num=3, sampler="mixed-ancestral", steps=4, seed=0,
                         options={"property": 70.0, "guidance_scale": 2.0})
    assert len(mols) == 3
    plain = recipe.sample(model, cfg, run, num=3, sampler="mixed-ancestral", steps=4, seed=0,
                          options={"property": 70.0, "guidance_scale": 1.0})
    other = recipe.sample(model, cfg, run, num=3, sampler="mixed-ancestral", steps=4, seed=0,
                          options={"property": 90.0, "guidance_scale": 1.0})
    assert [m.num_atoms for m in plain] == [m.num_atoms for m in mols]  # p(N) draws come first from each generator
    assert any(not torch.allclose(a.positions, b.positions) for a, b in zip(plain, mols, strict=True))  # guidance acts
    assert any(not torch.allclose(a.positions, b.positions) for a, b in zip(plain, other, strict=True))  # the target acts
    with pytest.raises(UserInputError, match="--property"):
        recipe.sample(model, cfg, run, num=1, sampler="mixed-ancestral", steps=2, seed=0, options={})


def test_user_errors(tmp_path):
    recipe = EDMRecipe()
    cfg, run, model = _trained(recipe, tmp_path)
    with pytest.raises(UserInputError, match="unconditional"):
        recipe.sample(model, cfg, run, num=1, sampler="mixed-ancestral", steps=2, seed=0, options={"property": 1.0})
    bad = resolve_config(recipe, preset="tiny", overrides=[*SMALL, "model.cond_property=nope"])
    with pytest.raises(UserInputError, match="nope"):
        recipe.setup(bad, RunDir(tmp_path / "bad").ensure())


def test_e3nn_backbone_trains_and_samples(tmp_path):
    recipe = EDMRecipe()
    cfg, run, model = _trained(recipe, tmp_path, ["model.backbone=\"e3nn\"", "model.vectors=4"])
    assert type(model.net).__name__ == "E3NN"
    mols = recipe.sample(model, cfg, run, num=2, sampler="mixed-ancestral", steps=4, seed=0, options={})
    assert len(mols) == 2 and all(bool(torch.isfinite(m.positions).all()) for m in mols)


def test_property_protocol(tmp_path):
    """EDM's table protocol runs end to end; a predictor fitted to the training molecules beats the shuffled baseline on them."""
    from polydiff_molecules.property_eval import property_mae, train_property_predictor

    recipe = EDMRecipe()
    cfg, run, model = _trained(recipe, tmp_path, ["model.cond_property=alpha"])
    mols, vocab = recipe._load(cfg, "train")
    predictor = train_property_predictor(mols, "alpha", atom_classes=len(vocab.elements), charge_classes=len(vocab.charges),
                                         steps=150, batch_size=32, hidden=32, layers=2)
    targets = torch.tensor([float(m.properties["alpha"]) for m in mols[:4]], dtype=torch.float64)
    generated = recipe.sample_targets(model, cfg, run, num=4, sampler="mixed-ancestral", steps=4, seed=0, targets=targets)
    res = property_mae(predictor, generated, targets, mols, "alpha")
    print(res)
    assert res.num == 4 and all(torch.isfinite(torch.tensor([res.generated, res.shuffled, res.real])))
    assert res.real < res.shuffled
