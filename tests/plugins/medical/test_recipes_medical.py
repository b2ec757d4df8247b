"""medical/ct-prior and medical/mri-prior: registration, a few training steps, reconstruction tasks through the
recipe (files, read-back, metrics), the CLI's bad-input errors, metrics against scikit-image, writers' geometry."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from polydiff.config import resolve_config
from polydiff.errors import DataError, UserInputError
from polydiff.recipes import RunDir
from polydiff_medical import plugin
from polydiff_medical.metrics import nmse, psnr, ssim, windowed
from polydiff_medical.recipes import CTPriorRecipe, MRIPriorRecipe
from polydiff_medical.writers import ReconSamples, read_all, write_all

training = pytest.importorskip("polydiff.training")


def test_plugin_registers_both_recipes(polydiff_plugins) -> None:
    regs = polydiff_plugins(plugin, "medical")
    assert regs.status == "loaded", regs.error
    assert {"medical/ct-prior", "medical/mri-prior"} <= set(regs.registered["recipes"])


@pytest.fixture(scope="module", params=[CTPriorRecipe, MRIPriorRecipe], ids=["ct", "mri"])
def trained(request, tmp_path_factory):
    rec = request.param()
    cfg = resolve_config(rec, preset="tiny", overrides=["train.steps=4", "train.log_every=100", "data.phantom_count=24",
                                                        "data.size=16", "train.batch_size=8"])
    run = RunDir(tmp_path_factory.mktemp("medrun"))
    training.train(rec, cfg, run, progress=False)
    return rec, cfg, run, training.load_model(rec, cfg, run)


@pytest.mark.parametrize("solver", ["dds", "dc", "red-diff", "dps", "pigdm"])
def test_reconstruction_writes_files_and_metrics(trained, solver: str, tmp_path: Path) -> None:
    rec, cfg, run, model = trained
    opts = {"task": rec.default_task, "solver": solver, "views": 8, "acceleration": 2.0}
    s = rec.sample(model, cfg, run, num=2, sampler="ddim", steps=3, seed=0, options={**{o.name: o.default for o in rec.sample_options}, **opts})
    assert s.recon.shape == s.truth.shape == s.baseline.shape == (2, 16, 16)
    assert np.isfinite(s.recon).all() and s.nfe == 3
    files = rec.write_samples(s, tmp_path, cfg, run)
    assert {f.name for f in files} >= {"recon.nii.gz", "baseline.nii.gz", "truth.nii.gz", "figure.png", "recon.json"}
    back = rec.read_samples(tmp_path)
    np.testing.assert_allclose(back.recon, s.recon, rtol=1e-5, atol=1e-5)
    m = rec.evaluate(model, cfg, run, tmp_path)
    base = "fbp" if rec.default_task == "ct" else "zero-filled"
    assert {f"{solver}/psnr", f"{solver}/ssim", f"{base}/psnr", "nfe", "seconds"} <= set(m)


def test_generate_and_default_evaluate(trained, tmp_path: Path) -> None:
    rec, cfg, run, model = trained
    out = rec.sample(model, cfg, run, num=2, sampler="ddim", steps=2, seed=0, options={"task": "generate"})
    files = rec.write_samples(out, tmp_path, cfg, run)
    assert (tmp_path / "samples.nii.gz") in files
    m = rec.evaluate(model, cfg, run, None)
    assert np.isfinite(m["nfe"]) and any(k.endswith("/psnr") for k in m)


def test_bad_inputs_are_one_line_user_errors(trained, tmp_path: Path) -> None:
    rec, cfg, run, model = trained
    defaults = {o.name: o.default for o in rec.sample_options}
    with pytest.raises(DataError, match="nope.nii.gz: file not found"):
        rec.sample(model, cfg, run, num=1, sampler="ddim", steps=2, seed=0, options={**defaults, "input": str(tmp_path / "nope.nii.gz")})
    with pytest.raises(UserInputError, match="--solver 'magic'"):
        rec.sample(model, cfg, run, num=1, sampler="ddim", steps=2, seed=0, options={**defaults, "solver": "magic"})
    with pytest.raises(UserInputError, match="--task 'pet'"):
        rec.sample(model, cfg, run, num=1, sampler="ddim", steps=2, seed=0, options={**defaults, "task": "pet"})
    with pytest.raises(DataError, match="recon.json missing"):
        rec.read_samples(tmp_path)


def test_user_input_volume_is_reconstructed(trained, tmp_path: Path) -> None:
    import nibabel as nib

    rec, cfg, run, model = trained
    vol = np.random.default_rng(0).uniform(0, 1, size=(20, 20, 3))
    nib.save(nib.Nifti1Image(vol, np.diag([0.8, 0.8, 2.5, 1])), str(tmp_path / "in.nii.gz"))
    defaults = {o.name: o.default for o in rec.sample_options}
    s = rec.sample(model, cfg, run, num=5, sampler="ddim", steps=2, seed=0,
                   options={**defaults, "input": str(tmp_path / "in.nii.gz"), "solver": "dc"})
    assert s.truth.shape == (3, 16, 16) and s.spacing[0] == pytest.approx(2.5)


def test_metrics_follow_fastmri_and_agree_with_skimage() -> None:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 2, size=(3, 24, 24))
    pred = gt + rng.normal(0, 0.1, size=gt.shape)
    assert psnr(gt, pred) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=gt.max()))
    assert ssim(gt, pred) == pytest.approx(np.mean([structural_similarity(g, p, data_range=gt.max()) for g, p in zip(gt, pred)]))
    assert nmse(gt, pred) == pytest.approx(np.sum((gt - pred) ** 2) / np.sum(gt**2))
    w = windowed(gt * 1000 - 500, pred * 1000 - 500, -100, 400)
    g2, p2 = np.clip(gt * 1000 - 500, -100, 400) + 100, np.clip(pred * 1000 - 500, -100, 400) + 100
    assert w["psnr_win"] == pytest.approx(peak_signal_noise_ratio(g2, p2, data_range=500))


def test_nifti_writer_keeps_geometry(tmp_path: Path) -> None:
    import nibabel as nib

    aff = np.array([[0, 0, 0.7, 10], [0, 0.7, 0, 20], [2.5, 0, 0, 30], [0, 0, 0, 1.0]])  # slice-first (k, i, j)
    vol = np.random.default_rng(1).normal(size=(4, 8, 8))
    s = ReconSamples(recon=vol, baseline=vol, truth=None, task="t", solver="dds", baseline_name="fbp", window=(0.0, 1.0, ""),
                     spacing=(2.5, 0.7, 0.7), affine=aff)
    write_all(s, tmp_path)
    img = nib.load(str(tmp_path / "recon.nii.gz"))
    # voxel (i, j, k) of the file is slice k, row i, column j: the same world point as (k, i, j) before
    np.testing.assert_allclose(img.affine @ [3, 5, 2, 1], aff @ [2, 3, 5, 1])
    np.testing.assert_allclose(np.asarray(img.dataobj)[3, 5, 2], vol[2, 3, 5], rtol=1e-6)
    assert read_all(tmp_path).recon.shape == (4, 8, 8)


@pytest.mark.slow
@pytest.mark.parametrize("recipe_cls", [CTPriorRecipe, MRIPriorRecipe])
def test_tiny_preset_trains_within_two_minutes(recipe_cls, tmp_path: Path) -> None:
    rec = recipe_cls()
    cfg = resolve_config(rec, preset="tiny")
    t0 = time.perf_counter()
    training.train(rec, cfg, RunDir(tmp_path), progress=False)
    assert time.perf_counter() - t0 <= 120.0
    assert torch.isfinite(next(training.load_model(rec, cfg, RunDir(tmp_path)).parameters())).all()
