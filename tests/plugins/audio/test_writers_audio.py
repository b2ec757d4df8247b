"""WAV files keep the input's rate and length; the spectrogram figure is written."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from polydiff_audio.writers import EnhancedSamples, read_wavs, spectrogram_png, write_wavs


def test_wavs_keep_rate_and_length(tmp_path):
    a = (0.1 * np.sin(np.arange(12345) / 7.0)).astype(np.float32)
    b = np.zeros(777, dtype=np.float32)
    paths = write_wavs(EnhancedSamples(("x.flac", "y.wav"), (a, b), (22050, 16000)), tmp_path)
    info = [sf.info(str(p)) for p in paths]
    assert [(i.samplerate, i.frames) for i in info] == [(22050, 12345), (16000, 777)]
    back = read_wavs(tmp_path)
    np.testing.assert_allclose(back["x"][0], a, atol=1 / 32767)


def test_spectrogram_png(tmp_path):
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    p = spectrogram_png(tmp_path / "s.png", [("noisy", x), ("enhanced", 0.5 * x), ("clean", 0.1 * x)], 16000)
    assert p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG"
