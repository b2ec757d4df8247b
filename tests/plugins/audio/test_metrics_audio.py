"""Metrics agree with their definitions and with the reference packages."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polydiff_audio.data import synthetic_speech
from polydiff_audio.metrics import estoi, pesq_wb, score, si_sdr


def test_si_sdr_matches_its_definition_and_is_scale_invariant():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(8000)
    e = rng.standard_normal(8000)
    e -= s * (e @ s) / (s @ s)  # orthogonal to s, so the optimal scale of 0.7 s + e is exactly 0.7
    est = 0.7 * s + e
    expected = 10 * math.log10((0.7**2) * (s @ s) / (e @ e))
    assert si_sdr(est, s) == pytest.approx(expected, abs=1e-9)
    assert si_sdr(5.0 * est, s) == pytest.approx(expected, abs=1e-9)


def test_pesq_and_estoi_agree_with_the_packages():
    from pesq import pesq
    from pystoi import stoi

    clean = synthetic_speech(3.0, seed=3).astype(np.float64)
    noisy = clean + 0.05 * np.random.default_rng(1).standard_normal(len(clean))
    assert pesq_wb(noisy, clean) == pytest.approx(pesq(16000, clean, noisy, "wb"), abs=1e-6)
    assert estoi(noisy, clean) == pytest.approx(stoi(clean, noisy, 16000, extended=True), abs=1e-9)
    s_self, s_noisy = score(clean, clean), score(noisy, clean)
    assert s_self.pesq > s_noisy.pesq and s_self.estoi == pytest.approx(1.0, abs=1e-6) and s_self.si_sdr > 100
    with pytest.raises(ValueError):
        pesq_wb(clean, clean, sample_rate=22050)
