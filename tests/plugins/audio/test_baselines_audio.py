"""The classic baselines: the noise estimate on pure noise, and both filters improve a noisy mixture."""

from __future__ import annotations

import numpy as np
import torch

from polydiff_audio.baselines import N_FFT, noise_psd, spectral_subtraction, wiener_dd
from polydiff_audio.data import mix_at_snr, synthetic_noise, synthetic_speech
from polydiff_audio.metrics import si_sdr


def test_leading_frame_noise_estimate_matches_white_noise_power():
    rng = np.random.default_rng(0)
    x = 0.1 * rng.standard_normal(160000)
    Y = torch.stft(torch.from_numpy(x), N_FFT, 128, window=torch.hann_window(N_FFT, dtype=torch.float64), return_complex=True).numpy()
    P = np.abs(Y) ** 2
    expected = 0.01 * float((torch.hann_window(N_FFT, dtype=torch.float64) ** 2).sum())  # E|Y|^2 = s^2 sum w^2
    lead = noise_psd(P, method="leading", leading_s=2.0)[5:-5]
    assert abs(lead.mean() / expected - 1) < 0.05
    ms = noise_psd(P)[5:-5]
    assert abs(ms.mean() / expected - 1) < 0.15  # bias calibrated on other noise; 15 %: 10 s of data, 21 minima per bin


def test_baselines_improve_si_sdr_on_stationary_noise():
    clean = synthetic_speech(4.0, seed=7)
    noisy = mix_at_snr(clean, synthetic_noise("white", 4.0, seed=1), 0.0)
    base = si_sdr(noisy, clean)
    for f in (spectral_subtraction, wiener_dd):
        out = f(noisy)
        assert out.shape == noisy.shape
        assert si_sdr(out, clean) > base + 3.0, f.__name__
