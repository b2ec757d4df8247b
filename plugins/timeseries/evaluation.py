"""``polydiff evaluate`` for the time-series recipes: generation, forecasting and imputation metrics."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.errors import DataError

from .covariates import CovariateSpec, covariate_cond
from .generation_metrics import context_fid_runs, correlational_runs, discriminative_runs, predictive_runs
from .metrics import point_errors, probabilistic_metrics
from .tasks import forecast_mask, sample_windows


def to_unit(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Min-max scale windows ``(N, L, C)`` to ``[0, 1]`` with the real data's per-feature range (TimeGAN protocol)."""
    return (x - lo) / np.where(hi > lo, hi - lo, 1.0)


def ci95_half_width(values: np.ndarray) -> float:
    """Half-width of the 95 % Student-t interval of the mean of ``values`` ``(R,)`` — the "±" of the Diffusion-TS tables
    (its ``display_scores``: ``sem * t_{0.975, R-1}``); NaN for fewer than two values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return float("nan")
    from scipy import stats

    return float(stats.sem(v) * stats.t.ppf(0.975, v.size - 1))


def generation_metrics(real: np.ndarray, fake: np.ndarray, *, gru_iters: int, fid_iters: int, runs: int, seed: int = 0) -> dict[str, float]:
    """Discriminative, predictive, context-FID and correlational scores of ``fake`` vs ``real`` windows ``(N, L, C)``.

    Each is the mean over ``runs`` scoring runs (seeds ``seed + r`` of the post-hoc networks / subsets); with two or more
    runs, ``<name>/std`` (sample standard deviation) and ``<name>/ci95`` (the papers' "±", :func:`ci95_half_width`)
    come with it.
    """
    lo, hi = real.min(axis=(0, 1)), real.max(axis=(0, 1))
    r, f = to_unit(real, lo, hi), np.clip(to_unit(fake, lo, hi), -0.5, 1.5)
    per_run = {
        "discriminative": discriminative_runs(r, f, iters=gru_iters, runs=runs, seed=seed),
        "predictive": predictive_runs(r, f, iters=gru_iters, runs=runs, seed=seed),
        "predictive_real": predictive_runs(r, r, iters=gru_iters, runs=runs, seed=seed),
        "context_fid": context_fid_runs(r, f, iters=fid_iters, runs=runs, seed=seed),
    }
    if real.shape[-1] > 1:
        per_run["correlational"] = correlational_runs(r, f, runs=max(runs, 1), seed=seed)
    out: dict[str, float] = {}
    for k, v in per_run.items():
        out[k] = float(v.mean())
        if v.size > 1:
            out[f"{k}/std"] = float(v.std(ddof=1))
            out[f"{k}/ci95"] = ci95_half_width(v)
    return out


def _skipped(what: str, why: str) -> None:
    warnings.warn(f"evaluate: {what} skipped: {why}", UserWarning, stacklevel=3)


def read_generated(samples_dir: Path, columns: tuple[str, ...], window: int) -> np.ndarray:
    """Generated windows ``(N, L, C)`` in original units from ``generate.npz`` written by ``polydiff sample --task generate``.

    Raises:
        DataError: the folder has no such file, or it holds another task's, columns or window (naming it).
    """
    f = Path(samples_dir) / "generate.npz"
    if not f.is_file():
        found = sorted(p.name for p in Path(samples_dir).iterdir() if not p.name.startswith("."))[:6] if Path(samples_dir).is_dir() else []
        raise DataError(f"--samples {samples_dir}: expected generate.npz written by 'polydiff sample RUN --task generate' of a "
                        f"time-series run; found {', '.join(found) if found else 'no files'}")
    try:
        with np.load(f, allow_pickle=False) as d:
            x, cols, task = np.asarray(d["samples"], dtype=np.float64), tuple(str(v) for v in d["columns"]), str(d["task"])
    except Exception as e:  # noqa: BLE001 - any reader failure is one line naming the file
        raise DataError(f"{f}: not a time-series samples file ({type(e).__name__}: {e})") from None
    if task != "generate" or x.ndim != 3:
        raise DataError(f"{f}: holds {task!r} samples; evaluate reads generated windows (polydiff sample RUN --task generate)")
    if cols != tuple(columns) or x.shape[1] != window:
        raise DataError(f"{f}: windows of length {x.shape[1]} with columns {list(cols)}; this run has window {window} and "
                        f"columns {list(columns)}")
    if not np.isfinite(x).all():
        raise DataError(f"{f}: the samples hold non-finite values")
    return x


def evaluate_recipe(recipe: Any, model: Any, cfg: Any, run: Any, samples_dir: Path | None) -> dict[str, float]:
    """Metrics of a trained recipe (sizes from ``cfg.eval``).

    Generation scores compare ``eval.num_windows`` fully observed training windows with as many
    generated ones; forecast (horizon ``sample.horizon`` or ``L // 4``) and imputation (a random half
    of the observed entries hidden, seed ``train.seed``) use held-out windows. CRPS, MAE, MSE and
    coverage are in original units; ``*_scaled`` point errors are on the normalised scale.
    """
    ev, L = cfg.eval, cfg.data.window
    sc = recipe.scaler(cfg, run)
    given = None if samples_dir is None else read_generated(Path(samples_dir), tuple(sc.columns), L)
    bundle = recipe.datasets(cfg, run)
    model.eval()
    out: dict[str, float] = {}
    g = torch.Generator().manual_seed(cfg.train.seed)
    c = len(sc.columns)
    kw = dict(sampler=cfg.sample.sampler, seed=cfg.train.seed, batch_size=cfg.sample.batch_size,
              scale=cfg.sample.guidance_scale, noise_std=cfg.sample.noise_std)
    conditional = getattr(recipe, "default_method", "") == "csdi"
    spec = recipe.covariate_spec(cfg) if hasattr(recipe, "covariate_spec") else CovariateSpec()
    if not ev.generation_metrics:
        pass
    elif conditional and given is None:
        _skipped("generation metrics (discriminative, predictive, context_fid, correlational)",
                 f"{recipe.name} is mask-conditioned: it forecasts and imputes but does not generate unconditionally "
                 "(pass --samples DIR with generated windows to score them)")
    else:
        allw = bundle.train.all()
        full = allw["observed"].reshape(len(allw["x"]), -1).all(dim=1)
        xs = allw["x"][full]
        out["generation_windows"] = float(len(xs))
        if len(xs) < 2:
            _skipped("generation metrics (discriminative, predictive, context_fid, correlational)",
                     f"only {len(xs)} of {len(allw['x'])} training windows are fully observed (they are the real data "
                     "these metrics compare with; at least 2 are needed)")
        else:
            n_real = ev.num_windows if given is None else min(ev.num_windows, len(given))
            idx = torch.randperm(len(xs), generator=g)[:n_real]
            real = sc.inverse(xs[idx].double().numpy())
            if given is None and spec.active:  # each generated window gets the covariates of a random training window
                t0 = time.perf_counter()
                cov = recipe.generation_covariates(cfg, run, len(idx), cfg.train.seed)
                none = torch.zeros(len(idx), L, c, dtype=torch.bool)
                gen = sample_windows(model, none.float(), none, num=1, method="none", steps=ev.gen_steps, covariates=cov, **kw)
                out["generate_seconds"] = time.perf_counter() - t0
                fake = sc.inverse(gen.x[0].double().numpy())
            elif given is None:
                t0 = time.perf_counter()
                gen = sample_windows(model, None, None, num=len(idx), shape=(1, L, c), steps=ev.gen_steps, **kw)
                out["generate_seconds"] = time.perf_counter() - t0
                fake = sc.inverse(gen.x[:, 0].double().numpy())
            else:
                fake = given[: len(idx)]
                out["generated_windows_read"] = float(len(given))
            out.update(generation_metrics(real, fake, gru_iters=ev.gru_iters, fid_iters=ev.fid_iters, runs=ev.runs, seed=cfg.train.seed))
    if bundle.val is None or len(bundle.val) == 0:
        # never score forecasts on training windows: report that there was nothing held out instead
        out["heldout_windows"] = 0.0
        vf = cfg.data.val_fraction
        n_rows = len(recipe._series(cfg).values)
        _skipped("forecast_* and impute_* metrics",
                 f"no held-out window: the last data.val_fraction={vf:g} of the {n_rows} rows ({int(round(n_rows * vf))} rows) is "
                 f"shorter than data.window={L} (raise data.val_fraction to {min(0.5, (L + 1) / max(n_rows, 1)):.2g} or more, "
                 "or evaluate forecasts with 'polydiff sample --task forecast')"
                 if vf > 0 else "data.val_fraction=0 holds out no rows; forecasts are never scored on training windows")
        return out
    w = bundle.val.all()
    out["heldout_windows"] = float(len(w["x"]))
    n = min(ev.forecast_windows, len(w["x"]))
    x, obs = w["x"][:n], w["observed"][:n]
    wn = {k: v[:n] for k, v in w.items()}  # with covariates: each window's history and calendar features
    target_vals = sc.inverse(x.double().numpy())
    h = cfg.sample.horizon or L // 4
    method = recipe._method(cfg, {})
    known = obs & forecast_mask(L, c, h)[None]
    fc = sample_windows(model, x, known, num=ev.forecast_samples, method=method, steps=cfg.sample.steps,
                        covariates=covariate_cond(spec, wn, known), **kw)
    tmask = (obs & ~known).numpy()
    for k, v in probabilistic_metrics(sc.inverse(fc.x.double().numpy()), target_vals, tmask).items():
        out[f"forecast_{k}"] = v
    for k, v in point_errors(fc.x.double().numpy(), x.double().numpy(), tmask).items():
        out[f"forecast_{k}_scaled"] = v  # on the normalised scale (Diffusion-TS reports MSE there)
    drop = torch.rand(obs.shape, generator=g) < 0.5
    known_i = obs & ~drop
    im = sample_windows(model, x, known_i, num=ev.forecast_samples, method=method, steps=cfg.sample.steps,
                        covariates=covariate_cond(spec, wn, known_i), **kw)
    tmask_i = (obs & drop).numpy()
    if tmask_i.any():
        for k, v in probabilistic_metrics(sc.inverse(im.x.double().numpy()), target_vals, tmask_i).items():
            out[f"impute_{k}"] = v
        for k, v in point_errors(im.x.double().numpy(), x.double().numpy(), tmask_i).items():
            out[f"impute_{k}_scaled"] = v
    return out


__all__ = ["evaluate_recipe", "generation_metrics", "to_unit"]
