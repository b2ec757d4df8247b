"""Text benchmark: MDLM vs an AR baseline at equal compute; sampler quality and speed vs steps.

Measures (all numbers written to ``OUT/results.json`` and ``OUT/results.md``):

1. test bits per character of ``text/mdlm`` (a NELBO: an upper bound, Monte Carlo over t) and of
   ``text/ar`` (exact), both trained by the same engine with the same preset (same size, steps, batch);
2. generative perplexity of MDLM samples under the AR model, with the samples' unigram entropy, for the
   ``ancestral``, ``cached`` and ``confidence`` samplers at 8 ... 1024 steps (NFE, wall clock, tokens/s);
3. cached vs uncached wall clock at the largest step count (MDLM, batched), and for the time-independent
   ``text/radd`` (same preset) per sequence at batch 1: E-NFE, seconds, and whether the samples are identical.

Usage::

    python benchmarks/text/run.py --out bench/text              # preset small (CPU, long)
    python benchmarks/text/run.py --out bench/text --quick      # minutes: tiny preset, few steps
    python benchmarks/text/run.py --out bench/text --preset base --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from polydiff.config import resolve_config, save_config
from polydiff.recipes import RunDir
from polydiff.training import latest_step, load_model, train
from polydiff_text.metrics import ar_nll, diffusion_nelbo, generative_perplexity, unigram_entropy
from polydiff_text.recipes import ARRecipe, MDLMRecipe, RADDRecipe
from polydiff_text.sampling import generate


def train_run(recipe, preset: str, out: Path, overrides: list[str], device: str):
    """Train ``recipe`` into ``out`` (resuming an interrupted run; skipping a finished one) and load it."""
    cfg = resolve_config(recipe, preset=preset, overrides=overrides)
    run = RunDir(out)
    done = latest_step(run.checkpoints)
    t0 = time.perf_counter()
    if done < cfg.train.steps:
        train(recipe, cfg, run, device=device, progress=True, resume=done > 0)
        save_config(cfg, run.config_path, header={"recipe": recipe.name})
    seconds = time.perf_counter() - t0
    return cfg, run, load_model(recipe, cfg, run, device=device), seconds


def parameter_count(recipe, preset: str, overrides: list[str], out: Path) -> int:
    """Parameters of the network ``recipe`` builds for this preset (built on CPU, not trained)."""
    cfg = resolve_config(recipe, preset=preset, overrides=overrides)
    run = RunDir(out)
    recipe.setup(cfg, run)
    return sum(p.numel() for p in recipe.build_model(cfg, run).parameters())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="tiny preset, 40 training steps, 4 samples")
    ap.add_argument("--num", type=int, default=32, help="samples per (sampler, steps) cell")
    ap.add_argument("--steps", default=None, help="sampling step counts (default 8,16,32,64,128,256,1024; --quick: 8,32,64)")
    ap.add_argument("--samplers", default="ancestral,cached,confidence")
    ap.add_argument("--mc", type=int, default=0, help="NELBO Monte-Carlo times per sequence (0: the preset's eval.mc)")
    ap.add_argument("--set", action="append", default=[], help="extra key=value overrides for both runs")
    ap.add_argument("--no-radd", action="store_true", help="skip the time-independent RADD run and its cache measurement")
    ap.add_argument("--equal-compute", action="store_true",
                    help="give the AR baseline round(steps x MDLM params / AR params) steps: equal params x steps x batch")
    ap.add_argument("--radd-steps", type=int, default=0, help="training steps of the RADD run (0: the preset's)")
    ap.add_argument("--cache-num", type=int, default=8, help="sequences (batch 1 each) for the per-sequence cache measurement")
    args = ap.parse_args(argv)
    preset, overrides, num = args.preset, list(args.set), args.num
    step_list = [int(s) for s in (args.steps or ("8,32,64" if args.quick else "8,16,32,64,128,256,1024")).split(",")]
    if args.quick:
        preset, num = "tiny", 4
        overrides = ["train.steps=40", "train.checkpoint_every=40", "eval.max_blocks=16", "eval.mc=2", *overrides]
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    mcfg, mrun, mdlm, m_sec = train_run(MDLMRecipe(), preset, args.out / "mdlm", overrides, args.device)
    ar_overrides = list(overrides)
    if args.equal_compute:
        p_mdlm = sum(p.numel() for p in mdlm.net.parameters())
        p_ar = parameter_count(ARRecipe(), preset, overrides, args.out / "ar")
        ar_overrides.append(f"train.steps={round(mcfg.train.steps * p_mdlm / p_ar)}")
    acfg, arun, ar, a_sec = train_run(ARRecipe(), preset, args.out / "ar", ar_overrides, args.device)
    mc = args.mc or mcfg.eval.mc

    blocks, chars_per_token = MDLMRecipe().eval_blocks(mcfg, mrun)
    blocks = blocks.to(args.device)
    nelbo = diffusion_nelbo(mdlm, blocks, mc=mc, seed=0)
    exact = ar_nll(ar.net, blocks, ar.bos_id)
    L = mcfg.data.block_size
    results: dict = {
        "preset": preset, "overrides": overrides, "device": args.device, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "params": sum(p.numel() for p in mdlm.net.parameters()), "params_ar": sum(p.numel() for p in ar.net.parameters()),
        "train_seconds": {"mdlm": m_sec, "ar": a_sec},
        "train_steps": {"mdlm": mcfg.train.steps, "ar": acfg.train.steps}, "batch_size": mcfg.train.batch_size, "block_size": L, "test_sequences": nelbo.sequences, "nelbo_mc": mc,
        "test_bpc": {"mdlm_upper_bound": nelbo.bits_per_token / chars_per_token,
                     "mdlm_stderr": nelbo.stderr / 0.6931471805599453 / chars_per_token,
                     "ar": exact.bits_per_token / chars_per_token,
                     "ar_stderr": exact.stderr / 0.6931471805599453 / chars_per_token},
        "sampling": [], "num": num,
    }
    for sampler in args.samplers.split(","):
        for steps in step_list:
            gen = generate(mdlm, num=num, length=L, context=L, sampler=sampler, steps=steps, seed=0,
                           batch_size=min(num, 32))
            g = generative_perplexity(ar, gen.ids.to(args.device), ar.bos_id, context=L)
            if steps == step_list[0] and sampler == args.samplers.split(",")[0]:  # discard a warm-up cell's timing
                gen = generate(mdlm, num=num, length=L, context=L, sampler=sampler, steps=steps, seed=0,
                               batch_size=min(num, 32))
            row = {"sampler": sampler, "steps": steps, "nfe": gen.nfe, "seconds": gen.seconds,
                   "tokens_per_second": gen.ids.numel() / gen.seconds, "gen_ppl": g.token_ppl,
                   "gen_ppl_mean_sample": g.mean_sample_ppl, "entropy": float(unigram_entropy(gen.ids).mean())}
            results["sampling"].append(row)
            print(json.dumps(row), flush=True)
            (args.out / "results.json").write_text(json.dumps(results, indent=2))  # partial, overwritten at the end
    data_ids = blocks[:num].cpu()
    example = generate(mdlm, num=1, length=L, context=L, sampler="cached", steps=max(step_list), seed=1).ids[0]
    results["sample_example"] = MDLMRecipe().tokenizer(mrun).decode(example.tolist())
    results["data_reference"] = {"gen_ppl_of_test_text": generative_perplexity(ar, blocks[:num], ar.bos_id, context=L).token_ppl,
                                 "entropy_of_test_text": float(unigram_entropy(data_ids).mean())}
    top = max(step_list)
    if not args.no_radd:
        r_over = [*overrides, f"train.steps={args.radd_steps}"] if args.radd_steps else overrides
        rcfg, rrun, radd, r_sec = train_run(RADDRecipe(), preset, args.out / "radd", r_over, args.device)
        results["train_steps"]["radd"] = rcfg.train.steps
        rn = diffusion_nelbo(radd, blocks, mc=mc, seed=0)
        results["train_seconds"]["radd"] = r_sec
        results["test_bpc"]["radd_upper_bound"] = rn.bits_per_token / chars_per_token
        results["test_bpc"]["radd_stderr"] = rn.stderr / 0.6931471805599453 / chars_per_token
        # the cache skips a network call only when no sequence in the batch changed: measure it per sequence (batch 1)
        cache = {}
        for sampler in ("ancestral", "cached"):
            gens = [generate(radd, num=1, length=L, context=L, sampler=sampler, steps=top, seed=i, batch_size=1)
                    for i in range(args.cache_num)]
            cache[sampler] = {"nfe_per_sequence": sum(g.nfe for g in gens) / len(gens),
                              "seconds_per_sequence": sum(g.seconds for g in gens) / len(gens),
                              "ids": torch.cat([g.ids for g in gens])}
        same = bool(torch.equal(cache["ancestral"].pop("ids"), cache["cached"].pop("ids")))
        results["radd_cache_batch1"] = {"steps": top, "identical_samples": same, **cache,
                                        "speedup": cache["ancestral"]["seconds_per_sequence"] / cache["cached"]["seconds_per_sequence"]}
        print(json.dumps(results["radd_cache_batch1"]), flush=True)
    wall = {r["sampler"]: r["seconds"] for r in results["sampling"] if r["steps"] == top}
    if "ancestral" in wall and "cached" in wall:
        results["cache_speedup_at_max_steps"] = {"steps": top, "ancestral_s": wall["ancestral"], "cached_s": wall["cached"],
                                                 "speedup": wall["ancestral"] / wall["cached"]}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "results.md").write_text(to_markdown(results, " ".join(["python", *sys.argv])))
    print((args.out / "results.md").read_text())
    return results


def to_markdown(r: dict, command: str) -> str:
    b = r["test_bpc"]
    lines = [f"Command: `{command}` (torch {r['torch']}, {r['device']}, {r['threads']} threads)", "",
             f"Preset `{r['preset']}`: {r['params']:,} parameters (AR {r['params_ar']:,}), block {r['block_size']}, "
             f"training time MDLM {r['train_seconds']['mdlm']:.0f} s, AR {r['train_seconds']['ar']:.0f} s.",
             _steps_line(r), "",
             "| model | test bits/char | note |", "|---|---|---|",
             f"| MDLM | ≤ {b['mdlm_upper_bound']:.3f} ± {b['mdlm_stderr']:.3f} | NELBO, {r['nelbo_mc']} MC times × {r['test_sequences']} seqs |",
             f"| AR | {b['ar']:.3f} ± {b['ar_stderr']:.3f} | exact |", "",
             "| sampler | steps | NFE | gen PPL (AR) | entropy (nats) | s | tokens/s |", "|---|---|---|---|---|---|---|"]
    for s in r["sampling"]:
        lines.append(f"| {s['sampler']} | {s['steps']} | {s['nfe']} | {s['gen_ppl']:.2f} | {s['entropy']:.3f} | "
                     f"{s['seconds']:.2f} | {s['tokens_per_second']:.0f} |")
    d = r["data_reference"]
    lines += ["", f"Test text itself: gen PPL {d['gen_ppl_of_test_text']:.2f}, entropy {d['entropy_of_test_text']:.3f} nats."]
    if "radd_upper_bound" in b:
        lines.append(f"RADD (time-independent, same preset): test bits/char ≤ {b['radd_upper_bound']:.3f} ± {b['radd_stderr']:.3f}.")
    if "radd_cache_batch1" in r:
        c = r["radd_cache_batch1"]
        lines.append(f"RADD, batch 1, {c['steps']} steps: uncached NFE {c['ancestral']['nfe_per_sequence']:.0f}, "
                     f"{c['ancestral']['seconds_per_sequence']:.2f} s/seq; cached E-NFE {c['cached']['nfe_per_sequence']:.1f}, "
                     f"{c['cached']['seconds_per_sequence']:.2f} s/seq ({c['speedup']:.1f}×); identical samples: {c['identical_samples']}.")
    if "cache_speedup_at_max_steps" in r:
        c = r["cache_speedup_at_max_steps"]
        lines.append(f"MDLM, batch {min(r.get('num', 32), 32)}, cached vs uncached at {c['steps']} steps: {c['cached_s']:.2f} s vs "
                     f"{c['ancestral_s']:.2f} s ({c['speedup']:.2f}×; the cache re-evaluates only the sequences that changed; MDLM is "
                     "time-conditioned, so reusing a prediction is an approximation there, exact for RADD).")
    return "\n".join(lines) + "\n"


def _steps_line(r: dict) -> str:
    st = r.get("train_steps")
    if not st:
        return ""
    line = (f"Training steps × batch: MDLM {st['mdlm']:,} × {r['batch_size']}, AR {st['ar']:,} × {r['batch_size']} "
            f"(params × steps × batch: MDLM {r['params'] * st['mdlm'] * r['batch_size']:.3g}, "
            f"AR {r['params_ar'] * st['ar'] * r['batch_size']:.3g})")
    return line + (f"; RADD {st['radd']:,} steps." if "radd" in st else ".")


if __name__ == "__main__":
    main()
