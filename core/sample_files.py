"""Default sample files for recipes whose samples are plain tensors.

A ``(N, D)`` tensor is written as ``samples.csv`` (header ``x0, x1, ...``; readable anywhere); any other
shape as ``samples.safetensors`` (key ``samples``). :func:`read_tensor_samples` reads either back and
refuses a folder that holds neither with one line naming it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from torch import Tensor

from .errors import DataError

CSV_NAME = "samples.csv"
TENSOR_NAME = "samples.safetensors"


def write_tensor_samples(x: Tensor, out_dir: str | Path) -> list[Path]:
    """Write ``x`` into ``out_dir``: CSV for shape ``(N, D)``, safetensors otherwise; returns the file written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x = x.detach().cpu()
    if x.ndim == 2 and x.is_floating_point():
        path = out / CSV_NAME
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([f"x{j}" for j in range(x.shape[1])])
            w.writerows([[f"{v:.8g}" for v in row] for row in x.double().tolist()])
        return [path]
    from safetensors.torch import save_file

    path = out / TENSOR_NAME
    save_file({"samples": x.contiguous()}, str(path))
    return [path]


def read_tensor_samples(samples_dir: str | Path) -> Tensor:
    """The samples written by :func:`write_tensor_samples` (CSV as float64 ``(N, D)``).

    Raises:
        DataError: the folder holds neither file, or the file cannot be read (the message names it).
    """
    folder = Path(samples_dir)
    csv_path, st_path = folder / CSV_NAME, folder / TENSOR_NAME
    if csv_path.is_file():
        try:
            with open(csv_path, newline="") as f:
                rows = list(csv.reader(f))
            header, body = rows[0], rows[1:]
            x = torch.tensor([[float(v) for v in r] for r in body], dtype=torch.float64)
            if not body or x.shape[1] != len(header):
                raise ValueError(f"{len(body)} rows of {x.shape[1] if body else 0} values under {len(header)} columns")
            return x
        except (OSError, ValueError, IndexError) as e:
            raise DataError(f"{csv_path}: cannot read samples ({e}); expected a CSV with header x0,x1,...") from None
    if st_path.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(st_path))["samples"]
        except (OSError, KeyError, SafetensorError) as e:
            raise DataError(f"{st_path}: cannot read samples ({e}); expected a safetensors file with key 'samples'") from None
    raise DataError(f"{folder}: no {CSV_NAME} or {TENSOR_NAME} here; pass the folder 'polydiff sample RUN --out DIR' wrote")


__all__ = ["CSV_NAME", "TENSOR_NAME", "read_tensor_samples", "write_tensor_samples"]
