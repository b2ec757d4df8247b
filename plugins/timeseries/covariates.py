"""Always-observed covariates: seasonal-lag copies of the target features and calendar features.

A window sees ``L`` steps; a forecaster would also look one day and one week back. Following the
TSDiff / CSDI line (lagged values as extra input channels, time features as side information), a run
trained with ``data.lags=[48, 336]`` and/or ``data.calendar=true`` gives its network, for every window:

* **lag features** ``lag_x (B, L, C, n_lags)`` with ``lag_mask`` of the same shape: for lag ``k``,
  ``lag_x[b, l, c, i] = x[s + l - k, c]`` (``s`` the window's start; scaled units), taken from the
  ``max(lags)`` rows of history before the window and from the window's *known* entries. A lag whose
  source cell is unknown (missing in the data, hidden by the forecast/imputation mask, or before the
  series began) has value 0 and mask 0: a covariate never reveals a hidden value. With a forecast
  horizon ``h <= min(lags)`` every lag inside the horizon points into the known past.
* **calendar features** ``calendar (B, L, 4)``: ``sin/cos(2 pi * time of day)`` and
  ``sin/cos(2 pi * (day of week + time of day) / 7)`` (Monday 00:00 = 0), from the window's timestamps.

Covariates are conditioning only: they are never noised, never a loss target, never a sample
output, and forecast/imputation masks only decide which lag *sources* are known. The same functions
build them in training (from the training mask), in ``polydiff sample`` (from the user's input
history) and in the benchmark, so the channels a run was trained on are rebuilt exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polydiff.errors import ConfigError

CALENDAR_DIM = 4
"""sin/cos of the time of day and of the time of week."""


@dataclass(frozen=True)
class CovariateSpec:
    """Which covariates a run uses (from ``data.lags`` and ``data.calendar``).

    Attributes:
        lags: positive lags in steps (sorted, unique). calendar: whether calendar features are used.
    """

    lags: tuple[int, ...] = ()
    calendar: bool = False

    @classmethod
    def from_config(cls, data_cfg: Any) -> CovariateSpec:
        """The spec of a ``data`` config section (``data.lags``, ``data.calendar``; absent in old runs: none)."""
        raw = tuple(getattr(data_cfg, "lags", ()) or ())
        bad = [k for k in raw if int(k) != k or int(k) < 1]
        if bad:
            raise ConfigError(f"data.lags={list(raw)}: every lag must be a positive whole number of steps (got {bad[0]!r})")
        return cls(tuple(sorted({int(k) for k in raw})), bool(getattr(data_cfg, "calendar", False)))

    @property
    def active(self) -> bool:
        return bool(self.lags) or self.calendar

    @property
    def history(self) -> int:
        """Rows of history needed before a window (the largest lag; 0 without lags)."""
        return max(self.lags) if self.lags else 0

    @property
    def n_lags(self) -> int:
        return len(self.lags)

    @property
    def n_calendar(self) -> int:
        return CALENDAR_DIM if self.calendar else 0


def calendar_features(stamps: np.ndarray) -> np.ndarray:
    """``(T,)`` datetime64 -> ``(T, 4)`` float32: ``sin, cos`` of ``2 pi d`` and of ``2 pi w``.

    ``d`` is the fraction of the day elapsed (00:00 -> 0, 12:00 -> 0.5); ``w = (weekday + d) / 7`` with
    Monday = 0 (1970-01-01 was a Thursday, weekday 3).
    """
    ns = np.asarray(stamps, dtype="datetime64[ns]").astype(np.int64)
    day_ns = 86_400 * 10**9
    days, rem = np.divmod(ns, day_ns)
    d = rem / day_ns
    w = (((days + 3) % 7) + d) / 7.0
    return np.stack([np.sin(2 * np.pi * d), np.cos(2 * np.pi * d), np.sin(2 * np.pi * w), np.cos(2 * np.pi * w)],
                    axis=-1).astype(np.float32)


def lag_features(hist_x: Tensor, hist_obs: Tensor, x: Tensor, known: Tensor, lags: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Seasonal-lag copies of each feature, from what is known.

    Args:
        hist_x: ``(B, P, C)`` the ``P >= max(lags)`` rows before each window (scaled; any value where unobserved).
        hist_obs: ``(B, P, C)`` bool, observed history entries.
        x: ``(B, L, C)`` the window (scaled; any value where not known). known: ``(B, L, C)`` bool.
        lags: the lags ``k`` (each ``<= P``).

    Returns:
        ``lag_x (B, L, C, K)`` with ``lag_x[b, l, c, i] = full[b, P + l - lags[i], c]`` where the source is
        known, else 0, and ``lag_mask (B, L, C, K)`` (1 where the source is known), in ``x``'s dtype;
        ``full`` is the history followed by the window.
    """
    P = hist_x.shape[1]
    L = x.shape[1]
    if lags and max(lags) > P:
        raise ValueError(f"lag {max(lags)} needs {max(lags)} rows of history, got {P}")
    m = torch.cat([hist_obs.to(torch.bool), known.to(torch.bool)], dim=1)
    full = torch.where(m, torch.cat([hist_x.to(x.dtype), x], dim=1), torch.zeros((), dtype=x.dtype, device=x.device))
    vals = [full[:, P - k:P - k + L] for k in lags]
    masks = [m[:, P - k:P - k + L] for k in lags]
    return torch.stack(vals, dim=-1), torch.stack(masks, dim=-1).to(x.dtype)


