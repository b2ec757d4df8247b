"""Speech-enhancement metrics: PESQ (wide-band, 16 kHz; ITU-T P.862.2 via ``pesq``), ESTOI (``pystoi``, extended)
and SI-SDR by its definition. Inputs are 1-D float arrays of equal length at ``sample_rate``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR in dB: ``a = <s_hat, s> / |s|^2``, ``10 log10(|a s|^2 / |a s - s_hat|^2)``."""
    s_hat = np.asarray(estimate, dtype=np.float64)
    s = np.asarray(reference, dtype=np.float64)
    a = float(np.dot(s_hat, s)) / max(float(np.dot(s, s)), 1e-20)
    target = a * s
    err = target - s_hat
    return 10.0 * math.log10(max(float(np.dot(target, target)), 1e-20) / max(float(np.dot(err, err)), 1e-20))


def pesq_wb(estimate: np.ndarray, reference: np.ndarray, sample_rate: int = 16000) -> float:
    """Wide-band PESQ (P.862.2) at 16 kHz; ``nan`` where PESQ finds no utterance (silent clips)."""
    from pesq import pesq

    if sample_rate != 16000:
        raise ValueError(f"wide-band PESQ needs 16 kHz audio, got {sample_rate} Hz")
    try:
        return float(pesq(sample_rate, np.asarray(reference, dtype=np.float64), np.asarray(estimate, dtype=np.float64), "wb"))
    except Exception:  # pesq.NoUtterancesError / cypesq errors on silent input
        return float("nan")


def estoi(estimate: np.ndarray, reference: np.ndarray, sample_rate: int = 16000) -> float:
    """Extended STOI (Jensen & Taal 2016) through ``pystoi.stoi(..., extended=True)``."""
    from pystoi import stoi

    return float(stoi(np.asarray(reference, dtype=np.float64), np.asarray(estimate, dtype=np.float64), sample_rate, extended=True))


@dataclass(frozen=True)
class Scores:
    """PESQ-wb, ESTOI and SI-SDR (dB) of one estimate against its reference."""

    pesq: float
    estoi: float
    si_sdr: float


def score(estimate: np.ndarray, reference: np.ndarray, sample_rate: int = 16000) -> Scores:
    """All three metrics; lengths must match."""
    if len(estimate) != len(reference):
        raise ValueError(f"estimate has {len(estimate)} samples, reference {len(reference)}")
    return Scores(pesq_wb(estimate, reference, sample_rate), estoi(estimate, reference, sample_rate), si_sdr(estimate, reference))


def mean_scores(scores: list[Scores]) -> dict[str, float]:
    """Means over clips (``nan`` PESQ values left out)."""
    def m(vals: list[float]) -> float:
        vals = [v for v in vals if not math.isnan(v)]
        return float(np.mean(vals)) if vals else float("nan")

    return {"pesq": m([s.pesq for s in scores]), "estoi": m([s.estoi for s in scores]), "si_sdr": m([s.si_sdr for s in scores])}


__all__ = ["Scores", "estoi", "mean_scores", "pesq_wb", "score", "si_sdr"]


# -- vocoder metrics ----------------------------------------------------------------------------------------------------


def log_spectral_distance(estimate: np.ndarray, reference: np.ndarray, *, n_fft: int = 1024, hop: int = 256, eps: float = 1e-10) -> float:
    """Log-spectral distance in dB: ``mean_t sqrt(mean_f (10 log10((|S_t,f|^2 + eps) / (|Ŝ_t,f|^2 + eps)))^2)``
    over the frames of a Hann-window STFT (``n_fft``, ``hop``, ``center=True``)."""
    import torch

    def power(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.asarray(x, dtype=np.float64))
        w = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        return torch.stft(t, n_fft, hop_length=hop, window=w, center=True, return_complex=True).abs().pow(2).numpy()

    if len(estimate) != len(reference):
        raise ValueError(f"estimate has {len(estimate)} samples, reference {len(reference)}")
    d = 10.0 * np.log10((power(reference) + eps) / (power(estimate) + eps))  # (F, T)
    return float(np.mean(np.sqrt(np.mean(d**2, axis=0))))


def mel_cepstrum(audio: np.ndarray, sample_rate: int = 16000, *, order: int = 24, n_fft: int = 1024, hop: int = 256,
                 n_mels: int = 80, floor: float = 1e-5) -> np.ndarray:
    """Mel-cepstral coefficients ``c_0 .. c_order`` per frame ``(T, order + 1)``: the orthonormal DCT-II over the mel
    bands of the natural-log mel *amplitude* spectrum (HTK mel filters, Hann window, ``center=True``)."""
    import torch
    from scipy.fft import dct

    from .transforms import MelConfig, mel_spectrogram

    cfg = MelConfig(sample_rate=sample_rate, n_fft=n_fft, hop=hop, n_mels=n_mels)
    mel = mel_spectrogram(torch.from_numpy(np.asarray(audio, dtype=np.float32))[None], cfg)[0].double().numpy()  # (M, T)
    c = dct(np.log(np.maximum(mel, floor)), type=2, axis=0, norm="ortho")
    return c[: order + 1].T


def mcd_from_cepstra(c_est: np.ndarray, c_ref: np.ndarray) -> float:
    """Mel-cepstral distortion in dB of aligned frames ``(T, D + 1)``, ``c_0`` (energy) excluded:
    ``mean_t (10 / ln 10) sqrt(2 sum_{d>=1} (c_t,d - ĉ_t,d)^2)``."""
    diff = np.asarray(c_est, dtype=np.float64)[:, 1:] - np.asarray(c_ref, dtype=np.float64)[:, 1:]
    return float(np.mean(10.0 / np.log(10.0) * np.sqrt(2.0 * np.sum(diff**2, axis=1))))


def mel_cepstral_distortion(estimate: np.ndarray, reference: np.ndarray, sample_rate: int = 16000, *, order: int = 24) -> float:
    """MCD (dB) between two time-aligned signals (resynthesis: same length, no DTW), orders ``1..order``."""
    if len(estimate) != len(reference):
        raise ValueError(f"estimate has {len(estimate)} samples, reference {len(reference)}")
    return mcd_from_cepstra(mel_cepstrum(estimate, sample_rate, order=order), mel_cepstrum(reference, sample_rate, order=order))


__all__ += ["log_spectral_distance", "mcd_from_cepstra", "mel_cepstral_distortion", "mel_cepstrum"]
