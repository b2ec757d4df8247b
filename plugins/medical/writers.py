"""Writers: NIfTI volumes with geometry, a PNG figure (ground truth, baseline, each solver, error map), metrics JSON.

Files written into the output folder:

* ``recon.nii.gz`` (the solver's reconstruction), ``baseline.nii.gz`` (FBP / zero-filled) and, when known,
  ``truth.nii.gz`` — in physical units (windowing inverted), slices first in memory and stored ``(H, W, S)``
  with the input's affine (voxel ``(i, j, k)``);
* ``figure.png`` — one row per slice: ground truth, baseline, reconstruction, |error|;
* ``recon.json`` — task, solver, NFE, seconds, window, metrics;
* ``recon-dicom/`` — the reconstruction as a new DICOM series (one file per slice) when the input was DICOM (same
  study, patient and frame of reference; new series) or when asked (``--dicom``: a new study with generated UIDs);
  see :func:`write_dicom_series`.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from polydiff.errors import DataError


@dataclass(frozen=True)
class ReconSamples:
    """Reconstructions of ``S`` slices in physical units.

    Attributes:
        recon: ``(S, H, W)``. baseline: ``(S, H, W)``. truth: ``(S, H, W)`` or ``None``.
        task: description. solver: solver name. baseline_name: ``fbp`` / ``zero-filled``.
        window: ``(lo, hi, unit)``. spacing: ``(dz, dy, dx)`` mm. affine: 4x4 (slice-first index) or ``None``.
        nfe, seconds: solver cost. metrics: ``{name: value}`` (empty without truth).
        extra: other reconstructions by name (benchmark rows), each ``(S, H, W)``.
    """

    recon: np.ndarray
    baseline: np.ndarray
    truth: np.ndarray | None
    task: str
    solver: str
    baseline_name: str
    window: tuple[float, float, str]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    affine: np.ndarray | None = None
    nfe: int = 0
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    reference: Any = None  # DICOM input: its first slice's header (pydicom Dataset); the DICOM series joins its study
    dicom: bool = False  # write recon-dicom/ even without a DICOM input (a new study)
    modality: str = ""


def _nifti_affine(s: ReconSamples) -> np.ndarray:
    """Affine for arrays stored ``(H, W, S)``: permute the slice-first affine's columns (k, i, j) -> (i, j, k)."""
    if s.affine is None:
        dz, dy, dx = s.spacing
        return np.diag([dy, dx, dz, 1.0])
    a = np.asarray(s.affine, dtype=np.float64)
    out = np.eye(4)
    out[:3, 0], out[:3, 1], out[:3, 2], out[:3, 3] = a[:3, 1], a[:3, 2], a[:3, 0], a[:3, 3]
    return out


def write_nifti(vol: np.ndarray, path: Path, s: ReconSamples) -> Path:
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.transpose(np.asarray(vol, dtype=np.float32), (1, 2, 0)), _nifti_affine(s)), str(path))
    return path


