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
