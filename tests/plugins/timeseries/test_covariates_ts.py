"""Long-history covariates (seasonal lags, calendar): hand-computed values, masks, outputs and the user-input path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from polydiff.errors import ConfigError, UserInputError
from polydiff.recipes import RunDir
from polydiff_timeseries.backbones import CSDINet, DiffusionTSNet
from polydiff_timeseries.config import resolve
from polydiff_timeseries.covariates import CovariateSpec, calendar_features, lag_features, window_covariates
from polydiff_timeseries.data import WindowDataset
from polydiff_timeseries.recipes import CSDIRecipe, DiffusionTSRecipe

training = pytest.importorskip("polydiff.training")


def test_calendar_features_hand_computed() -> None:
    # 2024-01-01 was a Monday: Monday 06:00 is a quarter of the day and (0 + 0.25) / 7 of the week;
    # Thursday 1970-01-01 00:00 is 3/7 of the week; Sunday 2024-01-07 18:00 is (6 + 0.75) / 7
    stamps = np.array(["2024-01-01T06:00", "1970-01-01T00:00", "2024-01-07T18:00"], dtype="datetime64[ns]")
    f = calendar_features(stamps)
    d = np.array([0.25, 0.0, 0.75])
    w = np.array([0.25 / 7, 3 / 7, 6.75 / 7])
    expect = np.stack([np.sin(2 * np.pi * d), np.cos(2 * np.pi * d), np.sin(2 * np.pi * w), np.cos(2 * np.pi * w)], axis=-1)
    assert f.shape == (3, 4)
    np.testing.assert_allclose(f, expect, atol=1e-6)
    np.testing.assert_allclose(f[0, :2], [1.0, 0.0], atol=1e-6)  # 06:00: sin = 1, cos = 0


def test_lag_features_equal_the_series_shifted_by_the_lag() -> None:
    # series 10, 11, ..., 19 (one feature) and 100, ..., 109 (another); history P = 3 rows, window of 4 from row 3
    x = np.stack([10.0 + np.arange(10), 100.0 + np.arange(10)], axis=1)
    obs = np.ones_like(x, dtype=bool)
    known = torch.ones(1, 4, 2, dtype=torch.bool)
    spec = CovariateSpec(lags=(1, 3))
    cov = window_covariates(spec, x, obs, np.array([3]), 4, known)
    lag_x, lag_mask = cov["lag_x"][0], cov["lag_mask"][0]  # (L, C, K)
    assert lag_x.shape == (4, 2, 2)
    # window rows 3..6: lag 1 -> rows 2..5, lag 3 -> rows 0..3
    assert lag_x[:, 0, 0].tolist() == [12.0, 13.0, 14.0, 15.0]
    assert lag_x[:, 0, 1].tolist() == [10.0, 11.0, 12.0, 13.0]
    assert lag_x[:, 1, 1].tolist() == [100.0, 101.0, 102.0, 103.0]
    assert bool(lag_mask.all())
    # a window at row 1: lag 3 reaches before the series for its first 2 steps -> value 0, mask 0
    cov0 = window_covariates(spec, x, obs, np.array([1]), 4, known)
    assert cov0["lag_x"][0, :, 0, 1].tolist() == [0.0, 0.0, 10.0, 11.0]
    assert cov0["lag_mask"][0, :, 0, 1].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_forecast_mask_never_hides_lags_within_the_smallest_lag() -> None:
    # window 6, horizon 2 <= min lag 2: every lag value in the horizon comes from the known past
    x = np.arange(20, dtype=float)[:, None]
    obs = np.ones_like(x, dtype=bool)
    known = torch.ones(1, 6, 1, dtype=torch.bool)
    known[0, 4:] = False
    cov = window_covariates(CovariateSpec(lags=(2, 4)), x, obs, np.array([10]), 6, known)
    assert bool(cov["lag_mask"].all())
    assert cov["lag_x"][0, 4:, 0, 0].tolist() == [12.0, 13.0]  # rows 14, 15 -> 12, 13
    assert cov["lag_x"][0, 4:, 0, 1].tolist() == [10.0, 11.0]


def test_a_hidden_value_never_reaches_the_lag_features() -> None:
    # imputation hides row 12 of the window [10, 16): lag 2 at row 14 would copy it -> value 0 and mask 0 there only
    x = 100.0 + np.arange(20, dtype=float)[:, None]
    obs = np.ones_like(x, dtype=bool)
    known = torch.ones(1, 6, 1, dtype=torch.bool)
    known[0, 2] = False  # row 12
    cov = window_covariates(CovariateSpec(lags=(2,)), x, obs, np.array([10]), 6, known)
    assert cov["lag_mask"][0, :, 0, 0].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 1.0]
    assert cov["lag_x"][0, :, 0, 0].tolist() == [108.0, 109.0, 110.0, 111.0, 0.0, 113.0]
    assert 112.0 not in cov["lag_x"].flatten().tolist()


def test_lag_features_match_window_dataset_history() -> None:
    # the training path (WindowDataset items) and the sampling path (window_covariates) build the same channels
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    obs = rng.random((50, 2)) > 0.2
    ds = WindowDataset(x, obs, 8, 3, history=5)
    item = ds.all()
    known = item["observed"]
    lag_x, lag_mask = lag_features(item["hist_x"], item["hist_obs"], item["x"], known, (2, 5))
    cov = window_covariates(CovariateSpec(lags=(2, 5)), np.where(obs, x, np.nan), obs, ds.starts, 8, known)
    torch.testing.assert_close(lag_x, cov["lag_x"])
    torch.testing.assert_close(lag_mask, cov["lag_mask"])
    # spot check against the series: window 3 (start 9), step 4, feature 1, lag 5 -> row 8
    assert ds.starts[3] == 9
    assert bool(lag_mask[3, 4, 1, 1]) == bool(obs[8, 1])
    if obs[8, 1]:
        assert float(lag_x[3, 4, 1, 1]) == pytest.approx(float(x[8, 1]), abs=1e-6)


@pytest.mark.parametrize("net_cls", [CSDINet, DiffusionTSNet])
def test_networks_use_the_covariates(net_cls) -> None:
    torch.manual_seed(0)
    net = net_cls(12, 2, n_lags=2, n_calendar=4) if net_cls is DiffusionTSNet else net_cls(12, 2, ch=16, layers=1, n_lags=2, n_calendar=4)
    for p in net.parameters():  # CSDI's head starts at zero: give every weight a value so outputs can differ
        torch.nn.init.normal_(p, std=0.3)
    x_t, t = torch.randn(3, 12, 2), torch.full((3,), 0.5)
    cov = {"lag_x": torch.randn(3, 12, 2, 2), "lag_mask": torch.ones(3, 12, 2, 2), "calendar": torch.randn(3, 12, 4)}
    a = net(x_t, t, **cov)
    b = net(x_t, t, **{**cov, "lag_x": cov["lag_x"] + 1.0})
    c = net(x_t, t, **{**cov, "calendar": cov["calendar"] + 1.0})
    assert a.shape == (3, 12, 2)
    assert (a - b).abs().max() > 1e-4 and (a - c).abs().max() > 1e-4
    with pytest.raises(ValueError, match="covariates|lag|calendar"):
        net(x_t, t)


def test_old_configs_build_the_same_networks() -> None:
    # defaults off: no covariates, the parameter shapes of runs trained before covariates existed
    cfg = resolve("tiny", **{"data.window": 24})
    assert CovariateSpec.from_config(cfg.data) == CovariateSpec()
    net = CSDIRecipe().build_net(cfg, 2)
    assert net.inp.in_features == 2 and net.blocks[0].side.in_features == 32 + 8 + 1
    assert DiffusionTSRecipe().build_net(cfg, 2).cov is None
    with pytest.raises(ConfigError, match="data.lags"):
        CovariateSpec.from_config(resolve("tiny", **{"data.lags": (0, 3)}).data)


class _Spy(torch.nn.Module):
    """Records the condition the recipe's loss gives the network; predicts zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: dict = {}

    def forward(self, x_t, t, **cond):
        self.seen = cond
        return x_t * self.w


