"""Medical benchmark: sparse-view / limited-angle CT and accelerated MRI on held-out slices of real volumes.

Usage (the exact commands behind ``benchmarks/medical/RESULTS.md``)::

    python benchmarks/medical/run.py --budget quick --threads 1     # minutes: 32x32 slices, short training
    python benchmarks/medical/run.py --budget small --threads 1     # ~25 min on 2 CPU cores: 32x32 slices, 1200 steps
    python benchmarks/medical/run.py --volume --budget small --threads 1 --runs DIR   # 3-D row: ~9 min training + ~5 min

Protocol:

* Data: the head CT of Debian's ``invesalius-examples`` (108 x 256 x 256, HU, window [-1024, p99.9]) and the T1 MRI
  ``ch2`` of ``mricron-data`` (181 axial slices); both are installed with ``apt-get install --no-install-recommends``
  when missing. Slices are centre-cropped and resized to 32x32 (both budgets: training a prior at 64x64 within the 20-minute CPU budget gave too few steps) and
  windowed to [0, 1]; train/test split by blocks of 4 slices with 1 slice dropped on each side
  (``data.split_slices``: no training slice touches a test slice).
* Priors: ``medical/ct-prior`` and ``medical/mri-prior`` trained on the training slices only (``budget`` steps).
* Tasks (retrospective, Gaussian noise 0.5% of the measurement RMS): CT parallel beam with 8, 16, 32 views over
  180 degrees and a limited angle of 64 views over 120 degrees; single-coil Cartesian MRI at 4x and 8x
  (``random1d`` masks, 8% fully sampled centre).
* Rows: FBP / zero-filled; TV (deepinv PGD + TVPrior, lambda picked on 2 *training* slices from a grid); DPS
  (damped, step picked on training slices), DDS (5 CG, DDIM eta 0.85), RED-diff (Adam), PiGDM, hard data
  consistency — all diffusion solvers at the same NFE (``steps``).
* 3-D row (``--volume``): a prior trained without one contiguous slab of 16 CT slices (``data.block=16``: slices
  32-47 held out, 31 and 48 dropped), 16-view CT of the slab: FBP, TV-2D, anisotropic TV-3D (ADMM), DDS and DC slice
  by slice vs with z-TV coupling (``volume3d``), lambdas picked on training slices 64-79.
* Metrics: PSNR and SSIM with the fastMRI convention (data range = the test volume's maximum, SSIM per slice
  averaged) on the windowed [0, 1] images; NFE and wall-clock seconds for the whole set of test slices.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from polydiff.config import resolve_config
from polydiff.recipes import RunDir
from polydiff.training import load_model, train
from polydiff_medical.metrics import CONVENTION, psnr, ssim
from polydiff_medical.recipes import CTPriorRecipe, MRIPriorRecipe
from polydiff_medical.metrics import windowed
from polydiff_medical.tasks import SolverSettings, baseline, make_operator, make_task, measure, reconstruct, tv_reconstruction
from polydiff_medical.volume3d import CouplingSettings, reconstruct_volume, tv3d_reconstruction, z_tv

BUDGETS = {
    "quick": {"size": 32, "channels": "[16, 32]", "train_steps": 300, "batch": 16, "test_slices": 4, "steps": 20},
    "small": {"size": 32, "channels": "[16, 32]", "train_steps": 1200, "batch": 16, "test_slices": 8, "steps": 25},
}
CT_TASKS = [dict(views=8), dict(views=16), dict(views=32), dict(views=64, span=120.0)]
MRI_TASKS = [dict(acceleration=4.0), dict(acceleration=8.0)]
SOLVER_ROWS = ["dps", "dds", "red-diff", "pigdm", "dc"]
TV_GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
DPS_GRID = [30.0, 100.0, 300.0]
HU_WINDOW = (-160.0, 240.0)  # soft-tissue window of the CT "HU win" columns


def _evenly(idx: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, idx - 1, k).round().astype(int))


def train_prior(recipe, data_name: str, b: dict, out: Path, extra: tuple[str, ...] = ()) -> tuple:
    cfg = resolve_config(recipe, preset="small", overrides=[
        f'data.name="{data_name}"', f"data.size={b['size']}", f"model.channels={b['channels']}", f"train.steps={b['train_steps']}",
        f"train.batch_size={b['batch']}", "train.lr=1e-3", "train.warmup_steps=50", "train.ema_decay=0.995",
        f"train.checkpoint_every={b['train_steps']}", "train.log_every=100", *extra])
    run = RunDir(out)
    t0 = time.perf_counter()
    train(recipe, cfg, run, progress=False)
    secs = time.perf_counter() - t0
    return cfg, run, load_model(recipe, cfg, run, ema=True), secs


VOLUME_SPLIT = ("data.block=16", "data.test_fraction=0.2", "data.gap=1")  # one held-out slab: slices 32-47 of 108


def volume_prior(b: dict, runs: Path) -> tuple:
    """The CT prior of the 3-D row, trained (once; reused from ``runs/run-ct-volume``) on the slices outside one
    contiguous held-out slab of 16 slices (``data.split_slices`` with ``block=16``: slices 32-47 of the 108, with
    slices 31 and 48 dropped as the gap); returns ``(recipe, cfg, run, model, training seconds)``."""
    recipe = CTPriorRecipe()
    out = runs / "run-ct-volume"
    rec = out / "bench_training.json"
    if rec.exists():
        from polydiff.cli.runs import read_run

        _, cfg, run = read_run(out)
        return recipe, cfg, run, load_model(recipe, cfg, run, ema=True), json.loads(rec.read_text())["seconds"]
    cfg, run, model, secs = train_prior(recipe, "invesalius-ct", b, out, extra=VOLUME_SPLIT)
    rec.write_text(json.dumps({"seconds": secs}))
    return recipe, cfg, run, model, secs


def _with_content(u: np.ndarray, frac: float = 0.15) -> np.ndarray:
    mass = u.mean(axis=(1, 2))
    return u[mass >= frac * mass.max()]


def pick_tv(op, y, u, sigma) -> float:
    best = max(TV_GRID, key=lambda lam: psnr(u, tv_reconstruction(op, y, lam, iters=60)[:, 0].double().numpy()))
    return float(best)


def pick_dps(model, op, y, u, sigma, steps) -> float:
    def score(z: float) -> float:
        rec, _, _ = reconstruct(model, op, y, sigma, SolverSettings(solver="dps", steps=steps, dps_scale=z), generator=torch.Generator().manual_seed(0))
        return psnr(u, rec[:, 0].numpy())

    return float(max(DPS_GRID, key=score))


def run_task(kind: str, task_kw: dict, model, test: np.ndarray, tune: np.ndarray, b: dict, size: int, win=None) -> list[dict]:
    task = make_task(kind, **task_kw)
    op = make_operator(task, size, seed=0)
    gen = torch.Generator().manual_seed(0)
    ut = torch.from_numpy(test)[:, None]
    y, sigma = measure(op, ut, task, gen)
    yt, sigt = measure(op, torch.from_numpy(tune)[:, None], task, torch.Generator().manual_seed(1))
    rows = []

    def row(name: str, rec: np.ndarray, nfe: int, secs: float, note: str = "") -> None:
        rows.append({"task": task.describe(), "method": name, "psnr": psnr(test, rec), "ssim": ssim(test, rec), "nfe": nfe,
                     "seconds": secs, "note": note})
        if win is not None and win.unit == "HU":  # CT: also in the soft-tissue HU window
            hu = windowed(win.inverse(test), win.inverse(rec), *HU_WINDOW)
            rows[-1].update(psnr_hu=hu["psnr_win"], ssim_hu=hu["ssim_win"])
        print(f"  {task.describe():38s} {name:12s} PSNR {rows[-1]['psnr']:6.2f}  SSIM {rows[-1]['ssim']:.3f}  NFE {nfe:4d}  {secs:7.1f} s {note}", flush=True)

    t0 = time.perf_counter()
    base = baseline(op, y)[:, 0].double().numpy()
    row(task.baseline_name, base, 0, time.perf_counter() - t0)
    lam = pick_tv(op, yt, tune, sigt)
    t0 = time.perf_counter()
    tv = tv_reconstruction(op, y, lam)[:, 0].double().numpy()
    row("tv", tv, 0, time.perf_counter() - t0, f"lambda={lam:g} (picked on training slices)")
    dps_scale = pick_dps(model, op, yt, tune, sigt, b["steps"])
    for solver in SOLVER_ROWS:
        s = SolverSettings(solver=solver, steps=b["steps"], dps_scale=dps_scale)
        rec, nfe, secs = reconstruct(model, op, y, sigma, s, generator=torch.Generator().manual_seed(2), init=baseline(op, y))
        row(solver, rec[:, 0].numpy(), nfe, secs, f"step={dps_scale:g} (picked on training slices)" if solver == "dps" else "")
    return rows


def speed_sweep(model, test: np.ndarray, size: int) -> list[dict]:
    """DDS's speed claim: PSNR and seconds of DDS and DPS on 16-view CT at several NFE (time to equal PSNR)."""
    task = make_task("ct", views=16)
    op = make_operator(task, size, seed=0)
    y, sigma = measure(op, torch.from_numpy(test)[:, None], task, torch.Generator().manual_seed(0))
    rows = []
    for solver, nfes in [("dds", [5, 10, 25, 50]), ("dps", [25, 50, 100, 200])]:
        for nfe in nfes:
            rec, n, secs = reconstruct(model, op, y, sigma, SolverSettings(solver=solver, steps=nfe, dps_scale=100.0),
                                       generator=torch.Generator().manual_seed(2))
            rows.append({"task": task.describe(), "method": solver, "psnr": psnr(test, rec[:, 0].numpy()),
                         "ssim": ssim(test, rec[:, 0].numpy()), "nfe": n, "seconds": secs, "note": "speed sweep"})
            print(f"  sweep {solver:4s} NFE {n:4d}  PSNR {rows[-1]['psnr']:6.2f}  SSIM {rows[-1]['ssim']:.3f}  {secs:6.1f} s", flush=True)
    return rows


