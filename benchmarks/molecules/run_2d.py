"""Molecules benchmark, 2D: QM9 heavy atoms (no H), ``molecules/digress`` and ``molecules/gdss`` at a CPU budget.

Usage:
    .venv/bin/python benchmarks/molecules/run_2d.py --budget quick                  # seconds (the test runs this)
    .venv/bin/python benchmarks/molecules/run_2d.py --budget small --threads 1      # <= 15 min training per recipe

Protocol (per recipe):
1. Train at the budget's preset and overrides (``polydiff.training.train``; the same as ``polydiff train
   molecules/<recipe> --preset <preset> --set ...``) with ``torch.set_num_threads(--threads)``. A finished run in
   ``--work`` is reused; the training seconds are kept next to it.
2. Sample ``num_samples`` molecules at ``sample_steps`` (``mixed-ancestral``), write them as SDF (both decodings),
   and score the in-memory molecules with ``recipes2d.evaluate_2d`` — every metric for the ``raw`` and the
   ``valency-corrected`` decoding — against the first ``reference_molecules`` molecules of the QM9 test split;
   novelty against the training SMILES (the training subset the run saw).
3. Data row: ``num_samples`` further test molecules (disjoint from the reference) scored the same way, so FCD and
   NSPDK carry the same finite-sample bias as the models' rows.

Results: ``<out>/qm9_2d_<budget>_cpu.json`` and ``.md``, next to GDSS's published QM9 row (``molecules.md`` §3.4).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from polydiff.config import resolve_config
from polydiff.recipes import RunDir
from polydiff.training import latest_step, load_model, train
from polydiff_molecules.recipes2d import DigressRecipe, GDSSRecipe, evaluate_2d

HERE = Path(__file__).resolve().parent

BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"preset": "tiny", "train_steps": 10, "max_molecules": 200, "reference_molecules": 64, "num_samples": 16,
              "sample_steps": 10, "batch_size": 32, "ema": 0.9, "warmup": 2},
    # 2 CPU cores, 1 thread per recipe: ~13 min of CPU time of training each (graph transformer 64 x 4, batch 256, 900
    # steps over the whole 100k training split ~ 2.3 epochs), 1000 samples at 50 steps
    "small": {"preset": "small", "train_steps": 900, "max_molecules": 0, "reference_molecules": 2000, "num_samples": 1000,
              "sample_steps": 50, "batch_size": 256, "ema": 0.995, "warmup": 50},
}
# ``--sweep``: quality and time against sampling steps on the budget's trained runs (``sweep_samples`` molecules per point)
SWEEP = {"quick": {"steps": [2, 4], "samples": 8}, "small": {"steps": [25, 50, 100, 250, 500, 1000], "samples": 128}}
SWEEP_ROWS = [("validity w/o correction %", "validity/largest_fragment/model@raw", True),
              ("connected validity w/o correction %", "validity/connected/model@raw", True),
              ("uniqueness % (corrected)", "uniqueness/model@valency-corrected", True),
              ("novelty % (corrected)", "novelty/model@valency-corrected", True),
              ("NSPDK MMD (corrected)", "nspdk/model@valency-corrected", False),
              ("FCD (corrected)", "fcd/model@valency-corrected", False),
              ("atom-type TV", "atom_type_tv@raw", False),
              ("bond-type TV (raw)", "bond_type_tv/model@raw", False)]
RECIPES = {"molecules/digress": DigressRecipe, "molecules/gdss": GDSSRecipe}

# molecules.md §3.4, GDSS on QM9 (10k samples, 1000-step sampler); percent except FCD / NSPDK
PUBLISHED = {"GDSS (QM9, molecules.md §3.4)": {"validity_raw": 95.72, "nspdk": 0.003, "fcd": 2.900, "uniqueness": 98.46,
                                                 "novelty": 86.27}}

# (label, metric key, percent?)
ROWS = [("validity w/o correction %", "validity/largest_fragment/model@raw", True),
        ("connected validity w/o correction %", "validity/connected/model@raw", True),
        ("validity with correction %", "validity/largest_fragment/model@valency-corrected", True),
        ("uniqueness % (corrected)", "uniqueness/model@valency-corrected", True),
        ("novelty % (corrected)", "novelty/model@valency-corrected", True),
        ("FCD (corrected)", "fcd/model@valency-corrected", False),
        ("NSPDK MMD (corrected)", "nspdk/model@valency-corrected", False),
        ("FCD (raw, valid only)", "fcd/model@raw", False),
        ("NSPDK MMD (raw, valid only)", "nspdk/model@raw", False),
        ("atom-type TV", "atom_type_tv@raw", False),
        ("bond-type TV (raw)", "bond_type_tv/model@raw", False),
        ("valency W1 (raw)", "valency_w1/model@raw", False)]
PUB_KEY = {"validity/largest_fragment/model@raw": "validity_raw", "uniqueness/model@valency-corrected": "uniqueness",
           "novelty/model@valency-corrected": "novelty", "fcd/model@valency-corrected": "fcd", "nspdk/model@valency-corrected": "nspdk"}


def overrides(b: dict[str, Any]) -> list[str]:
    return [f"train.steps={b['train_steps']}", f"data.max_molecules={b['max_molecules']}",
            f"eval.reference_molecules={b['reference_molecules']}", f"train.batch_size={b['batch_size']}",
            f"train.ema_decay={b['ema']}", f"train.warmup_steps={b['warmup']}", f"train.checkpoint_every={b['train_steps']}",
            "train.log_every=100", "sample.batch_size=500"]


def bench_recipe(name: str, b: dict[str, Any], work: Path) -> dict[str, Any]:
    rec = RECIPES[name]()
    sets = overrides(b)
    cfg = resolve_config(rec, preset=b["preset"], overrides=sets)
    root = work / name.replace("/", "_")
    run = RunDir(root).ensure()
    res: dict[str, Any] = {"recipe": name, "cli": f"polydiff train {name} --preset {b['preset']} --threads {torch.get_num_threads()} "
                           + " ".join(f"--set {s}" for s in sets)}
    record_file = root / "bench_train.json"
    if latest_step(run.checkpoints) < cfg.train.steps:
        rec.setup(cfg, run)
        t0 = time.perf_counter()
        train(rec, cfg, run, progress=False)
        record_file.write_text(json.dumps({"seconds": time.perf_counter() - t0}))
    model = load_model(rec, cfg, run)
    train_rec = json.loads(record_file.read_text()) if record_file.exists() else {"seconds": float("nan")}
    res["train"] = {**train_rec, "steps": latest_step(run.checkpoints), "batch_size": cfg.train.batch_size,
                    "model": f"graph transformer {cfg.model.hidden} x {cfg.model.layers}",
                    "parameters": sum(p.numel() for p in model.parameters())}
    rec.sample(model, cfg, run, num=1, sampler=cfg.sample.sampler, steps=2, seed=1, options={})  # warm-up
    t0 = time.perf_counter()
    mols = rec.sample(model, cfg, run, num=b["num_samples"], sampler=cfg.sample.sampler, steps=b["sample_steps"], seed=0, options={})
    secs = time.perf_counter() - t0
    stats = rec.stats(cfg, run)
    vocab = rec.vocabulary(stats)
    from polydiff_molecules.graph2d import decode_variant
    from polydiff_molecules.writers import write_molecules

    for variant in ("raw", "valency-corrected"):
        write_molecules(decode_variant(mols, vocab, variant), root / f"bench-samples-{variant}", vocab, views_3d=False)
    from polydiff_molecules.data import load_qm9

    ref = load_qm9(hydrogens=False, split="test", max_molecules=b["reference_molecules"])[0]
    t0 = time.perf_counter()
    metrics = evaluate_2d(mols, ref, stats.get("train_smiles", []), vocab)
    res["main"] = {"num": len(mols), "steps": b["sample_steps"], "sampler": cfg.sample.sampler, "sample_seconds": secs,
                   "molecules_per_second": len(mols) / secs, "eval_seconds": time.perf_counter() - t0, "metrics": metrics}
    return res


def sweep_recipe(name: str, b: dict[str, Any], work: Path, out: Path) -> dict[str, Any]:
    """Quality and time against sampling steps for the trained run of ``name`` (trained by the main mode first).

    Each point draws ``SWEEP[budget]["samples"]`` molecules with seed 0 at the recipe's sampler and scores them with
    ``evaluate_2d`` against the same reference as the main table; results are saved after every point to
    ``<out>/qm9_2d_<budget>_sweep_<recipe>.json`` and a finished point is not redone.
    """
    rec = RECIPES[name]()
    cfg = resolve_config(rec, preset=b["preset"], overrides=overrides(b))
    run = RunDir(work / name.replace("/", "_"))
    if latest_step(run.checkpoints) < cfg.train.steps:
        raise SystemExit(f"{run.path}: not trained to {cfg.train.steps} steps; run without --sweep first")
    model = load_model(rec, cfg, run)
    stats = rec.stats(cfg, run)
    vocab = rec.vocabulary(stats)
    from polydiff_molecules.data import load_qm9

    ref = load_qm9(hydrogens=False, split="test", max_molecules=b["reference_molecules"])[0]
    path = out / f"qm9_2d_{b['name']}_sweep_{name.split('/')[1]}.json"
    res = json.loads(path.read_text()) if path.exists() else {"recipe": name, "sampler": cfg.sample.sampler, "points": {}}
    res["command"] = "python benchmarks/molecules/run_2d.py " + " ".join(sys.argv[1:])
    rec.sample(model, cfg, run, num=1, sampler=cfg.sample.sampler, steps=2, seed=1, options={})  # warm-up
    sw = SWEEP[b["name"]]
    for steps in sw["steps"]:
        if str(steps) in res["points"]:
            continue
        t0 = time.perf_counter()
        mols = rec.sample(model, cfg, run, num=sw["samples"], sampler=cfg.sample.sampler, steps=steps, seed=0, options={})
        secs = time.perf_counter() - t0
        metrics = evaluate_2d(mols, ref, stats.get("train_smiles", []), vocab)
        res["points"][str(steps)] = {"num": len(mols), "sample_seconds": secs, "molecules_per_second": len(mols) / secs,
                                     "metrics": metrics}
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=1, default=float))
        print(f"{name} {steps} steps: {len(mols) / secs:.2f} mol/s, validity raw "
              f"{metrics.get('validity/largest_fragment/model@raw', float('nan')):.3f}", flush=True)
    return res


def sweep_markdown(parts: dict[str, dict[str, Any]], b: dict[str, Any]) -> str:
    """One table per recipe: a column per step count, rows ``SWEEP_ROWS`` plus molecules per second."""
    sw = SWEEP[b["name"]]
    lines = [f"# QM9 no-H, 2D: quality and time against sampling steps (`{b['name']}` budget)", "",
             f"{sw['samples']} molecules per point (seed 0), the trained runs of the main table; reference: the first "
             f"{b['reference_molecules']} test molecules. FCD at {sw['samples']} samples carries a large finite-sample bias "
             "(compare columns, not with the main table).", ""]
    for name, r in parts.items():
        pts = r["points"]
        steps = sorted(pts, key=int)
        lines += [f"## {name} (`{r['sampler']}`)", "", f"Command: `{r['command']}`", "",
                  "| metric | " + " | ".join(f"{s} steps" for s in steps) + " |", "|---|" + "---|" * len(steps)]
        for label, key, pct in SWEEP_ROWS:
            lines.append(f"| {label} | " + " | ".join(_fmt(pts[s]["metrics"].get(key), pct) for s in steps) + " |")
        lines.append("| molecules / s | " + " | ".join(f"{pts[s]['molecules_per_second']:.2f}" for s in steps) + " |")
        lines.append("| sampling seconds | " + " | ".join(f"{pts[s]['sample_seconds']:.0f}" for s in steps) + " |")
        lines.append("")
    return "\n".join(lines)


def data_row(b: dict[str, Any], train_smiles: list[str]) -> dict[str, Any]:
    from polydiff_molecules.data import load_qm9

    mols, vocab = load_qm9(hydrogens=False, split="test", max_molecules=b["reference_molecules"] + b["num_samples"])
    ref, held = mols[: b["reference_molecules"]], mols[b["reference_molecules"]:]
    return {"num": len(held), "metrics": evaluate_2d(held, ref, train_smiles, vocab)}


def _fmt(v: Any, pct: bool) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    return f"{100 * v:.1f}" if pct else (f"{v:.4f}" if abs(v) < 1 else f"{v:.2f}")


def markdown(res: dict[str, Any]) -> str:
    b = res["budget"]
    cols = ["Data (test, disjoint from reference)", *res["recipes"], *PUBLISHED]
    lines = [f"# QM9 no-H, 2D: {' / '.join(res['recipes'])} at the `{b['name']}` budget", "",
             f"Command: `{res['command']}`", "",
             f"{b['num_samples']} samples at {b['sample_steps']} steps; reference: the first {b['reference_molecules']} test molecules; "
             f"torch threads {res['torch_threads']}; {res['machine']}.", "",
             "| metric | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for label, key, pct in ROWS:
        vals = [res["data_row"]["metrics"].get(key)] + [r["main"]["metrics"].get(key) for r in res["recipes"].values()]
        pub = [(PUBLISHED[p].get(PUB_KEY.get(key, "")) if key in PUB_KEY else None) for p in PUBLISHED]
        cells = [_fmt(v, pct) for v in vals] + [("–" if v is None else (f"{v:.2f}" if pct else f"{v:.3f}")) for v in pub]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| recipe | model | parameters | train steps x batch | train s | sampling mol/s | eval s | train command |",
              "|---|---|---|---|---|---|---|---|"]
    for name, r in res["recipes"].items():
        t, m = r["train"], r["main"]
        lines.append(f"| {name} | {t['model']} | {t['parameters']:,} | {t['steps']} x {t['batch_size']} | {t['seconds']:.0f} | "
                     f"{m['molecules_per_second']:.2f} | {m['eval_seconds']:.0f} | `{r['cli']}` |")
    return "\n".join(lines) + "\n"


def combine(out: Path, budget: str) -> dict[str, Any]:
    """Merge per-recipe results (``--recipes`` runs made in parallel) into ``qm9_2d_<budget>_cpu.{json,md}``."""
    parts = [json.loads((out / f"qm9_2d_{budget}_cpu_{r.split('/')[1]}.json").read_text()) for r in RECIPES]
    res = {**parts[0], "recipes": {k: v for p in parts for k, v in p["recipes"].items()},
           "command": " ; ".join(p["command"] for p in parts)}
    row = out / f"qm9_2d_{budget}_cpu_data_row.json"  # the data row computed on its own (``data_row``), when the parts lack it
    if "data_row" not in res and row.exists():
        res["data_row"] = json.loads(row.read_text())
    res["complete"] = "data_row" in res and all("main" in r for r in res["recipes"].values())
    (out / f"qm9_2d_{budget}_cpu.json").write_text(json.dumps(res, indent=1, default=float))
    (out / f"qm9_2d_{budget}_cpu.md").write_text(markdown(res))
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", choices=sorted(BUDGETS), default="quick")
    ap.add_argument("--work", type=Path, default=Path("runs/bench-molecules-2d"))
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--recipes", nargs="*", default=list(RECIPES))
    ap.add_argument("--combine", action="store_true", help="merge the per-recipe results of a budget and exit")
    ap.add_argument("--sweep", action="store_true", help="quality and time against sampling steps on the trained runs")
    args = ap.parse_args(argv)
    if args.combine:
        return combine(args.out, args.budget)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    b = {**BUDGETS[args.budget], "name": args.budget}
    if args.sweep:
        parts = {}
        for name in RECIPES:
            path = args.out / f"qm9_2d_{args.budget}_sweep_{name.split('/')[1]}.json"
            if name in args.recipes:
                parts[name] = sweep_recipe(name, b, args.work, args.out)
            elif path.exists():
                parts[name] = json.loads(path.read_text())
        (args.out / f"qm9_2d_{args.budget}_sweep.md").write_text(sweep_markdown(parts, b))
        return {"sweep": parts}
    res: dict[str, Any] = {"budget": b, "command": "python benchmarks/molecules/run_2d.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                           "torch": torch.__version__, "machine": platform.platform(), "cpu_count": os.cpu_count(),
                           "torch_threads": torch.get_num_threads(), "recipes": {}}
    stem = f"qm9_2d_{args.budget}_cpu" + ("" if set(args.recipes) == set(RECIPES) else "_" + "_".join(r.split("/")[1] for r in args.recipes))
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.recipes:
        res["recipes"][name] = bench_recipe(name, b, args.work)
        (args.out / f"{stem}.json").write_text(json.dumps(res, indent=1, default=float))
    stats = json.loads((args.work / args.recipes[0].replace("/", "_") / "artifacts" / "molecules.json").read_text())
    res["data_row"] = data_row(b, stats.get("train_smiles", []))
    res["complete"] = True
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=1, default=float))
    (args.out / f"{stem}.md").write_text(markdown(res))
    return res


if __name__ == "__main__":
    main()
