"""Generation scores as the Diffusion-TS tables report them: mean ± the 95 % t-interval half-width over scoring runs."""

from __future__ import annotations

import numpy as np
import pytest

from polydiff_timeseries import generation_metrics as G
from polydiff_timeseries.evaluation import ci95_half_width, generation_metrics


def test_ci95_half_width_by_hand():
    # values 1..5: sem = sqrt(2.5) / sqrt(5) = sqrt(0.5); t_{0.975, 4} = 2.7764451051977987 (tables)
    assert ci95_half_width(np.arange(1.0, 6.0)) == pytest.approx(np.sqrt(0.5) * 2.7764451051977987, rel=1e-12)
    assert np.isnan(ci95_half_width(np.array([1.0])))


def test_scores_are_the_mean_of_their_runs():
    rng = np.random.default_rng(0)
    real, fake = rng.random((40, 8, 3)), rng.random((40, 8, 3)) * 0.9
    runs = G.correlational_runs(real, fake, runs=4, seed=3)
    assert runs.shape == (4,) and G.correlational_score(real, fake, runs=4, seed=3) == pytest.approx(runs.mean(), rel=1e-12)
    d = G.discriminative_runs(real, fake, iters=3, runs=2, seed=1)
    assert d.shape == (2,) and G.discriminative_score(real, fake, iters=3, runs=2, seed=1) == pytest.approx(d.mean(), rel=1e-12)


def test_generation_metrics_report_mean_std_and_ci95():
    rng = np.random.default_rng(1)
    real, fake = rng.random((40, 8, 3)), rng.random((40, 8, 3))
    m = generation_metrics(real, fake, gru_iters=3, fid_iters=2, runs=3, seed=0)
    for k in ("discriminative", "predictive", "predictive_real", "context_fid", "correlational"):
        assert m[f"{k}/std"] >= 0 and m[f"{k}/ci95"] == pytest.approx(m[f"{k}/std"] / np.sqrt(3) * 4.302652729749464, rel=1e-9)
    one = generation_metrics(real, fake, gru_iters=3, fid_iters=2, runs=1, seed=0)
    assert "discriminative/std" not in one and "discriminative" in one
