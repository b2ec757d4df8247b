"""Writers: NIfTI volumes with geometry, a PNG figure (ground truth, baseline, each solver, error map), metrics JSON.

Files written into the output folder:

* ``recon.nii.gz`` (the solver's reconstruction), ``baseline.nii.gz`` (FBP / zero-filled) and, when known,
  ``truth.nii.gz`` — in physical units (windowing inverted), slices first in memory and stored ``(H, W, S)``
  with the input's affine (voxel ``(i, j, k)``);
* ``figure.png`` — one row per slice: ground truth, baseline, reconstruction, |error|;
* ``recon.json`` — task, solver, NFE, seconds, window, metrics.
"""

from __future__ import annotations

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


__all__ = ["ReconSamples", "metrics_of", "read_all", "write_all", "write_figure", "write_nifti"]


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
