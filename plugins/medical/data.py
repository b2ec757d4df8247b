"""Medical data: volumes from DICOM series, NIfTI, PNG and NPY, bundled slices, phantoms, splits, windowing.

A loaded volume is a :class:`Volume`: ``data`` of shape ``(S, H, W)`` (float64, slices first, physical
units — HU for CT), ``spacing`` ``(dz, dy, dx)`` in mm and a 4x4 ``affine`` (voxel index ``(k, i, j)`` ->
patient mm) kept for writers.

Sources:

* ``phantom``: Shepp–Logan (scikit-image's bundled file) plus random-ellipse phantoms made in code — the
  default for fast tests and the ``tiny`` presets (no download, no apt);
* ``pydicom-ct`` / ``pydicom-mr``: pydicom's bundled ``CT_small.dcm`` (128², HU) and ``MR_small.dcm`` (64²);
* ``dipy-t1``: the real T1 coronal slice dipy ships in its wheel (``dipy/data/files/t1_coronal_slice.npy``, 256 x 256,
  [0, 1]; no network at run time) — a real-MR fast-test source when dipy is installed;
* ``invesalius-ct``: the real head CT of Debian's ``invesalius-examples`` (``Cranium.inv3``, 108 x 256 x 256 HU);
* ``mricron-ch2``: Debian ``mricron-data``'s ``ch2.nii.gz`` T1 (181 x 217 x 181, axial slices taken along the last axis);
  both are installed by :func:`ensure_debian_package` (benchmark only; tests never need apt);
* a user file or folder (``data.path``): a DICOM series folder or file, ``.nii``/``.nii.gz``, ``.png``, ``.npy``.

Bad input (missing or unreadable file, non-image DICOM, a series with inconsistent orientation, pixel
spacing, size or slice spacing) raises :class:`polydiff.errors.DataError` with one line naming the file.
"""

from __future__ import annotations

import json
import math
import plistlib
import shutil
import subprocess
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polydiff.errors import DataError

INVESALIUS_PATH = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
MRICRON_CH2_PATH = Path("/usr/share/mricron/templates/ch2.nii.gz")
BUNDLED = ("phantom", "pydicom-ct", "pydicom-mr", "dipy-t1", "invesalius-ct", "mricron-ch2")


@dataclass(frozen=True)
class Volume:
    """A stack of slices ``data`` ``(S, H, W)`` float64 with ``spacing`` ``(dz, dy, dx)`` mm and ``affine`` (4x4)."""

    data: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    affine: np.ndarray | None = None
    source: str = ""
    modality: str = ""
    dicom: Any = None  # DICOM input: the first slice's header (pydicom Dataset without pixel data), for writers


# ---------------------------------------------------------------- phantoms


def shepp_logan(n: int) -> np.ndarray:
    """Shepp–Logan phantom ``(n, n)`` in [0, 1] (scikit-image's bundled file, resized)."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    return np.clip(resize(shepp_logan_phantom(), (n, n), anti_aliasing=True), 0, 1)


def ellipse_phantoms(count: int, n: int, *, seed: int = 0) -> np.ndarray:
    """``count`` random head-like phantoms ``(count, n, n)`` in [0, 1]: a skull ring, a brain ellipse and
    3–6 inner ellipses of random contrast; a generated stand-in for slices in fast tests."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    out = np.zeros((count, n, n))

    def ell(cy: float, cx: float, ay: float, ax: float, th: float) -> np.ndarray:
        c, s = math.cos(th), math.sin(th)
        u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
        return (u / ax) ** 2 + (v / ay) ** 2 <= 1

    for k in range(count):
        ay, ax = rng.uniform(0.75, 0.9), rng.uniform(0.6, 0.75)
        th = rng.uniform(-0.2, 0.2)
        img = np.where(ell(0, 0, ay, ax, th), 1.0, 0.0)
        img = np.where(ell(0, 0, ay - 0.07, ax - 0.07, th), 0.25, img)
        for _ in range(rng.integers(3, 7)):
            cy, cx = rng.uniform(-0.45, 0.45), rng.uniform(-0.35, 0.35)
            img = np.where(ell(cy, cx, rng.uniform(0.05, 0.25), rng.uniform(0.05, 0.25), rng.uniform(0, np.pi)), rng.uniform(0.1, 0.6), img)
        out[k] = img
    return out


