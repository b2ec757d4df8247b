"""Recipes ``timeseries/diffusion-ts`` and ``timeseries/csdi``: data, model, loss, sampling tasks, writers, evaluation."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

import polydiff
import polydiff.errors
from polydiff.errors import DataError, UserInputError
from polydiff.losses import sample_time
from polydiff.recipes import DataBundle, Recipe, RunDir, SampleOption
from polydiff.spaces import DenseSpace

from .backtest import backtest_windows
from .backbones import CSDINet, DiffusionTSNet, fourier_loss
from .calibration import IntervalCalibration, PredictiveCalibration, fit_interval_calibration, fit_predictive_calibration
from .config import PRESETS, TSConfig
from .covariates import CovariateSpec, calendar_features, covariate_cond, window_covariates
from .data import Scaler, Series, WindowDataset, frame_to_series, guess_time_column, load_series, read_table, split_series
from .tasks import METHODS, forecast_mask, sample_windows
from .writers import TimeSeriesSamples, write_all

SCALER_FILE = "scaler.json"


class TimeSeriesRecipe(Recipe):
    """Shared parts of the time-series recipes (windows ``(B, L, C)``, x0-prediction, Gaussian process)."""

    config_class: ClassVar[type] = TSConfig
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = PRESETS
    default_method: ClassVar[str] = "reconstruction+replacement"
    drops_incomplete_windows: ClassVar[bool] = True  # data.incomplete_windows='auto' (see DataConfig)
    sample_options: ClassVar[tuple[SampleOption, ...]] = (
        SampleOption("task", str, "generate", "generate | forecast | impute"),
        SampleOption("input", str, None, "CSV/Parquet with the training columns (and a time column) for forecast/impute"),
        SampleOption("horizon", int, 0, "forecast horizon in steps (0: sample.horizon or window // 4)"),
        SampleOption("method", str, None, "replacement | reconstruction | reconstruction+replacement | dps | cg | csdi"),
        SampleOption("pad_context", bool, False, "forecast from an input shorter than window - horizon rows (the missing "
                     "earlier steps are sampled too)"),
        SampleOption("calibrate_on", str, None, "forecast/impute: a held-out CSV/Parquet (for imputation it may be --input "
                     "itself); the model's errors on its backtest windows recalibrate the samples (split conformal), so "
                     "the intervals cover their level"),
        SampleOption("calibrate_windows", int, 64, "backtest windows taken from --calibrate-on (16 were too few on vic_elec: "
                     "a bias they shared was carried over)"),
        SampleOption("calibrate_method", str, "predictive", "--calibrate-on's method: predictive (a conformal predictive "
                     "distribution per feature, every level, draws keep their ranks) or scale (one level's spread factor)"),
        SampleOption("calibrate_level", float, 0.9, "scale: the central interval calibrated; predictive: the interval "
                     "whose half-width normalises the residuals"),
    )

    # -- data ------------------------------------------------------------------------------------
    def _series(self, cfg: TSConfig) -> Series:
        s = load_series(cfg.data)
        if cfg.data.max_rows and len(s.values) > cfg.data.max_rows:
            n = cfg.data.max_rows
            s = Series(s.values[:n], s.observed[:n], s.columns, None if s.timestamps is None else s.timestamps[:n], s.source)
        return s

    def setup(self, cfg: TSConfig, run: RunDir) -> None:
        s = self._series(cfg)
        train, _ = split_series(s, cfg.data.val_fraction)
        if len(train.values) < cfg.data.window:
            raise DataError(f"{s.source}: window length {cfg.data.window} is longer than the training part ({len(train.values)} rows)")
        spec = self.covariate_spec(cfg)
        if spec.calendar and s.timestamps is None:
            raise polydiff.errors.ConfigError(f"{s.source}: data.calendar=true needs a time column (data.time_column), "
                                              "but the data has none")
        if spec.history >= len(train.values):
            raise polydiff.errors.ConfigError(f"{s.source}: data.lags={list(spec.lags)}: the largest lag ({spec.history} steps) is "
                                              f"not shorter than the training part ({len(train.values)} rows)")
        Scaler.fit(train, cfg.data.normalise).save(run.artifacts / SCALER_FILE)

    @staticmethod
    def covariate_spec(cfg: TSConfig) -> CovariateSpec:
        """The run's always-observed covariates (``data.lags``, ``data.calendar``; none by default)."""
        return CovariateSpec.from_config(cfg.data)

    def _calendar(self, cfg: TSConfig, s: Series) -> np.ndarray | None:
        return calendar_features(s.timestamps) if self.covariate_spec(cfg).calendar and s.timestamps is not None else None

    def scaler(self, cfg: TSConfig, run: RunDir) -> Scaler:
        p = run.artifacts / SCALER_FILE
        if not p.exists():
            self.setup(cfg, run.ensure())
        return Scaler.load(p)

    def datasets(self, cfg: TSConfig, run: RunDir) -> DataBundle:
        s = self._series(cfg)
        sc = self.scaler(cfg, run)
        train, val = split_series(s, cfg.data.val_fraction)
        drop = self._drop_incomplete(cfg)
        batch = _global_batch(cfg)
        scaled = sc.transform(train.values)
        spec = self.covariate_spec(cfg)
        cov_kw: dict[str, Any] = {"history": spec.history, "calendar": self._calendar(cfg, train)}
        tr = WindowDataset(scaled, train.observed, cfg.data.window, cfg.data.stride, source=s.source, **cov_kw)
        total = len(tr)
        if total < batch:
            raise DataError(
                f"{s.source}: the training part ({len(train.values)} rows) gives {total} windows of length {cfg.data.window} "
                f"(stride {cfg.data.stride}), fewer than one batch of {batch}; set train.batch_size={max(1, total)} or lower, "
                "a shorter data.window, data.stride=1, or use a longer file")
        if drop:
            complete = WindowDataset(scaled, train.observed, cfg.data.window, cfg.data.stride, source=s.source,
                                     complete_only=True, allow_empty=True, **cov_kw)
            if len(complete) >= batch:
                tr = complete
                if tr.dropped:
                    warnings.warn(f"{s.source}: {tr.dropped} of {total} training windows have missing values and are "
                                  f"not used by {self.name} (data.incomplete_windows='keep' trains on them with a masked loss)",
                                  UserWarning, stacklevel=2)
            elif cfg.data.incomplete_windows == "drop":
                raise DataError(f"{s.source}: data.incomplete_windows='drop' leaves {len(complete)} of {total} training windows, "
                                f"fewer than one batch of {batch}; set data.incomplete_windows='keep' or "
                                f"train.batch_size={max(1, len(complete))} or lower")
            else:
                warnings.warn(f"{s.source}: {total - len(complete)} of {total} training windows have missing values; dropping "
                              f"them would leave {len(complete)}, fewer than one batch of {batch}, so {self.name} trains on "
                              "all of them with the loss on observed entries only", UserWarning, stacklevel=2)
        elif not train.observed.all():
            incomplete = total - len(WindowDataset(scaled, train.observed, cfg.data.window, cfg.data.stride, source=s.source,
                                                   complete_only=True, allow_empty=True))
            if incomplete:
                warnings.warn(f"{s.source}: {incomplete} of {total} training windows have missing values; {self.name} trains on all "
                              "of them: a missing entry is never a conditioning value nor a target (masked)", UserWarning, stacklevel=2)
        va = None
        if val is not None and len(val.values) >= cfg.data.window and spec.active:
            # held-out windows with their real history (the training part's end) before them
            va = WindowDataset(sc.transform(s.values), s.observed, cfg.data.window, cfg.data.window, source=s.source,
                               history=spec.history, calendar=self._calendar(cfg, s), min_start=len(train.values))
        elif val is not None and len(val.values) >= cfg.data.window:
            va = WindowDataset(sc.transform(val.values), val.observed, cfg.data.window, cfg.data.window, source=s.source)
        return DataBundle(train=tr, val=va)

    def _drop_incomplete(self, cfg: TSConfig) -> bool:
        choice = cfg.data.incomplete_windows  # Literal: the config layer has validated it
        return choice == "drop" or (choice == "auto" and self.drops_incomplete_windows)

    # -- model -----------------------------------------------------------------------------------
    def build_net(self, cfg: TSConfig, channels: int) -> nn.Module:
        m, spec = cfg.model, self.covariate_spec(cfg)
        return DiffusionTSNet(cfg.data.window, channels, m.d_model, m.n_heads, m.enc_layers, m.dec_layers,
                              n_lags=spec.n_lags, n_calendar=spec.n_calendar)

    def build_model(self, cfg: TSConfig, run: RunDir) -> nn.Module:
        channels = len(self.scaler(cfg, run).columns)
        return polydiff.Denoiser(self.build_net(cfg, channels), polydiff.processes.get(cfg.model.process), prediction="x0")

    def loss(self, model: nn.Module, batch: Any, cfg: TSConfig, generator: torch.Generator | None = None) -> torch.Tensor:
        """x0-MSE over observed entries plus the Fourier term (weight ``model.fourier_weight``; ``sqrt(L)/5`` if < 0)."""
        x, obs = batch["x"], batch["observed"].to(torch.bool)
        space = DenseSpace()
        spec = self.covariate_spec(cfg)
        cov = None
        if spec.active:
            # p(window | covariates): the lag sources inside the window are a random known pattern (CSDI's mix), as
            # they will be at sampling (forecast context, imputation's observed cells, nothing when generating)
            cov = covariate_cond(spec, batch, training_mask(obs, "mix", generator))
        t = sample_time(model.process, x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        noised = model.process.noise(x, t, generator=generator, space=space)
        x0_hat = model(noised.x_t, t, cov, space=space)
        m = obs.to(x.dtype)
        mse = ((x0_hat - x) ** 2 * m).sum() / m.sum().clamp(min=1)
        w = None if cfg.model.fourier_weight < 0 else float(cfg.model.fourier_weight)
        if w is None:
            w = math.sqrt(x.shape[1]) / 5.0
        return mse + w * fourier_loss(x0_hat, x, obs).mean()

    # -- sampling --------------------------------------------------------------------------------
    def _method(self, cfg: TSConfig, options: Mapping[str, Any]) -> str:
        method = options.get("method") or cfg.sample.method or self.default_method
        if method not in METHODS or method == "none":
            src = "--method" if options.get("method") else "sample.method"
            raise UserInputError(f"{src} {method!r}: expected one of {', '.join(m for m in METHODS if m != 'none')}")
        if method == "csdi" and self.default_method != "csdi":
            raise polydiff.errors.UserInputError(
                f"method 'csdi' needs a mask-conditioned model (train timeseries/csdi); {self.name} is unconditional: "
                "use replacement, reconstruction, reconstruction+replacement, dps or cg"
            )
        return method

    def sample(self, model: nn.Module, cfg: TSConfig, run: RunDir, *, num: int, sampler: str, steps: int, seed: int,
               options: Mapping[str, Any]) -> TimeSeriesSamples:
        task = (options.get("task") or "generate").lower()
        sc = self.scaler(cfg, run)
        L, c = cfg.data.window, len(sc.columns)
        kw = dict(sampler=sampler, steps=steps, seed=seed, batch_size=cfg.sample.batch_size,
                  scale=cfg.sample.guidance_scale, noise_std=cfg.sample.noise_std)
        model.eval()
        if task not in ("generate", "forecast", "impute"):
            raise UserInputError(f"--task {task!r}: expected generate, forecast or impute")
        if task == "generate" and options.get("calibrate_on"):
            raise UserInputError("--calibrate-on calibrates forecasts and imputations against held-out values; "
                                 "generated windows have none (use --task forecast or impute)")
        spec = self.covariate_spec(cfg)
        if task == "generate":
            if spec.active:  # one window per sample, each with the covariates of a random training window
                cov = self.generation_covariates(cfg, run, num, seed)
                r = sample_windows(model, torch.zeros(num, L, c), torch.zeros(num, L, c, dtype=torch.bool), num=1,
                                   method="none", covariates=cov, **kw)
                out = TimeSeriesSamples("generate", sc.inverse(r.x[0].double().numpy()), sc.columns, nfe=r.nfe)
                return check_divergence(out, sc, "generated windows")
            r = sample_windows(model, None, None, num=num, shape=(1, L, c), **kw)
            out = TimeSeriesSamples("generate", sc.inverse(r.x[:, 0].double().numpy()), sc.columns, nfe=r.nfe)
            return check_divergence(out, sc, "generated windows")
        if not options.get("input"):
            raise UserInputError(f"--task {task} needs --input FILE.csv with the columns {', '.join(sc.columns)} (and a time column)")
        method = self._method(cfg, options)
        h = 0
        if task == "forecast":
            h = self._horizon(cfg, options, L)
        series = self.read_input(options["input"], sc, time_column=cfg.data.time_column, time_gaps=cfg.data.time_gaps)
        if task == "forecast":
            out = self.forecast(model, series, sc, L, h, num=num, method=method, pad=bool(options.get("pad_context")),
                                spec=spec, **kw)
        else:
            out = self.impute(model, series, sc, L, num=num, method=method, spec=spec, **kw)
        out = check_divergence(out, sc, f"{task} (--method {method})")
        if options.get("calibrate_on"):
            hide = float(np.clip(1.0 - series.observed.mean(), 0.1, 0.9))
            cal = self.calibrate(model, cfg, sc, options["calibrate_on"], task, num=num, method=method, horizon=h, hide=hide,
                                 windows=int(options.get("calibrate_windows") or 64),
                                 level=float(options.get("calibrate_level") or 0.9),
                                 how=str(options.get("calibrate_method") or "predictive"), **kw)
            warnings.warn(f"--calibrate-on {options['calibrate_on']}: {cal.describe(sc.columns)}", UserWarning, stacklevel=2)
            out = dataclasses.replace(out, samples=cal.apply(out.samples, ~out.observed), calibration=cal.to_dict(sc.columns))
        return out

    def calibrate(self, model: nn.Module, cfg: TSConfig, sc: Scaler, path: str | Path, task: str, *, num: int, method: str,
                  horizon: int, hide: float, windows: int, level: float, how: str = "predictive",
                  **kw: Any) -> IntervalCalibration | PredictiveCalibration:
        """Split-conformal calibration (``how``: ``predictive`` or ``scale``) from backtest windows of ``path`` (see
        :mod:`.backtest`, :mod:`.calibration`).

        Raises:
            UserInputError: the file is too short, lacks the columns or timestamps the model needs, or gives too few
                cells for the level (each message names the file and what to change).
        """
        fits = {"predictive": fit_predictive_calibration, "scale": fit_interval_calibration}
        if how not in fits:
            raise UserInputError(f"--calibrate-method {how!r}: expected predictive or scale")
        if not 0.0 < level < 1.0:
            raise UserInputError(f"--calibrate-level {level}: expected a number between 0 and 1")
        spec, L = self.covariate_spec(cfg), cfg.data.window
        series = self.read_input(path, sc, time_column=cfg.data.time_column, time_gaps=cfg.data.time_gaps)
        try:
            bw = backtest_windows(series, L, task, windows=windows, horizon=horizon, history=spec.history, hide=hide,
                                  seed=int(kw.get("seed", 0)) + 1)
        except ValueError as e:
            raise UserInputError(f"--calibrate-on {path}: {e}") from None
        y = torch.from_numpy(np.nan_to_num(sc.transform(bw.values))).float()
        idx = bw.starts[:, None] + np.arange(L)[None]
        stamps = None if series.timestamps is None else series.timestamps[idx]
        cov = self._input_covariates(spec, series, sc, bw.starts, L, bw.known, y, stamps, L + spec.history,
                                     f"calibration (window {L})")
        r = sample_windows(model, y, bw.known, num=num, method=method, covariates=cov, **{**kw, "seed": int(kw.get("seed", 0)) + 1})
        try:
            return fits[how](sc.inverse(r.x.double().numpy()), bw.values, bw.target, level=level, names=sc.columns)
        except ValueError as e:
            raise UserInputError(f"--calibrate-on {path}: {e} (from {len(bw.starts)} backtest windows; give a longer file or "
                                 "a larger --calibrate-windows)") from None

    @staticmethod
    def _horizon(cfg: TSConfig, options: Mapping[str, Any], L: int) -> int:
        """``--horizon`` (or ``sample.horizon``, else ``L // 4``, said in a warning), checked against the window."""
        given = options.get("horizon")
        if given is None or given == 0:
            h = int(cfg.sample.horizon or L // 4)
            where = "sample.horizon" if cfg.sample.horizon else f"the window's quarter (window {L} // 4)"
            warnings.warn(f"no --horizon given: forecasting {h} steps ({where}); pass --horizon N to choose", UserWarning,
                          stacklevel=3)
        else:
            h = int(given)
        if not 0 < h < L:
            raise UserInputError(f"--horizon {h}: expected 1 to {L - 1} steps for this model (window {L}: the forecast and "
                                 "at least one step of context must fit in one window)")
        return h

    @staticmethod
    def read_input(path: str | Path, sc: Scaler, *, time_column: str | None = None, time_gaps: str = "warn") -> Series:
        """Read a user file with the training columns (extra columns ignored).

        The time column is the run's ``data.time_column`` when the file has it, else a guessed one (or none).
        """
        df = read_table(path)
        missing = [col for col in sc.columns if col not in df.columns]
        if missing:
            raise DataError(f"{path}: columns {missing} are missing; the model was trained on {list(sc.columns)}")
        tcol = time_column if time_column is not None and time_column in df.columns else guess_time_column(df)
        return frame_to_series(df, tcol, list(sc.columns), source=str(path), time_gaps=time_gaps)

    def generation_covariates(self, cfg: TSConfig, run: RunDir, num: int, seed: int) -> dict[str, torch.Tensor]:
        """Covariates of ``num`` random training windows with nothing known inside them (lags from their history only),
        so generated windows follow the marginal ``E_c p(x | c)``; ``(num, L, ...)`` tensors."""
        s = self._series(cfg)
        sc = self.scaler(cfg, run)
        train, _ = split_series(s, cfg.data.val_fraction)
        spec, L = self.covariate_spec(cfg), cfg.data.window
        lo = min(spec.history, len(train.values) - L)
        g = torch.Generator().manual_seed(int(seed))
        starts = (lo + torch.randint(0, len(train.values) - L - lo + 1, (num,), generator=g)).numpy()
        return window_covariates(spec, sc.transform(train.values), train.observed, starts, L,
                                 torch.zeros(num, L, len(sc.columns), dtype=torch.bool), stamps=train.timestamps)

    @staticmethod
    def _input_covariates(spec: CovariateSpec, series: Series, sc: Scaler, starts: np.ndarray, L: int, known: torch.Tensor,
                          y: torch.Tensor, window_stamps: np.ndarray | None, need: int, what: str) -> dict[str, torch.Tensor]:
        """Covariates of windows of the user's input, checking it has the rows and timestamps they need."""
        if not spec.active:
            return {}
        if len(series.values) < need:
            raise UserInputError(f"{series.source}: {len(series.values)} rows; this model uses lag features up to "
                                 f"{spec.history} steps back (data.lags={list(spec.lags)}), so {what} needs at least {need} rows")
        if spec.calendar and window_stamps is None:
            raise UserInputError(f"{series.source}: no time column; this model uses calendar features (data.calendar=true), "
                                 "so the input needs its timestamps")
        return window_covariates(spec, sc.transform(series.values), series.observed, starts, L, known,
                                 window_stamps=window_stamps, y=y)

    def forecast(self, model: nn.Module, series: Series, sc: Scaler, L: int, horizon: int, *, num: int, method: str,
                 pad: bool = False, spec: CovariateSpec | None = None, **kw: Any) -> TimeSeriesSamples:
        """Forecast ``horizon`` steps after the input's last row from its last ``L - horizon`` rows.

        A shorter input is refused unless ``pad`` (``--pad-context``): then the missing leading steps are
        unknown (masked) and sampled with the forecast. With lag covariates the input needs ``max(lags)``
        more rows (their history) and the horizon may not exceed the smallest lag.
        """
        spec = spec or CovariateSpec()
        if not 0 < horizon < L:
            raise UserInputError(f"--horizon {horizon}: expected 1 to {L - 1} steps for a model with window {L}")
        if spec.lags and horizon > min(spec.lags):
            raise UserInputError(f"--horizon {horizon}: this model's smallest lag is {min(spec.lags)} steps (data.lags="
                                 f"{list(spec.lags)}); lag values inside a longer horizon would be future values, so forecast "
                                 f"at most {min(spec.lags)} steps")
        if len(series.values) < L - horizon and not pad:
            raise UserInputError(f"{series.source}: {len(series.values)} rows of context; a {horizon}-step forecast with this "
                                 f"model (window {L}) needs the last {L - horizon} rows (give a longer --input, a longer "
                                 "--horizon, or --pad-context true to let the model fill the missing earlier steps)")
        ctx_len = min(L - horizon, len(series.values))
        vals = np.full((L, len(sc.columns)), np.nan)
        obs = np.zeros((L, len(sc.columns)), dtype=bool)
        off = L - horizon - ctx_len  # context shorter than the window: leading steps are unknown
        vals[off:L - horizon] = series.values[-ctx_len:]
        obs[off:L - horizon] = series.observed[-ctx_len:]
        known = torch.from_numpy(obs & forecast_mask(L, len(sc.columns), horizon).numpy())
        y = torch.from_numpy(np.nan_to_num(sc.transform(vals))).float()
        stamps = _extend_stamps(series.timestamps, ctx_len, horizon, off)
        cov = self._input_covariates(spec, series, sc, np.array([len(series.values) - ctx_len]), L, known[None], y[None],
                                     None if stamps is None else stamps[None], L - horizon + spec.history,
                                     f"a {horizon}-step forecast (window {L})")
        r = sample_windows(model, y[None], known[None], num=num, method=method, covariates=cov, **kw)
        samples = sc.inverse(r.x[:, 0].double().numpy())
        samples = np.where(obs[None], vals[None], samples)  # context exactly, in original units
        return TimeSeriesSamples("forecast", samples, sc.columns, stamps, obs, vals, r.nfe)

    def impute(self, model: nn.Module, series: Series, sc: Scaler, L: int, *, num: int, method: str,
               spec: CovariateSpec | None = None, **kw: Any) -> TimeSeriesSamples:
        """Fill every missing cell; windows tile the series (the last aligned to its end); observed cells unchanged.

        With lag covariates the input needs ``max(lags)`` rows more than a window (windows before that row see
        partial lag history, marked unknown)."""
        spec = spec or CovariateSpec()
        T = len(series.values)
        if T < L:
            raise DataError(f"{series.source}: the input has {T} rows, fewer than the model's window ({L})")
        starts = list(range(0, T - L + 1, L))
        if starts[-1] != T - L:
            starts.append(T - L)
        y = torch.from_numpy(np.nan_to_num(sc.transform(series.values))).float()
        known = torch.from_numpy(series.observed)
        idx = torch.as_tensor(starts)[:, None] + torch.arange(L)[None]
        wst = None if series.timestamps is None else series.timestamps[idx.numpy()]
        cov = self._input_covariates(spec, series, sc, np.asarray(starts), L, known[idx], y[idx], wst, L + spec.history,
                                     f"imputation (window {L})")
        r = sample_windows(model, y[idx], known[idx], num=num, method=method, covariates=cov, **kw)
        out = np.empty((num, T, len(sc.columns)))
        x = sc.inverse(r.x.double().numpy())  # (num, W, L, C)
        for w, s0 in enumerate(starts):
            out[:, s0:s0 + L] = x[:, w]
        out = np.where(series.observed[None], series.values[None], out)
        return TimeSeriesSamples("impute", out, sc.columns, series.timestamps, series.observed.copy(), series.values.copy(), r.nfe)

    def write_samples(self, samples: TimeSeriesSamples, out_dir: Path, cfg: TSConfig, run: RunDir) -> list[Path]:
        return write_all(samples, Path(out_dir))

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, cfg: TSConfig, run: RunDir, samples_dir: Path | None) -> dict[str, float]:
        """Generation metrics (TimeGAN protocol, on [0, 1]-scaled windows) and forecasting metrics on held-out windows."""
        from .evaluation import evaluate_recipe

        return evaluate_recipe(self, model, cfg, run, samples_dir)


DIVERGENCE_WIDTHS = 1.0
"""Sampled values more than this many training-range widths below the minimum or above the maximum
of a column are reported as diverged (a warning naming the column); non-finite values are an error."""


def check_divergence(s: TimeSeriesSamples, sc: Scaler, what: str, widths: float = DIVERGENCE_WIDTHS) -> TimeSeriesSamples:
    """Refuse non-finite samples and warn about sampled (not given) values far outside the training range."""
    x = np.asarray(s.samples, dtype=np.float64)
    free = np.ones(x.shape[1:], dtype=bool) if s.observed is None else ~np.asarray(s.observed, dtype=bool)
    bad = ~np.isfinite(x) & free[None]
    if bad.any():
        n = int(bad.reshape(len(x), -1).any(axis=1).sum())
        j = int(np.flatnonzero(bad.any(axis=(0, 1)))[0])
        raise UserInputError(f"{what}: {n} of {len(x)} samples have non-finite values (first in column {s.columns[j]!r}); "
                             "nothing was written: try --method replacement, a smaller sample.guidance_scale or more --steps")
    lo, hi = sc.range()
    if lo is None:
        return s
    width = np.maximum(hi - lo, 1e-12)
    below, above = lo - widths * width, hi + widths * width
    out = ((x < below) | (x > above)) & free[None]
    if out.any():
        n = int(out.reshape(len(x), -1).any(axis=1).sum())
        j = int(np.flatnonzero(out.any(axis=(0, 1)))[0])
        col = x[..., j][free[None, :, j].repeat(len(x), 0)]
        warnings.warn(f"{what}: {n} of {len(x)} samples diverged: values more than {widths:g}x the training range beyond it "
                      f"(column {s.columns[j]!r} spans {col.min():.4g} to {col.max():.4g}, trained on {lo[j]:.4g} to {hi[j]:.4g}); "
                      "try --method replacement, a smaller sample.guidance_scale or more --steps", UserWarning, stacklevel=3)
    return s


def _global_batch(cfg: TSConfig) -> int:
    """``train.batch_size`` times the number of processes (the engine's global batch)."""
    import os

    return int(cfg.train.batch_size) * max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))


