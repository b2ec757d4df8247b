"""Reconstruction metrics with the fastMRI conventions.

* PSNR over a volume ``(S, H, W)``: ``10 log10(max(gt)^2 / MSE)`` — the data range is the ground-truth
  volume's maximum (fastMRI ``evaluate.py``), not a fixed range;
* SSIM: per slice with ``data_range = max(gt)`` of the whole volume, 7x7 uniform window (scikit-image's default,
  as fastMRI), averaged over slices;
* NMSE: ``||gt - pred||^2 / ||gt||^2``;
* CT window variants (``*_win``): both volumes clipped to a HU window ``[lo, hi]`` and the data range ``hi - lo``.
"""

from __future__ import annotations

import numpy as np


def _vol(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[None] if x.ndim == 2 else x


def psnr(gt: np.ndarray, pred: np.ndarray, data_range: float | None = None) -> float:
    """PSNR in dB over the volume; ``data_range`` defaults to ``gt.max()``."""
    gt, pred = _vol(gt), _vol(pred)
    dr = float(gt.max()) if data_range is None else float(data_range)
    mse = float(np.mean((gt - pred) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(dr**2 / mse)


def ssim(gt: np.ndarray, pred: np.ndarray, data_range: float | None = None) -> float:
    """Mean over slices of skimage's SSIM with ``data_range = gt.max()`` (the volume's)."""
    from skimage.metrics import structural_similarity

    gt, pred = _vol(gt), _vol(pred)
    dr = float(gt.max()) if data_range is None else float(data_range)
    return float(np.mean([structural_similarity(g, p, data_range=dr) for g, p in zip(gt, pred, strict=True)]))


def nmse(gt: np.ndarray, pred: np.ndarray) -> float:
    gt, pred = _vol(gt), _vol(pred)
    return float(np.sum((gt - pred) ** 2) / max(np.sum(gt**2), 1e-300))


def windowed(gt: np.ndarray, pred: np.ndarray, lo: float, hi: float) -> dict[str, float]:
    """PSNR/SSIM in a HU window: both clipped to ``[lo, hi]``, shifted by ``lo``, data range ``hi - lo``."""
    g = np.clip(_vol(gt), lo, hi) - lo
    p = np.clip(_vol(pred), lo, hi) - lo
    return {"psnr_win": psnr(g, p, hi - lo), "ssim_win": ssim(g, p, hi - lo)}


def all_metrics(gt: np.ndarray, pred: np.ndarray, *, hu_window: tuple[float, float] | None = None) -> dict[str, float]:
    out = {"psnr": psnr(gt, pred), "ssim": ssim(gt, pred), "nmse": nmse(gt, pred)}
    if hu_window is not None:
        out.update(windowed(gt, pred, *hu_window))
    return out


CONVENTION = "PSNR/SSIM: fastMRI convention (data range = ground-truth volume maximum; SSIM 7x7 per slice, averaged)"

__all__ = ["CONVENTION", "all_metrics", "nmse", "psnr", "ssim", "windowed"]
