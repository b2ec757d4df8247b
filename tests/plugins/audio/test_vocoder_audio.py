"""audio/diffwave end to end: the network's shapes, a few training steps, resynthesis of --input files at their own
rate and length, held-out evaluation rows, and bad inputs as one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from polydiff.config import resolve_config
from polydiff.errors import DataError, UserInputError
from polydiff.recipes import RunDir
from polydiff_audio.data import resample, synthetic_speech
from polydiff_audio.diffwave import DiffWaveNet
from polydiff_audio.vocoder import DiffWaveRecipe

training = pytest.importorskip("polydiff.training")


def _cfg(*overrides: str):
    return resolve_config(DiffWaveRecipe(), preset="tiny", overrides=list(overrides))


@pytest.mark.parametrize("n", [2048, 2100, 300])
def test_network_maps_any_length_and_starts_at_zero(n):
    net = DiffWaveNet(channels=8, layers=3, cycle=3)
    x = torch.randn(2, 1, n)
    mel = torch.rand(2, 80, n // 256 + 1)
    out = net(x, torch.rand(2), mel)
    assert out.shape == (2, 1, n) and float(out.detach().abs().max()) == 0.0  # zero-initialised output layer
    torch.nn.init.normal_(net.final.weight)
    out = net(x, torch.rand(2), mel)
    out.sum().backward()
    assert float(out.abs().max()) > 0 and net.up.c1.weight.grad.abs().sum() > 0  # the mel reaches the output


def test_process_is_the_cores_vp_linear():
    p = DiffWaveRecipe().process(_cfg("model.beta_min=0.005", "model.beta_max=2.5"))
    assert p.name == "vp-linear"
    # DiffWave's 50-step linspace(1e-4, 0.05) in continuous time: log SNR(1) = log(alpha^2 / (1 - alpha^2)),
    # alpha^2 = exp(-(beta_min + beta_max) / 2) = exp(-1.2525) (= prod(1 - beta_n) = 0.2797 to within 3 %)
    a2 = np.exp(-(0.005 + 2.5) / 2)
    assert abs(float(p.log_snr(torch.tensor([1.0]))) - np.log(a2 / (1 - a2))) < 1e-4
    disc = np.prod(1 - np.linspace(1e-4, 0.05, 50))
    assert abs(a2 - disc) / disc < 0.03


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rec = DiffWaveRecipe()
    cfg = _cfg("train.steps=3", "train.log_every=100", "data.synthetic_clips=2", "data.train_items=16")
    run = RunDir(tmp_path_factory.mktemp("run"))
    training.train(rec, cfg, run, progress=False)
    return rec, cfg, run, training.load_model(rec, cfg, run)


def test_resynthesis_keeps_rate_and_length(trained, tmp_path):
    rec, cfg, run, model = trained
    inp = tmp_path / "in"
    inp.mkdir()
    a = 0.5 * synthetic_speech(0.6, seed=3)
    sf.write(inp / "a.wav", a, 16000)
    b = resample(a, 16000, 22050)
    sf.write(inp / "b.flac", np.stack([b, b], axis=1), 22050)
    with pytest.warns(UserWarning, match="mixed down"):
        s = rec.sample(model, cfg, run, num=1, sampler="ddim", steps=6, seed=0, options={"input": str(inp)})
    assert s.nfe == (6, 6)
    files = rec.write_samples(s, tmp_path / "out", cfg, run)
    info = {p.name: sf.info(str(p)) for p in files if p.suffix == ".wav"}
    assert (info["a.wav"].samplerate, info["a.wav"].frames) == (16000, len(a))
    assert (info["b.wav"].samplerate, info["b.wav"].frames) == (22050, len(b))
    assert all(np.isfinite(x).all() for x in s.audio)


def test_held_out_evaluation_rows(trained, tmp_path):
    rec, cfg, run, model = trained
    cfg = resolve_config(rec, preset="tiny", overrides=["eval.num_clips=1", "eval.seconds=0.5", "sample.steps=2", "eval.gl_iters=4"])
    m = rec.evaluate(model, cfg, run, None)
    assert m["diffwave_ddpm2_nfe"] == 2 and m["diffwave_ddim6_nfe"] == 6 and m["diffwave_fast6_nfe"] == 6
    assert np.isfinite(m["diffwave_fast6_lsd"])
    fast = rec.sample(model, cfg, run, num=1, sampler="ddpm", steps=50, seed=0, options={"schedule": "fast"})
    assert fast.nfe == (6,) and np.isfinite(fast.audio[0]).all()
    with pytest.raises(UserInputError, match="--schedule"):
        rec.sample(model, cfg, run, num=1, sampler="ddpm", steps=2, seed=0, options={"schedule": "quick"})
    assert {"gl_linear_lsd", "gl_mel_mcd", "diffwave_ddim6_pesq"} <= set(m) and np.isfinite(m["gl_linear_lsd"])
    s = rec.sample(model, cfg, run, num=1, sampler="ddim", steps=2, seed=0, options={})
    rec.write_samples(s, tmp_path / "s", cfg, run)
    f = rec.evaluate(model, cfg, run, tmp_path / "s")
    assert f["clips"] == 1 and np.isfinite(f["lsd"]) and np.isfinite(f["mcd"])


def test_bad_inputs_are_user_errors(trained, tmp_path):
    rec, cfg, run, model = trained
    with pytest.raises(UserInputError, match="no such file or folder"):
        rec.sample(model, cfg, run, num=1, sampler="ddim", steps=2, seed=0, options={"input": str(tmp_path / "nope.wav")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no WAV/FLAC/OGG"):
        rec.sample(model, cfg, run, num=1, sampler="ddim", steps=2, seed=0, options={"input": str(tmp_path / "empty")})
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav")
    with pytest.raises(DataError, match="cannot be read as audio"):
        rec.sample(model, cfg, run, num=1, sampler="ddim", steps=2, seed=0, options={"input": str(bad)})
    with pytest.raises(DataError):
        rec.datasets(_cfg(f"data.path='{tmp_path / 'empty'}'"), run)
