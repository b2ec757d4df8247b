"""Streaming STFT chunks and overlap-add for long inputs: memory besides the input and output waveforms does not
grow with the length.

:class:`ChunkedSpectrogram` cuts a waveform ``(N,)`` into chunks of STFT frames (exactly the frames of the global
``center=True`` STFT: each chunk's STFT runs with ``center=False`` on the reflect-padded waveform segment it covers);
:class:`OverlapAdd` takes enhanced chunks in order, cross-fades them with linear ramps over the overlaps (weights
normalised to one), and inverts every frame as soon as no later chunk covers it (irfft, synthesis window,
overlap-add, division by the summed squared window: the iSTFT written incrementally).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .transforms import SpecConfig, compress, decompress, from_channels, to_channels


def chunk_starts(frames: int, chunk: int, overlap: int) -> list[int]:
    """First frames of the chunks: every ``chunk - overlap`` frames, the last one aligned to the end."""
    if frames <= chunk:
        return [0]
    return list(range(0, frames - chunk, chunk - overlap)) + [frames - chunk]


@dataclass(frozen=True)
class ChunkedSpectrogram:
    """The model representation ``(2, F, size)`` of any run of frames of a waveform, computed on demand."""

    wav: np.ndarray  # (N,) float32
    spec: SpecConfig

    @property
    def frames(self) -> int:
        return self.spec.frames(len(self.wav))

    def chunk(self, start: int, size: int) -> Tensor:
        """Frames ``[start, start + size)`` as ``(2, F, size)`` (compressed, real/imaginary)."""
        half, hop = self.spec.n_fft // 2, self.spec.hop
        lo, hi = start * hop - half, (start + size - 1) * hop + half  # global sample range (inclusive of hi - 1)
        seg = _reflect_slice(self.wav, lo, hi + (self.spec.n_fft - 2 * half))
        x = torch.from_numpy(seg)
        w = torch.hann_window(self.spec.n_fft, periodic=True, dtype=x.dtype)
        z = torch.stft(x, self.spec.n_fft, hop_length=hop, window=w, center=False, return_complex=True)  # (F, size)
        return to_channels(compress(z[None], self.spec))[0]


def _reflect_slice(wav: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``wav`` on samples ``[lo, hi)`` with reflect padding outside ``[0, N)`` (torch.stft's ``center`` padding)."""
    n = len(wav)
    idx = np.arange(lo, hi)
    period = 2 * (n - 1) if n > 1 else 1
    idx = np.abs(idx) % period if n > 1 else np.zeros_like(idx)
    idx = np.where(idx >= n, period - idx, idx)
    return np.ascontiguousarray(wav[idx], dtype=np.float32)


class OverlapAdd:
    """Collects enhanced chunks in order of their start frames and writes the waveform ``(N,)`` incrementally."""

    def __init__(self, num_samples: int, spec: SpecConfig, overlap: int) -> None:
        self.spec, self.overlap, self.n = spec, overlap, num_samples
        self.T = spec.frames(num_samples)
        self.half = spec.n_fft // 2
        self.out = np.zeros(num_samples + spec.n_fft + spec.hop, dtype=np.float64)  # padded coordinates
        self.env = np.zeros_like(self.out)
        self.window = torch.hann_window(spec.n_fft, periodic=True, dtype=torch.float64)
        self.done = 0  # frames before this are written
        self.acc = torch.zeros(2, spec.bins, 0)
        self.wsum = torch.zeros(0)

    def add(self, start: int, x: Tensor) -> None:
        """Add the enhanced chunk ``x`` ``(2, F, size)`` starting at frame ``start`` (starts must not decrease)."""
        size = x.shape[-1]
        if start < self.done:
            raise ValueError(f"chunk at frame {start} arrives after frame {self.done} was written")
        need = start + size - self.done
        if self.acc.shape[-1] < need:
            grow = need - self.acc.shape[-1]
            self.acc = torch.cat([self.acc, torch.zeros(2, self.spec.bins, grow)], dim=-1)
            self.wsum = torch.cat([self.wsum, torch.zeros(grow)])
        w = torch.ones(size)
        if self.overlap > 0:
            ramp = (torch.arange(self.overlap, dtype=torch.float32) + 0.5) / self.overlap
            if start > 0:
                w[: self.overlap] = ramp
            if start + size < self.T:
                w[-self.overlap:] = ramp.flip(0)
        a = start - self.done
        self.acc[:, :, a:a + size] += x.float() * w
        self.wsum[a:a + size] += w

    def flush(self, upto: int) -> None:
        """Write every frame before ``upto`` (no later chunk may cover them)."""
        k = upto - self.done
        if k <= 0:
            return
        frames = self.acc[:, :, :k] / self.wsum[:k].clamp(min=1e-8)
        z = decompress(from_channels(frames[None].double()), self.spec)[0]  # (F, k) complex128
        t = torch.fft.irfft(z, n=self.spec.n_fft, dim=0) * self.window[:, None]  # (n_fft, k)
        hop, w2 = self.spec.hop, (self.window**2).numpy()
        tn = t.numpy()
        for i in range(k):
            j = (self.done + i) * hop
            self.out[j:j + self.spec.n_fft] += tn[:, i]
            self.env[j:j + self.spec.n_fft] += w2
        self.acc, self.wsum = self.acc[:, :, k:], self.wsum[k:]
        self.done = upto

    def result(self) -> np.ndarray:
        """The waveform ``(N,)`` (flushes what is left)."""
        self.flush(self.T)
        seg = slice(self.half, self.half + self.n)
        return (self.out[seg] / np.maximum(self.env[seg], 1e-11)).astype(np.float32)


__all__ = ["ChunkedSpectrogram", "OverlapAdd", "chunk_starts"]
