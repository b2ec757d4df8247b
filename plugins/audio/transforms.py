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
