"""Ultrasound dehazing benchmark: two diffusion priors (medical/us-tissue, medical/us-haze) trained on simulated IQ
frames, joint posterior sampling on held-out hazy frames against the hazy input and a classical Wiener haze filter.

Protocol (one budget, sized for 2 shared CPU cores):

* frames: 32 x 32 beamformed IQ simulated by ``--simulator`` (default ``speckle``: the convolution model; ``pymust``:
  L11-5v, 64 elements, one plane wave, 0.1 mm pixels, ~1.5 s per frame on a free core) — ``--train-frames`` tissue
  frames from cyst/lesion phantoms and as many haze frames from haze-power maps; the held-out set is
  ``--test-frames`` tissue frames with the fixed anechoic evaluation cyst plus held-out haze frames, summed with white
  noise (``--noise``) — so the ground truth is known. With the speckle simulator the same held-out maps are also
  simulated with pymust (``--pymust-test``, cached in ``pymust_test.npz``) and dehazed by the same priors (a simulator
  shift: ``results_pymust.md``);
* priors: the recipes' U-Net ``--channels`` trained ``--train-steps`` steps each (batch 16, lr 1e-3, EMA 0.995);
* rows: hazy input, ``wiener`` (rank-1 haze-power floor + Wiener gain), ``projection`` (joint posterior sampling with
  the exact Gaussian-projection coupling, DDIM eta 0.85) and ``dps`` (joint DPS), at ``--steps`` sampler steps;
* metrics over fixed ROIs (inside the cyst, annulus around it) on the envelope: gCNR, CNR, contrast, KS-Rayleigh of
  the background, two-sample KS against the ground truth's ROI values and the B-mode RMSE (dB); NFE = network
  evaluations (2 per joint step), seconds = wall clock of the sampling.

Every stage is saved under ``--out`` as it finishes (runs, ``rows.jsonl``, ``results.md``, figures) and skipped
when rerun. Also writes ``real_frames.png``: the real B-mode frames of pydicom-data (qualitative only).

Run: ``OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/medical/ultrasound.py``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


HERE = Path(__file__).resolve().parent


def real_frames_figure(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polydiff_medical.ultrasound import real_bmode_frames

    frames = real_bmode_frames()
    fig, axes = plt.subplots(1, len(frames), figsize=(4.5 * len(frames), 3.6))
    for ax, (desc, img) in zip(axes, frames, strict=True):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        ax.set_title(desc, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def train_run(recipe, out: Path, overrides: list[str]) -> tuple[object, object, float]:
    from polydiff.config import load_config, resolve_config
    from polydiff.recipes import RunDir
    from polydiff.training import latest_step, train

    run = RunDir(out)
    if run.config_path.exists() and latest_step(run.checkpoints) is not None:
        cfg = load_config(recipe, run.config_path)
        if latest_step(run.checkpoints) >= cfg.train.steps:
            meta = json.loads((out / "bench_train.json").read_text()) if (out / "bench_train.json").exists() else {}
            return cfg, run, float(meta.get("seconds", float("nan")))
    cfg = resolve_config(recipe, overrides=overrides)
    run.ensure()
    t_sim = time.perf_counter()
    recipe.setup(cfg, run)  # the simulation (train() finds it done)
    sim = time.perf_counter() - t_sim
    res = train(recipe, cfg, run, progress=False)
    (out / "bench_train.json").write_text(json.dumps({"seconds": res.seconds, "simulation_seconds": sim, "final_loss": res.final_loss,
                                                        "steps": res.steps}))
    print(f"{recipe.name}: simulated in {sim:.0f} s, trained in {res.seconds:.0f} s (loss {res.final_loss:.4f})", flush=True)
    return cfg, run, res.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(HERE / "results" / "ultrasound"))
    ap.add_argument("--simulator", default="speckle", choices=["pymust", "speckle"])
    ap.add_argument("--train-frames", type=int, default=256)
    ap.add_argument("--test-frames", type=int, default=8)
    ap.add_argument("--train-steps", type=int, default=800)
    ap.add_argument("--channels", default="16,32")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--solvers", default="projection,dps")
    ap.add_argument("--gamma", type=float, default=1.0)
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pymust-test", action=argparse.BooleanOptionalAction, default=True,
                    help="with --simulator speckle: also evaluate on pymust-simulated held-out frames")
    args = ap.parse_args()

    import torch

    from polydiff.training import load_model
    from polydiff_medical.recipes_us import HazePriorRecipe, USTissueRecipe

    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "real_frames.png").exists():
        real_frames_figure(out / "real_frames.png")
    common = [f"data.simulator={args.simulator}", f"data.frames={args.train_frames}", f"data.test_frames={args.test_frames}",
              "data.size=32", f"model.channels=[{args.channels}]", f"train.steps={args.train_steps}", "train.batch_size=16",
              "train.lr=1e-3", "train.warmup_steps=50", "train.ema_decay=0.995", f"train.checkpoint_every={args.train_steps}",
              "train.log_every=100", f"sample.noise_std={args.noise}", f"sample.gamma={args.gamma}"]
    tissue_rec, haze_rec = USTissueRecipe(), HazePriorRecipe()
    t_cfg, t_run, t_secs = train_run(tissue_rec, out / "run_tissue", common + ["data.name=cysts"])
    h_cfg, h_run, h_secs = train_run(haze_rec, out / "run_haze", common + ["data.name=haze"])
    print(f"trained: tissue {t_secs:.0f} s, haze {h_secs:.0f} s", flush=True)
    model = load_model(tissue_rec, t_cfg, t_run)
    done = solver_rows(out, "", args, tissue_rec, model, t_cfg, t_run, h_run)
    write_table(out, done, args, t_secs, h_secs)
    if args.pymust_test and args.simulator != "pymust":
        pymust_rows(out, args, tissue_rec, model, t_cfg, t_run, h_run)


def solver_rows(out: Path, prefix: str, args, tissue_rec, model, t_cfg, t_run, h_run, **task_kw) -> dict:
    """Dehaze with every solver of ``--solvers`` not yet in ``<out>/rows[_pymust].jsonl``, writing each one's outputs to
    ``<out>/<prefix>dehaze_<solver>`` and appending its row as soon as it is measured; returns all rows by solver."""
    from polydiff_medical.recipes_us import write_dehaze

    rows_path = out / ("rows.jsonl" if not prefix else f"rows_{prefix.rstrip('_')}.jsonl")
    done = {json.loads(line)["solver"]: json.loads(line) for line in rows_path.read_text().splitlines()} if rows_path.exists() else {}
    for solver in [s for s in args.solvers.split(",") if s]:
        if solver in done:
            continue
        s = tissue_rec.dehaze_task(model, t_cfg, t_run, haze_run=str(h_run.path), num=args.test_frames, sampler="ddim", steps=args.steps,
                                   seed=args.seed, solver=solver, gamma=args.gamma, noise=args.noise, **task_kw)
        write_dehaze(s, out / f"{prefix}dehaze_{solver}")
        row = {"solver": solver, "steps": args.steps, "metrics": s.metrics, "nfe": s.nfe, "seconds": s.seconds}
        with rows_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        done[solver] = row
        print(prefix + solver, {k: round(v, 3) for k, v in s.metrics.items() if k.endswith(("gcnr", "rmse_db"))}, flush=True)
    return done


def pymust_rows(out: Path, args, tissue_rec, model, t_cfg, t_run, h_run) -> None:
    """The same priors on held-out frames simulated by pymust instead (a simulator shift): the held-out echogenicity
    maps of both runs (same seeds), simulated with pymust once and cached in ``pymust_test.npz``."""
    from polydiff_medical.recipes_us import HELD_OUT_SEED, HazePriorRecipe
    from polydiff_medical.ultrasound import simulate_iq

    cache = out / "pymust_test.npz"
    if not cache.exists():
        t0 = time.perf_counter()
        haze_rec = HazePriorRecipe()
        from polydiff.config import load_config

        h_cfg = load_config(haze_rec, h_run.config_path)
        seed = t_cfg.data.seed + HELD_OUT_SEED
        tissue = simulate_iq(tissue_rec.echo_maps(t_cfg, True), simulator="pymust", seed=seed)
        haze = simulate_iq(haze_rec.echo_maps(h_cfg, True), simulator="pymust", seed=h_cfg.data.seed + HELD_OUT_SEED)
        np.savez_compressed(cache, tissue=tissue, haze=haze)
        print(f"pymust held-out frames simulated in {time.perf_counter() - t0:.0f} s", flush=True)
    z = np.load(cache)
    frames = (z["tissue"], z["haze"])
    done = solver_rows(out, "pymust_", args, tissue_rec, model, t_cfg, t_run, h_run, truth_frames=frames)
    write_table(out, done, args, float("nan"), float("nan"), name="results_pymust.md",
                title="priors trained on speckle-model frames, evaluated on pymust-simulated held-out frames\n\n")


def write_table(out: Path, rows: dict, args, t_secs: float, h_secs: float, name: str = "results.md", title: str = "") -> None:
    if not rows:
        return
    any_row = next(iter(rows.values()))["metrics"]
    keys = ["gcnr", "cnr", "contrast_db", "ks_rayleigh", "ks_inside", "ks_background", "rmse_db"]
    lines = ["| row | gCNR | CNR | contrast dB | KS-Rayleigh (bg) | KS vs truth (cyst) | KS vs truth (bg) | B-mode RMSE dB | NFE | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def fmt(m: dict, name: str) -> str:
        return " | ".join(f"{m[f'{name}/{k}']:.3f}" for k in keys)

    lines.append(f"| truth (clean tissue) | {fmt(any_row, 'truth')} | – | – |")
    lines.append(f"| hazy input | {fmt(any_row, 'hazy')} | – | – |")
    lines.append(f"| wiener (classical) | {fmt(any_row, 'wiener')} | 0 | – |")
    for solver, r in rows.items():
        lines.append(f"| diffusion {solver} ({r['steps']} steps) | {fmt(r['metrics'], solver)} | {r['nfe']} | {r['seconds']:.1f} |")
    trained = "same priors as results.md" if t_secs != t_secs else f"tissue {t_secs:.0f} s, haze {h_secs:.0f} s"
    head = (f"simulator {args.simulator}, {args.train_frames} training frames per prior, {args.test_frames} held-out frames, "
            f"channels ({args.channels}), {args.train_steps} training steps per prior ({trained}), "
            f"gamma {args.gamma}, noise {args.noise}\n\n")
    (out / name).write_text(title + head + "\n".join(lines) + "\n")
    print(title + head + "\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
