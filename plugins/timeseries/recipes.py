"""Recipes ``timeseries/diffusion-ts`` and ``timeseries/csdi``: data, model, loss, sampling tasks, writers, evaluation."""

from __future__ import annotations

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
from polydiff.errors import ConfigError, DataError
from polydiff.losses import sample_time
from polydiff.recipes import DataBundle, Recipe, RunDir, SampleOption
from polydiff.spaces import DenseSpace

from .backbones import CSDINet, DiffusionTSNet, fourier_loss
from .config import PRESETS, TSConfig
from .data import Scaler, Series, WindowDataset, frame_to_series, guess_time_column, load_series, read_table, split_series
from .tasks import forecast_mask, sample_windows
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
        SampleOption("method", str, None, "replacement | reconstruction | reconstruction+replacement | dps | csdi"),
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
        Scaler.fit(train, cfg.data.normalise).save(run.artifacts / SCALER_FILE)

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
        tr = WindowDataset(sc.transform(train.values), train.observed, cfg.data.window, cfg.data.stride, source=s.source,
                           complete_only=drop)
        if tr.dropped:
            warnings.warn(f"{s.source}: {tr.dropped} of {tr.dropped + len(tr)} training windows have missing values and are "
                          f"not used by {self.name} (data.incomplete_windows='keep' trains on them with a masked loss)",
                          UserWarning, stacklevel=2)
        va = None
        if val is not None and len(val.values) >= cfg.data.window:
            va = WindowDataset(sc.transform(val.values), val.observed, cfg.data.window, cfg.data.window, source=s.source)
        return DataBundle(train=tr, val=va)

    def _drop_incomplete(self, cfg: TSConfig) -> bool:
        choice = cfg.data.incomplete_windows
        if choice not in ("auto", "drop", "keep"):
            raise ConfigError(f"data.incomplete_windows={choice!r}: expected 'auto', 'drop' or 'keep'")
        return choice == "drop" or (choice == "auto" and self.drops_incomplete_windows)

    # -- model -----------------------------------------------------------------------------------
    def build_net(self, cfg: TSConfig, channels: int) -> nn.Module:
        m = cfg.model
        return DiffusionTSNet(cfg.data.window, channels, m.d_model, m.n_heads, m.enc_layers, m.dec_layers)

    def build_model(self, cfg: TSConfig, run: RunDir) -> nn.Module:
        channels = len(self.scaler(cfg, run).columns)
        den = polydiff.Denoiser(self.build_net(cfg, channels), polydiff.processes.get(cfg.model.process), prediction="x0")
        den.ts_fourier_weight = None if cfg.model.fourier_weight < 0 else float(cfg.model.fourier_weight)  # read by loss()
        den.ts_mask_strategy = cfg.model.mask_strategy
        return den

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        """x0-MSE over observed entries plus the Fourier term (weight ``sqrt(L)/5`` unless set)."""
        x, obs = batch["x"], batch["observed"].to(torch.bool)
        space = DenseSpace()
        t = sample_time(model.process, x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        noised = model.process.noise(x, t, generator=generator, space=space)
        x0_hat = model(noised.x_t, t, None, space=space)
        m = obs.to(x.dtype)
        mse = ((x0_hat - x) ** 2 * m).sum() / m.sum().clamp(min=1)
        w = getattr(_unwrap(model), "ts_fourier_weight", None)
        if w is None:
            w = math.sqrt(x.shape[1]) / 5.0
        return mse + w * fourier_loss(x0_hat, x, obs).mean()

    # -- sampling --------------------------------------------------------------------------------
    def _method(self, cfg: TSConfig, options: Mapping[str, Any]) -> str:
        method = options.get("method") or cfg.sample.method or self.default_method
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
        if task == "generate":
            r = sample_windows(model, None, None, num=num, shape=(1, L, c), **kw)
            return TimeSeriesSamples("generate", sc.inverse(r.x[:, 0].double().numpy()), sc.columns, nfe=r.nfe)
        if task not in ("forecast", "impute"):
            raise ValueError(f"--task must be generate, forecast or impute, got {task!r}")
        if not options.get("input"):
            raise ValueError(f"--task {task} needs --input FILE.csv (columns {', '.join(sc.columns)})")
        series = self.read_input(options["input"], sc, time_column=cfg.data.time_column, time_gaps=cfg.data.time_gaps)
        method = self._method(cfg, options)
        if task == "forecast":
            h = int(options.get("horizon") or cfg.sample.horizon or L // 4)
            return self.forecast(model, series, sc, L, h, num=num, method=method, **kw)
        return self.impute(model, series, sc, L, num=num, method=method, **kw)

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

    def forecast(self, model: nn.Module, series: Series, sc: Scaler, L: int, horizon: int, *, num: int, method: str, **kw: Any) -> TimeSeriesSamples:
        """Forecast ``horizon`` steps after the input's last row from (at most) its last ``L - horizon`` rows."""
        if not 0 < horizon < L:
            raise ValueError(f"--horizon must be in [1, {L - 1}] for a model with window {L}, got {horizon}")
        ctx_len = min(L - horizon, len(series.values))
        vals = np.full((L, len(sc.columns)), np.nan)
        obs = np.zeros((L, len(sc.columns)), dtype=bool)
        off = L - horizon - ctx_len  # context shorter than the window: leading steps are unknown
        vals[off:L - horizon] = series.values[-ctx_len:]
        obs[off:L - horizon] = series.observed[-ctx_len:]
        known = torch.from_numpy(obs & forecast_mask(L, len(sc.columns), horizon).numpy())
        y = torch.from_numpy(np.nan_to_num(sc.transform(vals))).float()
        r = sample_windows(model, y[None], known[None], num=num, method=method, **kw)
        samples = sc.inverse(r.x[:, 0].double().numpy())
        samples = np.where(obs[None], vals[None], samples)  # context exactly, in original units
        return TimeSeriesSamples("forecast", samples, sc.columns, _extend_stamps(series.timestamps, ctx_len, horizon, off),
                                 obs, vals, r.nfe)

    def impute(self, model: nn.Module, series: Series, sc: Scaler, L: int, *, num: int, method: str, **kw: Any) -> TimeSeriesSamples:
        """Fill every missing cell; windows tile the series (the last aligned to its end); observed cells unchanged."""
        T = len(series.values)
        if T < L:
            raise DataError(f"{series.source}: the input has {T} rows, fewer than the model's window ({L})")
        starts = list(range(0, T - L + 1, L))
        if starts[-1] != T - L:
            starts.append(T - L)
        y = torch.from_numpy(np.nan_to_num(sc.transform(series.values))).float()
        known = torch.from_numpy(series.observed)
        idx = torch.as_tensor(starts)[:, None] + torch.arange(L)[None]
        r = sample_windows(model, y[idx], known[idx], num=num, method=method, **kw)
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


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel keeps the Denoiser in .module


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
        m = cfg.model
        return CSDINet(cfg.data.window, channels, m.csdi_channels, m.csdi_layers, m.n_heads)

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        """x0-MSE on target entries (observed but hidden from the network), CSDI's self-supervised masking."""
        x, obs = batch["x"], batch["observed"].to(torch.bool)
        cond_mask = training_mask(obs, getattr(_unwrap(model), "ts_mask_strategy", "mix"), generator)
        target = obs & ~cond_mask
        space = DenseSpace()
        t = sample_time(model.process, x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        noised = model.process.noise(x, t, generator=generator, space=space)
        cond = {"cond_x": torch.where(cond_mask, x, torch.zeros_like(x)), "cond_mask": cond_mask.to(x.dtype)}
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
