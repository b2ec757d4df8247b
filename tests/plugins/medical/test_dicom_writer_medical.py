"""DICOM series writer (polydiff_medical.writers.write_dicom_series) read back with the plugin's own series reader,
the resized geometry of reconstructed slices, and the recipe's ``--volume-coupling`` / DICOM output end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from polydiff.config import resolve_config
from polydiff.recipes import RunDir
from polydiff_medical.data import load_dicom_series, resize_slices, resized_affine
from polydiff_medical.recipes import CTPriorRecipe
from polydiff_medical.writers import write_dicom_series


def _oblique_affine(dz: float = 2.0, dy: float = 0.8, dx: float = 0.7) -> np.ndarray:
    """Slice-first affine ``(k, i, j) -> mm`` of a right-handed oblique series (rows along a rotated x)."""
    th = 0.3
    row = np.array([np.cos(th), np.sin(th), 0.0])  # direction of increasing column index j
    col = np.array([-np.sin(th), np.cos(th), 0.0])  # direction of increasing row index i
    a = np.eye(4)
    a[:3, 0], a[:3, 1], a[:3, 2], a[:3, 3] = np.cross(row, col) * dz, col * dy, row * dx, [-10.0, 20.0, 35.0]
    return a


def _header(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(str(p), stop_before_pixels=True) for p in sorted(folder.iterdir())]


def test_series_round_trips_in_the_input_study(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    hu = rng.uniform(-1024, 2000, size=(5, 12, 10))
    write_dicom_series(hu, tmp_path / "input", affine=_oblique_affine(), modality="CT")
    vin = load_dicom_series(tmp_path / "input")
    slope = float(_header(tmp_path / "input")[0].RescaleSlope)
    np.testing.assert_allclose(vin.data, hu, rtol=0, atol=slope / 2 + 1e-6)
    np.testing.assert_allclose(vin.affine, _oblique_affine(), atol=1e-6)

    recon = hu[:, ::-1] * 0.5 + 3.0  # a "reconstruction" in the input's study
    write_dicom_series(recon, tmp_path / "recon", affine=vin.affine, reference=vin.dicom, modality="CT")
    back = load_dicom_series(tmp_path / "recon")
    heads, heads_in = _header(tmp_path / "recon"), _header(tmp_path / "input")
    slope = float(heads[0].RescaleSlope)
    np.testing.assert_allclose(back.data, recon, rtol=0, atol=slope / 2 + 1e-6)
    np.testing.assert_allclose(back.affine, vin.affine, atol=1e-6)
    assert {h.StudyInstanceUID for h in heads} == {heads_in[0].StudyInstanceUID}
    assert {h.FrameOfReferenceUID for h in heads} == {heads_in[0].FrameOfReferenceUID}
    assert {h.PatientID for h in heads} == {heads_in[0].PatientID}
    assert len({h.SeriesInstanceUID for h in heads}) == 1 and heads[0].SeriesInstanceUID != heads_in[0].SeriesInstanceUID
    assert heads[0].ReferencedSeriesSequence[0].SeriesInstanceUID == heads_in[0].SeriesInstanceUID
    assert len({h.SOPInstanceUID for h in heads + heads_in}) == 10
    normal = np.cross(np.asarray(heads[0].ImageOrientationPatient[:3], float), np.asarray(heads[0].ImageOrientationPatient[3:], float))
    pos = [float(np.dot(np.asarray(h.ImagePositionPatient, float), normal)) for h in sorted(heads, key=lambda h: int(h.InstanceNumber))]
    assert np.all(np.diff(pos) > 0) and np.allclose(np.diff(pos), 2.0, atol=1e-5)


def test_left_handed_geometry_keeps_every_voxel_in_place(tmp_path: Path) -> None:
    """A NIfTI-like affine whose slice axis opposes the row x column normal: every voxel is read back at its position."""
    rng = np.random.default_rng(1)
    vol = rng.uniform(0, 500, size=(4, 6, 5))
    a = np.diag([-2.5, 0.9, 0.8, 1.0])[[0, 1, 2, 3]]
    a[:3, 3] = [5.0, -3.0, 1.0]
    write_dicom_series(vol, tmp_path / "s", affine=a, modality="MR")
    back = load_dicom_series(tmp_path / "s")
    slope = float(_header(tmp_path / "s")[0].RescaleSlope)
    assert back.data.shape == vol.shape
    for k, i, j in np.ndindex(*vol.shape):
        world = back.affine @ [k, i, j, 1]
        src = np.rint(np.linalg.solve(a, world)).astype(int)
        assert abs(back.data[k, i, j] - vol[src[0], src[1], src[2]]) <= slope / 2 + 1e-6


def test_resized_affine_follows_resize_slices() -> None:
    """A linear ramp in world coordinates stays the same ramp after crop + resize when read through the new affine."""
    a = _oblique_affine()
    idx = np.stack(np.meshgrid(np.arange(6), np.arange(20), np.arange(16), indexing="ij"), -1).reshape(-1, 3)
    world = (a[:3, :3] @ idx.T).T + a[:3, 3]
    g = np.array([0.3, -0.2, 0.1])
    vol = (world @ g).reshape(6, 20, 16)
    new = resize_slices(vol[2:5], 8)
    b = resized_affine(a, (20, 16), 8, start=2)
    idx2 = np.stack(np.meshgrid(np.arange(3), np.arange(8), np.arange(8), indexing="ij"), -1).reshape(-1, 3)
    world2 = (b[:3, :3] @ idx2.T).T + b[:3, 3]
    # interior pixels (the anti-aliasing filter keeps a ramp linear away from the reflected borders)
    np.testing.assert_allclose(new[:, 2:-2, 2:-2], (world2 @ g).reshape(3, 8, 8)[:, 2:-2, 2:-2], atol=1e-9)


@pytest.fixture(scope="module")
def untrained_ct(tmp_path_factory):
    rec = CTPriorRecipe()
    cfg = resolve_config(rec, preset="tiny", overrides=["data.phantom_count=12", "data.size=16"])
    run = RunDir(tmp_path_factory.mktemp("medrun3d"))
    rec.setup(cfg, run.ensure())
    return rec, cfg, run, rec.build_model(cfg, run)


def test_recipe_writes_a_coupled_dicom_reconstruction_in_the_input_study(untrained_ct, tmp_path: Path) -> None:
    rec, cfg, run, model = untrained_ct
    hu = np.random.default_rng(2).uniform(-1000, 1000, size=(6, 24, 20))
    write_dicom_series(hu, tmp_path / "in", affine=_oblique_affine(), modality="CT")
    vin = load_dicom_series(tmp_path / "in")
    opts = {**{o.name: o.default for o in rec.sample_options},
            "input": str(tmp_path / "in"), "solver": "dc", "views": 6, "volume_coupling": "tv-z"}
    s = rec.sample(model, cfg, run, num=4, sampler="ddim", steps=2, seed=0, options=opts)
    assert s.recon.shape == (4, 16, 16) and s.solver == "dc+tv-z" and s.nfe == 2
    files = rec.write_samples(s, tmp_path / "out", cfg, run)
    assert (tmp_path / "out" / "recon-dicom" / "slice_0000.dcm") in files
    back = load_dicom_series(tmp_path / "out" / "recon-dicom")
    heads = _header(tmp_path / "out" / "recon-dicom")
    np.testing.assert_allclose(back.data, s.recon, rtol=0, atol=float(heads[0].RescaleSlope) / 2 + 1e-6)
    assert heads[0].StudyInstanceUID == vin.dicom.StudyInstanceUID and heads[0].SeriesInstanceUID != vin.dicom.SeriesInstanceUID
    # geometry: the middle 4 of 6 slices (from slice 1), 20 x 20 crop resized to 16 x 16
    np.testing.assert_allclose(back.affine, resized_affine(vin.affine, (24, 20), 16, start=1), atol=1e-5)
    assert float(heads[0].PixelSpacing[0]) == pytest.approx(0.8 * 20 / 16, abs=1e-6)


def test_recipe_rejects_unknown_coupling_and_writes_dicom_on_request(untrained_ct, tmp_path: Path) -> None:
    from polydiff.errors import UserInputError

    rec, cfg, run, model = untrained_ct
    defaults = {o.name: o.default for o in rec.sample_options}
    with pytest.raises(UserInputError, match="--volume-coupling 'tv-x'"):
        rec.sample(model, cfg, run, num=2, sampler="ddim", steps=2, seed=0, options={**defaults, "volume_coupling": "tv-x"})
    with pytest.raises(UserInputError, match="--tv-lambda -1"):
        rec.sample(model, cfg, run, num=2, sampler="ddim", steps=2, seed=0, options={**defaults, "volume_coupling": "tv-z", "tv_lambda": -1.0})
    s = rec.sample(model, cfg, run, num=2, sampler="ddim", steps=2, seed=0, options={**defaults, "solver": "dds", "dicom": True, "views": 6})
    rec.write_samples(s, tmp_path, cfg, run)
    heads = _header(tmp_path / "recon-dicom")
    assert len(heads) == 2 and heads[0].Modality == "CT" and heads[0].StudyInstanceUID != heads[0].SeriesInstanceUID
