"""Reconstruction metrics with the fastMRI conventions.

* PSNR over a volume ``(S, H, W)``: ``10 log10(max(gt)^2 / MSE)`` — the data range is the ground-truth
  volume's maximum (fastMRI ``evaluate.py``), not a fixed range;
* SSIM: per slice with ``data_range = max(gt)`` of the whole volume, 7x7 uniform window (scikit-image's default,
  as fastMRI), averaged over slices;
* NMSE: ``||gt - pred||^2 / ||gt||^2``;
* CT window variants (``*_win``): both volumes clipped to a HU window ``[lo, hi]`` and the data range ``hi - lo``.

Ultrasound contrast and speckle statistics (ROI samples are 1-D arrays of **envelope** values ``|IQ|``, linear amplitude):

* gCNR (Rodriguez-Molares et al. 2020): ``1 - sum_k min(p_k, q_k)``, the histograms ``p``, ``q`` of the two ROIs
  on ``bins`` shared bins spanning both samples (256 as in zea); 1 = separable, 0 = identical distributions;
* CNR: ``|mu_1 - mu_2| / sqrt(sigma_1^2 + sigma_2^2)`` (population standard deviations);
* contrast: ``20 log10(mu_1 / mu_2)`` dB;
* KS: the two-sample Kolmogorov–Smirnov statistic ``sup |F_a - F_b|`` (``ks_two_sample``), and the one-sample
  statistic of an envelope ROI against the Rayleigh law with its maximum-likelihood scale
  ``s^2 = mean(A^2) / 2`` (``ks_rayleigh``: fully developed speckle gives a small value).
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


def _roi(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).ravel()
    if a.size == 0 or not np.isfinite(a).all():
        raise ValueError(f"an ROI must hold finite values, got {a.size} values")
    return a


def gcnr(a: np.ndarray, b: np.ndarray, bins: int = 256) -> float:
    """Generalised contrast-to-noise ratio ``1 - overlap`` of the two samples' histograms on shared bins."""
    a, b = _roi(a), _roi(b)
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    if hi <= lo:
        return 0.0
    edges = np.linspace(lo, hi, int(bins) + 1)
    p = np.histogram(a, edges)[0] / a.size
    q = np.histogram(b, edges)[0] / b.size
    return float(1.0 - np.minimum(p, q).sum())


def cnr(a: np.ndarray, b: np.ndarray) -> float:
    """``|mean(a) - mean(b)| / sqrt(var(a) + var(b))``."""
    a, b = _roi(a), _roi(b)
    den = np.sqrt(a.var() + b.var())
    return float(abs(a.mean() - b.mean()) / den) if den > 0 else float("inf")


def contrast_db(a: np.ndarray, b: np.ndarray) -> float:
    """``20 log10(mean(a) / mean(b))`` in dB (``a``: e.g. the lesion, ``b``: the background)."""
    a, b = _roi(a), _roi(b)
    return float(20 * np.log10(max(a.mean(), 1e-300) / max(b.mean(), 1e-300)))


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic ``sup_x |F_a(x) - F_b(x)|`` (empirical CDFs)."""
    a, b = np.sort(_roi(a)), np.sort(_roi(b))
    x = np.concatenate([a, b])
    fa = np.searchsorted(a, x, side="right") / a.size
    fb = np.searchsorted(b, x, side="right") / b.size
    return float(np.abs(fa - fb).max())


def ks_rayleigh(env: np.ndarray) -> float:
    """One-sample KS statistic of envelope values against Rayleigh with the ML scale ``s^2 = mean(A^2) / 2``."""
    a = np.sort(_roi(env))
    s2 = max(float(np.mean(a**2)) / 2, 1e-300)
    cdf = 1 - np.exp(-(a**2) / (2 * s2))
    n = a.size
    i = np.arange(1, n + 1)
    return float(max((i / n - cdf).max(), (cdf - (i - 1) / n).max()))


def speckle_metrics(env: np.ndarray, inside: np.ndarray, background: np.ndarray, *, reference: np.ndarray | None = None) -> dict[str, float]:
    """Contrast and speckle metrics of envelope frames ``(S, n, n)`` over fixed masks ``(n, n)`` (pooled over frames).

    Returns ``gcnr``, ``cnr``, ``contrast_db`` (inside vs background), ``ks_rayleigh`` of the background ROI and, with a
    ground-truth envelope ``reference`` ``(S, n, n)``, ``ks_background`` / ``ks_inside``: two-sample KS between the
    estimate's and the reference's ROI values (0 = same distribution), and ``rmse_db``: the RMS error of the B-mode
    (``20 log10`` of the envelope, each clipped at 50 dB below the reference's maximum).
    """
    env = np.asarray(env, dtype=np.float64)
    env = env[None] if env.ndim == 2 else env
    i, bg = env[:, inside], env[:, background]
    out = {"gcnr": gcnr(i, bg), "cnr": cnr(i, bg), "contrast_db": contrast_db(i, bg), "ks_rayleigh": ks_rayleigh(bg)}
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float64)
        ref = ref[None] if ref.ndim == 2 else ref
        out["ks_background"] = ks_two_sample(bg, ref[:, background])
        out["ks_inside"] = ks_two_sample(i, ref[:, inside])
        top = float(ref.max())

        def db(e: np.ndarray) -> np.ndarray:
            return np.clip(20 * np.log10(np.maximum(e, 1e-300) / top), -50, 0)

        out["rmse_db"] = float(np.sqrt(np.mean((db(env) - db(ref)) ** 2)))
    return out


CONVENTION = "PSNR/SSIM: fastMRI convention (data range = ground-truth volume maximum; SSIM 7x7 per slice, averaged)"

US_CONVENTION = ("gCNR (256 shared bins), CNR, contrast and KS on the envelope |IQ| over fixed ROIs: the disk of 0.8 r "
                 "inside the anechoic cyst and the annulus [1.25 r, 1.85 r] around it; KS-Rayleigh in that annulus")

__all__ = ["CONVENTION", "US_CONVENTION", "all_metrics", "cnr", "contrast_db", "gcnr", "ks_rayleigh", "ks_two_sample", "nmse", "psnr",
           "speckle_metrics", "ssim", "windowed"]