def test_csdi_training_lags_come_from_the_conditioning_entries_and_calendar_is_never_masked() -> None:
    import polydiff

    cfg = resolve("tiny", **{"data.window": 6, "data.lags": (2,), "data.calendar": True, "model.mask_strategy": "forecast"})
    model = polydiff.Denoiser(_Spy(), polydiff.processes.get("vp-cosine"), prediction="x0")
    x = torch.arange(6, dtype=torch.float32)[None, :, None] + 10.0
    batch = {"x": x, "observed": torch.ones(1, 6, 1, dtype=torch.bool), "hist_x": torch.tensor([[[8.0], [9.0]]]),
             "hist_obs": torch.ones(1, 2, 1, dtype=torch.bool), "calendar": torch.randn(1, 6, 4)}
    CSDIRecipe().loss(model, batch, cfg, torch.Generator().manual_seed(0))
    seen = model.net.seen
    cm = seen["cond_mask"][0, :, 0].bool()
    assert not cm.all() and cm[0]  # a forecast suffix is hidden
    torch.testing.assert_close(seen["calendar"], batch["calendar"])  # never masked
    src = torch.cat([torch.tensor([8.0, 9.0]), x[0, :, 0]])  # lag 2 at step l copies src[l]
    src_known = torch.cat([torch.ones(2, dtype=torch.bool), cm])
    for step in range(6):
        assert bool(seen["lag_mask"][0, step, 0, 0]) == bool(src_known[step])
        assert float(seen["lag_x"][0, step, 0, 0]) == (float(src[step]) if src_known[step] else 0.0)


