"""Named clean-speech sources: alsa-utils words, espeak-ng / flite speech generated in the test, klettres (slow), the
speaker split, and ``data.source`` in the recipes. A missing Debian package is installed first (root with apt-get, as
CI runs); a test skips only when that install cannot happen, and says why."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from polydiff.config import resolve_config
from polydiff.errors import DataError, UserInputError
from polydiff.recipes import RunDir
from polydiff_audio import sources as S
from polydiff_audio.data import Clip
from polydiff_audio.recipes import SGMSERecipe
from polydiff_audio.vocoder import DiffWaveRecipe


def _need(name: str) -> None:
    missing = S.ensure_packages([name])
    if missing:
        pytest.skip(f"{S.PACKAGES[name]} is not installed and could not be installed here (apt-get install needs root, "
                    f"apt-get and the Debian mirror)")


def test_alsa_words_are_the_eight_spoken_clips_at_16k():
    _need("alsa")
    clips = S.alsa_words(16000)
    assert len(clips) == 8 and {c.speaker for c in clips} == {"alsa"}
    assert not any("Noise" in c.source for c in clips)
    for c in clips:
        info = sf.info(c.source)
        assert c.sample_rate == 16000 and c.audio.dtype == np.float32 and c.audio.ndim == 1
        assert abs(len(c.audio) - info.frames * 16000 / info.samplerate) <= 1  # resampled, same duration
        assert float(np.sqrt(np.mean(c.audio**2))) > 1e-3  # speech, not silence


@pytest.mark.parametrize("engine,voices", [("espeak", ("en-us", "en-gb+f3")), ("flite", ("kal", "slt"))])
def test_generated_english_speech(engine, voices):
    _need(engine)
    short, long_ = "Four hours.", S.SENTENCES[9]  # 2 words vs 10 words
    clips = S.generated_speech(engine, 16000, sentences=(short, long_), voices=voices)
    assert len(clips) == 4 and sorted({c.speaker for c in clips}) == sorted(f"{engine}:{v}" for v in voices)
    by = {(c.speaker, i % 2): c.audio for i, c in enumerate(clips)}
    for v in voices:
        a_short, a_long = by[(f"{engine}:{v}", 0)], by[(f"{engine}:{v}", 1)]
        assert 0.3 * 16000 < len(a_short) < len(a_long) < 6 * 16000  # more words, longer speech
        assert float(np.abs(a_long).max()) > 0.05
    a, b = by[(f"{engine}:{voices[0]}", 1)], by[(f"{engine}:{voices[1]}", 1)]
    assert len(a) != len(b) or not np.allclose(a, b)  # different voices, different audio


def test_split_by_speaker_never_trains_on_held_out_speakers():
    z = np.zeros(10, dtype=np.float32)
    clips = [Clip(z, 16000, f"{s}{i}", s) for s in "abcde" for i in range(3)]
    train, held = S.split_by_speaker(clips, 0.3)
    assert {c.speaker for c in held} == {"d", "e"} and {c.speaker for c in train} == {"a", "b", "c"}
    one = [Clip(z, 16000, f"x{i}", "x") for i in range(10)]
    train, held = S.split_by_speaker(one, 0.2)  # one speaker: by clip
    assert [c.source for c in held] == ["x8", "x9"] and len(train) == 8


def test_bad_source_specs(monkeypatch):
    with pytest.raises(UserInputError, match="unknown source 'nope'"):
        S.load_sources("alsa,nope")
    with pytest.raises(UserInputError, match="takes no argument"):
        S.load_sources("alsa:en")
    monkeypatch.setattr(S.shutil, "which", lambda name: None)  # espeak-ng not on the PATH
    with pytest.raises(DataError, match="apt-get install --no-install-recommends espeak-ng"):
        S.load_sources("espeak")


def test_data_source_in_the_recipes(tmp_path, monkeypatch):
    _need("alsa")
    _need("flite")
    monkeypatch.setattr(S, "SENTENCES", S.SENTENCES[:2])  # 2 sentences x 4 voices keep the test fast
    rec = SGMSERecipe()
    cfg = resolve_config(rec, preset="tiny", overrides=["data.source='alsa,flite'", "data.val_fraction=0.2"])
    c = rec.corpus(cfg)
    train_spk, val_spk = {x.speaker for x in c["train_clean"]}, {x.speaker for x in c["val_clean"]}
    assert val_spk and not (train_spk & val_spk) and "alsa" in train_spk  # held-out voices
    item = rec.datasets(cfg, RunDir(tmp_path / "r")).train[0]
    assert item["x"].shape == item["y"].shape and item["x"].shape[-1] == cfg.data.segment_frames
    with pytest.raises(UserInputError, match="alternatives"):
        rec.corpus(resolve_config(rec, preset="tiny", overrides=["data.source='alsa'", f"data.path='{tmp_path}'"]))
    voc = DiffWaveRecipe()
    train, val = voc.corpus(resolve_config(voc, preset="tiny", overrides=["data.source='alsa'"]))
    assert len(train) + len(val) == 8 and len(val) == 1  # one speaker: the last clip held out


@pytest.mark.slow
def test_klettres_english_recordings():
    _need("klettres")
    clips = S.klettres(16000, "en")
    assert len(clips) == 45 and {c.speaker for c in clips} == {"klettres-en"}
    assert all(c.audio.ndim == 1 and len(c.audio) > 1000 for c in clips)  # stereo mixed down, non-empty
    with pytest.raises(DataError, match="no recordings"):
        S.klettres(16000, "xx")
