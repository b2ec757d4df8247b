"""audio/sgmse end to end: registration, a few training steps, --input files keep rate and length, chunked
overlap-add is exact for a pass-through model, bad inputs are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import polydiff
from polydiff.config import resolve_config
from polydiff.errors import DataError, UserInputError
from polydiff.recipes import RunDir
from polydiff_audio import plugin
from polydiff_audio.data import mix_at_snr, resample, synthetic_noise, synthetic_speech
from polydiff_audio.recipes import SGMSERecipe

training = pytest.importorskip("polydiff.training")


def _cfg(*overrides: str):
    return resolve_config(SGMSERecipe(), preset="tiny", overrides=list(overrides))


def test_plugin_registers_the_recipe():
    got = []
    plugin.register_recipes(lambda r, **kw: got.append(r))
    assert [r.name for r in got] == ["audio/sgmse", "audio/diffwave", "audio/udiffse"] and {o.name for o in got[0].sample_options} >= {"input"}


class _PassThrough(torch.nn.Module):
    """x0 estimate = the noisy mixture y (so every sampler ends exactly at y)."""

    multiple = 4

    def forward(self, x_t, t, y):
        return y


@pytest.mark.parametrize("process", ["ouve", "sb-ve"])
def test_chunked_overlap_add_is_exact_for_a_pass_through_model(process):
    rec = SGMSERecipe()
    cfg = _cfg(f"model.process='{process}'", "sample.chunk_frames=64", "sample.overlap_frames=16", "sample.batch_size=3")
    model = polydiff.Denoiser(_PassThrough(), rec.process(cfg), prediction="x0")
    noisy = mix_at_snr(synthetic_speech(3.1, seed=2), synthetic_noise("pink", 3.1, seed=1), 0.0)  # 388 frames: 8 chunks
    out, nfe = rec.enhance(model, cfg, noisy, sampler="ddim", steps=3, seed=0)
    assert out.shape == noisy.shape and nfe == 3
    np.testing.assert_allclose(out, noisy, atol=1e-5 * np.abs(noisy).max())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rec = SGMSERecipe()
    cfg = _cfg("train.steps=3", "train.log_every=100", "data.synthetic_clips=4", "data.train_items=64")
    run = RunDir(tmp_path_factory.mktemp("run"))
    training.train(rec, cfg, run, progress=False)
    return rec, cfg, run, training.load_model(rec, cfg, run)


def test_enhancing_files_keeps_their_rate_and_length(trained, tmp_path):
    rec, cfg, run, model = trained
    inp = tmp_path / "in"
    inp.mkdir()
    y = mix_at_snr(synthetic_speech(1.0, seed=4), synthetic_noise("white", 1.0), 5.0)
    sf.write(inp / "a.wav", y, 16000)
    y2 = resample(y, 16000, 22050)
    sf.write(inp / "b.flac", np.stack([y2, 0.5 * y2], axis=1), 22050)
    with pytest.warns(UserWarning, match="mixed down"):
        s = rec.sample(model, cfg, run, num=1, sampler="euler", steps=2, seed=0, options={"input": str(inp)})
    files = rec.write_samples(s, tmp_path / "out", cfg, run)
    info = {p.name: sf.info(str(p)) for p in files if p.suffix == ".wav"}
    assert (info["a.wav"].samplerate, info["a.wav"].frames) == (16000, len(y))
    assert (info["b.wav"].samplerate, info["b.wav"].frames) == (22050, len(y2))
    assert all(np.isfinite(a).all() for a in s.audio)


def test_held_out_samples_and_folder_evaluation(trained, tmp_path):
    rec, cfg, run, model = trained
    s = rec.sample(model, cfg, run, num=2, sampler="ddim", steps=2, seed=0, options={})
    out = tmp_path / "s"
    rec.write_samples(s, out, cfg, run)
    assert len(list((out / "clean").glob("*.wav"))) == 2 and len(list((out / "spectrograms").glob("*.png"))) == 2
    m = rec.evaluate(model, cfg, run, out)
    assert m["clips"] == 2 and np.isfinite(m["si_sdr"])


def test_bad_inputs_are_user_errors(trained, tmp_path):
    rec, cfg, run, model = trained
    with pytest.raises(UserInputError, match="no such file or folder"):
        rec.sample(model, cfg, run, num=1, sampler="ddim", steps=2, seed=0, options={"input": str(tmp_path / "nope.wav")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no WAV/FLAC/OGG"):
        rec.sample(model, cfg, run, num=1, sampler="ddim", steps=2, seed=0, options={"input": str(tmp_path / "empty")})
    (tmp_path / "bad").mkdir()
    with pytest.raises(DataError, match="expected subfolders"):
        rec.datasets(_cfg(f"data.path='{tmp_path / 'bad'}'"), run)
