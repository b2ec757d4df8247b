"""SGMSE+ SB-VE against its training budget: one step vs 30 ODE steps, and the network's x0 error at each time.

For each run directory (checkpoints of the benchmark's SB-VE model at different step counts — e.g. copies of
``WORK/run-sb-ve`` taken after each ``run.py --train-steps N`` stage), scores the 1-step and 30-step ``ddim`` paths on
the benchmark's 12 test mixtures (held-out speakers and noise, -5/0/5/10 dB) and measures the relative x0 error
``||x0_hat - x0||^2 / ||x0||^2`` of the network at fixed times on the 0 and 5 dB mixtures (``x_t`` drawn from the
bridge's marginal given the clean and noisy spectrograms): where the network improves at every time while the
30-step output gets worse, the error is in the multi-step path, not the network's one-shot estimate.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/audio/sb_budget.py /tmp/audio-bench/run-sb-ve-300 /tmp/audio-bench/run-sb-ve-1500 \\
        /tmp/audio-bench/run-sb-ve --work /tmp/audio-bench-probe   # -> benchmarks/audio/results/sb_budget.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


TIMES = (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="SB-VE run directories of the benchmark's model")
    ap.add_argument("--work", type=Path, default=Path("/tmp/audio-bench-probe"), help="scratch folder for the prepared WAVs")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "sb_budget.json")
    args = ap.parse_args(argv)
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run as bench
    from polydiff import training
    from polydiff.config import resolve_config
    from polydiff.recipes import RunDir
    from polydiff.training import latest_step
    from polydiff_audio.recipes import SGMSERecipe, _pair, spec_config

    torch.set_num_threads(1)
    b = bench.BUDGETS["small"]
    test_clean, test_noise = bench.prepare(args.work, b, "fillets")
    mixtures = bench.test_mixtures(test_clean, test_noise, b.seconds)
    rec = SGMSERecipe()
    cfg = resolve_config(rec, preset="tiny", overrides=[f"data.path='{args.work / 'train'}'", "model.process='sb-ve'",
                                                        "model.size='tiny'", f"model.ch={b.ch}", f"model.ch_mult={list(b.ch_mult)}"])
    pairs = [_pair(m["noisy"], m["clean"], spec_config(cfg)) for m in mixtures if m["snr"] in (0.0, 5.0)]
    frames = min(p["x"].shape[-1] for p in pairs) // 8 * 8  # the U-Net needs a multiple of its down-sampling
    x0 = torch.stack([p["x"][..., :frames] for p in pairs])
    y = torch.stack([p["y"][..., :frames] for p in pairs])
    out: dict = {"command": "python benchmarks/audio/sb_budget.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                 "times": list(TIMES), "runs": {}}
    for run in args.runs:
        model = training.load_model(rec, cfg, RunDir(run))
        step = latest_step(RunDir(run).checkpoints)
        row: dict = {"step": step, "x0_rel_error": {}, "x_t_rel_error": {}}
        for t in TIMES:
            tt = torch.full((len(x0),), float(t))
            noised = model.process.noise(x0, tt, generator=torch.Generator().manual_seed(0), cond={"y": y})
            with torch.no_grad():
                x0_hat = model.denoise(noised.x_t, tt, {"y": y}).x0
            row["x0_rel_error"][str(t)] = float((x0_hat - x0).pow(2).sum() / x0.pow(2).sum())
            row["x_t_rel_error"][str(t)] = float((noised.x_t - x0).pow(2).sum() / x0.pow(2).sum())
        for k in (1, 30):
            rows, rtf = bench.score_method(mixtures, lambda wav, k=k: rec.enhance(model, cfg, wav, sampler="ddim", steps=k, seed=0))
            row[f"ddim {k}"] = {"summary": bench.summarise(rows), "rtf": rtf}
        out["runs"][str(run)] = row
        print(run, step, json.dumps({k: row[f"ddim {k}"]["summary"] for k in (1, 30)}), flush=True)
        print("  x0 relative error by t:", {t: round(v, 3) for t, v in row["x0_rel_error"].items()}, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
