"""DiffWave's fast 6-step schedule: t_align as the paper defines it (hand-computed steps and an independent inverse
interpolation), the continuous-time alignment of the recipe's process, Algorithm 2's output law on Gaussian data with
the exact denoiser, and DiffWave's L1 loss on the noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import polydiff
from polydiff.config import resolve_config
from polydiff.errors import UserInputError
from polydiff_audio.fast_schedule import (
    DIFFWAVE_FAST_BETAS, FastSchedule, align_steps, fast_schedule, sample_fast, training_alpha_bars,
)
from polydiff_audio.vocoder import DiffWaveRecipe

TRAIN_BETAS = np.linspace(1e-4, 0.05, 50)  # DiffWave's 50 training steps
TRAIN_AB = np.cumprod(1.0 - TRAIN_BETAS)


def test_t_align_of_the_first_steps_by_hand():
    t = align_steps(TRAIN_AB, DIFFWAVE_FAST_BETAS)
    assert t.shape == (6,)
    # s = 1: beta^infer_1 = beta_1 = 1e-4, so alpha_bar^infer_1 = alpha_bar_1: exactly training step 1
    assert t[0] == pytest.approx(1.0, abs=1e-12)
    # s = 2: alpha_bar^infer_2 = 0.9999 * 0.999 = 0.9989001 lies between alpha_bar_1 = 0.9999 and
    # alpha_bar_2 = 0.9999 * (1 - (1e-4 + 0.0499 / 49)) = 0.99878175...
    a_inf = 0.9999 * 0.999
    ab1 = 0.9999
    ab2 = 0.9999 * (1 - (1e-4 + 0.0499 / 49))
    assert ab2 <= a_inf <= ab1
    assert t[1] == pytest.approx(1 + (math.sqrt(ab1) - math.sqrt(a_inf)) / (math.sqrt(ab1) - math.sqrt(ab2)), abs=1e-12)
    assert 1.0 < t[1] < 2.0


def test_t_align_is_the_inverse_of_piecewise_linear_sqrt_alpha_bar():
    """Independent: interpolate the step index as a piecewise-linear function of sqrt(alpha_bar) (np.interp)."""
    t = align_steps(TRAIN_AB, DIFFWAVE_FAST_BETAS)
    sqrt_ab = np.sqrt(np.concatenate([[1.0], TRAIN_AB]))
    steps = np.arange(51, dtype=np.float64)
    a_inf = np.cumprod(1.0 - np.asarray(DIFFWAVE_FAST_BETAS))
    np.testing.assert_allclose(t, np.interp(np.sqrt(a_inf), sqrt_ab[::-1], steps[::-1]), rtol=0, atol=1e-9)
    assert np.all(np.diff(t) > 0) and t[-1] < 50  # increasing noise, all within the training range
    # an inference level equal to a training level lands exactly on that step
    exact = align_steps(TRAIN_AB, TRAIN_BETAS[:7])
    np.testing.assert_allclose(exact, np.arange(1, 8), atol=1e-9)


def test_noise_beyond_the_training_range_is_refused():
    with pytest.raises(ValueError, match="below the last training step"):
        align_steps(TRAIN_AB[:10], DIFFWAVE_FAST_BETAS)
    cfg = resolve_config(DiffWaveRecipe(), preset="tiny", overrides=["model.beta_min=0.001", "model.beta_max=0.01"])
    with pytest.raises(UserInputError, match="sample.fast_betas"):
        DiffWaveRecipe().schedule(cfg)


def test_continuous_training_levels_and_alignment():
    proc = polydiff.processes.get("vp-linear", beta_min=0.1, beta_max=20.0)
    ab = training_alpha_bars(proc, 50)
    n = np.arange(1, 51) / 50
    np.testing.assert_allclose(ab, np.exp(-(0.1 * n + 0.5 * (20.0 - 0.1) * n**2)), rtol=1e-10)  # vp-linear closed form
    fs = fast_schedule(proc)
    np.testing.assert_allclose(np.asarray(fs.t) * 50, align_steps(ab, DIFFWAVE_FAST_BETAS), rtol=1e-12)
    # the process's alpha_bar at the aligned times is close to the inference levels (linear interpolation of sqrt)
    ab_at = proc.schedule(torch.tensor(fs.t, dtype=torch.float64)).alpha.double().pow(2).numpy()
    np.testing.assert_allclose(np.sqrt(ab_at), np.sqrt(fs.alpha_bars), atol=0.01)


def test_algorithm_2_output_law_on_gaussian_data():
    """x_0 ~ N(0, c^2) per sample with the exact denoiser: every step is linear, so the output variance follows
    v <- A_s^2 v + sigma_s^2 from v = 1, with A_s = (1 - beta_s / sqrt(1 - ab_s) k_s) / sqrt(1 - beta_s) and
    eps_hat = k_s x, k_s = sigma_t / (alpha_t^2 c^2 + sigma_t^2) at the aligned time."""
    proc = polydiff.processes.get("vp-linear")
    c2 = 0.3

    class Exact(torch.nn.Module):
        def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # E[x_0 | x_t]
            v = proc.schedule(t)
            a, s = v.alpha.to(x_t.dtype)[:, None], v.sigma.to(x_t.dtype)[:, None]
            return a * c2 / (a * a * c2 + s * s) * x_t

    model = polydiff.Denoiser(Exact(), proc, prediction="x0")
    fs = fast_schedule(proc)
    x, nfe = sample_fast(model, (20000, 1), fs, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert nfe == 6
    v = 1.0
    ab, betas = fs.alpha_bars, np.asarray(fs.betas)
    for s in range(5, -1, -1):
        sv = proc.schedule(torch.tensor([fs.t[s]], dtype=torch.float64))
        a, sg = float(sv.alpha[0]), float(sv.sigma[0])
        k = sg / (a * a * c2 + sg * sg)
        A = (1 - betas[s] / math.sqrt(1 - ab[s]) * k) / math.sqrt(1 - betas[s])
        v = A * A * v + ((1 - ab[s - 1]) / (1 - ab[s]) * betas[s] if s > 0 else 0.0)
    se = v * math.sqrt(2 / 20000)  # standard error of a sample variance
    assert abs(float(x.var()) - v) < 4 * se, (float(x.var()), v)
    assert abs(float(x.mean())) < 4 * math.sqrt(v / 20000)


def test_fast_schedule_is_a_dataclass_of_the_paper_values():
    fs = FastSchedule(DIFFWAVE_FAST_BETAS, (0.0,) * 6)
    np.testing.assert_allclose(fs.alpha_bars[-1], np.prod(1 - np.asarray(DIFFWAVE_FAST_BETAS)))


def test_l1_loss_on_the_noise():
    rec = DiffWaveRecipe()
    cfg = resolve_config(rec, preset="tiny", overrides=["model.loss='l1'"])
    model = rec.build_model(cfg, None)
    torch.nn.init.normal_(model.net.final.weight, std=0.1)  # a non-zero output
    x = torch.randn(2, 1, 512) * 0.1
    batch = {"x": x, "mel": torch.rand(2, 80, 3)}
    loss = rec.loss(model, batch, cfg, torch.Generator().manual_seed(5)).detach()
    # independent: the same draws (time, then noise) from the same generator
    g = torch.Generator().manual_seed(5)
    t = polydiff.losses.sample_time(model.process, 2, generator=g)
    noised = model.process.noise(x, t, generator=g)
    eps_hat = model.net(noised.x_t, t, batch["mel"]).detach()
    assert float(loss) == pytest.approx(float((eps_hat - noised.noise).abs().mean()), rel=1e-6)
    l2 = rec.loss(model, batch, resolve_config(rec, preset="tiny"), torch.Generator().manual_seed(5)).detach()
    assert float(l2) != pytest.approx(float(loss))
    with pytest.raises(UserInputError, match="model.prediction='eps'"):
        rec.loss(model, batch, resolve_config(rec, preset="tiny", overrides=["model.loss='l1'", "model.prediction='x0'"]))