TUNE_SLAB = (64, 80)  # a contiguous block of *training* slices (of the 108) on which the 3-D rows' lambdas are picked
TV3D_GRID = [3e-5, 1e-4, 3e-4, 1e-3]
COUPLED_GRID = [1e-4, 3e-4, 1e-3]
COUPLED_RHO_OVER_LAM = 50.0  # rho = 50 lam: soft threshold lam / rho = 0.02 on z-differences of x = 2u - 1 (volume3d.RHO_OVER_LAM)


def volume_main(args) -> None:
    """``--volume``: 16-view CT of a contiguous held-out slab of 16 slices, slice by slice vs z-TV coupled (3-D row)."""
    b = BUDGETS[args.budget]
    out = args.out / args.budget
    out.mkdir(parents=True, exist_ok=True)
    runs = args.runs or Path(tempfile.mkdtemp(prefix="polydiff-medical-bench-"))
    recipe, cfg, run, model, train_secs = volume_prior(b, runs)
    split = recipe.split(cfg, run)
    test_idx = np.asarray(split["test"])
    if len(test_idx) < 2 or np.any(np.diff(test_idx) != 1):
        raise SystemExit(f"--volume: the held-out slices {test_idx.tolist()} are not one contiguous slab")
    win = recipe.window(cfg, run)
    test = recipe.slices(cfg, run, "test")
    train_idx = np.asarray(split["train"])
    pos = np.flatnonzero((train_idx >= TUNE_SLAB[0]) & (train_idx < TUNE_SLAB[1]))
    tune = recipe.slices(cfg, run, "train")[pos]
    task = make_task("ct", views=16)
    op = make_operator(task, b["size"], seed=0)
    y, sigma = measure(op, torch.from_numpy(test)[:, None], task, torch.Generator().manual_seed(0))
    yt, sigt = measure(op, torch.from_numpy(tune)[:, None], task, torch.Generator().manual_seed(1))
    desc = f"{task.describe()}, {len(test)}-slice held-out slab (slices {test_idx[0]}-{test_idx[-1]})"
    record = {"budget": args.budget, "settings": b, "threads": args.threads, "convention": CONVENTION, "hu_window": list(HU_WINDOW),
              "training": {"seconds": train_secs, "train_slices": len(train_idx), "test_slices": test_idx.tolist(),
                           "tune_slices": train_idx[pos].tolist()}, "rows": []}
    path = out / "volume.json"

    def row(name: str, rec: np.ndarray, nfe: int, secs: float, note: str = "") -> None:
        hu = windowed(win.inverse(test), win.inverse(rec), *HU_WINDOW)
        r = {"task": desc, "method": name, "psnr": psnr(test, rec), "ssim": ssim(test, rec), "psnr_hu": hu["psnr_win"], "ssim_hu": hu["ssim_win"],
             "z_tv_ratio": z_tv(torch.from_numpy(rec)) / max(z_tv(torch.from_numpy(test)), 1e-12), "nfe": nfe, "seconds": secs, "note": note}
        record["rows"].append(r)
        path.write_text(json.dumps(record, indent=1))
        print(f"  {name:16s} PSNR {r['psnr']:6.2f}  SSIM {r['ssim']:.3f}  HU-win PSNR {r['psnr_hu']:6.2f} SSIM {r['ssim_hu']:.3f}  "
              f"zTV/gt {r['z_tv_ratio']:.2f}  NFE {nfe:3d}  {secs:6.1f} s {note}", flush=True)

    def score(rec: torch.Tensor, u: np.ndarray) -> float:
        return psnr(u, rec[:, 0].double().numpy())

    print(f"== 3-D row: {desc}; prior trained {train_secs:.0f} s on {len(train_idx)} slices", flush=True)
    t0 = time.perf_counter()
    row(task.baseline_name, baseline(op, y)[:, 0].double().numpy(), 0, time.perf_counter() - t0)
    lam = max(TV_GRID, key=lambda v: score(tv_reconstruction(op, yt, v, iters=60), tune))
    t0 = time.perf_counter()
    row("tv-2d", tv_reconstruction(op, y, lam)[:, 0].double().numpy(), 0, time.perf_counter() - t0, f"lambda={lam:g} (picked on the training slab)")
    lam = max(TV3D_GRID, key=lambda v: score(tv3d_reconstruction(op, yt, v, iters=60), tune))
    t0 = time.perf_counter()
    row("tv-3d", tv3d_reconstruction(op, y, lam, iters=100)[:, 0].numpy(), 0, time.perf_counter() - t0,
        f"anisotropic 3-D TV by ADMM, lambda={lam:g} (picked on the training slab)")
    for solver in ("dds", "dc"):
        s = SolverSettings(solver=solver, steps=b["steps"])
        rec, nfe, secs = reconstruct_volume(model, op, y, sigma, s, CouplingSettings("none"), generator=torch.Generator().manual_seed(2))
        row(solver, rec[:, 0].numpy(), nfe, secs, "slice by slice")

        def coupled(lam: float, yy: torch.Tensor, sg: float) -> tuple:
            c = CouplingSettings("tv-z", lam=lam, rho=COUPLED_RHO_OVER_LAM * lam)
            return reconstruct_volume(model, op, yy, sg, s, c, generator=torch.Generator().manual_seed(2))

        lam = max(COUPLED_GRID, key=lambda v: score(coupled(v, yt, sigt)[0], tune))
        rec, nfe, secs = coupled(lam, y, sigma)
        row(f"{solver} + tv-z", rec[:, 0].numpy(), nfe, secs,
            f"ADMM 1 iteration per step, lambda={lam:g} (picked on the training slab), rho={COUPLED_RHO_OVER_LAM:g} lambda")
    lines = [f"### 3-D row (`--volume`, budget `{record['budget']}`): {desc}", "",
             f"Command: `OMP_NUM_THREADS={args.threads} nice -n 5 python benchmarks/medical/run.py --volume --budget {record['budget']} "
             f"--threads {args.threads} --runs {args.runs or 'DIR'}`", "",
             f"Prior: {train_secs:.0f} s training on {len(train_idx)} slices outside the slab; lambdas picked on training slices "
             f"{TUNE_SLAB[0]}-{TUNE_SLAB[1] - 1}. {CONVENTION}, windowed [0, 1] images; HU columns: clipped to "
             f"[{HU_WINDOW[0]:g}, {HU_WINDOW[1]:g}] HU, data range {HU_WINDOW[1] - HU_WINDOW[0]:g}. z-TV ratio: ||D_z x||_1 of the "
             "reconstruction over the ground truth's.", "",
             "| method | PSNR (dB) | SSIM | PSNR HU win (dB) | SSIM HU win | z-TV ratio | NFE | seconds | note |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['psnr_hu']:.2f} | {r['ssim_hu']:.3f} | {r['z_tv_ratio']:.2f} | "
              f"{r['nfe']} | {r['seconds']:.1f} | {r['note']} |" for r in record["rows"]]
    (out / "volume.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {path} and {out / 'volume.md'}")


