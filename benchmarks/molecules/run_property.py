"""Molecules benchmark, property-conditioned 3D generation (EDM Table 3 protocol) for ``molecules/edm`` at a CPU budget.

Usage:
    .venv/bin/python benchmarks/molecules/run_property.py --budget quick              # seconds (smoke)
    .venv/bin/python benchmarks/molecules/run_property.py --budget small --threads 1  # ~15-25 min on 2 shared cores

Protocol:
1. Train ``molecules/edm`` conditioned on one QM9 property (``model.cond_property``, default polarizability
   ``alpha``; the condition is dropped with probability ``model.cond_drop`` for classifier-free guidance) on a
   QM9 no-H training subset.
2. Train the property predictor (``property_eval.train_property_predictor``: invariant EGNN, L1 loss) on the same
   training molecules (EDM uses a disjoint half; stated in the results).
3. For ``molecules`` held-out QM9 test molecules, generate one molecule per target (the held-out molecule's own
   value) at each guidance scale, and report EDM's three numbers (``property_eval.property_mae``): the MAE of the
   predictor on the generated molecules against their targets, the shuffled-property upper bound and the
   predictor's own error on real molecules (lower bound).
"""

from __future__ import annotations

import argparse
import json
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
from polydiff_molecules.recipes import EDMRecipe

HERE = Path(__file__).resolve().parent

BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"preset": "tiny", "train_steps": 10, "max_molecules": 200, "predictor_steps": 10, "molecules": 8, "sample_steps": 5,
              "scales": [1.0, 2.0]},
    "small": {"preset": "small", "train_steps": 3000, "max_molecules": 10000, "predictor_steps": 1500, "molecules": 500,
              "sample_steps": 100, "scales": [1.0, 2.0]},
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", choices=sorted(BUDGETS), default="quick")
    ap.add_argument("--property", default="alpha")
    ap.add_argument("--work", type=Path, default=Path("runs/bench-molecules-property"))
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    b = {**BUDGETS[args.budget], "name": args.budget}
    prop = args.property
    rec = EDMRecipe()
    sets = [f"train.steps={b['train_steps']}", f"data.max_molecules={b['max_molecules']}", f"model.cond_property={prop}",
            f"train.checkpoint_every={b['train_steps']}", "train.log_every=1000000"]
    cfg = resolve_config(rec, preset=b["preset"], overrides=sets)
    root = args.work / f"edm_{prop}_{args.budget}"
    run = RunDir(root).ensure()
    res: dict[str, Any] = {"budget": b, "property": prop, "torch_threads": torch.get_num_threads(), "machine": platform.platform(),
                           "command": "python benchmarks/molecules/run_property.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                           "train_cli": f"polydiff train molecules/edm --preset {b['preset']} " + " ".join(f"--set {s}" for s in sets)}
    rec_file = root / "bench_train.json"
    if latest_step(run.checkpoints) < cfg.train.steps:
        rec.setup(cfg, run)
        t0 = time.perf_counter()
        train(rec, cfg, run, progress=False)
        rec_file.write_text(json.dumps({"seconds": time.perf_counter() - t0}))
    model = load_model(rec, cfg, run)
    res["train_seconds"] = json.loads(rec_file.read_text())["seconds"] if rec_file.exists() else float("nan")
    from polydiff_molecules.data import load_qm9
    from polydiff_molecules.property_eval import property_mae, train_property_predictor

    train_mols, vocab = rec._load(cfg, "train")
    t0 = time.perf_counter()
    predictor = train_property_predictor(train_mols, prop, atom_classes=len(vocab.elements), charge_classes=len(vocab.charges),
                                         steps=b["predictor_steps"], seed=0)
    res["predictor_seconds"] = time.perf_counter() - t0
    held = load_qm9(hydrogens=False, split="test", max_molecules=b["molecules"])[0]
    targets = torch.tensor([float(m.properties[prop]) for m in held], dtype=torch.float64)
    res["scales"] = {}
    for w in b["scales"]:
        t0 = time.perf_counter()
        gen = rec.sample_targets(model, cfg, run, num=len(held), sampler=cfg.sample.sampler, steps=b["sample_steps"], seed=0,
                                 targets=targets, guidance_scale=float(w))
        secs = time.perf_counter() - t0
        res["scales"][str(w)] = {**property_mae(predictor, gen, targets, held, prop, seed=0).as_dict(prop), "sample_seconds": secs}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"qm9_property_{prop}_{args.budget}_cpu"
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=1, default=float))
    lines = [f"# Property-conditioned molecules/edm (QM9 no-H, {prop}), `{args.budget}` budget", "", f"Command: `{res['command']}`", "",
             f"Train: `{res['train_cli']}` ({res['train_seconds']:.0f} s); predictor {b['predictor_steps']} steps "
             f"({res['predictor_seconds']:.0f} s); {b['molecules']} held-out targets, {b['sample_steps']} sampling steps.", "",
             "| guidance scale w | MAE generated | MAE shuffled (upper bound) | MAE real (predictor, lower bound) | sampling s |",
             "|---|---|---|---|---|"]
    for w, r in res["scales"].items():
        lines.append(f"| {w} | {r[f'property/{prop}/mae_generated']:.3f} | {r[f'property/{prop}/mae_shuffled_upper_bound']:.3f} | "
                     f"{r[f'property/{prop}/mae_real_lower_bound']:.3f} | {r['sample_seconds']:.0f} |")
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return res


if __name__ == "__main__":
    main()
