"""The forecasting benchmark on a series with real gaps (pedestrian): baselines stay finite, gaps are never scored."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from polydiff_timeseries.data import Series

RUN = Path(__file__).resolve().parents[3] / "benchmarks" / "timeseries" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("ts_bench_run_gaps", RUN)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ts_bench_run_gaps"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_seasonal_naive_skips_a_missing_day(bench) -> None:
    # period 4: value at t = t; rows 8..11 missing, so a window at 12 copies rows 8..11 from one period further back
    vals = np.arange(24, dtype=float)[:, None]
    vals[8:12] = np.nan
    s = Series(vals, np.isfinite(vals), ("a",), None, "test")
    out = bench.seasonal_naive(s, np.array([12]), 6, 2, 4)
    assert out[0, :, 0].tolist() == [4.0, 5.0, 6.0, 7.0, 12.0, 13.0]  # rows 12..15 <- 4..7 (two periods), 16, 17 <- 12, 13


def test_gaps_are_never_targets_and_scores_stay_finite(bench) -> None:
    rng = np.random.default_rng(0)
    T, period = 24 * 40, 24
    t = np.arange(T)
    vals = np.stack([10 + np.sin(2 * np.pi * t / period), 5 + np.cos(2 * np.pi * t / period)], axis=1)
    vals += 0.1 * rng.standard_normal(vals.shape)
    vals[rng.random(vals.shape) < 0.1] = np.nan  # scattered real gaps
    s = Series(vals, np.isfinite(vals), ("a", "b"), None, "test")
    b = {"fc_windows": 3, "dataset": "pedestrian", "classical_python": "/nonexistent", "classical": ""}
    w = bench.forecast_windows(b, s)
    for task in ("forecast", "impute"):
        known = w["known"][task].numpy()
        target = w["obs"] & ~known
        assert not (target & ~w["obs"]).any() and target.any()
        rows = bench.baseline_rows(b, s, w, task)
        assert rows and all(np.isfinite(m["crps"]) and np.isfinite(m["mae"]) for m in rows.values())
