"""Vocoder front-end and metrics: mel shapes, LSD / MCD against analytic values and a hand computation, and
Griffin-Lim from the exact linear magnitude converging on a test signal."""

from __future__ import annotations

import math

import numpy as np
import torch

from polydiff_audio.baselines import griffin_lim, griffin_lim_from_mel
from polydiff_audio.metrics import log_spectral_distance, mcd_from_cepstra, mel_cepstral_distortion, mel_cepstrum
from polydiff_audio.transforms import MelConfig, linear_magnitude, log_mel, log_mel_to_mel, mel_spectrogram

CFG = MelConfig()


def _noise(n: int = 8000, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def _chirp(n: int = 8000) -> np.ndarray:
    t = np.arange(n) / 16000
    return (0.5 * np.sin(2 * np.pi * (300 * t + 800 * t**2)) * np.hanning(n)).astype(np.float32)


def test_mel_front_end_shapes_range_and_inverse():
    x = torch.from_numpy(np.stack([_noise(8000), _noise(8000, 1)]))
    m = log_mel(x, CFG)
    assert m.shape == (2, 80, 8000 // 256 + 1) and float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    assert linear_magnitude(x, CFG).shape == (2, 513, 32)
    mel = mel_spectrogram(x, CFG)
    ok = (m > 0) & (m < 1)  # where the clamps in log_mel are inactive the normalisation inverts exactly
    assert ok.float().mean() > 0.9
    torch.testing.assert_close(log_mel_to_mel(m, CFG)[ok], mel[ok], rtol=1e-4, atol=0)


def test_lsd_and_mcd_are_zero_on_identical_signals_and_analytic_under_scaling():
    x = _noise()
    assert log_spectral_distance(x, x) == 0.0 and mel_cepstral_distortion(x, x) == 0.0
    # scaling by 2 multiplies every power by 4: LSD = 10 log10 4 dB in every bin (white noise: eps negligible)
    assert abs(log_spectral_distance(2 * x, x) - 20 * math.log10(2)) < 1e-3
    # ... and adds ln 2 to every log-mel band: a constant goes to c_0 only under the orthonormal DCT, which MCD excludes
    assert mel_cepstral_distortion(2 * x, x) < 1e-6
    assert mel_cepstral_distortion(x + _noise(seed=1) * 0.3, x) > 0.5


def test_mcd_and_lsd_match_hand_computations():
    c_ref = np.zeros((2, 4))
    c_est = np.array([[9.0, 3.0, 4.0, 0.0], [0.0, 0.0, 0.0, 1.0]])  # c_0 differs but is excluded
    hand = (10 / math.log(10) * math.sqrt(2 * 25) + 10 / math.log(10) * math.sqrt(2 * 1)) / 2
    assert abs(mcd_from_cepstra(c_est, c_ref) - hand) < 1e-12
    # mel_cepstrum: the orthonormal DCT-II of ln(mel amplitude), written out as a sum
    x = _noise(4096)
    c = mel_cepstrum(x, order=5)
    lm = np.log(np.maximum(mel_spectrogram(torch.from_numpy(x)[None], CFG)[0].double().numpy(), 1e-5))  # (80, T)
    m = lm.shape[0]
    k = 3
    hand_c3 = math.sqrt(2 / m) * (lm * np.cos(np.pi * k * (2 * np.arange(m)[:, None] + 1) / (2 * m))).sum(axis=0)
    np.testing.assert_allclose(c[:, 3], hand_c3, rtol=1e-6, atol=1e-6)
    # LSD of a pair whose spectra differ by a known ratio in one frame only is that frame's RMS dB over frames
    y = np.zeros(4096, dtype=np.float32)
    y[2048] = 1.0  # an impulse: flat power |w[n]|^2 in the frame(s) that contain it
    z = y.copy()
    z[2048] = 10.0  # 20 dB louder where the impulse is seen, identical (zero) elsewhere
    frames = 4096 // 256 + 1
    # centred frame t spans samples [256 t - 512, 256 t + 512): frames 7, 8, 9 see the impulse at a non-zero window tap
    seen = [t for t in range(frames) if abs(256 * t - 2048) < 512]
    assert seen == [7, 8, 9]
    expected = 20.0 * len(seen) / frames
    assert abs(log_spectral_distance(z, y) - expected) < 0.05, (log_spectral_distance(z, y), expected)


def test_griffin_lim_from_the_exact_linear_magnitude_converges():
    x = _chirp()
    mag = linear_magnitude(torch.from_numpy(x)[None], CFG)[0]
    gl = griffin_lim(mag, CFG, len(x), n_iter=100)
    one = griffin_lim(mag, CFG, len(x), n_iter=0)  # random phase, no iteration
    assert gl.shape == x.shape
    assert log_spectral_distance(gl, x) < 2.5 and log_spectral_distance(gl, x) < 0.5 * log_spectral_distance(one, x)
    from_mel = griffin_lim_from_mel(mel_spectrogram(torch.from_numpy(x)[None], CFG)[0], CFG, len(x), n_iter=64)
    assert from_mel.shape == x.shape and np.isfinite(from_mel).all()
    assert log_spectral_distance(from_mel, x) > log_spectral_distance(gl, x)  # the mel loses resolution