def _extend_stamps(stamps: np.ndarray | None, ctx_len: int, horizon: int, off: int) -> np.ndarray | None:
    """Timestamps of a forecast window: the context's own, then the series' frequency continued.

    The frequency is pandas' calendar-aware one (months, business days, ...) when it can be inferred
    from the last rows, else the median step. ``None`` if the input has no timestamps.
    """
    if stamps is None or len(stamps) < 2:
        return None
    ctx = stamps[-ctx_len:]
    tail = stamps[-min(len(stamps), 64):]
    freq = None
    if len(tail) >= 3:
        import pandas as pd

        with warnings.catch_warnings():  # pandas 3: infer_freq's return type is changing; a string or offset both work
            warnings.simplefilter("ignore")
            freq = pd.infer_freq(pd.DatetimeIndex(tail))
    if freq is not None:
        after = pd.date_range(ctx[-1], periods=horizon + 1, freq=freq)[1:].to_numpy(dtype="datetime64[ns]")
        before = pd.date_range(end=ctx[0], periods=off + 1, freq=freq)[:-1].to_numpy(dtype="datetime64[ns]")
    else:
        step = np.median(np.diff(tail).astype(np.int64)).astype("timedelta64[ns]")
        before = ctx[0] - step * np.arange(off, 0, -1)
        after = ctx[-1] + step * np.arange(1, horizon + 1)
    return np.concatenate([before, ctx, after])