# -- end to end: a run trained with lags samples from a CSV and refuses a too-short one ----------------------------


@pytest.fixture(scope="module")
def hourly_csv(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 300
    i = np.arange(n)
    df = pd.DataFrame({"time": pd.date_range("2024-03-01", periods=n, freq="h"),
                       "load": 100 + 20 * np.sin(2 * np.pi * i / 24) + rng.normal(0, 2, n),
                       "temp": 15 + 5 * np.cos(2 * np.pi * i / 24) + rng.normal(0, 0.5, n)})
    df.loc[[10, 11, 200], "load"] = np.nan
    p = tmp_path_factory.mktemp("cov") / "hourly.csv"
    df.to_csv(p, index=False)
    return p


@pytest.fixture(scope="module", params=[CSDIRecipe, DiffusionTSRecipe], ids=["csdi", "diffusion-ts"])
def lag_run(request, hourly_csv, tmp_path_factory):
    rec = request.param()
    cfg = resolve("tiny", **{"data.path": str(hourly_csv), "data.window": 24, "train.steps": 6, "train.log_every": 100,
                             "data.lags": (6, 24), "data.calendar": True, "sample.steps": 3})
    run = RunDir(tmp_path_factory.mktemp("covrun"))
    training.train(rec, cfg, run, progress=False)
    return rec, cfg, run, training.load_model(rec, cfg, run)


def test_a_lag_run_forecasts_from_a_csv_with_target_columns_only(lag_run, hourly_csv, tmp_path) -> None:
    rec, cfg, run, model = lag_run
    s = rec.sample(model, cfg, run, num=3, sampler="ddim", steps=3, seed=0,
                   options={"task": "forecast", "input": str(hourly_csv), "horizon": 6})
    assert s.samples.shape == (3, 24, 2) and s.columns == ("load", "temp") and np.isfinite(s.samples).all()
    rec.write_samples(s, tmp_path, cfg, run)
    out = pd.read_csv(tmp_path / "forecast.csv")
    assert not [c for c in out.columns if "lag" in c or "calendar" in c]
    assert {c.split("_")[0] for c in out.columns} == {"time", "load", "temp"}
    with np.load(tmp_path / "forecast.npz") as d:
        assert d["samples"].shape == (3, 24, 2) and tuple(d["columns"]) == ("load", "temp")
    imp = rec.sample(model, cfg, run, num=2, sampler="ddim", steps=3, seed=0, options={"task": "impute", "input": str(hourly_csv)})
    assert imp.samples.shape == (2, 300, 2)
    gen = rec.sample(model, cfg, run, num=2, sampler="ddim", steps=3, seed=0, options={"task": "generate"})
    assert gen.samples.shape == (2, 24, 2)


def test_a_lag_run_refuses_a_too_short_input_in_one_line(lag_run, hourly_csv, tmp_path) -> None:
    rec, cfg, run, model = lag_run
    short = tmp_path / "short.csv"
    pd.read_csv(hourly_csv).tail(40).to_csv(short, index=False)  # 18 context rows + 24 of lag history = 42 needed
    with pytest.raises(UserInputError) as e:
        rec.sample(model, cfg, run, num=2, sampler="ddim", steps=3, seed=0, options={"task": "forecast", "input": str(short), "horizon": 6})
    msg = str(e.value)
    assert "\n" not in msg and str(short) in msg and "at least 42 rows" in msg and "40 rows" in msg
    with pytest.raises(UserInputError, match=r"--horizon 7: .*smallest lag is 6"):
        rec.sample(model, cfg, run, num=2, sampler="ddim", steps=3, seed=0, options={"task": "forecast", "input": str(hourly_csv), "horizon": 7})
    with pytest.raises(UserInputError, match=r"at least 48 rows"):
        rec.sample(model, cfg, run, num=2, sampler="ddim", steps=3, seed=0, options={"task": "impute", "input": str(short)})
