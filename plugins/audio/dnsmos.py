"""DNSMOS P.835 (SIG / BAK / OVRL) and P.808 MOS, offline, through Microsoft's ``speechmos`` package.

``speechmos`` 0.0.1.1 ships the DNSMOS ONNX models inside its wheel (``speechmos/dnsmos_models/sig_bak_ovr.onnx`` and
``model_v8.onnx``) and runs them with ``onnxruntime``; it declares no dependencies, so ``onnxruntime``, ``librosa`` (the
P.808 mel front-end) and ``requests`` (imported, unused) must be installed alongside. The first call in a process is
slow (librosa's numba functions compile: about 20 s, two minutes on a loaded 2-core machine); later calls take a few
seconds per 9.01 s window. Clips shorter than 9.01 s are repeated to that length by ``speechmos`` itself.

DNSMOS is non-intrusive and level-dependent: :func:`dnsmos` normalises each clip to an RMS of -25 dBFS (the DNS
Challenge's level) and, if a peak would then exceed 0.99, scales it down to that peak. ONNX sessions run with
``threads`` intra-op threads (``speechmos`` alone would use every core).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from polydiff.errors import UserInputError

SR = 16000
TARGET_DBFS = -25.0
_SESSIONS: dict[int, Any] = {}


@dataclass(frozen=True)
class DNSMOSScores:
    """P.835 ``sig`` (speech), ``bak`` (background), ``ovrl`` (overall) and P.808 ``p808``, each on a 1-5 scale."""

    sig: float
    bak: float
    ovrl: float
    p808: float


def available() -> bool:
    """Whether ``speechmos`` and its undeclared dependencies import."""
    try:
        import librosa  # noqa: F401
        import onnxruntime  # noqa: F401
        import speechmos.dnsmos  # noqa: F401
    except Exception:
        return False
    return True


def _model(threads: int) -> Any:
    if threads in _SESSIONS:
        return _SESSIONS[threads]
    if not available():
        raise UserInputError("DNSMOS (eval.dnsmos=true / --dnsmos) needs speechmos with onnxruntime and librosa: "
                             "pip install speechmos==0.0.1.1 onnxruntime librosa requests")
    import os

    import onnxruntime as ort
    from speechmos import dnsmos as D

    root = os.path.join(os.path.dirname(os.path.abspath(D.__file__)), "dnsmos_models")
    primary, p808 = os.path.join(root, "sig_bak_ovr.onnx"), os.path.join(root, "model_v8.onnx")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    model = D.DNSMOS.__new__(D.DNSMOS)  # the package's scorer with our sessions (its __init__ would use every core)
    model.primary_model_path = primary
    model.onnx_sess = ort.InferenceSession(primary, sess_options=so, providers=["CPUExecutionProvider"])
    model.p808_onnx_sess = ort.InferenceSession(p808, sess_options=so, providers=["CPUExecutionProvider"])
    _SESSIONS[threads] = model
    return model


def normalise_level(audio: np.ndarray, target_dbfs: float = TARGET_DBFS, peak: float = 0.99) -> np.ndarray:
    """``audio`` scaled to an RMS of ``target_dbfs`` (then down to ``peak`` if it would clip); silence is returned as is."""
    a = np.asarray(audio, dtype=np.float64)
    rms = float(np.sqrt(np.mean(a**2))) if a.size else 0.0
    if rms <= 0.0:
        return a.astype(np.float32)
    a = a * (10.0 ** (target_dbfs / 20.0) / rms)
    m = float(np.abs(a).max())
    if m > peak:
        a = a * (peak / m)
    return a.astype(np.float32)


def dnsmos(audio: np.ndarray, sample_rate: int = SR, *, threads: int = 1) -> DNSMOSScores:
    """DNSMOS of a mono clip ``(N,)`` (resampled to 16 kHz when needed, level-normalised).

    Raises:
        UserInputError: ``speechmos`` / ``onnxruntime`` / ``librosa`` are not installed.
    """
    a = np.asarray(audio, dtype=np.float32)
    if sample_rate != SR:
        from .data import resample

        a = resample(a, int(sample_rate), SR)
    r = _model(threads)(normalise_level(a), SR, False)
    vals = [float(r[k]) for k in ("sig_mos", "bak_mos", "ovrl_mos", "p808_mos")]
    if any(math.isnan(v) for v in vals):
        raise ValueError("DNSMOS returned no window (empty clip)")
    return DNSMOSScores(*vals)


__all__ = ["DNSMOSScores", "available", "dnsmos", "normalise_level"]