# ---------------------------------------------------------------- readers


def load_volume(source: str | Path, *, modality: str = "") -> Volume:
    """A bundled name (see :data:`BUNDLED`) or a user path: DICOM file/folder, NIfTI, PNG, NPY."""
    name = str(source)
    if name == "phantom":
        return Volume(ellipse_phantoms(32, 128, seed=0), source="phantom", modality=modality or "CT")
    if name == "pydicom-ct":
        return _pydicom_bundled("CT_small.dcm")
    if name == "pydicom-mr":
        return _pydicom_bundled("MR_small.dcm")
    if name == "dipy-t1":
        return load_dipy_t1()
    if name == "invesalius-ct":
        return load_invesalius(ensure_debian_package("invesalius-examples", INVESALIUS_PATH))
    if name == "mricron-ch2":
        return load_nifti(ensure_debian_package("mricron-data", MRICRON_CH2_PATH), axis=2)
    p = Path(name)
    if not p.exists():
        raise DataError(f"{p}: file not found (data.path must be a DICOM file or folder, .nii/.nii.gz, .png or .npy, or one of {', '.join(BUNDLED)})")
    if p.is_dir():
        return load_dicom_series(p)
    low = p.name.lower()
    if low.endswith((".nii", ".nii.gz")):
        return load_nifti(p)
    if low.endswith(".npy"):
        return load_npy(p)
    if low.endswith(".png"):
        return load_png(p)
    if low.endswith(".inv3"):
        return load_invesalius(p)
    return load_dicom_series(p)


def _pydicom_bundled(fname: str) -> Volume:
    from pydicom.data import get_testdata_file

    return load_dicom_series(Path(get_testdata_file(fname)))


def load_dipy_t1() -> Volume:
    """dipy's bundled T1 coronal slice ``(1, 256, 256)`` in [0, 1] (a file inside the dipy wheel; nothing is downloaded)."""
    try:
        from dipy.data import get_fnames
    except ImportError:
        raise DataError("dipy-t1: dipy is not installed (pip install dipy); it ships the T1 slice in its wheel") from None
    p = Path(get_fnames(name="t1_coronal_slice"))
    if not p.exists():
        raise DataError(f"{p}: dipy's bundled T1 slice is missing from the installed dipy")
    vol = load_npy(p)
    return Volume(vol.data, source=f"dipy-t1 ({p.name})", modality="MR")


def load_npy(path: Path) -> Volume:
    """``(H, W)`` or ``(S, H, W)`` array."""
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any numpy failure is an unreadable user file
        raise DataError(f"{path}: not a readable .npy array ({type(e).__name__}: {e})") from None
    return Volume(_as_stack(a, path), source=str(path))