def covariate_cond(spec: CovariateSpec, batch: dict[str, Tensor], known: Tensor) -> dict[str, Tensor]:
    """The network's covariate inputs for windows ``batch`` (``x``, ``hist_x``, ``hist_obs``, ``calendar``) given ``known``.

    Returns ``{}`` without covariates; else ``lag_x``/``lag_mask`` ``(B, L, C, K)`` (with lags) and
    ``calendar`` ``(B, L, 4)`` (with calendar features).
    """
    out: dict[str, Tensor] = {}
    x = batch["x"]
    if spec.lags:
        out["lag_x"], out["lag_mask"] = lag_features(batch["hist_x"], batch["hist_obs"], x, known, spec.lags)
    if spec.calendar:
        out["calendar"] = batch["calendar"].to(x.dtype)
    return out


def history_windows(scaled: np.ndarray, observed: np.ndarray, starts: np.ndarray, history: int) -> tuple[Tensor, Tensor]:
    """The ``history`` rows before each start: ``hist_x (W, P, C)`` float32 (0 where unobserved) and ``hist_obs`` bool;
    rows before the series' first row are unobserved."""
    T, c = scaled.shape
    pad_x = np.concatenate([np.zeros((history, c)), np.where(observed, scaled, 0.0)]).astype(np.float32)
    pad_o = np.concatenate([np.zeros((history, c), dtype=bool), observed])
    idx = np.asarray(starts)[:, None] + np.arange(history)[None]  # padded index of row s - P + j is s + j
    return torch.from_numpy(pad_x[idx]), torch.from_numpy(pad_o[idx])


def window_covariates(spec: CovariateSpec, scaled: np.ndarray, observed: np.ndarray, starts: np.ndarray, window: int,
                      known: Tensor, stamps: np.ndarray | None = None, window_stamps: np.ndarray | None = None,
                      y: Tensor | None = None) -> dict[str, Tensor]:
    """Covariates of windows ``[s, s + window)`` of a series (benchmarks, evaluation, ``polydiff sample``).

    Args:
        scaled: ``(T, C)`` scaled series (any value where unobserved). observed: ``(T, C)`` bool.
        starts: ``(W,)`` window starts (a window may run past ``T``: then pass ``y`` and ``window_stamps``).
        known: ``(W, L, C)`` bool, the entries the sampler is given.
        stamps: ``(T,)`` timestamps (calendar features of in-series windows). window_stamps: ``(W, L)`` timestamps.
        y: ``(W, L, C)`` window values (default: cut from ``scaled``).

    Returns:
        :func:`covariate_cond`'s dict.
    """
    if not spec.active:
        return {}
    starts = np.asarray(starts)
    idx = starts[:, None] + np.arange(window)[None]
    if y is None:
        y = torch.from_numpy(np.nan_to_num(scaled[idx]).astype(np.float32))
    batch: dict[str, Tensor] = {"x": y}
    if spec.lags:
        batch["hist_x"], batch["hist_obs"] = history_windows(scaled, observed, starts, spec.history)
    if spec.calendar:
        if window_stamps is None:
            if stamps is None:
                raise ConfigError("data.calendar=true needs timestamps (a time column), but the series has none")
            window_stamps = np.asarray(stamps)[idx]
        batch["calendar"] = torch.from_numpy(calendar_features(np.asarray(window_stamps).reshape(-1)).reshape(len(starts), window, -1))
    return covariate_cond(spec, batch, known)


__all__ = ["CALENDAR_DIM", "CovariateSpec", "calendar_features", "covariate_cond", "history_windows", "lag_features",
           "window_covariates"]
