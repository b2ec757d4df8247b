"""Configuration sections of the time-series recipes (nested frozen dataclasses) and presets."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, Literal

from polydiff.recipes import EvalConfig as BaseEvalConfig
from polydiff.recipes import SampleConfig, TrainConfig


@dataclass(frozen=True)
class DataConfig:
    """``data``: a bundled set (``name``) or a user file (``path``: CSV/Parquet with a time column and feature columns)."""

    name: str = "stocks"
    path: str | None = None
    time_column: str | None = None
    columns: tuple[str, ...] = ()
    window: int = 24
    stride: int = 1
    normalise: Literal["minmax", "standard", "none"] = "minmax"
    val_fraction: float = 0.1
    max_rows: int = 0  # 0: every row; else the first max_rows rows (quick runs)
    # training windows with missing entries: "drop" them, "keep" them (loss on observed entries only), or
    # "auto": the recipe's choice (diffusion-ts drops them, since an unconditional model would see the
    # placeholders noised as if they were data; csdi keeps them, its mask conditioning handles them)
    incomplete_windows: Literal["auto", "drop", "keep"] = "auto"
    # a time column whose step is not constant: "warn" (rows used as equally spaced), "ignore",
    # "mask" (insert the missing steps as masked rows) or "error"
    time_gaps: Literal["warn", "ignore", "mask", "error"] = "warn"
    # always-observed covariates (covariates.py): seasonal-lag copies of each feature, taken from the history before
    # each step (e.g. [48, 336] = one day and one week of half-hours; forecasts need horizon <= min lag and inputs of
    # max lag rows more), and calendar features (time of day and of week, sin/cos; needs a time column)
    lags: tuple[int, ...] = ()
    calendar: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """``model``: process and backbone sizes (Diffusion-TS-style transformer or CSDI-style)."""

    process: str = "vp-cosine"
    d_model: int = 64
    n_heads: int = 4
    enc_layers: int = 1
    dec_layers: int = 2
    fourier_weight: float = -1.0  # < 0: sqrt(L) / 5 as in Diffusion-TS
    csdi_channels: int = 32
    csdi_layers: int = 2
    mask_strategy: Literal["random", "forecast", "mix"] = "mix"  # csdi: random | forecast | mix


@dataclass(frozen=True)
class TSSampleConfig(SampleConfig):
    """``sample``: sampler defaults plus the conditioning method and reconstruction-guidance settings."""

    sampler: str = "ddim"
    steps: int = 50
    batch_size: int = 256
    method: str = ""  # "" = recipe default (reconstruction+replacement for diffusion-ts, csdi for csdi)
    guidance_scale: float = 1.0
    noise_std: float = 0.1  # reconstruction: floor of the likelihood std (scaled units); dps: its noise_std
    horizon: int = 0  # 0: window // 4


@dataclass(frozen=True)
class EvalConfig(BaseEvalConfig):
    """``eval``: sizes of the evaluation (small by default; the benchmark raises them); ``seed`` from the core's section."""

    num_windows: int = 256
    gen_steps: int = 50
    gru_iters: int = 200
    fid_iters: int = 100
    runs: int = 1
    forecast_windows: int = 16
    forecast_samples: int = 32
    generation_metrics: bool = True


@dataclass(frozen=True)
class TSConfig:
    """A time-series recipe's config."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=3000, batch_size=64, lr=1e-3, warmup_steps=50, bf16=False, ema_decay=0.995))
    sample: TSSampleConfig = field(default_factory=TSSampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"train.steps": 1500, "train.batch_size": 32, "train.warmup_steps": 20, "train.checkpoint_every": 500,
             "train.log_every": 50, "model.d_model": 32, "model.n_heads": 2, "model.enc_layers": 1, "model.dec_layers": 1,
             "model.csdi_channels": 16, "model.csdi_layers": 1, "data.max_rows": 2000, "data.stride": 2,
             "eval.num_windows": 128, "eval.gru_iters": 100, "eval.fid_iters": 50, "eval.forecast_windows": 8,
             "eval.forecast_samples": 16, "eval.gen_steps": 25},
    "small": {"train.steps": 3000, "train.batch_size": 64, "model.d_model": 64, "model.dec_layers": 2,
              "eval.num_windows": 1000, "eval.gru_iters": 1000, "eval.fid_iters": 300, "eval.runs": 3},
    "base": {"train.steps": 12000, "train.batch_size": 128, "model.d_model": 96, "model.enc_layers": 4, "model.dec_layers": 3,
             "model.csdi_channels": 64, "model.csdi_layers": 4, "eval.num_windows": 3000, "eval.gru_iters": 2000,
             "eval.fid_iters": 1000, "eval.runs": 5, "eval.forecast_windows": 64, "eval.forecast_samples": 100},
}


def apply_overrides(cfg: Any, overrides: dict[str, Any]) -> Any:
    """Apply flat ``{"section.key": value}`` overrides to a nested frozen dataclass (a minimal resolver
    for scripts and tests; the CLI uses ``polydiff.config``)."""
    for key, value in overrides.items():
        cfg = _set(cfg, key.split("."), value, key)
    return cfg


def _set(obj: Any, parts: list[str], value: Any, full: str) -> Any:
    if not is_dataclass(obj) or parts[0] not in {f.name for f in fields(obj)}:
        raise ValueError(f"unknown config key {full!r}")
    if len(parts) == 1:
        return replace(obj, **{parts[0]: value})
    return replace(obj, **{parts[0]: _set(getattr(obj, parts[0]), parts[1:], value, full)})


def resolve(preset: str | None = None, **overrides: Any) -> TSConfig:
    """``TSConfig`` with a preset and ``section__key=value`` (or ``{"section.key": v}``) overrides."""
    cfg = TSConfig()
    if preset:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
        cfg = apply_overrides(cfg, PRESETS[preset])
    return apply_overrides(cfg, {k.replace("__", "."): v for k, v in overrides.items()})


__all__ = ["DataConfig", "EvalConfig", "ModelConfig", "PRESETS", "TSConfig", "TSSampleConfig", "apply_overrides", "resolve"]