def load_png(path: Path) -> Volume:
    """A greyscale (or RGB, converted to luminance) PNG as one slice, values scaled to [0, 1]."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            a = np.asarray(im.convert("L") if im.mode not in ("L", "I", "I;16", "F") else im, dtype=np.float64)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: not a readable PNG image ({type(e).__name__}: {e})") from None
    if a.max() > 0:
        a = a / (255.0 if a.max() <= 255 else a.max())
    return Volume(a[None], source=str(path))


def load_nifti(path: Path, *, axis: int = 2) -> Volume:
    """A 3-D NIfTI volume; slices are taken along ``axis`` (axial = 2 for RAS-like volumes)."""
    try:
        import nibabel as nib

        img = nib.load(str(path))
        a = np.asarray(img.dataobj, dtype=np.float64)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: not a readable NIfTI file ({type(e).__name__}: {e})") from None
    if a.ndim == 4 and a.shape[3] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise DataError(f"{path}: expected a 3-D NIfTI volume, got shape {a.shape}")
    order = [axis] + [i for i in range(3) if i != axis]
    data = np.transpose(a, order)
    spacing = (zooms[order[0]], zooms[order[1]], zooms[order[2]])
    perm = np.eye(4)
    perm[:3, :3] = np.eye(3)[order].T  # new index (k, i, j) -> old index
    return Volume(np.ascontiguousarray(data), spacing=spacing, affine=affine @ perm, source=str(path), modality="MR")


def load_invesalius(path: Path) -> Volume:
    """The InVesalius project archive (tar.gz with ``main.plist`` + raw ``matrix.dat``), HU."""
    try:
        with tarfile.open(path, "r:gz") as tf:
            members = {m.name.rsplit("/", 1)[-1]: m for m in tf.getmembers()}
            meta = plistlib.loads(tf.extractfile(members["main.plist"]).read())  # type: ignore[union-attr]
            raw = tf.extractfile(members["matrix.dat"]).read()  # type: ignore[union-attr]
        vol = np.frombuffer(raw, dtype=meta["matrix"]["dtype"]).reshape(meta["matrix"]["shape"]).astype(np.float64)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: not a readable InVesalius .inv3 archive ({type(e).__name__}: {e})") from None
    sx, sy, sz = (float(v) for v in meta.get("spacing", (1.0, 1.0, 1.0)))
    return Volume(vol, spacing=(sz, sy, sx), source=str(path), modality="CT")


def load_dicom_series(path: Path, *, tol: float = 1e-3) -> Volume:
    """A DICOM file or a folder of single-slice DICOM files (one series): slices ordered by their position
    along the slice normal, ``RescaleSlope``/``RescaleIntercept`` applied; multi-frame files are stacked.

    Raises :class:`DataError` naming the file for an unreadable or non-image file, or a slice whose
    orientation, pixel spacing or size differs from the first, and for uneven slice spacing.
    """
    import pydicom

    files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: folder contains no DICOM files")
    slices = []
    for f in files:
        try:
            ds = pydicom.dcmread(str(f))
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{f}: not a readable DICOM file ({type(e).__name__})") from None
        if "PixelData" not in ds or ds.get("Modality", "") in ("SEG", "RTSTRUCT", "SR", "PR", "KO"):
            raise DataError(f"{f}: DICOM file has no image to reconstruct (modality {ds.get('Modality', '?')}, SOP class {ds.get('SOPClassUID', '?')})")
        try:
            px = ds.pixel_array.astype(np.float64)
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{f}: DICOM pixel data cannot be decoded ({type(e).__name__}: {e})") from None
        if px.ndim == 3 and getattr(ds, "SamplesPerPixel", 1) > 1:
            raise DataError(f"{f}: colour DICOM image (SamplesPerPixel={ds.SamplesPerPixel}); expected a greyscale CT/MR slice")
        px = px * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
        slices.append((f, ds, px))
    f0, ds0, px0 = slices[0]
    iop0 = np.asarray(ds0.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), dtype=np.float64)
    ps0 = np.asarray(ds0.get("PixelSpacing", [1, 1]), dtype=np.float64)
    normal = np.cross(iop0[:3], iop0[3:])
    for f, ds, px in slices[1:]:
        iop = np.asarray(ds.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), dtype=np.float64)
        if np.abs(iop - iop0).max() > tol:
            raise DataError(f"{f}: ImageOrientationPatient {iop.tolist()} differs from {f0.name}'s {iop0.tolist()}; a series must share one orientation")
        ps = np.asarray(ds.get("PixelSpacing", [1, 1]), dtype=np.float64)
        if np.abs(ps - ps0).max() > tol:
            raise DataError(f"{f}: PixelSpacing {ps.tolist()} differs from {f0.name}'s {ps0.tolist()}")
        if px.shape[-2:] != px0.shape[-2:]:
            raise DataError(f"{f}: image size {px.shape[-2:]} differs from {f0.name}'s {px0.shape[-2:]}")
    pos = [float(np.dot(np.asarray(ds.get("ImagePositionPatient", [0, 0, i]), dtype=np.float64), normal)) for i, (_, ds, _) in enumerate(slices)]
    order = np.argsort(pos, kind="stable")
    slices = [slices[i] for i in order]
    pos = [pos[i] for i in order]
    dz = float(ds0.get("SliceThickness", 1.0) or 1.0)
    if len(slices) > 1:
        gaps = np.diff(pos)
        if np.any(gaps <= tol):
            i = int(np.argmax(gaps <= tol))
            raise DataError(f"{slices[i + 1][0]}: slice at the same position ({pos[i + 1]:.3f} mm) as {slices[i][0].name}")
        if np.abs(gaps - gaps[0]).max() > max(tol, 0.01 * gaps[0]):
            i = int(np.argmax(np.abs(gaps - gaps[0]) > max(tol, 0.01 * gaps[0])))
            raise DataError(f"{slices[i + 1][0]}: inconsistent slice spacing ({gaps[i]:.3f} mm vs {gaps[0]:.3f} mm)")
        dz = float(gaps[0])
    data = np.concatenate([px[None] if px.ndim == 2 else px for _, _, px in slices])
    affine = np.eye(4)
    ipp = np.asarray(slices[0][1].get("ImagePositionPatient", [0, 0, 0]), dtype=np.float64)
    affine[:3, 0] = normal * dz
    affine[:3, 1] = iop0[3:] * ps0[0]  # rows advance along the column direction cosine
    affine[:3, 2] = iop0[:3] * ps0[1]
    affine[:3, 3] = ipp
    header = slices[0][1].copy()
    if "PixelData" in header:
        del header.PixelData
    return Volume(data, spacing=(dz, float(ps0[0]), float(ps0[1])), affine=affine, source=str(path), modality=str(ds0.get("Modality", "")),
                  dicom=header)


def _as_stack(a: np.ndarray, path: Any) -> np.ndarray:
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or not np.issubdtype(a.dtype, np.number):
        raise DataError(f"{path}: expected a numeric image (H, W) or a stack (S, H, W), got shape {a.shape} dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise DataError(f"{path}: contains NaN or infinite values")
    return a


# ---------------------------------------------------------------- Debian data packages


def ensure_debian_package(package: str, path: Path) -> Path:
    """Return ``path``, installing the Debian ``package`` that ships it (``apt-get install --no-install-recommends``) if missing."""
    if path.exists():
        return path
    if shutil.which("apt-get") is None:
        raise DataError(f"{path}: not found and apt-get is unavailable; install the Debian package {package!r}")
    subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package], capture_output=True, text=True)
    if r.returncode != 0 or not path.exists():
        raise DataError(f"{path}: not found; 'apt-get install {package}' failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    return path


# ---------------------------------------------------------------- splits, resizing, windowing


def split_slices(n_slices: int, *, test_fraction: float = 0.2, block: int = 4, gap: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Train/test slice indices by contiguous blocks that never touch.

    Every ``period = ceil(block / test_fraction)`` slices one block of ``block`` test slices is held out,
    and ``gap`` slices on each side of every test block are dropped, so no training slice is within
    ``gap`` of a test slice. Returns ``(train, test)`` sorted index arrays.
    """
    if n_slices < block + 2 * gap + 1:
        test = np.arange(n_slices // 2, n_slices // 2 + 1)
        train = np.array([i for i in range(n_slices) if abs(i - test[0]) > gap], dtype=np.int64)
        return train, test
    period = max(block + 2 * gap + 1, int(math.ceil(block / max(test_fraction, 1e-6))))
    test_mask = np.zeros(n_slices, dtype=bool)
    start = (period - block) // 2
    for s in range(start, n_slices - block + 1, period):
        test_mask[s: s + block] = True
    idx = np.arange(n_slices)
    dist = np.array([np.abs(idx[test_mask] - i).min() if test_mask.any() else n_slices for i in idx])
    train = idx[dist > gap]
    return train, idx[test_mask]


def resize_slices(data: np.ndarray, n: int) -> np.ndarray:
    """Centre-crop each slice to a square, then resize to ``n x n`` (anti-aliased)."""
    from skimage.transform import resize

    s, h, w = data.shape
    m = min(h, w)
    crop = data[:, (h - m) // 2: (h - m) // 2 + m, (w - m) // 2: (w - m) // 2 + m]
    if m == n:
        return crop.copy()
    return np.stack([resize(x, (n, n), anti_aliasing=True, preserve_range=True) for x in crop])


def resized_affine(affine: np.ndarray | None, shape: tuple[int, int], n: int, start: int = 0,
                   spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """The slice-first affine ``(k, i, j) -> mm`` of :func:`resize_slices`' output: slices ``start, start + 1, ...``
    of a volume with slices ``shape = (H, W)``, centre-cropped to ``m = min(H, W)`` and resized to ``n x n``.

    Output pixel ``i`` samples the crop at ``(i + 1/2) m / n - 1/2`` (pixel centres kept), so the in-plane columns
    are scaled by ``m / n`` and the origin moves to that point. Without an ``affine``: ``diag(spacing)``.
    """
    a = np.diag([*spacing, 1.0]) if affine is None else np.asarray(affine, dtype=np.float64)
    h, w = shape
    m = min(h, w)
    f = m / n
    idx = np.eye(4)  # new (k, i, j) -> old (k, i, j)
    idx[0, 3] = start
    idx[1, 1] = idx[2, 2] = f
    idx[1, 3] = (h - m) // 2 + 0.5 * f - 0.5
    idx[2, 3] = (w - m) // 2 + 0.5 * f - 0.5
    return a @ idx


@dataclass(frozen=True)
class Window:
    """Windowing and normalisation ``u = (clip(x, lo, hi) - lo) / (hi - lo)`` to [0, 1] (model scale is ``2u - 1``).

    ``lo``/``hi`` are physical units (HU for CT). Saved as JSON with the run and inverted on output.
    """

    lo: float
    hi: float
    unit: str = ""

    @classmethod
    def fit(cls, data: np.ndarray, modality: str = "") -> Window:
        """CT in HU: the window [-1024, max(1200, p99.9)]; otherwise [0, p99.5] of the data."""
        if modality.upper() == "CT" and data.min() < -500:
            return cls(-1024.0, float(max(1200.0, np.percentile(data, 99.9))), "HU")
        lo = float(min(0.0, data.min()))
        hi = float(np.percentile(data, 99.5))
        return cls(lo, hi if hi > lo else lo + 1.0, "")

    def forward(self, x: np.ndarray) -> np.ndarray:
        return (np.clip(x, self.lo, self.hi) - self.lo) / (self.hi - self.lo)

    def inverse(self, u: np.ndarray) -> np.ndarray:
        return np.asarray(u) * (self.hi - self.lo) + self.lo

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Window:
        if not path.exists():
            raise DataError(f"{path}: windowing not found (was the run trained?)")
        return cls(**json.loads(path.read_text()))


def prepare_slices(volume: Volume, n: int, window: Window, *, min_mass: float = 0.05) -> np.ndarray:
    """Windowed slices ``(S, n, n)`` in [0, 1]; nearly empty slices (mean below ``min_mass`` of the brightest slice's) dropped."""
    u = window.forward(resize_slices(volume.data, n))
    mass = u.mean(axis=(1, 2))
    keep = mass >= min_mass * max(float(mass.max()), 1e-12)
    return u[keep]


__all__ = ["BUNDLED", "Volume", "Window", "ellipse_phantoms", "ensure_debian_package", "load_dicom_series", "load_dipy_t1", "load_invesalius",
           "load_nifti", "load_npy", "load_png", "load_volume", "prepare_slices", "resize_slices", "resized_affine", "shepp_logan", "split_slices"]
