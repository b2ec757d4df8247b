"""audio/udiffse: the IS-NMF M-step decreases its objective monotonically and fits an exact low-rank PSD, the
pseudo-likelihood's gradient matches its closed form, and the guided sampler runs end to end on generated data."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import polydiff
from polydiff.config import resolve_config
from polydiff.errors import UserInputError
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
    assert out.shape == y.shape and nfe == 2 * 4 and np.isfinite(out).all()  # the tiny preset's 2 EM iterations x 4 steps
    again, _ = rec.enhance(model, cfg, y, sampler="ddpm", steps=4, seed=0)
    np.testing.assert_array_equal(out, again)  # seeded
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "x.wav", y, 16000)
    s = rec.sample(model, cfg, run, num=1, sampler="ddpm", steps=3, seed=0, options={"input": str(tmp_path / "in")})
    assert s.audio[0].shape == y.shape and s.nfe == (2 * 3,)
    _, nfe = rec.enhance(model, cfg, y, sampler="ddpm", steps=3, seed=0, options={"em_iterations": 3})
    assert nfe == 9
    _, nfe = rec.enhance(model, cfg, y, sampler="ddpm", steps=3, seed=0, options={"em_iterations": 0})
    assert nfe == 3  # the one-pass variant
    with pytest.raises(UserInputError, match="--em-iterations"):
        rec.enhance(model, cfg, y, sampler="ddpm", steps=3, seed=0, options={"em_iterations": -1})
    assert cfg.model.em_iterations == 2 and UDiffSERecipe.config_class().model.em_iterations == 5


# -- the EM outer loop (UDiffSE's num_EM x num_E schedule) --------------------------------------------------------------


def _gaussian_prior_model(s2: torch.Tensor):
    """A Denoiser whose network is the exact ``E[x_0 | x_t]`` of the prior ``x_0 ~ N(0, s2_f)`` (every channel, frame)
    under ``vp-linear``: ``alpha s2 / (alpha^2 s2 + sigma^2) x_t``."""
    proc = polydiff.processes.get("vp-linear")

    class Prior(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))

        def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            v = proc.schedule(t)
            a = v.alpha.to(x_t.dtype)[:, None, None, None]
            s = v.sigma.to(x_t.dtype)[:, None, None, None]
            q = s2.to(x_t.dtype)[None, None, :, None]
            return a * q / (a * a * q + s * s) * x_t

    return polydiff.Denoiser(Prior(), proc, prediction="x0")


def test_em_m_step_fits_the_mean_residual_power_of_the_draws():
    g = torch.Generator().manual_seed(4)
    y = torch.randn(1, 2, 6, 5, generator=g, dtype=torch.float64)
    draws = torch.randn(3, 2, 6, 5, generator=g, dtype=torch.float64)
    guid = NMFNoiseGuidance(y, rank=2, nmf_iters=3, generator=torch.Generator().manual_seed(0), per_step=False)
    w, h = guid.w.clone(), guid.h.clone()
    guid.m_step(draws)
    # independent: numpy mean over draws of |Y - S_k|^2 (complex modulus), then three updates
    yc = y[0, 0].numpy() + 1j * y[0, 1].numpy()
    sc = draws[:, 0].numpy() + 1j * draws[:, 1].numpy()
    p = torch.from_numpy(np.mean(np.abs(yc[None] - sc) ** 2, axis=0))[None] + guid.floor
    for _ in range(3):
        w, h = nmf_is_step(p, w, h)
    torch.testing.assert_close(guid.w, w)
    torch.testing.assert_close(guid.h, h)
    # with V fixed (EM mode) the likelihood does not touch W, H
    guid._process = polydiff.processes.get("vp-linear")

    class D:
        x0 = draws

    guid.log_likelihood(draws, torch.full((3,), 0.5, dtype=torch.float64), None, D, infer_space(draws))
    torch.testing.assert_close(guid.w, w)
    assert len(guid.objective) == 1


def test_em_runs_em_iterations_times_steps_and_moves_the_noise_psd_toward_the_truth():
    """Gaussian speech with an exact prior denoiser and stationary noise of PSD ``2 r2_f`` (rank 1): EM's ``V`` ends far
    closer (IS divergence) to the true PSD than its initial value, and the averaged estimate beats the mixture."""
    from polydiff_audio.oracles import GaussianSpeech
    from polydiff_audio.udiffse import udiffse_em

    f, t = 16, 40
    s2 = torch.linspace(0.2, 2.0, f, dtype=torch.float64)
    r2 = torch.linspace(1.5, 0.1, f, dtype=torch.float64)
    model = _gaussian_prior_model(s2)
    x0, y = GaussianSpeech(s2, r2).draw(1, t, torch.Generator().manual_seed(0))
    v_true = (2 * r2)[None, :, None].expand(1, f, t)
    v_init = NMFNoiseGuidance(y, rank=1, generator=torch.Generator().manual_seed(3)).noise_psd()
    res = udiffse_em(model, y, em_iterations=5, steps=20, posterior_samples=2, rank=1, scale=1.0, nmf_iters=5, seed=3)
    assert res.nfe == 5 * 20 and res.draws.shape == (2, 2, f, t) and len(res.objective) == 5
    torch.testing.assert_close(res.x, res.draws.mean(0, keepdim=True))
    d_init, d_em = float(is_divergence(v_true, v_init)), float(is_divergence(v_true, res.noise_psd))
    assert d_em < 0.6 * d_init, (d_init, d_em)
    mse = lambda a: float(((a - x0) ** 2).mean())  # noqa: E731
    assert mse(res.x) < 0.92 * mse(y), (mse(res.x), mse(y))
    again = udiffse_em(model, y, em_iterations=5, steps=20, posterior_samples=2, rank=1, scale=1.0, nmf_iters=5, seed=3)
    torch.testing.assert_close(res.x, again.x)  # seeded
