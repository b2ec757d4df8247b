"""The CLI as a user meets it, for the time-series and text plugins.

Bad input is one ``polydiff: error:`` line on stderr with exit code 2 and no traceback; the cases
that used to succeed with wrong results now behave (DPS forecasts stay in the data's range, a short
context is refused, the horizon used is said, small data trains on masked windows, gaps are found at
their row, evaluate says what it skipped, the PNG title says what is drawn).

Trained runs are tiny (a few hundred steps at most) and shared by module-scoped fixtures.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polydiff.cli import main
from polydiff.errors import UserInputError


# -- helpers ---------------------------------------------------------------------------------------
def cli(*args) -> tuple[int, str, str]:
    """Run ``polydiff ARGS`` in-process: ``(exit code, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        warnings.simplefilter("always")
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # pragma: no cover - main returns codes
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def one_line_error(code: int, err: str, *needles: str) -> None:
    """Exit code 2, no traceback, and the problem in exactly one ``polydiff: error:`` line (the last)."""
    assert "Traceback" not in err, err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("polydiff: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def warning_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("polydiff: warning: ")]


def macro_frame(rows: int = 203, blanks: int = 24, seed: int = 0) -> pd.DataFrame:
    """Like statsmodels' macrodata: quarterly from 1959Q1, 12 columns on very different scales, ``blanks`` empty cells."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    g = np.linspace(0.0, 1.0, rows)
    cols = {
        "realgdp": 2700 + 10300 * g**1.3 + rng.normal(0, 40, rows),
        "realcons": 1700 + 7600 * g**1.3 + rng.normal(0, 30, rows),
        "realinv": 280 + 1900 * g**1.2 + rng.normal(0, 40, rows),
        "realgovt": 460 + 560 * g + rng.normal(0, 10, rows),
        "realdpi": 1900 + 8000 * g**1.3 + rng.normal(0, 30, rows),
        "cpi": 29 + 190 * g**1.1 + rng.normal(0, 0.5, rows),
        "m1": 140 + 1500 * g**1.5 + rng.normal(0, 5, rows),
        "tbilrate": np.clip(5 + 3 * np.sin(t / 15) + rng.normal(0, 0.8, rows), 0.1, 15),
        "unemp": np.clip(6.5 + 2.5 * np.sin(t / 11) + rng.normal(0, 0.3, rows), 3.4, 10.7),
        "pop": 177 + 130 * g + rng.normal(0, 0.1, rows),
        "infl": 3.5 + 2.5 * np.sin(t / 20) + rng.normal(0, 1.5, rows),
        "realint": 1.5 + rng.normal(0, 2, rows),
    }
    vals = np.column_stack(list(cols.values()))
    vals.flat[rng.choice(vals.size, blanks, replace=False)] = np.nan
    df = pd.DataFrame(vals, columns=list(cols))
    df.insert(0, "date", pd.period_range("1959Q1", periods=rows, freq="Q").to_timestamp().strftime("%Y-%m-%d"))
    return df


# -- shared runs -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("files")
    df = macro_frame()
    paths = {"macro": d / "macro.csv", "short": d / "short40.csv", "ctx": d / "ctx.csv", "ctx5": d / "ctx5.csv"}
    df.to_csv(paths["macro"], index=False)
    df.head(40).to_csv(paths["short"], index=False)
    df.head(150).to_csv(paths["ctx"], index=False)
    df.iloc[145:150].to_csv(paths["ctx5"], index=False)
    return paths


@pytest.fixture(scope="module")
def dts_run(files, tmp_path_factory) -> Path:
    """diffusion-ts on the macro CSV (24 blank cells spoil 76 of 80 windows): trains, saying how."""
    run = tmp_path_factory.mktemp("dts") / "run"
    code, _, err = cli("train", "timeseries/diffusion-ts", "--preset", "tiny", "--set", f"data.path={files['macro']}",
                       "--out", run, "--max-steps", 150)
    assert code == 0 and "Traceback" not in err, err
    w = [ln for ln in warning_lines(err) if "training windows have missing values" in ln]
    assert len(w) == 1 and "trains on all of them with the loss on observed entries only" in w[0], err
    assert "lower train.batch_size" not in err
    return run


@pytest.fixture(scope="module")
def csdi_run(files, tmp_path_factory) -> Path:
    """csdi on the macro CSV with nothing held out (for evaluate's skipped metrics)."""
    run = tmp_path_factory.mktemp("csdi") / "run"
    code, _, err = cli("train", "timeseries/csdi", "--preset", "tiny", "--set", f"data.path={files['macro']}",
                       "--set", "data.val_fraction=0", "--out", run, "--max-steps", 10)
    assert code == 0 and "Traceback" not in err, err
    return run


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("text") / "run"
    code, _, err = cli("train", "text/mdlm", "--preset", "tiny", "--set", "data.max_docs=1", "--out", run, "--max-steps", 3)
    assert code == 0 and "Traceback" not in err, err
    return run


@pytest.fixture(scope="module")
def ts_samples(dts_run, tmp_path_factory) -> Path:
    """``polydiff sample RUN --task generate --num 16`` (also the PNG-title case)."""
    out = tmp_path_factory.mktemp("ts_samples")
    code, _, err = cli("sample", dts_run, "--task", "generate", "--num", 16, "--steps", 10, "--out", out)
    assert code == 0 and "Traceback" not in err, err
    return out


@pytest.fixture(scope="module")
def text_samples(text_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("text_samples")
    code, _, err = cli("sample", text_run, "--num", 2, "--steps", 4, "--out", out)
    assert code == 0 and "Traceback" not in err, err
    return out


# -- A: one line, exit 2 ---------------------------------------------------------------------------
TS_SAMPLE_ERRORS = [
    ("unknown task", ["--task", "predict"], ["--task 'predict'", "generate, forecast or impute"]),
    ("forecast without input", ["--task", "forecast", "--horizon", 4], ["--input", "realgdp"]),
    ("unknown method", ["--task", "forecast", "--input", "{ctx}", "--horizon", 4, "--method", "foo"], ["--method 'foo'", "dps"]),
    ("horizon beyond the window", ["--task", "forecast", "--input", "{ctx}", "--horizon", 30], ["--horizon 30", "1 to 23"]),
    ("negative horizon", ["--task", "forecast", "--input", "{ctx}", "--horizon", -2], ["--horizon -2", "1 to 23"]),
    ("context shorter than the window", ["--task", "forecast", "--input", "{ctx5}", "--horizon", 6],
     ["ctx5.csv", "5 rows of context", "18 rows", "--pad-context"]),
]


@pytest.mark.parametrize("name, args, needles", TS_SAMPLE_ERRORS, ids=[c[0] for c in TS_SAMPLE_ERRORS])
def test_timeseries_sample_errors_are_one_line(name, args, needles, dts_run, files, tmp_path):
    args = [str(a).format(**{k: v for k, v in files.items()}) for a in args]
    code, _, err = cli("sample", dts_run, *args, "--num", 2, "--steps", 4, "--out", tmp_path / "s")
    one_line_error(code, err, *needles)


def _long_prompt() -> str:
    return "ROMEO: " + "what light " * 20  # longer than the 64-token block


TEXT_SAMPLE_ERRORS = [
    ("infill span without a number", ["--infill", "This [MASK:abc] x"], ["--infill", "[MASK:n]"]),
    ("prompt longer than the context", ["--prompt", _long_prompt()], ["--prompt has", "--length"]),
    ("prompt outside the vocabulary", ["--prompt", "ROMEO: \u20ac\u00a5"], ["--prompt", "vocabulary", "\u20ac"]),
    ("negative length", ["--length", -5], ["--length -5", "positive"]),
]


@pytest.mark.parametrize("name, args, needles", TEXT_SAMPLE_ERRORS, ids=[c[0] for c in TEXT_SAMPLE_ERRORS])
def test_text_sample_errors_are_one_line(name, args, needles, text_run, tmp_path):
    code, _, err = cli("sample", text_run, *args, "--num", 1, "--steps", 2, "--out", tmp_path / "s")
    one_line_error(code, err, *needles)


@pytest.mark.parametrize("recipe", ["timeseries/csdi", "timeseries/diffusion-ts"])
def test_too_little_data_is_one_line_naming_the_file(recipe, files, tmp_path):
    code, _, err = cli("train", recipe, "--preset", "tiny", "--set", f"data.path={files['short']}", "--out", tmp_path / "r",
                       "--max-steps", 2)
    one_line_error(code, err, "short40.csv", "7 windows", "train.batch_size=7")


def test_evaluate_refuses_another_modalitys_samples(dts_run, text_run, ts_samples, text_samples):
    code, _, err = cli("evaluate", dts_run, "--samples", text_samples)
    one_line_error(code, err, str(text_samples), "generate.npz", "samples.jsonl")
    code, _, err = cli("evaluate", text_run, "--samples", ts_samples)
    one_line_error(code, err, str(ts_samples), "samples.jsonl", "generate.npz")


# -- B: small data with missing values trains --------------------------------------------------------
def test_macro_csv_trains_on_both_recipes(dts_run, csdi_run):
    for run in (dts_run, csdi_run):
        assert any((run / "checkpoints").iterdir())


# -- C: sensible results or a stated reason ------------------------------------------------------------
def test_dps_forecast_stays_in_the_data_range(dts_run, files, tmp_path):
    code, _, err = cli("sample", dts_run, "--task", "forecast", "--method", "dps", "--input", files["ctx"], "--horizon", 6,
                       "--num", 16, "--out", tmp_path / "f")
    assert code == 0 and "Traceback" not in err and "diverged" not in err, err
    z = np.load(tmp_path / "f" / "forecast.npz")
    x, obs = z["samples"], z["observed"]
    data = macro_frame()
    free = ~obs.any(axis=1)
    assert free.sum() == 6
    lo, hi = data.iloc[:, 1:].min().to_numpy(), data.iloc[:, 1:].max().to_numpy()
    fc = x[:, free]  # (num, 6, C)
    assert np.isfinite(fc).all()
    assert (fc >= lo - 0.1 * (hi - lo)).all() and (fc <= hi + 0.1 * (hi - lo)).all(), (fc.min(axis=(0, 1)), fc.max(axis=(0, 1)), lo, hi)


def test_divergence_guard():
    from polydiff_timeseries.data import Scaler, Series
    from polydiff_timeseries.recipes import check_divergence
    from polydiff_timeseries.writers import TimeSeriesSamples

    v = np.array([[0.0, 10.0], [1.0, 20.0]])
    sc = Scaler.fit(Series(v, np.ones_like(v, dtype=bool), ("a", "b")))
    ok = TimeSeriesSamples("generate", np.array([[[0.5, 15.0], [1.5, 25.0]]]), ("a", "b"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_divergence(ok, sc, "generate")  # within one range width of the data: quiet
    far = TimeSeriesSamples("generate", np.array([[[0.5, 15.0], [0.5, 45.0]]]), ("a", "b"))
    with pytest.warns(UserWarning, match=r"1 of 1 samples diverged.*column 'b'.*trained on 10 to 20"):
        check_divergence(far, sc, "generate")
    nan = TimeSeriesSamples("generate", np.array([[[np.nan, 15.0], [0.5, 15.0]]]), ("a", "b"))
    with pytest.raises(UserInputError, match="non-finite.*column 'a'"):
        check_divergence(nan, sc, "generate")
    # given (observed) values are the user's, never flagged
    given = TimeSeriesSamples("forecast", np.array([[[99.0, 15.0], [0.5, 15.0]]]), ("a", "b"),
                              observed=np.array([[True, True], [False, False]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_divergence(given, sc, "forecast")


def test_forecast_horizon_default_is_said_and_short_context_padded_only_when_asked(dts_run, files, tmp_path):
    code, _, err = cli("sample", dts_run, "--task", "forecast", "--input", files["ctx"], "--num", 2, "--steps", 4,
                       "--out", tmp_path / "a")
    assert code == 0 and "Traceback" not in err, err
    assert any("no --horizon given: forecasting 6 steps" in ln for ln in warning_lines(err)), err
    code, _, err = cli("sample", dts_run, "--task", "forecast", "--input", files["ctx5"], "--horizon", 6, "--pad-context", "true",
                       "--num", 2, "--steps", 4, "--out", tmp_path / "b")
    assert code == 0 and "Traceback" not in err, err
    obs = np.load(tmp_path / "b" / "forecast.npz")["observed"]
    assert obs.shape[0] == 24 and obs[:13].sum() == 0 and obs[13:18].any(axis=1).all()


def test_a_missing_quarter_is_found_at_its_row_and_masked(tmp_path):
    from polydiff_timeseries.data import frame_to_series

    df = macro_frame(rows=204, blanks=0).drop(index=49).reset_index(drop=True)
    with pytest.warns(UserWarning, match=r"row 49: 1 missing step\(s\) of frequency 'QS"):
        frame_to_series(df, "date", None, source="q.csv")
    s = frame_to_series(df, "date", None, source="q.csv", time_gaps="mask")
    assert s.values.shape == (204, 12)
    assert np.flatnonzero(~s.observed.any(axis=1)).tolist() == [49]
    assert str(s.timestamps[49])[:10] == "1971-04-01"
    # through the CLI: data.time_gaps=mask accepts the file (it used to be refused)
    path = tmp_path / "gap.csv"
    df.to_csv(path, index=False)
    code, _, err = cli("train", "timeseries/csdi", "--preset", "tiny", "--set", f"data.path={path}", "--set",
                       "data.time_gaps=mask", "--out", tmp_path / "r", "--max-steps", 1)
    assert code == 0 and "Traceback" not in err, err


def test_evaluate_says_which_metrics_it_skipped(csdi_run):
    code, out, err = cli("evaluate", csdi_run)
    assert code == 0 and "Traceback" not in err, err
    assert json.loads(out)["heldout_windows"] == 0
    w = warning_lines(err)
    assert any("forecast_* and impute_* metrics skipped" in ln and "data.val_fraction=0" in ln for ln in w), err
    assert any("generation metrics" in ln and "skipped" in ln and "mask-conditioned" in ln for ln in w), err


# -- D: the PNG says what it draws --------------------------------------------------------------------
def test_generation_png_title_states_what_is_drawn(ts_samples):
    from PIL import Image

    title = Image.open(ts_samples / "generate.png").info.get("Title", "")
    assert "8 of 16 samples drawn" in title and "first 4 of 12 columns" in title, title