class DiffusionTSRecipe(TimeSeriesRecipe):
    """Diffusion-TS-style: interpretable trend + Fourier season decoder, x0-prediction, Fourier loss; training-free conditioning."""

    name: ClassVar[str] = "timeseries/diffusion-ts"
    demo: ClassVar[bool] = True
    description: ClassVar[str] = "Diffusion-TS-style transformer (trend + season, Fourier loss); generate, forecast and impute by guidance"


class CSDIRecipe(TimeSeriesRecipe):
    """CSDI-style mask-conditioned model trained self-supervised on observed entries (random / forecast masks)."""

    name: ClassVar[str] = "timeseries/csdi"
    description: ClassVar[str] = "CSDI-style temporal + feature attention, mask-conditioned training; forecast and impute"
    default_method: ClassVar[str] = "csdi"
    drops_incomplete_windows: ClassVar[bool] = False  # its mask conditioning is built for missing entries

    def build_net(self, cfg: TSConfig, channels: int) -> nn.Module:
        m, spec = cfg.model, self.covariate_spec(cfg)
        return CSDINet(cfg.data.window, channels, m.csdi_channels, m.csdi_layers, m.n_heads,
                       n_lags=spec.n_lags, n_calendar=spec.n_calendar)

    def loss(self, model: nn.Module, batch: Any, cfg: TSConfig, generator: torch.Generator | None = None) -> torch.Tensor:
        """x0-MSE on target entries (observed but hidden from the network), CSDI's self-supervised masking."""
        x, obs = batch["x"], batch["observed"].to(torch.bool)
        cond_mask = training_mask(obs, cfg.model.mask_strategy, generator)
        target = obs & ~cond_mask
        space = DenseSpace()
        t = sample_time(model.process, x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        noised = model.process.noise(x, t, generator=generator, space=space)
        cond = {"cond_x": torch.where(cond_mask, x, torch.zeros_like(x)), "cond_mask": cond_mask.to(x.dtype),
                **covariate_cond(self.covariate_spec(cfg), batch, cond_mask)}  # lag sources: the conditioning entries only
        x0_hat = model(noised.x_t, t, cond, space=space)
        m = target.to(x.dtype)
        return ((x0_hat - x) ** 2 * m).sum() / m.sum().clamp(min=1)


def training_mask(observed: torch.Tensor, strategy: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """CSDI conditional mask ``(B, L, C)`` (true = given to the network): ``random`` hides a U(0,1)
    fraction of observed entries per sample; ``forecast`` hides a random suffix of 1..L/2 steps; ``mix`` picks per sample."""
    b, L, c = observed.shape
    dev = observed.device
    u = torch.rand(b, generator=generator).to(dev)
    rnd = torch.rand(b, L, c, generator=generator).to(dev) >= u[:, None, None]
    h = (torch.rand(b, generator=generator) * (L // 2)).long().to(dev) + 1
    fc = (torch.arange(L, device=dev)[None, :] < (L - h)[:, None])[:, :, None].expand(b, L, c)
    if strategy == "random":
        m = rnd
    elif strategy == "forecast":
        m = fc
    elif strategy == "mix":
        pick = (torch.rand(b, generator=generator) < 0.5).to(dev)[:, None, None]
        m = torch.where(pick, rnd, fc)
    else:
        raise ValueError(f"model.mask_strategy must be random, forecast or mix, got {strategy!r}")
    return m & observed


def config_json(cfg: TSConfig) -> str:
    """The config as JSON (for benchmark records)."""
    from dataclasses import asdict

    return json.dumps(asdict(cfg), default=str)


__all__ = ["CSDIRecipe", "DiffusionTSRecipe", "TimeSeriesRecipe", "config_json", "training_mask"]
