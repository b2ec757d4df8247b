"""Writers: CSV (timestamps, original units, median and quantiles), NPZ (all samples), PNG plots (matplotlib Agg)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

WRITE_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class TimeSeriesSamples:
    """Samples in original units, returned whole.

    Attributes:
        task: ``generate``, ``forecast`` or ``impute``.
        samples: ``(N, T, C)`` (forecast/impute: N samples of one series) or ``(N, L, C)`` windows (generate).
        columns: the ``C`` feature names.
        timestamps: ``(T,)`` datetime64 or ``None``.
        observed: ``(T, C)`` bool, the known entries (all false when generating).
        values: ``(T, C)`` the input values (``NaN`` where unknown) or ``None``.
        nfe: network evaluations used.
        calibration: the split-conformal factors applied (``--calibrate-on``; written to ``<task>_calibration.json``) or ``None``.
    """

    task: str
    samples: np.ndarray
    columns: tuple[str, ...]
    timestamps: np.ndarray | None = None
    observed: np.ndarray | None = None
    values: np.ndarray | None = None
    nfe: int = 0
    calibration: dict | None = None

    def quantiles(self, qs: tuple[float, ...] = WRITE_QUANTILES) -> np.ndarray:
        """``(len(qs), T, C)`` sample quantiles."""
        return np.quantile(self.samples, qs, axis=0)


def write_csv(s: TimeSeriesSamples, path: Path) -> Path:
    """Forecast/impute: one row per time step with ``time`` (if known), each column's median and its
    5/25/75/95% quantiles and an ``<col>_observed`` flag; generate: long format ``sample, step, <cols>``."""
    import pandas as pd

    if s.task == "generate":
        n, L, c = s.samples.shape
        df = pd.DataFrame(s.samples.reshape(n * L, c), columns=list(s.columns))
        df.insert(0, "step", np.tile(np.arange(L), n))
        df.insert(0, "sample", np.repeat(np.arange(n), L))
    else:
        q = s.quantiles()
        cols: dict[str, np.ndarray] = {}
        if s.timestamps is not None:
            cols["time"] = s.timestamps
        for j, name in enumerate(s.columns):
            cols[name] = q[2, :, j]
            for k, qq in enumerate(WRITE_QUANTILES):
                if qq != 0.5:
                    cols[f"{name}_q{int(round(qq * 100)):02d}"] = q[k, :, j]
            if s.observed is not None:
                cols[f"{name}_observed"] = s.observed[:, j]
        df = pd.DataFrame(cols)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def write_npz(s: TimeSeriesSamples, path: Path) -> Path:
    """Every sample plus masks, input values, column names and timestamps (ISO strings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {}
    if s.timestamps is not None:
        extra["timestamps"] = np.datetime_as_string(s.timestamps)
    if s.observed is not None:
        extra["observed"] = s.observed
    if s.values is not None:
        extra["values"] = s.values
    np.savez_compressed(path, samples=s.samples, columns=np.array(s.columns), task=np.array(s.task), **extra)
    return path


PLOTTED_WINDOWS = 8
"""Generated windows drawn in the PNG (all of them are in the CSV and NPZ)."""


def plot_title(task: str, n: int, drawn: int, shown_cols: int, cols: int) -> str:
    """The PNG title: what is drawn (samples and columns) out of what was written."""
    what = (f"{drawn} of {n} samples drawn" if task == "generate" and drawn < n else
            f"{n} samples" + (" (median, 50% and 90% bands)" if task != "generate" else ""))
    shown = f"; first {shown_cols} of {cols} columns" if shown_cols < cols else ""
    return f"{task}: {what}{shown} (all in the CSV and NPZ)" if (shown or drawn < n) else f"{task}: {what}"


def write_png(s: TimeSeriesSamples, path: Path, max_features: int = 4) -> Path:
    """Median with 50% and 90% bands and the observed points (forecast/impute), or a few generated windows."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    c = min(len(s.columns), max_features)
    n, drawn = s.samples.shape[0], min(PLOTTED_WINDOWS, s.samples.shape[0])
    fig, axes = plt.subplots(c, 1, figsize=(9, 2.2 * c), squeeze=False, sharex=True)
    for j in range(c):
        ax = axes[j, 0]
        if s.task == "generate":
            for k in range(drawn):
                ax.plot(s.samples[k, :, j], lw=0.8, alpha=0.8)
        else:
            x = s.timestamps if s.timestamps is not None else np.arange(s.samples.shape[1])
            q = s.quantiles()
            ax.fill_between(x, q[0, :, j], q[4, :, j], alpha=0.2, color="C0", label="90%")
            ax.fill_between(x, q[1, :, j], q[3, :, j], alpha=0.35, color="C0", label="50%")
            ax.plot(x, q[2, :, j], color="C0", lw=1.0, label="median")
            if s.observed is not None and s.values is not None:
                o = s.observed[:, j]
                ax.scatter(np.asarray(x)[o], s.values[o, j], s=4, color="k", label="observed", zorder=3)
        ax.set_ylabel(str(s.columns[j]))
    title = plot_title(s.task, n, drawn if s.task == "generate" else n, c, len(s.columns))
    axes[0, 0].set_title(title, fontsize=9)
    if s.task != "generate":
        axes[0, 0].legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, metadata={"Title": title})
    plt.close(fig)
    return path


def write_all(s: TimeSeriesSamples, out_dir: Path, stem: str | None = None) -> list[Path]:
    """CSV + NPZ + PNG into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    stem = stem or s.task
    paths = [write_csv(s, out_dir / f"{stem}.csv"), write_npz(s, out_dir / f"{stem}.npz"), write_png(s, out_dir / f"{stem}.png")]
    if s.calibration is not None:
        import json

        paths.append(out_dir / f"{stem}_calibration.json")
        paths[-1].write_text(json.dumps(s.calibration, indent=1) + "\n")
    return paths


__all__ = ["PLOTTED_WINDOWS", "TimeSeriesSamples", "WRITE_QUANTILES", "plot_title", "write_all", "write_csv", "write_npz", "write_png"]
