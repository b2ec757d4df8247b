"""Medical data: bundled slices, DICOM series ordering/rescale/errors, NIfTI/PNG/NPY, splits, windowing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from polydiff.errors import DataError, UserInputError
from polydiff_medical.data import (Window, ellipse_phantoms, load_volume, prepare_slices, shepp_logan, split_slices)


def _ct_path() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm"))


def test_bundled_ct_is_in_hu_with_rescale_applied() -> None:
    import pydicom

    ds = pydicom.dcmread(str(_ct_path()))
    v = load_volume("pydicom-ct")
    assert v.data.shape == (1, 128, 128) and v.modality == "CT"
    ref = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(v.data[0], ref)
    assert v.data.min() < -800  # air in HU
    assert load_volume("pydicom-mr").data.shape == (1, 64, 64)


def _series(tmp_path: Path, positions: list[float], *, shuffle: bool = True) -> Path:
    import pydicom

    src = pydicom.dcmread(str(_ct_path()))
    d = tmp_path / "series"
    d.mkdir()
    order = list(range(len(positions)))
    if shuffle:
        order = order[::-1]
    for k, i in enumerate(order):
        ds = src.copy()
        ds.ImagePositionPatient = [0.0, 0.0, positions[i]]
        arr = src.pixel_array.copy()
        arr[0, 0] = i  # tag the slice index
        ds.PixelData = arr.tobytes()
        ds.RescaleIntercept = -1000 + i
        ds.save_as(str(d / f"f{k:02d}.dcm"))
    return d


def test_dicom_series_is_ordered_by_position_with_per_slice_rescale(tmp_path: Path) -> None:
    d = _series(tmp_path, [0.0, 2.5, 5.0, 7.5])
    v = load_volume(d)
    assert v.data.shape == (4, 128, 128)
    assert v.spacing[0] == pytest.approx(2.5)
    # slice i carries pixel value i and intercept -1000 + i (slope 1): HU = 2 i - 1000
    np.testing.assert_allclose(v.data[:, 0, 0], [2 * i - 1000 for i in range(4)])
    assert v.affine is not None and v.affine[2, 3] == pytest.approx(0.0)


def test_dicom_series_with_uneven_spacing_names_the_file(tmp_path: Path) -> None:
    d = _series(tmp_path, [0.0, 2.5, 5.0, 9.0])
    with pytest.raises(DataError, match=r"f00\.dcm: inconsistent slice spacing"):
        load_volume(d)


def test_dicom_series_with_other_orientation_names_the_file(tmp_path: Path) -> None:
    import pydicom

    d = _series(tmp_path, [0.0, 2.5, 5.0])
    ds = pydicom.dcmread(str(d / "f01.dcm"))
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(str(d / "f01.dcm"))
    with pytest.raises(DataError, match=r"f01\.dcm: ImageOrientationPatient"):
        load_volume(d)


def test_non_image_and_unreadable_dicom_are_one_line_errors(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    seg = tmp_path / "seg.dcm"
    shutil.copy(get_testdata_file("liver_1frame.dcm"), seg)
    with pytest.raises(DataError, match=r"seg\.dcm: DICOM file has no image") as e:
        load_volume(seg)
    assert "\n" not in str(e.value)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    with pytest.raises(UserInputError, match=r"junk\.dcm: not a readable DICOM"):
        load_volume(junk)
    with pytest.raises(DataError, match=r"missing\.nii\.gz: file not found"):
        load_volume(tmp_path / "missing.nii.gz")


def test_nifti_png_npy_round_trip(tmp_path: Path) -> None:
    import nibabel as nib
    from PIL import Image

    vol = np.random.default_rng(0).normal(size=(10, 12, 5))
    aff = np.diag([0.5, 0.7, 2.0, 1.0])
    nib.save(nib.Nifti1Image(vol, aff), str(tmp_path / "v.nii.gz"))
    v = load_volume(tmp_path / "v.nii.gz")
    assert v.data.shape == (5, 10, 12) and v.spacing == pytest.approx((2.0, 0.5, 0.7))
    np.testing.assert_allclose(v.data[3], vol[:, :, 3])
    # the affine maps (k, i, j) to the same world point as the original (i, j, k)
    np.testing.assert_allclose(v.affine @ [3, 4, 7, 1], aff @ [4, 7, 3, 1], rtol=1e-6)
    np.save(tmp_path / "a.npy", vol[..., 0])
    assert load_volume(tmp_path / "a.npy").data.shape == (1, 10, 12)
    img8 = (shepp_logan(32) * 255).astype(np.uint8)
    Image.fromarray(img8).save(tmp_path / "p.png")
    p = load_volume(tmp_path / "p.png").data
    assert p.shape == (1, 32, 32)
    np.testing.assert_allclose(p[0], img8 / 255.0)
    (tmp_path / "bad.npy").write_text("nope")
    with pytest.raises(DataError, match=r"bad\.npy: not a readable"):
        load_volume(tmp_path / "bad.npy")


@pytest.mark.parametrize("n,frac,block,gap", [(108, 0.2, 4, 1), (181, 0.1, 6, 2), (40, 0.25, 3, 1)])
def test_split_blocks_never_touch(n: int, frac: float, block: int, gap: int) -> None:
    train, test = split_slices(n, test_fraction=frac, block=block, gap=gap)
    assert len(test) > 0 and len(train) > n // 2
    assert not set(train) & set(test)
    dist = np.abs(train[:, None] - test[None, :]).min()
    assert dist > gap
    assert abs(len(test) / n - frac) < 0.1


def test_window_round_trip_and_saved(tmp_path: Path) -> None:
    hu = load_volume("pydicom-ct").data
    w = Window.fit(hu, "CT")
    assert w.lo == -1024 and w.unit == "HU"
    u = w.forward(hu)
    assert u.min() >= 0 and u.max() <= 1
    inside = (hu >= w.lo) & (hu <= w.hi)
    np.testing.assert_allclose(w.inverse(u)[inside], hu[inside])
    w.save(tmp_path / "w.json")
    assert Window.load(tmp_path / "w.json") == w


def test_phantoms_and_prepare() -> None:
    ph = ellipse_phantoms(4, 32, seed=1)
    assert ph.shape == (4, 32, 32) and ph.min() >= 0 and ph.max() <= 1
    assert not np.allclose(ph[0], ph[1])
    v = load_volume("phantom")
    s = prepare_slices(v, 32, Window(0.0, 1.0))
    assert s.shape[1:] == (32, 32) and len(s) > 0