def sweep_main(args) -> None:
    """``--sweep``: the speed sweep on the CT prior a previous run left in ``--runs``."""
    from polydiff.cli.runs import read_run

    recipe, cfg, run = read_run(args.runs / "run-ct")
    model = load_model(recipe, cfg, run, ema=True)
    test_all = _with_content(recipe.slices(cfg, run, "test"))
    test = test_all[_evenly(len(test_all), BUDGETS[args.budget]["test_slices"])]
    rows = speed_sweep(model, test, cfg.data.size)
    out = args.out / args.budget
    (out / "speed_sweep.json").write_text(json.dumps(rows, indent=1))
    lines = ["| method | NFE | PSNR (dB) | SSIM | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['nfe']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['seconds']:.1f} |" for r in rows]
    (out / "speed_sweep.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'speed_sweep.md'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", choices=sorted(BUDGETS), default="quick")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/medical/results"))
    ap.add_argument("--runs", type=Path, default=None, help="where the trained priors go (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="evaluate the priors in --runs instead of training (same record)")
    ap.add_argument("--sweep", action="store_true", help="only the DDS-vs-DPS speed sweep, on the CT prior in --runs")
    ap.add_argument("--volume", action="store_true", help="only the 3-D row: a contiguous held-out slab of 16 CT slices, slice by slice "
                    "vs z-TV coupling (trains its own prior into --runs/run-ct-volume once)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.volume:
        volume_main(args)
        return
    if (args.sweep or args.reuse) and args.runs is None:
        ap.error("--sweep and --reuse need --runs DIR holding run-ct and run-mri from a previous run")
    if args.sweep:
        sweep_main(args)
        return
    b = BUDGETS[args.budget]
    out = args.out / args.budget
    out.mkdir(parents=True, exist_ok=True)
    runs = args.runs or Path(tempfile.mkdtemp(prefix="polydiff-medical-bench-"))
    record = {"budget": args.budget, "settings": b, "threads": args.threads, "machine": platform.processor() or platform.machine(),
              "convention": CONVENTION, "rows": [], "training": {}}
    prev_training = json.loads((out / "results.json").read_text())["training"] if args.reuse else {}
    for recipe, data_name, kind, tasks in [(CTPriorRecipe(), "invesalius-ct", "ct", CT_TASKS), (MRIPriorRecipe(), "mricron-ch2", "mri", MRI_TASKS)]:
        print(f"== {recipe.name} on {data_name}: training {b['train_steps']} steps at {b['size']}x{b['size']}", flush=True)
        if args.reuse:  # evaluate the priors a previous run trained into --runs (training seconds from its record)
            from polydiff.cli.runs import read_run

            _, cfg, run = read_run(runs / f"run-{kind}")
            model = load_model(recipe, cfg, run, ema=True)
            secs = prev_training[recipe.name]["seconds"]
        else:
            cfg, run, model, secs = train_prior(recipe, data_name, b, runs / f"run-{kind}")
        split = recipe.split(cfg, run)
        record["training"][recipe.name] = {"seconds": secs, "train_slices": len(split["train"]), "test_slices": len(split["test"])}
        print(f"   trained in {secs:.0f} s ({len(split['train'])} training / {len(split['test'])} held-out slices)", flush=True)
        test_all = _with_content(recipe.slices(cfg, run, "test"))
        test = test_all[_evenly(len(test_all), b["test_slices"])]
        train_all = _with_content(recipe.slices(cfg, run, "train"))
        tune = train_all[_evenly(len(train_all), 2)]
        for kw in tasks:
            record["rows"].extend(run_task(kind, kw, model, test, tune, b, b["size"], recipe.window(cfg, run)))
        (out / "results.json").write_text(json.dumps(record, indent=1))
    write_markdown(record, out / "results.md", args)
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")


def write_markdown(record: dict, path: Path, args) -> None:
    b = record["settings"]
    lines = [f"### budget `{record['budget']}`: {b['size']}x{b['size']} slices, {b['test_slices']} held-out slices per modality, "
             f"{b['steps']} NFE per diffusion solver, `--threads {record['threads']}`", "",
             f"Command: `OMP_NUM_THREADS={args.threads} python benchmarks/medical/run.py --budget {record['budget']} --threads {args.threads}`", "",
             "Training: " + "; ".join(f"{k} {v['seconds']:.0f} s ({v['train_slices']} train / {v['test_slices']} test slices)"
                                       for k, v in record["training"].items()), "",
             record["convention"] + ", on the windowed [0, 1] images; CT HU columns: both clipped to "
             f"[{HU_WINDOW[0]:g}, {HU_WINDOW[1]:g}] HU (soft tissue), data range {HU_WINDOW[1] - HU_WINDOW[0]:g}.", "",
             "| task | method | PSNR (dB) | SSIM | PSNR HU win (dB) | SSIM HU win | NFE | seconds | note |", "|---|---|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
        hu = f"{r['psnr_hu']:.2f} | {r['ssim_hu']:.3f}" if "psnr_hu" in r else "– | –"
        lines.append(f"| {r['task']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {hu} | {r['nfe']} | {r['seconds']:.1f} | {r['note']} |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
