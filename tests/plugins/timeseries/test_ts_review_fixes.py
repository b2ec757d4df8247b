"""Regression tests for review findings in the time-series plugin (each failed before its fix)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polydiff.errors import DataError
from polydiff_timeseries.data import frame_to_series


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"time": pd.date_range("2024-01-01", periods=6, freq="h"),
                         "a": [1.0, 2, 3, 4, 5, 6], "b": [1.0, np.nan, 3, 4, 5, 6]})


def test_a_saved_pandas_index_is_not_a_feature(tmp_path) -> None:
    path = tmp_path / "s.csv"
    _frame().to_csv(path)  # pandas writes its index as "Unnamed: 0"
    s = frame_to_series(pd.read_csv(path), "time", None, source=str(path))
    assert tuple(s.columns) == ("a", "b")


def test_infinite_values_are_an_error_naming_column_and_row(tmp_path) -> None:
    df = _frame()
    df.loc[3, "a"] = np.inf
    with pytest.raises(DataError, match=r"column 'a', row 3: infinite"):
        frame_to_series(df, "time", None, source="x.csv")


def test_offsets_across_a_dst_change_are_ordered_in_utc() -> None:
    df = pd.DataFrame({"time": ["2024-10-27T01:30:00+02:00", "2024-10-27T02:30:00+02:00", "2024-10-27T02:30:00+01:00",
                                "2024-10-27T03:30:00+01:00"], "a": [1.0, 2, 3, 4]})
    s = frame_to_series(df, "time", None, source="dst.csv")
    assert len(s.columns) == 1 and np.all(np.diff(s.timestamps.astype(np.int64)) > 0)


def test_forecast_input_uses_the_runs_time_column(tmp_path) -> None:
    """A time column with an unguessable name is taken from the run's ``data.time_column``."""
    from types import SimpleNamespace

    from polydiff_timeseries.recipes import DiffusionTSRecipe

    df = _frame().rename(columns={"time": "recorded_at"})
    path = tmp_path / "in.csv"
    df.to_csv(path, index=False)
    s = DiffusionTSRecipe.read_input(path, SimpleNamespace(columns=("a", "b")), time_column="recorded_at")
    assert s.timestamps is not None and len(s.timestamps) == 6
    assert DiffusionTSRecipe.read_input(path, SimpleNamespace(columns=("a", "b"))).timestamps is None
