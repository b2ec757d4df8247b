"""SGMSE's compressed complex STFT: waveform ``(B, N)`` <-> complex ``(B, F, T)`` <-> real 2-channel ``(B, 2, F, T)``.

``c(z) = beta |z|^alpha e^{i angle z}`` with ``alpha = 0.5``, ``beta = 0.15`` on the STFT of a 16 kHz waveform
(``n_fft = 510`` -> ``F = 256`` bins, hop 128, periodic Hann window, ``center=True``). The inverse
``|c / beta|^(1/alpha) e^{i angle c}`` followed by the iSTFT reconstructs the waveform (Hann at 75 % overlap
satisfies the COLA condition). The model works on the real/imaginary parts as two channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SpecConfig:
    """STFT and compression settings (SGMSE+'s 16 kHz defaults)."""

    sample_rate: int = 16000
    n_fft: int = 510
    hop: int = 128
    alpha: float = 0.5
    beta: float = 0.15

    @property
    def bins(self) -> int:
        """Frequency bins ``F = n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    def frames(self, num_samples: int) -> int:
        """STFT frames of a waveform of ``num_samples`` (``center=True``)."""
        return num_samples // self.hop + 1

    def samples_for(self, frames: int) -> int:
        """Waveform length whose STFT has exactly ``frames`` frames."""
        return (frames - 1) * self.hop


def _window(cfg: SpecConfig, like: Tensor) -> Tensor:
    return torch.hann_window(cfg.n_fft, periodic=True, dtype=like.real.dtype if like.is_complex() else like.dtype, device=like.device)


def stft(wav: Tensor, cfg: SpecConfig) -> Tensor:
    """Complex STFT ``(B, F, T)`` of ``wav`` ``(B, N)``."""
    return torch.stft(wav, cfg.n_fft, hop_length=cfg.hop, window=_window(cfg, wav), center=True, return_complex=True)


def istft(spec: Tensor, cfg: SpecConfig, length: int) -> Tensor:
    """Waveform ``(B, length)`` from a complex STFT ``(B, F, T)``."""
    return torch.istft(spec, cfg.n_fft, hop_length=cfg.hop, window=_window(cfg, spec), center=True, length=length)


def compress(z: Tensor, cfg: SpecConfig) -> Tensor:
    """``beta |z|^alpha e^{i angle z}`` (complex, any shape)."""
    mag = z.abs()
    return cfg.beta * mag.pow(cfg.alpha) * torch.exp(1j * z.angle())


def decompress(c: Tensor, cfg: SpecConfig) -> Tensor:
    """Inverse of :func:`compress`: ``|c / beta|^(1/alpha) e^{i angle c}``."""
    mag = (c.abs() / cfg.beta).pow(1.0 / cfg.alpha)
    return mag * torch.exp(1j * c.angle())


def to_channels(c: Tensor) -> Tensor:
    """Complex ``(B, F, T)`` -> real ``(B, 2, F, T)`` (real, imaginary)."""
    return torch.stack([c.real, c.imag], dim=1)


def from_channels(x: Tensor) -> Tensor:
    """Real ``(B, 2, F, T)`` -> complex ``(B, F, T)``."""
    if x.ndim != 4 or x.shape[1] != 2:
        raise ValueError(f"expected a (B, 2, F, T) tensor, got shape {tuple(x.shape)}")
    return torch.complex(x[:, 0].contiguous(), x[:, 1].contiguous())


def wav_to_spec(wav: Tensor, cfg: SpecConfig) -> Tensor:
    """Waveform ``(B, N)`` -> model representation ``(B, 2, F, T)``."""
    return to_channels(compress(stft(wav, cfg), cfg))


def spec_to_wav(x: Tensor, cfg: SpecConfig, length: int) -> Tensor:
    """Model representation ``(B, 2, F, T)`` -> waveform ``(B, length)``."""
    return istft(decompress(from_channels(x), cfg), cfg, length)


__all__ = ["SpecConfig", "compress", "decompress", "from_channels", "istft", "spec_to_wav", "stft", "to_channels", "wav_to_spec"]


# -- mel front-end of the vocoder (DiffWave's conditioning) ----------------------------------------------------------


@dataclass(frozen=True)
class MelConfig:
    """DiffWave's log-mel front-end: magnitude (power 1) mel spectrogram, 80 bands from 20 Hz to Nyquist,
    ``n_fft = 1024``, hop 256, window ``4 * hop``, ``center=True`` (``N // hop + 1`` frames); for the conditioning
    the magnitude is divided by the window's norm ``sqrt(sum w^2)`` (torchaudio's ``normalized=True``) and
    ``log = 20 log10(max(mel, 1e-5)) - 20`` mapped to ``[0, 1]`` by ``clamp((log + 100) / 100, 0, 1)``."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 80
    f_min: float = 20.0

    def frames(self, num_samples: int) -> int:
        return num_samples // self.hop + 1


_MEL_CACHE: dict[MelConfig, object] = {}


def mel_transform(cfg: MelConfig):  # type: ignore[no-untyped-def]
    """The (cached) ``torchaudio.transforms.MelSpectrogram`` of ``cfg``."""
    import torchaudio

    if cfg not in _MEL_CACHE:
        _MEL_CACHE[cfg] = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=min(cfg.n_fft, 4 * cfg.hop), hop_length=cfg.hop,
            f_min=cfg.f_min, f_max=cfg.sample_rate / 2.0, n_mels=cfg.n_mels, power=1.0, center=True, norm=None,
            mel_scale="htk")
    return _MEL_CACHE[cfg]


def mel_spectrogram(wav: Tensor, cfg: MelConfig) -> Tensor:
    """Magnitude mel spectrogram ``(B, n_mels, frames)`` of ``wav`` ``(B, N)``."""
    return mel_transform(cfg).to(wav.device)(wav.float())


def log_mel(wav: Tensor, cfg: MelConfig) -> Tensor:
    """Normalised log-mel ``(B, n_mels, N // hop + 1)`` in ``[0, 1]`` (DiffWave's conditioning)."""
    db = 20.0 * torch.log10((mel_spectrogram(wav, cfg) / window_norm(cfg)).clamp_min(1e-5)) - 20.0
    return ((db + 100.0) / 100.0).clamp(0.0, 1.0)


def window_norm(cfg: MelConfig) -> float:
    """``sqrt(sum w^2)`` of the front-end's Hann window (``win = min(n_fft, 4 hop)``)."""
    w = torch.hann_window(min(cfg.n_fft, 4 * cfg.hop), periodic=True, dtype=torch.float64)
    return float(w.pow(2).sum().sqrt())


def log_mel_to_mel(m: Tensor, cfg: MelConfig) -> Tensor:
    """Inverse of :func:`log_mel`: the magnitude mel spectrogram (exact where the clamps were inactive)."""
    return torch.pow(10.0, (m * 100.0 - 100.0 + 20.0) / 20.0) * window_norm(cfg)


def linear_magnitude(wav: Tensor, cfg: MelConfig) -> Tensor:
    """Linear STFT magnitude ``(B, n_fft // 2 + 1, frames)`` with the mel front-end's window and hop."""
    win = min(cfg.n_fft, 4 * cfg.hop)
    w = torch.hann_window(win, periodic=True, dtype=torch.float32, device=wav.device)
    return torch.stft(wav.float(), cfg.n_fft, hop_length=cfg.hop, win_length=win, window=w, center=True, return_complex=True).abs()


__all__ += ["MelConfig", "linear_magnitude", "log_mel", "log_mel_to_mel", "mel_spectrogram", "mel_transform", "window_norm"]
