"""audio/udiffse: the IS-NMF M-step decreases its objective monotonically and fits an exact low-rank PSD, the
pseudo-likelihood's gradient matches its closed form, and the guided sampler runs end to end on generated data."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import polydiff
from polydiff.config import resolve_config
from polydiff.recipes import RunDir
from polydiff.spaces import infer_space
from polydiff_audio.data import mix_at_snr, synthetic_noise, synthetic_speech
from polydiff_audio.udiffse import NMFNoiseGuidance, UDiffSERecipe, is_divergence, nmf_is_step

training = pytest.importorskip("polydiff.training")


def _low_rank(seed: int = 0, f: int = 40, t: int = 30, k: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w0 = torch.rand(f, k, generator=g, dtype=torch.float64) + 0.1
    h0 = torch.rand(k, t, generator=g, dtype=torch.float64) + 0.1
    return w0, h0, w0 @ h0


def test_is_nmf_updates_decrease_the_divergence_monotonically():
    _, _, v0 = _low_rank()
    g = torch.Generator().manual_seed(1)
    # periodogram-like data: the exact PSD times exponential(1) draws (|complex Gaussian|^2)
    p = v0 * -torch.log(torch.rand(v0.shape, generator=g, dtype=torch.float64))
    w = torch.rand(40, 4, generator=g, dtype=torch.float64) + 0.5
    h = torch.rand(4, 30, generator=g, dtype=torch.float64) + 0.5
    obj = [float(is_divergence(p, w @ h))]
    for _ in range(100):
        w, h = nmf_is_step(p, w, h)
        obj.append(float(is_divergence(p, w @ h)))
    diffs = np.diff(obj)
    assert (diffs <= 1e-9 * abs(obj[0])).all(), diffs.max()
    assert obj[-1] < 0.5 * obj[0]


def test_is_nmf_fits_an_exact_low_rank_psd():
    _, _, v0 = _low_rank(seed=3)
    g = torch.Generator().manual_seed(2)
    w = torch.rand(40, 3, generator=g, dtype=torch.float64) + 0.5
    h = torch.rand(3, 30, generator=g, dtype=torch.float64) + 0.5
    for _ in range(2000):
        w, h = nmf_is_step(v0, w, h)
    assert float(is_divergence(v0, w @ h)) < 1e-3 * v0.numel()  # the minimum (0) is attained at W0 H0


def test_pseudo_likelihood_gradient_matches_its_closed_form():
    proc = polydiff.processes.get("vp-linear")
    y = torch.randn(2, 2, 8, 6, dtype=torch.float64)
    guid = NMFNoiseGuidance(y, rank=2, scale=1.5, generator=torch.Generator().manual_seed(0))
    guid._process = proc
    x = torch.randn_like(y).requires_grad_(True)
    t = torch.tensor([0.3, 0.7], dtype=torch.float64)

    class D:  # the model's estimate (only x0 is read, by the M-step)
        x0 = torch.zeros_like(y)

    ll = guid.log_likelihood(x, t, None, D, infer_space(x))
    (grad,) = torch.autograd.grad(ll.sum(), x)
    v = proc.schedule(t)
    a, s = v.alpha.double()[:, None, None, None], v.sigma.double()[:, None, None, None]
    var = (s / a) ** 2 + guid.noise_psd()[:, None]
    torch.testing.assert_close(grad, 2 * 1.5 * (y - x.detach() / a) / (a * var))
    assert len(guid.objective) == 1  # one M-step per guided evaluation


def test_guided_sampler_runs_end_to_end(tmp_path):
    rec = UDiffSERecipe()
    cfg = resolve_config(rec, preset="tiny", overrides=["train.steps=3", "train.log_every=100", "data.synthetic_clips=2",
                                                        "data.train_items=16"])
    run = RunDir(tmp_path / "run")
    training.train(rec, cfg, run, progress=False)
    model = training.load_model(rec, cfg, run)
    y = mix_at_snr(synthetic_speech(0.5, seed=2), synthetic_noise("pink", 0.5, seed=1), 0.0)
    out, nfe = rec.enhance(model, cfg, y, sampler="ddpm", steps=4, seed=0)
    assert out.shape == y.shape and nfe == 4 and np.isfinite(out).all()
    again, _ = rec.enhance(model, cfg, y, sampler="ddpm", steps=4, seed=0)
    np.testing.assert_array_equal(out, again)  # seeded
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "x.wav", y, 16000)
    s = rec.sample(model, cfg, run, num=1, sampler="ddpm", steps=3, seed=0, options={"input": str(tmp_path / "in")})
    assert s.audio[0].shape == y.shape and s.nfe == (3,)
