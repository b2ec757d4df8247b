"""Users' folders (resampling, mix-down, bad files, layouts), seeded mixing at exact SNRs, generated speech."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from polydiff.errors import DataError
from polydiff_audio.data import (
    crop_or_pad, load_user_folder, mix_at_snr, mixture, read_folder, synthetic_corpus, synthetic_noises, synthetic_speech,
)


def _tone(n, sr, f=440.0):
    return (0.3 * np.sin(2 * np.pi * f * np.arange(n) / sr)).astype(np.float32)


def test_read_folder_resamples_mixes_down_and_skips_bad_files(tmp_path):
    d = tmp_path / "clean"
    d.mkdir()
    sf.write(d / "a.wav", _tone(22050, 22050), 22050)
    st = np.stack([_tone(16000, 16000), _tone(16000, 16000, 220.0)], axis=1)
    sf.write(d / "b.flac", st, 16000)
    (d / "c.wav").write_bytes(b"not a wav file at all")
    sf.write(d / "d.ogg", np.zeros((0,), dtype=np.float32), 16000, format="OGG")
    with pytest.warns(UserWarning) as rec:
        clips = read_folder(d, 16000)
    msgs = " | ".join(str(w.message) for w in rec)
    assert "1 file(s) resampled from 22050 Hz" in msgs and "1 multi-channel file(s) mixed down" in msgs
    assert "2 file(s) skipped" in msgs and "c.wav" in msgs
    assert [len(c.audio) for c in clips] == [16000, 16000]
    np.testing.assert_allclose(clips[1].audio, st.mean(axis=1), atol=1e-4)  # FLAC is 16-bit
    # a 22.05 kHz tone at 440 Hz stays at 440 Hz after resampling
    spec = np.abs(np.fft.rfft(clips[0].audio))
    assert abs(np.argmax(spec) * 16000 / 16000 - 440) <= 1
    with pytest.raises(DataError, match="c.wav"):
        read_folder(d, 16000, strict=True)


def test_folder_layouts(tmp_path):
    for sub in ("noisy", "clean"):
        (tmp_path / "p" / sub).mkdir(parents=True)
        for i in range(2):
            sf.write(tmp_path / "p" / sub / f"u{i}.wav", _tone(8000 + i, 16000), 16000)
    data = load_user_folder(tmp_path / "p", 16000)
    assert data.kind == "paired" and len(data.clean) == len(data.noisy) == 2
    (tmp_path / "m" / "clean").mkdir(parents=True)
    (tmp_path / "m" / "noise").mkdir(parents=True)
    sf.write(tmp_path / "m" / "clean" / "s.wav", _tone(8000, 16000), 16000)
    sf.write(tmp_path / "m" / "noise" / "n.wav", _tone(4000, 16000, 1000.0), 16000)
    assert load_user_folder(tmp_path / "m", 16000).kind == "mix"
    with pytest.raises(DataError, match="expected subfolders"):
        load_user_folder(tmp_path / "m" / "clean", 16000)
    with pytest.raises(DataError, match="no such folder"):
        load_user_folder(tmp_path / "missing", 16000)


def test_mixing_is_seeded_and_exact_in_snr():
    clean = synthetic_corpus(3, 1.0, seed=1)
    noise = synthetic_noises(["white", "pink"], seconds=0.5)
    a = mixture(clean, noise, [-5.0, 0.0, 5.0], 24000, seed=11)
    b = mixture(clean, noise, [-5.0, 0.0, 5.0], 24000, seed=11)
    c = mixture(clean, noise, [-5.0, 0.0, 5.0], 24000, seed=12)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])
    x, y, snr, padded = a
    assert padded and len(x) == len(y) == 24000  # a 1 s clip in a 1.5 s segment is padded, not dropped
    n = y - x
    assert 10 * math.log10(np.sum(x.astype(np.float64) ** 2) / np.sum(n.astype(np.float64) ** 2)) == pytest.approx(snr, abs=1e-3)
    y2 = mix_at_snr(x, n, 10.0)
    assert 10 * math.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y2 - x).astype(np.float64) ** 2)) == pytest.approx(10.0, abs=1e-3)
    seg, pad = crop_or_pad(np.ones(100, dtype=np.float32), 50, np.random.default_rng(0))
    assert not pad and len(seg) == 50


def test_synthetic_speech_is_harmonic_with_pauses():
    x = synthetic_speech(3.0, seed=0)
    assert x.dtype == np.float32 and len(x) == 48000 and 0.49 < np.abs(x).max() <= 0.5
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    energy = (frames**2).mean(axis=1)
    assert (energy < 1e-6 * energy.max()).mean() > 0.02  # silent gaps between syllables
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 16000)
    assert spec[f < 4000].sum() > 0.8 * spec.sum()  # speech-like: energy below 4 kHz
    assert not np.array_equal(x, synthetic_speech(3.0, seed=1))
