"""The recipes end to end on a user CSV with missing values: train briefly, forecast, impute, write, evaluate."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch

from polydiff.errors import ConfigError, UserInputError
from polydiff.recipes import RunDir
from polydiff_timeseries.backbones import CSDINet, DiffusionTSNet, fourier_loss
from polydiff_timeseries.config import resolve
from polydiff_timeseries.recipes import CSDIRecipe, DiffusionTSRecipe

training = pytest.importorskip("polydiff.training")


@pytest.fixture(scope="module")
def user_csv(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 240
    i = np.arange(n)
    df = pd.DataFrame({"time": pd.date_range("2024-03-01", periods=n, freq="h"),
                       "load": 100 + 20 * np.sin(2 * np.pi * i / 24) + rng.normal(0, 2, n),
                       "temp": 15 + 5 * np.cos(2 * np.pi * i / 24) + rng.normal(0, 0.5, n)})
    df.loc[[10, 11, 12, 100, 230], "load"] = np.nan
    df.loc[[50, 231], "temp"] = np.nan
    p = tmp_path_factory.mktemp("ts") / "user.csv"
    df.to_csv(p, index=False)
    return p


@pytest.fixture(scope="module", params=[DiffusionTSRecipe, CSDIRecipe], ids=["diffusion-ts", "csdi"])
def trained(request, user_csv, tmp_path_factory):
    rec = request.param()
    cfg = resolve("tiny", **{"data.path": str(user_csv), "data.window": 24, "train.steps": 15, "train.log_every": 100,
                             "eval.num_windows": 32, "eval.gru_iters": 3, "eval.fid_iters": 3, "eval.forecast_windows": 2,
                             "eval.forecast_samples": 4, "eval.gen_steps": 4, "sample.steps": 4})
    run = RunDir(tmp_path_factory.mktemp("run"))
    training.train(rec, cfg, run, progress=False)
    return rec, cfg, run, training.load_model(rec, cfg, run)


def test_forecast_keeps_context_and_writes_csv_png(trained, user_csv, tmp_path):
    rec, cfg, run, model = trained
    s = rec.sample(model, cfg, run, num=6, sampler="ddim", steps=4, seed=0, options={"task": "forecast", "input": str(user_csv), "horizon": 6})
    assert s.samples.shape == (6, 24, 2)
    df = pd.read_csv(user_csv)
    ctx = df[["load", "temp"]].to_numpy()[-18:]
    obs = np.isfinite(ctx)
    assert np.array_equal(s.samples[:, :18][:, obs], np.broadcast_to(ctx[obs], (6, int(obs.sum()))))  # context exactly
    assert np.isfinite(s.samples).all()
    assert pd.Timestamp(s.timestamps[-1]) == pd.Timestamp(df["time"].iloc[-1]) + pd.Timedelta(hours=6)
    files = rec.write_samples(s, tmp_path, cfg, run)
    assert {f.suffix for f in files} == {".csv", ".npz", ".png"} and all(f.stat().st_size > 0 for f in files)
    out = pd.read_csv(tmp_path / "forecast.csv")
    assert len(out) == 24 and {"time", "load", "load_q05", "load_q95", "load_observed"} <= set(out.columns)
    assert np.allclose(out["load"].to_numpy()[:18][obs[:, 0]], ctx[obs[:, 0], 0], rtol=1e-9, atol=1e-9)  # original units


def test_impute_never_changes_observed_values(trained, user_csv, tmp_path):
    rec, cfg, run, model = trained
    s = rec.sample(model, cfg, run, num=5, sampler="ddim", steps=4, seed=1, options={"task": "impute", "input": str(user_csv)})
    df = pd.read_csv(user_csv)
    v = df[["load", "temp"]].to_numpy()
    obs = np.isfinite(v)
    assert s.samples.shape == (5, 240, 2) and np.isfinite(s.samples).all()
    assert np.array_equal(s.samples[:, obs], np.broadcast_to(v[obs], (5, int(obs.sum()))))
    assert s.samples[:, ~obs].std(axis=0).max() > 0  # missing cells are sampled, not filled with one value
    files = rec.write_samples(s, tmp_path, cfg, run)
    out = pd.read_csv(tmp_path / "impute.csv")
    assert len(out) == 240 and out["load_observed"].sum() == obs[:, 0].sum()
    assert (tmp_path / "impute.png").stat().st_size > 1000 and files


def test_evaluate_reports_metrics(trained):
    rec, cfg, run, model = trained
    m = rec.evaluate(model, cfg, run, None)
    assert {"forecast_crps", "forecast_crps_sum", "forecast_mae", "forecast_coverage_90", "impute_crps"} <= set(m)
    if isinstance(rec, DiffusionTSRecipe) and not isinstance(rec, CSDIRecipe):
        assert {"discriminative", "predictive", "context_fid", "correlational"} <= set(m)
    assert all(np.isfinite(v) for v in m.values())


def test_bad_task_and_horizon_are_clear(trained, user_csv):
    rec, cfg, run, model = trained
    with pytest.raises(UserInputError, match="--task .nowcast.: expected generate, forecast or impute"):
        rec.sample(model, cfg, run, num=1, sampler="ddim", steps=2, seed=0, options={"task": "nowcast", "input": str(user_csv)})
    with pytest.raises(UserInputError, match="--horizon 24: expected 1 to 23"):
        rec.sample(model, cfg, run, num=1, sampler="ddim", steps=2, seed=0, options={"task": "forecast", "input": str(user_csv), "horizon": 24})


def test_backbones_shapes_and_known_entries():
    x = torch.randn(3, 24, 4)
    t = torch.rand(3)
    assert DiffusionTSNet(24, 4, d_model=16, n_heads=2)(x, t).shape == x.shape
    net = CSDINet(24, 4, ch=8, layers=1, n_heads=2)
    m = (torch.rand(3, 24, 4) < 0.5).float()
    y = torch.randn(3, 24, 4)
    out = net(x, t, cond_x=y, cond_mask=m)
    assert torch.equal(out[m.bool()], y[m.bool()])
    assert torch.allclose(fourier_loss(y, y), torch.zeros(3))


@pytest.mark.slow
def test_tiny_preset_trains_within_two_minutes(tmp_path):
    """Acceptance: ``timeseries/diffusion-ts --preset tiny`` on Stocks within 120 s (2 CPU cores)."""
    rec = DiffusionTSRecipe()
    cfg = resolve("tiny")
    t0 = time.perf_counter()
    training.train(rec, cfg, RunDir(tmp_path), progress=False)
    assert time.perf_counter() - t0 <= 120.0


@pytest.mark.parametrize("recipe_cls, choice, drops", [(DiffusionTSRecipe, "auto", True), (CSDIRecipe, "auto", False),
                                                        (DiffusionTSRecipe, "keep", False), (CSDIRecipe, "drop", True)])
def test_incomplete_training_windows(user_csv, tmp_path, recipe_cls, choice, drops):
    rec = recipe_cls()
    cfg = resolve("tiny", **{"data.path": str(user_csv), "data.window": 24, "data.stride": 1, "data.val_fraction": 0.0,
                             "data.incomplete_windows": choice})
    run = RunDir(tmp_path).ensure()
    rec.setup(cfg, run)
    if drops:  # the CSV's 6 missing rows spoil 24-row windows around them: they are dropped, with a warning
        with pytest.warns(UserWarning, match=r"training windows have missing values"):
            ds = rec.datasets(cfg, run).train
        assert ds.dropped > 0 and bool(ds.all()["observed"].all())
    else:
        ds = rec.datasets(cfg, run).train
        assert ds.dropped == 0 and not bool(ds.all()["observed"].all())
    assert len(ds) + ds.dropped == 240 - 24 + 1


def test_incomplete_windows_setting_is_checked(user_csv, tmp_path):
    from polydiff.config import apply_overrides

    cfg = resolve("tiny", **{"data.path": str(user_csv)})
    with pytest.raises(ConfigError, match=r"data.incomplete_windows.*'auto', 'drop', 'keep', got 'fill'"):
        apply_overrides(cfg, ["data.incomplete_windows=fill"])  # a Literal field: the config layer checks it


def test_calibrate_on_rescales_the_spread_about_an_unchanged_median(trained, user_csv, tmp_path):
    """``--calibrate-on``: the same seeded draws, moved per cell by the fitted factors — medians, context and observed
    cells unchanged, each 90 % interval scaled by ``s (w + f) / w`` — and the factors written next to the samples."""
    from polydiff_timeseries.backtest import backtest_windows
    from polydiff_timeseries.calibration import IntervalCalibration

    rec, cfg, run, model = trained
    base = {"task": "forecast", "input": str(user_csv), "horizon": 6}
    plain = rec.sample(model, cfg, run, num=8, sampler="ddim", steps=4, seed=0, options=base)
    with pytest.warns(UserWarning, match=r"--calibrate-on .*90% intervals calibrated per feature: load x"):
        cal = rec.sample(model, cfg, run, num=8, sampler="ddim", steps=4, seed=0,
                         options={**base, "calibrate_on": str(user_csv), "calibrate_windows": 8, "calibrate_method": "scale"})
    feats = cal.calibration["features"]
    bw = backtest_windows(rec.read_input(user_csv, rec.scaler(cfg, run)), 24, "forecast", windows=8, horizon=6)
    assert len(bw.starts) == 8 and [feats[k]["cells"] for k in ("load", "temp")] == bw.target.sum((0, 1)).tolist()
    assert bw.target.sum() < 2 * 8 * 6  # a real gap in a backtest horizon is not scored
    obs = plain.observed
    np.testing.assert_array_equal(cal.samples[:, obs], plain.samples[:, obs])  # observed context exactly
    assert (~obs[:18]).any()  # the context's gaps are sampled cells: they are calibrated like the horizon
    np.testing.assert_allclose(np.median(cal.samples, 0), np.median(plain.samples, 0), rtol=1e-8)
    c = IntervalCalibration(0.9, np.array([feats[k]["factor"] for k in ("load", "temp")]),
                            np.array([feats[k]["floor"] for k in ("load", "temp")]), np.zeros(2, dtype=int), np.zeros(2))
    np.testing.assert_allclose(cal.samples[:, ~obs], c.apply(plain.samples)[:, ~obs], rtol=1e-9, atol=1e-9)
    files = rec.write_samples(cal, tmp_path, cfg, run)
    assert (tmp_path / "forecast_calibration.json") in files


def test_calibrate_on_for_imputation_keeps_observed_values_and_draw_ranks(trained, user_csv):
    """The default (predictive) calibration: observed cells exactly, every missing cell's draws in the same order."""
    rec, cfg, run, model = trained
    opts = {"task": "impute", "input": str(user_csv)}
    plain = rec.sample(model, cfg, run, num=5, sampler="ddim", steps=4, seed=1, options=opts)
    with pytest.warns(UserWarning, match="predictive distributions calibrated per feature"):
        s = rec.sample(model, cfg, run, num=5, sampler="ddim", steps=4, seed=1,
                       options={**opts, "calibrate_on": str(user_csv), "calibrate_windows": 16})
    v = pd.read_csv(user_csv)[["load", "temp"]].to_numpy()
    obs = np.isfinite(v)
    assert np.array_equal(s.samples[:, obs], np.broadcast_to(v[obs], (5, int(obs.sum()))))
    assert np.isfinite(s.samples).all() and s.calibration["method"] == "predictive"
    np.testing.assert_array_equal(np.argsort(s.samples[:, ~obs], 0, kind="stable"), np.argsort(plain.samples[:, ~obs], 0, kind="stable"))


