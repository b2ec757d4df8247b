"""Writers: enhanced WAV files (soundfile, 16-bit PCM at the input's rate and length) and spectrogram PNGs of
noisy / enhanced / clean side by side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polydiff.errors import DataError


@dataclass(frozen=True)
class EnhancedSamples:
    """Enhanced clips, one per input: ``audio[i]`` ``(N_i,)`` float32 at ``sample_rates[i]`` for ``names[i]``.

    ``noisy`` holds the inputs (same lengths and rates) for the spectrogram figures; ``nfe`` and ``seconds`` are
    per clip (network evaluations, wall-clock); ``clean`` the references of generated held-out mixtures (or empty).
    """

    names: tuple[str, ...]
    audio: tuple[np.ndarray, ...]
    sample_rates: tuple[int, ...]
    noisy: tuple[np.ndarray, ...] = ()
    nfe: tuple[int, ...] = ()
    seconds: tuple[float, ...] = ()
    clean: tuple[np.ndarray, ...] = ()


def write_wavs(samples: EnhancedSamples, out_dir: str | Path) -> list[Path]:
    """``OUT/<name>.wav`` for each clip (PCM_16; values clipped to [-1, 1])."""
    import soundfile as sf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, a, sr in zip(samples.names, samples.audio, samples.sample_rates, strict=True):
        p = out / f"{Path(name).stem}.wav"
        sf.write(str(p), np.clip(np.asarray(a, dtype=np.float32), -1.0, 1.0), int(sr), subtype="PCM_16")
        paths.append(p)
    return paths


def write_samples(samples: EnhancedSamples, out_dir: str | Path, *, spectrograms: bool = True, max_figures: int = 4) -> list[Path]:
    """Enhanced WAVs in ``OUT``; the inputs in ``OUT/noisy`` and references in ``OUT/clean`` when known; spectrogram
    PNGs (noisy / enhanced / clean) of the first ``max_figures`` clips in ``OUT/spectrograms``."""
    out = Path(out_dir)
    paths = write_wavs(samples, out)
    if samples.clean:
        paths += write_wavs(EnhancedSamples(samples.names, samples.noisy, samples.sample_rates), out / "noisy")
        paths += write_wavs(EnhancedSamples(samples.names, samples.clean, samples.sample_rates), out / "clean")
    if spectrograms and samples.noisy:
        for i in range(min(max_figures, len(samples.names))):
            panels = [("noisy", samples.noisy[i]), ("enhanced", samples.audio[i])]
            if samples.clean:
                panels.append(("clean", samples.clean[i]))
            paths.append(spectrogram_png(out / "spectrograms" / f"{Path(samples.names[i]).stem}.png", panels, samples.sample_rates[i]))
    return paths


def read_wavs(folder: str | Path) -> dict[str, tuple[np.ndarray, int]]:
    """``{stem: (audio, rate)}`` of the WAV files in ``folder`` (mono mix-down of multi-channel files)."""
    import soundfile as sf

    root = Path(folder)
    files = sorted(root.glob("*.wav"))
    if not files:
        raise DataError(f"{root}: no .wav files (expected the enhanced clips written by polydiff sample)")
    out = {}
    for f in files:
        a, sr = sf.read(str(f), dtype="float32", always_2d=True)
        out[f.stem] = (a.mean(axis=1), int(sr))
    return out


def spectrogram_png(path: str | Path, panels: Sequence[tuple[str, np.ndarray]], sample_rate: int) -> Path:
    """A PNG with one log-magnitude spectrogram per ``(title, audio)`` panel, side by side, on a shared colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    specs = []
    for _, a in panels:
        x = torch.from_numpy(np.asarray(a, dtype=np.float32))
        s = torch.stft(x, 512, 128, window=torch.hann_window(512), return_complex=True).abs()
        specs.append(20 * np.log10(s.numpy() + 1e-6))
    vmax = max(float(s.max()) for s in specs)
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (title, a), s in zip(axes, panels, specs, strict=True):
        ax.imshow(s, origin="lower", aspect="auto", vmin=vmax - 80, vmax=vmax, cmap="magma",
                  extent=(0, len(a) / sample_rate, 0, sample_rate / 2000))
        ax.set_title(title)
        ax.set_xlabel("s")
    axes[0].set_ylabel("kHz")
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=80)
    plt.close(fig)
    return p


class WavSampleFiles:
    """The recipe methods that write :class:`EnhancedSamples` as WAVs (+ spectrogram PNGs) and read a folder of WAVs back."""

    def write_samples(self, samples: EnhancedSamples, out_dir: Path, cfg: Any, run: Any) -> list[Path]:
        return write_samples(samples, Path(out_dir), spectrograms=cfg.sample.spectrograms)

    def read_samples(self, samples_dir: Path) -> dict[str, tuple[np.ndarray, int]]:
        return read_wavs(samples_dir)


__all__ = ["WavSampleFiles", "EnhancedSamples", "read_wavs", "spectrogram_png", "write_samples", "write_wavs"]