def write_figure(s: ReconSamples, path: Path, max_rows: int = 4) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols: list[tuple[str, np.ndarray]] = []
    if s.truth is not None:
        cols.append(("ground truth", s.truth))
    cols.append((s.baseline_name, s.baseline))
    cols.extend(s.extra.items())
    cols.append((s.solver, s.recon))
    if s.truth is not None:
        cols.append((f"|error| {s.solver}", np.abs(s.recon - s.truth)))
    rows = min(max_rows, len(s.recon))
    lo, hi = float(s.window[0]), float(s.window[1])
    fig, axes = plt.subplots(rows, len(cols), figsize=(2.2 * len(cols), 2.2 * rows), squeeze=False)
    for r in range(rows):
        for c, (name, vol) in enumerate(cols):
            ax = axes[r][c]
            err = name.startswith("|error|")
            ax.imshow(vol[r], cmap="magma" if err else "gray", vmin=0 if err else lo, vmax=(hi - lo) / 4 if err else hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
    fig.suptitle(s.task, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_all(s: ReconSamples, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = [write_nifti(s.recon, out / "recon.nii.gz", s), write_nifti(s.baseline, out / "baseline.nii.gz", s)]
    if s.truth is not None:
        files.append(write_nifti(s.truth, out / "truth.nii.gz", s))
    for name, vol in s.extra.items():
        files.append(write_nifti(vol, out / f"recon-{name}.nii.gz", s))
    files.append(write_figure(s, out / "figure.png"))
    meta = {"task": s.task, "solver": s.solver, "baseline": s.baseline_name, "window": list(s.window), "spacing": list(s.spacing),
            "affine": None if s.affine is None else np.asarray(s.affine).tolist(), "nfe": s.nfe, "seconds": s.seconds,
            "metrics": s.metrics, "extra": sorted(s.extra)}
    (out / "recon.json").write_text(json.dumps(meta, indent=1) + "\n")
    files.append(out / "recon.json")
    if s.reference is not None or s.dicom:
        files.extend(write_dicom_series(s.recon, out / "recon-dicom", affine=s.affine, spacing=s.spacing, reference=s.reference,
                                        modality=s.modality or ("CT" if s.window[2] == "HU" else "MR"),
                                        description=f"polydiff {s.solver} reconstruction ({s.task})"))
    return files


def read_all(folder: Path) -> ReconSamples:
    """Read what :func:`write_all` wrote; a folder without ``recon.json`` is a :class:`DataError` naming it."""
    import nibabel as nib

    meta_p = Path(folder) / "recon.json"
    if not meta_p.exists():
        raise DataError(f"{folder}: no medical reconstruction here (recon.json missing); write one with 'polydiff sample RUN --task ct|mri'")
    meta = json.loads(meta_p.read_text())

    def vol(name: str) -> np.ndarray | None:
        p = Path(folder) / name
        return np.transpose(np.asarray(nib.load(str(p)).dataobj, dtype=np.float64), (2, 0, 1)) if p.exists() else None

    recon, base = vol("recon.nii.gz"), vol("baseline.nii.gz")
    if recon is None or base is None:
        raise DataError(f"{folder}: recon.nii.gz or baseline.nii.gz is missing")
    extra = {n: v for n in meta.get("extra", []) if (v := vol(f"recon-{n}.nii.gz")) is not None}
    w = meta["window"]
    return ReconSamples(recon=recon, baseline=base, truth=vol("truth.nii.gz"), task=meta["task"], solver=meta["solver"],
                        baseline_name=meta["baseline"], window=(float(w[0]), float(w[1]), str(w[2])),
                        spacing=tuple(meta.get("spacing", (1, 1, 1))),  # type: ignore[arg-type]
                        affine=None if meta.get("affine") is None else np.asarray(meta["affine"]), nfe=int(meta.get("nfe", 0)),
                        seconds=float(meta.get("seconds", 0.0)), metrics=dict(meta.get("metrics", {})), extra=extra)


def metrics_of(s: ReconSamples) -> dict[str, Any]:
    """Metrics of the reconstruction and the baseline against the truth, in the window's units (see ``metrics``)."""
    from .metrics import all_metrics

    if s.truth is None:
        return {}
    lo, hi, unit = s.window
    # fastMRI convention on the windowed [0, 1] images (data range = the volume's maximum there)
    def u(v: np.ndarray) -> np.ndarray:
        return (np.clip(v, lo, hi) - lo) / (hi - lo)

    hu = (lo, hi) if unit == "HU" else None
    out: dict[str, Any] = {}
    for name, v in [(s.solver, s.recon), (s.baseline_name, s.baseline), *s.extra.items()]:
        m = all_metrics(u(s.truth), u(v))
        if hu is not None:
            from .metrics import windowed

            m.update(windowed(s.truth, v, *hu))
        out.update({f"{name}/{k}": float(x) for k, x in m.items()})
    out["nfe"] = float(s.nfe)
    out["seconds"] = float(s.seconds)
    return out


SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
# copied from the input's header when the series joins its study
STUDY_KEYWORDS = ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription",
                  "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "FrameOfReferenceUID",
                  "PositionReferenceIndicator", "BodyPartExamined", "PatientPosition")


def _ds_value(v: float) -> float:
    """``v`` as it survives a DICOM decimal string (16 characters)."""
    return float(f"{v:.10g}")


def write_dicom_series(vol: np.ndarray, out: Path, *, affine: np.ndarray | None = None, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                       reference: Any = None, modality: str = "CT", description: str = "polydiff reconstruction",
                       series_number: int = 9001) -> list[Path]:
    """Write ``vol`` ``(S, H, W)`` (physical units: HU for CT) as a new DICOM series, one file per slice.

    * UIDs: a new SeriesInstanceUID and SOPInstanceUIDs; with ``reference`` (the input series' header) the same
      StudyInstanceUID, patient and FrameOfReferenceUID (and a ReferencedSeriesSequence naming the input series),
      otherwise a new study and frame of reference.
    * Geometry from the slice-first ``affine`` ``(k, i, j) -> mm`` (default ``diag(spacing)``): ImagePositionPatient
      of slice ``k`` is ``affine @ (k, 0, 0, 1)``, ImageOrientationPatient the unit row (``j``) and column (``i``)
      directions, PixelSpacing ``(|a_i|, |a_j|)``, SliceThickness and SpacingBetweenSlices ``|a_k|``. A slice axis
      against the row x column normal is made right-handed by flipping the rows (same voxels in space), so
      slices are ordered along the normal, as readers sort them.
    * Pixels: unsigned 16 bit with ``RescaleSlope = (max - min) / 65535`` and ``RescaleIntercept = min``, so
      values round-trip within ``slope / 2``.
    Returns the written paths (``slice_0000.dcm`` ...).
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    vol = np.asarray(vol, dtype=np.float64)
    if vol.ndim != 3 or not np.isfinite(vol).all():
        raise DataError(f"{out}: DICOM writer needs a finite volume (S, H, W), got shape {vol.shape}")
    a = np.diag([*spacing, 1.0]) if affine is None else np.asarray(affine, dtype=np.float64).copy()
    s_, h, w = vol.shape
    ci, cj, ck = a[:3, 1], a[:3, 2], a[:3, 0]
    if np.dot(np.cross(cj, ci), ck) < 0:  # left-handed: flip rows so the slice axis follows the normal
        vol = vol[:, ::-1, :]
        a[:3, 3] = a[:3, 3] + (h - 1) * ci
        a[:3, 1] = ci = -ci
    dy, dx, dz = float(np.linalg.norm(ci)), float(np.linalg.norm(cj)), float(np.linalg.norm(ck))
    row_cos, col_cos = cj / max(dx, 1e-12), ci / max(dy, 1e-12)
    lo, hi = float(vol.min()), float(vol.max())
    slope = _ds_value((hi - lo) / 65535.0) if hi > lo else 1.0
    intercept = _ds_value(lo)
    stored = np.clip(np.rint((vol - intercept) / slope), 0, 65535).astype("<u2")
    modality = (modality or "OT").upper()
    sop_class = SOP_CLASS.get(modality, SECONDARY_CAPTURE)
    series_uid = generate_uid()
    study = {}
    if reference is not None:
        study = {k: reference.get(k) for k in STUDY_KEYWORDS if k in reference}
    study.setdefault("StudyInstanceUID", generate_uid())
    study.setdefault("FrameOfReferenceUID", generate_uid())
    now = datetime.datetime.now()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(s_):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        for key, val in study.items():
            setattr(ds, key, val)
        for key in ("StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "PatientName", "PatientID",
                    "PatientBirthDate", "PatientSex", "PositionReferenceIndicator"):
            if key not in ds:
                setattr(ds, key, now.strftime("%Y%m%d") if key == "StudyDate" else now.strftime("%H%M%S") if key == "StudyTime" else "")
        ds.Modality = modality
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description[:64]
        ds.SeriesDate, ds.SeriesTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.DerivationDescription = description[:1024]
        if reference is not None and "SeriesInstanceUID" in reference:
            item = Dataset()
            item.SeriesInstanceUID = reference.SeriesInstanceUID
            ds.ReferencedSeriesSequence = Sequence([item])
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds_value(v) for v in (a @ np.array([k, 0.0, 0.0, 1.0]))[:3]]
        ds.ImageOrientationPatient = [_ds_value(v) for v in (*row_cos, *col_cos)]
        ds.PixelSpacing = [_ds_value(dy), _ds_value(dx)]
        ds.SliceThickness = _ds_value(dz)
        ds.SpacingBetweenSlices = _ds_value(dz)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = h, w
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        if modality == "CT":
            ds.RescaleType = "HU"
            ds.KVP = ""
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        p = out / f"slice_{k:04d}.dcm"
        pydicom.dcmwrite(str(p), ds, enforce_file_format=True)
        paths.append(p)
    return paths


__all__ = ["ReconSamples", "metrics_of", "read_all", "write_all", "write_dicom_series", "write_figure", "write_nifti"]


def write_generated(slices: np.ndarray, out: Path, window: tuple[float, float, str]) -> list[Path]:
    """Unconditional samples ``(N, H, W)`` in physical units: ``samples.nii.gz`` and a ``samples.png`` grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib

    out.mkdir(parents=True, exist_ok=True)
    p = out / "samples.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(slices.astype(np.float32), (1, 2, 0)), np.eye(4)), str(p))
    n = len(slices)
    fig, axes = plt.subplots(1, n, figsize=(2 * n, 2.2), squeeze=False)
    for i in range(n):
        axes[0][i].imshow(slices[i], cmap="gray", vmin=window[0], vmax=window[1])
        axes[0][i].axis("off")
    fig.tight_layout()
    fig.savefig(out / "samples.png", dpi=80)
    plt.close(fig)
    return [p, out / "samples.png"]
