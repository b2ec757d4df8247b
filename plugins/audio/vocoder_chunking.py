"""DiffWave vocoding of long inputs in chunks of mel frames, cross-faded in the waveform, in bounded memory.

The waveform's ``T = N // hop + 1`` mel frames are cut into chunks of ``chunk`` frames whose kept parts overlap by
``overlap`` frames (:func:`polydiff_audio.chunking.chunk_starts`). Each chunk is sampled over its kept frames plus
``context`` frames on either side (discarded afterwards), from:

* its mel frames, computed from the waveform segment they cover (:func:`mel_frames`: exactly the frames of the global
  ``center=True`` log-mel, reflect padding at the file's ends included), and
* a start state ``x_1`` cut from one global noise signal: the ``hop`` samples of frame ``f`` are drawn from a generator
  seeded ``mix_seed(seed, f)`` (:func:`block_noise`), so every chunk sees the same start noise at the same sample.

The kept parts are cross-faded with linear ramps over the overlaps (weights summing to one) into the output
(:class:`WaveOverlapAdd`), which is written as soon as no later chunk covers a sample. Memory besides the input and
output waveforms is that of one chunk: independent of the length.

Exactness: with a deterministic sampler (``ddim``) a chunk's kept samples equal those of the whole-file run (same start
noise) when the context covers the sampler's receptive field, ``steps x`` the network's (``sum 2 * dilation`` samples
per call) plus the mel upsampler's reach (about two frames); :func:`receptive_field` gives the network's. With ancestral
sampling (``ddpm``, DiffWave's fast schedule) each chunk draws its own step noise (``mix_seed(seed, chunk)``): chunks
agree in law, not sample by sample, and the cross-fade bounds the seam.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from polydiff.seeding import mix_seed

from .chunking import _reflect_slice, chunk_starts
from .transforms import MelConfig, log_mel


def mel_frames(wav: np.ndarray, cfg: MelConfig, start: int, size: int) -> Tensor:
    """Log-mel frames ``[start, start + size)`` ``(n_mels, size)`` of ``wav`` ``(N,)``, equal to those of
    ``log_mel(wav)`` (``center=True``) but computed from the ``(size + 2m - 1) hop + 1`` samples around them
    (``m = ceil(n_fft / 2 / hop)`` frames of margin, reflect padding outside the file)."""
    m = math.ceil(cfg.n_fft / 2 / cfg.hop)
    lo = (start - m) * cfg.hop
    seg = _reflect_slice(wav, lo, (start + size - 1 + m) * cfg.hop + 1)
    full = log_mel(torch.from_numpy(seg)[None], cfg)[0]  # frames centred at lo + k hop: global frame start - m + k
    return full[:, m:m + size]


def block_noise(seed: int, first_sample: int, num_samples: int, hop: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Samples ``[first_sample, first_sample + num_samples)`` of the global start noise ``(num_samples,)``: the ``hop``
    samples of frame ``f`` come from ``torch.Generator().manual_seed(mix_seed(seed, f))``."""
    f0, f1 = first_sample // hop, (first_sample + num_samples - 1) // hop
    parts = [torch.randn(hop, generator=torch.Generator().manual_seed(mix_seed(int(seed), f)), dtype=dtype) for f in range(f0, f1 + 1)]
    x = torch.cat(parts)
    off = first_sample - f0 * hop
    return x[off:off + num_samples]


def receptive_field(net: torch.nn.Module) -> int:
    """One-sided reach in samples of one network call through its dilated convolutions (``sum dilation * (k - 1) / 2``)."""
    reach = 0
    for mod in net.modules():
        if isinstance(mod, torch.nn.Conv1d) and mod.kernel_size[0] > 1:
            reach += mod.dilation[0] * (mod.kernel_size[0] - 1) // 2
    return reach


class WaveOverlapAdd:
    """Cross-fades chunks of samples (kept parts, in order of their starts) into the output ``(N,)``."""

    def __init__(self, num_samples: int, ramp: int) -> None:
        self.n, self.ramp = num_samples, ramp
        self.out = np.zeros(num_samples, dtype=np.float32)
        self.acc = np.zeros(0, dtype=np.float64)
        self.wsum = np.zeros(0, dtype=np.float64)
        self.done = 0  # samples before this are written

    def add(self, start: int, x: np.ndarray) -> None:
        """Add samples ``x`` ``(L,)`` at ``start`` (starts must not decrease and not precede written samples)."""
        size = len(x)
        if start < self.done:
            raise ValueError(f"chunk at sample {start} arrives after sample {self.done} was written")
        need = start + size - self.done
        if len(self.acc) < need:
            self.acc = np.concatenate([self.acc, np.zeros(need - len(self.acc))])
            self.wsum = np.concatenate([self.wsum, np.zeros(need - len(self.wsum))])
        w = np.ones(size)
        r = min(self.ramp, size // 2)
        if r > 0:
            ramp = (np.arange(r) + 0.5) / r
            if start > 0:
                w[:r] = ramp
            if start + size < self.n:
                w[-r:] = ramp[::-1]
        a = start - self.done
        self.acc[a:a + size] += w * x
        self.wsum[a:a + size] += w

    def flush(self, upto: int) -> None:
        """Write every sample before ``upto``."""
        k = min(upto, self.n) - self.done
        if k <= 0:
            return
        self.out[self.done:self.done + k] = self.acc[:k] / np.maximum(self.wsum[:k], 1e-12)
        self.acc, self.wsum = self.acc[k:], self.wsum[k:]
        self.done += k

    def result(self) -> np.ndarray:
        self.flush(self.n)
        return self.out


def vocode_chunked(sample_chunk: Callable[[Tensor, Tensor, int], tuple[Tensor, int]], wav: np.ndarray, cfg: MelConfig, *,
                   chunk: int, overlap: int, context: int, seed: int) -> tuple[np.ndarray, int, int]:
    """Vocode ``wav`` ``(N,)`` chunk by chunk; returns ``(audio (N,), NFE per chunk, chunks)``.

    ``sample_chunk(mel (1, n_mels, F), x_start (1, 1, L), chunk_index) -> (x (1, 1, L), nfe)`` samples one chunk whose
    mel frames start at a frame boundary (``L = min(F hop, samples left)``).
    """
    n, hop = len(wav), cfg.hop
    frames = n // hop + 1
    chunk = max(1, int(chunk))
    overlap = min(max(0, int(overlap)), chunk // 2)
    starts = chunk_starts(frames, chunk, overlap)
    size = min(chunk, frames)
    sink = WaveOverlapAdd(n, overlap * hop)
    nfe = 0
    for i, s in enumerate(starts):
        lo, hi = max(0, s - context), min(frames, s + size + context)
        mel = mel_frames(wav, cfg, lo, hi - lo)
        a, b = lo * hop, min(n, hi * hop)
        x1 = block_noise(seed, a, b - a, hop)[None, None]
        x, nfe = sample_chunk(mel[None], x1, i)
        keep_a, keep_b = s * hop, min(n, (s + size) * hop)
        sink.add(keep_a, x[0, 0, keep_a - a:keep_b - a].detach().float().cpu().numpy())
        sink.flush(starts[i + 1] * hop if i + 1 < len(starts) else n)
    return sink.result(), nfe, len(starts)


__all__ = ["WaveOverlapAdd", "block_noise", "mel_frames", "receptive_field", "vocode_chunked"]
