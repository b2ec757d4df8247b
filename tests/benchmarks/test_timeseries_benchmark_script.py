"""The time-series benchmark resumes an interrupted training run rather than scoring a half-trained model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("timeseries/run.py")


def _cfg(steps: int):
    from polydiff_timeseries.config import resolve

    return resolve("tiny", **{"train.steps": steps, "train.checkpoint_every": 10, "data.max_rows": 300,
                              "train.log_every": 10**9})


def _step(run: Path) -> int:
    return int(json.loads((run / "checkpoints" / "latest").read_text())["step"])


def test_train_recipe_resumes_then_reuses(bench, tmp_path):
    rec = bench.DiffusionTSRecipe()
    run = tmp_path / "dts"
    # an "interrupted" run: 20 of 40 steps checkpointed
    _, secs = bench.train_recipe(rec, _cfg(20), run, "cpu")
    assert _step(run) == 20 and secs > 0
    model, secs = bench.train_recipe(rec, _cfg(40), run, "cpu")
    assert _step(run) == 40 and secs > 0  # trained on to the configured steps
    # a finished run is loaded, not trained again, and gives the same weights
    again, secs = bench.train_recipe(rec, _cfg(40), run, "cpu")
    assert math.isnan(secs) and _step(run) == 40
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_quantile_samples_reproduce_the_given_quantiles_and_gaussian_crps(bench):
    from scipy.special import ndtri

    from polydiff_timeseries.metrics import QUANTILES, crps_exact, crps_quantile

    # Gaussian predictive quantiles N(mu, s^2) for 3 entries: the samples' quantiles are the given ones, exactly
    mu, s = np.array([1.0, -2.0, 5.0]), np.array([0.5, 2.0, 1.0])
    q = mu[:, None] + s[:, None] * ndtri(np.array(QUANTILES))[None]
    draws = bench.quantile_samples(q)
    assert draws.shape == (1001, 3)
    assert np.allclose(np.quantile(draws, np.array(QUANTILES), axis=0).T, q, atol=1e-9)
    # and the exact CRPS of the draws is the Gaussian closed form within the grid's discretisation (1e-3 rel)
    y = np.array([1.3, 0.0, 5.0])
    z = (y - mu) / s
    pdf, cdf = np.exp(-z**2 / 2) / np.sqrt(2 * np.pi), 0.5 * (1 + np.vectorize(math.erf)(z / np.sqrt(2)))
    truth = s * (z * (2 * cdf - 1) + 2 * pdf - 1 / np.sqrt(np.pi))
    for i in range(3):
        got = crps_exact(draws[:, i:i + 1], y[i:i + 1], np.array([True]))
        assert abs(got - truth[i]) <= 2e-3 * s[i]
    # the quantile-loss CRPS of the draws equals the one computed from the quantiles themselves
    ql = np.mean([2 * abs((qq - y[0]) * ((y[0] <= qq) - lv)) for qq, lv in zip(q[0], QUANTILES)]) / abs(y[0])
    assert np.isclose(crps_quantile(draws[:, :1], y[:1], np.array([True])), ql)


def test_seasonal_interpolation_recovers_a_pure_seasonal_series(bench):
    from polydiff_timeseries.data import Series

    period, days = 8, 28
    t = np.arange((days + 4) * period)
    vals = np.stack([np.sin(2 * np.pi * t / period) * 3 + 10, np.cos(2 * np.pi * t / period)], -1)
    series = Series(values=vals, observed=np.ones_like(vals, dtype=bool), columns=("a", "b"), source="test")
    starts = np.array([days * period, days * period + 5])
    win = np.stack([vals[s:s + 16] for s in starts])
    known = np.zeros_like(win, dtype=bool)
    known[:, ::5] = True
    filled = bench.seasonal_interp(series, starts, win, known, period, days=days)
    assert np.allclose(filled, win, atol=1e-9)  # linear interpolation alone would not
    assert not np.allclose(bench.linear_interp(win, known), win, atol=1e-3)


@pytest.mark.parametrize("task", ["forecast", "impute"])
def test_calibration_windows_never_see_a_test_target(bench, task):
    """The backtest windows of ``--calibrate``: 4x the test windows, and no test target is a calibration target, a
    value given to the sampler or a lag source there."""
    from polydiff_timeseries.data import Series

    rng = np.random.default_rng(0)
    T = 3000
    observed = rng.random((T, 2)) > 0.05
    series = Series(rng.normal(size=(T, 2)), observed, ("a", "b"), None, "synthetic")
    b = {"fc_windows": 8, "dataset": "vic_elec"}
    w = bench.forecast_windows(b, series)
    cw = bench.calibration_windows(b, series, w, task)
    L = bench.FC_WINDOW
    test_target = np.zeros((T, 2), dtype=bool)
    for k, s0 in enumerate(w["starts"]):
        test_target[s0:s0 + L] |= w["obs"][k] & ~w["known"][task].numpy()[k]
    assert test_target.any() and len(cw["starts"]) == 4 * len(w["starts"])
    assert not (cw["observed"] & test_target).any()  # lag sources
    for k, s0 in enumerate(cw["starts"]):
        given = cw["known"][k].numpy()
        scored = cw["obs"][k] & ~given
        assert not (given & test_target[s0:s0 + L]).any() and not (scored & test_target[s0:s0 + L]).any()
    assert (cw["obs"] & ~cw["known"].numpy()).sum() > 0
