"""The run's metrics log: ``metrics.csv`` (and TensorBoard when ``tensorboard`` is installed)."""

from __future__ import annotations

import csv
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

COLUMNS = ("step", "loss", "lr", "grad_norm", "seconds", "samples_per_s", "val_loss")


class MetricsLog:
    """Append rows of :data:`COLUMNS` to a CSV file.

    On resume from step ``resume_step`` rows logged after that step (by the interrupted run) are
    dropped, so the log reads as one uninterrupted run.
    """

    def __init__(self, path: Path, *, resume_step: int | None = None, tensorboard_dir: Path | None = None) -> None:
        self.path = Path(path)
        rows: list[dict[str, str]] = []
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
        # rewrite through a temp file, so a kill now cannot lose the rows already logged
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS, extrasaction="ignore")
        self._tb = None
        if tensorboard_dir is not None and importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None  # drop events of the interrupted run
            self._tb = SummaryWriter(str(tensorboard_dir), purge_step=purge)

    def log(self, row: Mapping[str, Any]) -> None:
        """Write one row (missing columns are left empty)."""
        out = {k: _fmt(row.get(k)) for k in COLUMNS}
        self._writer.writerow(out)
        self._file.flush()
        if self._tb is not None:
            step = int(row["step"])
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(f"train/{k}" if k != "val_loss" else "val/loss", v, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.8g}"
    return str(v)


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of a metrics log as floats (empty cells omitted)."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


__all__ = ["COLUMNS", "MetricsLog", "read_metrics"]
