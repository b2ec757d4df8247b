"""Where the over-confidence of the trained forecasters comes from: 90 % coverage against its suspects.

The exact AR(1) case shows the mask-conditioned path itself is calibrated
(``tests/plugins/timeseries/test_ts_ar1_acceptance.py::test_conditional_path_90_percent_intervals_cover_90_percent``),
so this script measures the trained CSDI-style model on the README's vic_elec windows (``run.py``'s
``forecast_windows``: 16 held-out windows of 96 half-hours, horizon 24; imputation with 50 % hidden)
while changing one suspect at a time:

* training budget — one run trained on in stages (resumed: the learning-rate schedule is that of the
  stage's total), scored after each stage;
* model size — the preset's 32 channels x 2 layers against the CSDI paper's 64 x 4;
* sampler — DDIM (eta = 0, deterministic given the initial noise) against ancestral DDPM (eta = 1);
* number of samples — 50 against 200 (the interval's own sampling error: with ``S`` samples the
  expected coverage of the interpolated 5-95 % order statistics is ``0.9 (S - 1) / (S + 1)``);
* normalisation — min-max against standard (z-score) scaling.

Usage (CPU; the stages reuse their checkpoints when run again; ``--variants`` picks a subset):
    OMP_NUM_THREADS=2 python benchmarks/timeseries/coverage.py --stages 500,1500,3000
    OMP_NUM_THREADS=2 python benchmarks/timeseries/coverage.py --stages 300,1000 --variants standard-norm,paper-64x4
Writes ``benchmarks/timeseries/results/coverage.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (the benchmark's windows, training and metric code)

from polydiff.recipes import RunDir  # noqa: E402
from polydiff_timeseries.metrics import probabilistic_metrics  # noqa: E402
from polydiff_timeseries.recipes import CSDIRecipe  # noqa: E402
from polydiff_timeseries.tasks import sample_windows  # noqa: E402


def score(model, sc, w: dict, *, sampler: str, samples: int, steps: int = 50) -> dict:
    vals, obs = w["vals"], w["obs"]
    y = torch.from_numpy(np.nan_to_num(sc.transform(vals))).float()
    out = {}
    for task, known in w["known"].items():
        target = obs & ~known.numpy()
        opts = {"eta": 1.0} if sampler == "ddim-eta1" else None
        r = sample_windows(model, y, known, num=samples, method="csdi", sampler="ddim", steps=steps, seed=0,
                           sampler_options=opts)
        m = probabilistic_metrics(sc.inverse(r.x.double().numpy()), vals, target)
        out[task] = {k: m[k] for k in ("crps", "mae", "coverage_50", "coverage_90")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", default="500,1500,3000", help="training steps after which the base model is scored")
    ap.add_argument("--work", default="/tmp/polydiff-ts-coverage")
    ap.add_argument("--out", default="benchmarks/timeseries/results/coverage.json")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", default="base,paper-64x4,standard-norm",
                    help="which of base (the stages), paper-64x4 and standard-norm to run (the latter two at the middle stage)")
    ap.add_argument("--rows", default="benchmarks/timeseries/results/coverage_partial.jsonl",
                    help="every row is appended here as it is measured (a stopped study keeps its rows)")
    args = ap.parse_args()
    variants = set(args.variants.split(","))
    stages = [int(s) for s in args.stages.split(",")]
    b = bench.budget("small", args.device)
    rec = CSDIRecipe()
    rows = []
    t_all = time.perf_counter()

    def run_variant(label: str, overrides: dict, steps: int, samplers=(("ddim", 50),)) -> None:
        cfg = bench.resolve("small", **{**{"data.name": "vic_elec", "data.window": bench.FC_WINDOW, "data.stride": 4,
                                           "train.log_every": 10**9, "train.checkpoint_every": 500}, **overrides,
                                        "train.steps": steps})
        work = Path(args.work) / label
        model, secs = bench.train_recipe(rec, cfg, work, args.device)
        sc = rec.scaler(cfg, RunDir(work))
        w = bench.forecast_windows(b, rec._series(cfg))
        for sampler, n in samplers:
            t0 = time.perf_counter()
            res = score(model, sc, w, sampler=sampler, samples=n)
            rows.append({"variant": label, "train_steps": steps, "sampler": sampler, "samples": n, **res,
                         "train_seconds": secs, "sample_seconds": time.perf_counter() - t0})
            print(json.dumps(rows[-1]), flush=True)
            with open(args.rows, "a") as f:
                f.write(json.dumps(rows[-1], default=float) + "\n")

    for steps in stages if "base" in variants else []:  # budget (and, at the last stage, sampler and sample count)
        last = steps == stages[-1]
        run_variant("base-32x2", {}, steps,
                    samplers=(("ddim", 50), ("ddim-eta1", 50), ("ddim", 200)) if last else (("ddim", 50),))
    mid = stages[len(stages) // 2]
    if "standard-norm" in variants:
        run_variant("standard-norm", {"data.normalise": "standard"}, mid)
    if "paper-64x4" in variants:
        run_variant("paper-64x4", {"model.csdi_channels": 64, "model.csdi_layers": 4}, mid)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows, "total_seconds": time.perf_counter() - t_all},
                              indent=2, default=float))
    print("| variant | steps | sampler | samples | forecast CRPS | cov50 / cov90 | impute CRPS | cov50 / cov90 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        f, i = r["forecast"], r["impute"]
        print(f"| {r['variant']} | {r['train_steps']} | {r['sampler']} | {r['samples']} | {f['crps']:.4f} | "
              f"{f['coverage_50']:.2f} / {f['coverage_90']:.2f} | {i['crps']:.4f} | {i['coverage_50']:.2f} / {i['coverage_90']:.2f} |")


if __name__ == "__main__":
    main()
