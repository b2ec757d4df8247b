"""Classic single-channel enhancement baselines on a Hann STFT (n_fft 512, hop 128, noisy phase):

- spectral subtraction (Berouti et al. 1979): ``|S|^2 = max(|Y|^2 - a N, b |Y|^2)``;
- the decision-directed Wiener filter (Ephraim & Malah 1984; Scalart & Filho 1996): a priori SNR
  ``xi_l = w |S_{l-1}|^2 / N + (1 - w) max(gamma_l - 1, 0)`` with ``w = 0.98``, gain ``xi / (1 + xi)``.

The noise PSD ``N`` (per frequency) comes from minimum statistics (Martin 2001, simplified: the minimum of
the recursively smoothed periodogram over a sliding 1.5 s window times a bias factor) or from the leading
frames (speech assumed absent there). Inputs and outputs are 1-D float arrays; the output has the input's length.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

N_FFT, HOP = 512, 128


def _stft(x: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(np.asarray(x, dtype=np.float64))
    w = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    return torch.stft(t, N_FFT, HOP, window=w, center=True, return_complex=True).numpy()  # (F, L)


def _istft(spec: np.ndarray, length: int) -> np.ndarray:
    w = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    return torch.istft(torch.from_numpy(spec), N_FFT, HOP, window=w, center=True, length=length).numpy().astype(np.float32)


def noise_psd(power: np.ndarray, sample_rate: int = 16000, method: str = "min-stats", leading_s: float = 0.25) -> np.ndarray:
    """Noise power per frequency ``(F,)`` from a noisy periodogram ``power`` ``(F, L)``.

    ``min-stats``: smoothed periodogram ``P_l = 0.85 P_{l-1} + 0.15 |Y_l|^2``, its minimum over every window of
    1.5 s, averaged over windows, times a bias factor (the minimum of a smoothed chi-square underestimates its
    mean); the factor is calibrated once on white Gaussian noise through this same STFT (:func:`min_stats_bias`).
    ``leading``: the mean periodogram of the first ``leading_s`` seconds.
    """
    F, L = power.shape
    if method == "leading":
        n = max(1, min(L, int(leading_s * sample_rate / HOP)))
        return power[:, :n].mean(axis=1)
    if method != "min-stats":
        raise ValueError(f"noise estimate {method!r}: expected min-stats or leading")
    win = max(1, min(L, int(1.5 * sample_rate / HOP)))
    return min_stats_bias(win) * _min_stats(power, win)


def _min_stats(power: np.ndarray, win: int) -> np.ndarray:
    smooth = np.empty_like(power)
    acc = power[:, 0]
    for frame in range(power.shape[1]):
        acc = 0.85 * acc + 0.15 * power[:, frame]
        smooth[:, frame] = acc
    L = power.shape[1]
    mins = [smooth[:, s:s + win].min(axis=1) for s in range(0, max(1, L - win + 1), max(1, win // 4))]
    return np.mean(mins, axis=0)


@functools.lru_cache(maxsize=16)
def min_stats_bias(win: int) -> float:
    """``E[|Y|^2] / E[min statistic]`` on 20 s of seeded white Gaussian noise (window ``win`` frames)."""
    x = np.random.default_rng(12345).standard_normal(max(320000, (win + 64) * HOP))
    P = np.abs(_stft(x)) ** 2
    return float(P[4:-4].mean() / _min_stats(P, win)[4:-4].mean())


def spectral_subtraction(noisy: np.ndarray, sample_rate: int = 16000, *, over: float = 2.0, floor: float = 0.01,
                         noise: str = "min-stats") -> np.ndarray:
    """Power spectral subtraction with over-subtraction ``over`` and spectral floor ``floor``; noisy phase."""
    Y = _stft(noisy)
    P = np.abs(Y) ** 2
    N = noise_psd(P, sample_rate, noise)[:, None]
    S2 = np.maximum(P - over * N, floor * P)
    gain = np.sqrt(S2 / np.maximum(P, 1e-20))
    return _istft(gain * Y, len(noisy))


def wiener_dd(noisy: np.ndarray, sample_rate: int = 16000, *, w: float = 0.98, xi_min_db: float = -25.0,
              noise: str = "min-stats") -> np.ndarray:
    """Wiener filter with the decision-directed a priori SNR; noisy phase."""
    Y = _stft(noisy)
    P = np.abs(Y) ** 2
    N = np.maximum(noise_psd(P, sample_rate, noise), 1e-20)
    xi_min = 10.0 ** (xi_min_db / 10.0)
    gains = np.empty_like(P)
    prev_s2 = np.zeros(P.shape[0])
    for frame in range(P.shape[1]):
        gamma = P[:, frame] / N
        xi = np.maximum(w * prev_s2 / N + (1.0 - w) * np.maximum(gamma - 1.0, 0.0), xi_min)
        g = xi / (1.0 + xi)
        gains[:, frame] = g
        prev_s2 = (g**2) * P[:, frame]
    return _istft(gains * Y, len(noisy))


__all__ = ["noise_psd", "spectral_subtraction", "wiener_dd"]


# -- vocoder baselines (Griffin-Lim) ------------------------------------------------------------------------------------


def griffin_lim(magnitude, cfg, length: int, *, n_iter: int = 64, seed: int = 0) -> np.ndarray:  # type: ignore[no-untyped-def]
    """torchaudio Griffin-Lim (momentum 0.99) from a linear STFT magnitude ``(n_fft // 2 + 1, T)`` of the mel
    front-end's ``cfg`` (:class:`~polydiff_audio.transforms.MelConfig`); returns ``(length,)``."""
    import torch
    import torchaudio

    win = min(cfg.n_fft, 4 * cfg.hop)
    gl = torchaudio.transforms.GriffinLim(n_fft=cfg.n_fft, n_iter=n_iter, win_length=win, hop_length=cfg.hop, power=1.0,
                                          momentum=0.99, length=length, rand_init=True)
    torch.manual_seed(seed)  # GriffinLim's random initial phase draws from the global generator
    with torch.no_grad():
        return gl(torch.as_tensor(magnitude, dtype=torch.float32)[None])[0].numpy().astype(np.float32)


def griffin_lim_from_mel(mel, cfg, length: int, *, n_iter: int = 64, seed: int = 0) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Griffin-Lim after mapping a magnitude mel spectrogram ``(n_mels, T)`` back to a linear magnitude with
    ``torchaudio.transforms.InverseMelScale(driver="gelsd")`` (non-negative least squares)."""
    import torch
    import torchaudio

    inv = torchaudio.transforms.InverseMelScale(n_stft=cfg.n_fft // 2 + 1, n_mels=cfg.n_mels, sample_rate=cfg.sample_rate,
                                                f_min=cfg.f_min, f_max=cfg.sample_rate / 2.0, norm=None, mel_scale="htk",
                                                driver="gelsd")
    with torch.no_grad():
        lin = inv(torch.as_tensor(mel, dtype=torch.float32)[None])[0].clamp_min(0.0)
    return griffin_lim(lin, cfg, length, n_iter=n_iter, seed=seed)
