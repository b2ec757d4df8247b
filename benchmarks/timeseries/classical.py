"""Classical forecasters a forecaster already trusts (statsforecast), run in their own environment.

statsforecast 2.1 pins ``pandas < 3``, so it lives in a separate virtual environment
(``bash benchmarks/timeseries/setup_classical.sh`` makes ``benchmarks/timeseries/.venv-classical``) and this
script runs there as a subprocess of ``run.py``. It imports only numpy, pandas and statsforecast.

Input (``--input FILE.npz``): ``history (W, H, C)`` — the ``H`` values before each forecast origin
(NaN where unobserved; filled linearly before fitting, as a forecaster would), ``horizon`` (scalar),
``season_lengths`` (e.g. ``[48, 336]``), ``contexts`` (history lengths to try, e.g. ``[1344, 72]``).
Output (``--output FILE.npz``): for each model ``M`` and context ``K`` the predictive quantiles
``q/M/K (W, horizon, C, 19)`` at levels 0.05, 0.10, ..., 0.95 (from statsforecast's prediction
intervals at levels 10, 20, ..., 90 and the point forecast as the median) and ``seconds/M/K``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

LEVELS = [10, 20, 30, 40, 50, 60, 70, 80, 90]
QUANTILES = np.round(np.arange(1, 20) / 20.0, 2)


def _fill(x: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN (flat at the ends)."""
    ok = np.isfinite(x)
    if ok.all():
        return x
    if not ok.any():
        return np.zeros_like(x)
    i = np.arange(len(x))
    return np.interp(i, i[ok], x[ok])


def _models(name: str, seasons: list[int]):
    from statsforecast.models import MSTL, AutoARIMA, AutoETS, SeasonalNaive

    day = seasons[0]
    if name == "mstl-ets":
        return MSTL(season_length=seasons, trend_forecaster=AutoETS(model="ZZN"))
    if name == "autoets":
        return AutoETS(season_length=day)
    if name == "autoarima":
        # approximation=True: the stepwise search with approximate likelihoods fits a 28-day half-hourly history
        # in seconds rather than minutes
        return AutoARIMA(season_length=day, approximation=True)
    if name == "seasonal-naive":
        return SeasonalNaive(season_length=day)
    raise ValueError(f"unknown model {name!r}")


def forecast_quantiles(series: np.ndarray, horizon: int, model_name: str, seasons: list[int]) -> np.ndarray:
    """Quantiles ``(horizon, 19)`` of one univariate series' forecast."""
    import pandas as pd
    from statsforecast import StatsForecast

    y = _fill(series.astype(np.float64))
    df = pd.DataFrame({"unique_id": "s", "ds": np.arange(len(y)), "y": y})
    sf = StatsForecast(models=[_models(model_name, seasons)], freq=1, n_jobs=1)
    fc = sf.forecast(df=df, h=horizon, level=LEVELS)
    col = [c for c in fc.columns if c not in ("unique_id", "ds") and "-lo-" not in c and "-hi-" not in c][0]
    out = np.empty((horizon, len(QUANTILES)))
    out[:, 9] = fc[col].to_numpy()
    for lv in LEVELS:
        k = lv // 10  # level 10 -> quantiles 0.45 / 0.55 (indices 8 / 10), ..., level 90 -> 0.05 / 0.95 (0 / 18)
        out[:, 9 - k] = fc[f"{col}-lo-{lv}"].to_numpy()
        out[:, 9 + k] = fc[f"{col}-hi-{lv}"].to_numpy()
    return np.sort(out, axis=-1)  # guards against a non-monotone interval from a degenerate fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--models", default="mstl-ets,autoets,autoarima,seasonal-naive",
                    help="comma-separated; NAME@K runs NAME at history length K only")
    args = ap.parse_args()
    # AutoARIMA's optimiser warns on many windows ("possible convergence problem"); its fit is still used
    warnings.filterwarnings("ignore", message="possible convergence problem")
    data = np.load(args.input)
    history, horizon = data["history"], int(data["horizon"])
    seasons = [int(s) for s in data["season_lengths"]]
    out: dict[str, np.ndarray] = {}
    for entry in args.models.split(","):
        model, _, only = entry.partition("@")  # "autoarima@72": that model at that context only
        for ctx in [int(c) for c in data["contexts"]]:
            if (model == "mstl-ets" and ctx < 2 * max(seasons)) or (only and ctx != int(only)):
                continue  # MSTL needs two full weekly cycles
            t0 = time.perf_counter()
            q = np.stack([np.stack([forecast_quantiles(history[w, -ctx:, c], horizon, model, seasons)
                                    for c in range(history.shape[2])], axis=1) for w in range(history.shape[0])])
            out[f"q/{model}/{ctx}"] = q
            out[f"seconds/{model}/{ctx}"] = np.array(time.perf_counter() - t0)
            print(f"{model} context {ctx}: {out[f'seconds/{model}/{ctx}']:.1f} s", flush=True)
    np.savez(args.output, **out)


if __name__ == "__main__":
    main()