def test_calibrate_on_bad_files_are_one_clear_line(trained, user_csv, tmp_path):
    rec, cfg, run, model = trained
    short = tmp_path / "short.csv"
    pd.read_csv(user_csv).head(10).to_csv(short, index=False)
    base = {"task": "forecast", "input": str(user_csv), "horizon": 6}
    with pytest.raises(UserInputError, match=r"--calibrate-on .*short.csv: 10 rows; backtesting needs at least 24"):
        rec.sample(model, cfg, run, num=2, sampler="ddim", steps=2, seed=0, options={**base, "calibrate_on": str(short)})
    with pytest.raises(UserInputError, match=r"needs at least 9 .*larger --calibrate-windows"):
        rec.sample(model, cfg, run, num=2, sampler="ddim", steps=2, seed=0,
                   options={**base, "horizon": 1, "calibrate_on": str(user_csv), "calibrate_windows": 2, "calibrate_method": "scale"})
    with pytest.raises(UserInputError, match=r"feature 'load': 2 calibration cells; .*needs at least 20 .*larger --calibrate-windows"):
        rec.sample(model, cfg, run, num=2, sampler="ddim", steps=2, seed=0,
                   options={**base, "horizon": 1, "calibrate_on": str(user_csv), "calibrate_windows": 2})
    with pytest.raises(UserInputError, match="--calibrate-on calibrates forecasts and imputations"):
        rec.sample(model, cfg, run, num=2, sampler="ddim", steps=2, seed=0, options={"task": "generate", "calibrate_on": str(user_csv)})
    with pytest.raises(UserInputError, match="--calibrate-method 'isotonic': expected predictive or scale"):
        rec.sample(model, cfg, run, num=2, sampler="ddim", steps=2, seed=0,
                   options={**base, "calibrate_on": str(user_csv), "calibrate_method": "isotonic"})
