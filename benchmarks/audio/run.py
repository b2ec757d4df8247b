"""Audio benchmark: SGMSE+ (OUVE and the Schrödinger bridge) and unsupervised UDiffSE against the noisy mixture,
spectral subtraction and the decision-directed Wiener filter on held-out speakers mixed with held-out noise at -5, 0, 5
and 10 dB (UDiffSE at 0 and 5 dB).

UDiffSE (``audio/udiffse``): a clean-speech prior trained on the training speakers' clean speech only (it never sees
noise), enhanced with the paper's EM schedule (``udiffse_em`` outer iterations x ``udiffse_steps`` ddpm steps) and an
NMF noise model initialised from positive random factors at the mixture's power: no noise clip, training or test,
enters its initialisation, so every test noise is unseen.

Data (``--data fillets``, the default): the Czech dialogue of Fish Fillets NG (Debian ``fillets-ng-data-cs``), split by
speaker (the second-largest speaker and every other minor speaker are test speakers, never trained on); noise: the game's
music tracks (even-numbered for training, odd-numbered for testing), its sound effects (test), generated white and
brown noise and babble of training speakers (training), generated pink noise (test). The script installs the Debian
packages with ``apt-get install --no-install-recommends`` when they are missing (needs root). ``--data synthetic``
uses generated speech-like signals (no packages; used by the script's test).

Usage::

    python benchmarks/audio/run.py --budget small --threads 1 --work /tmp/audio-bench   # writes benchmarks/audio/results/small/
    python benchmarks/audio/run.py --budget quick --data synthetic --out /tmp/q
    python benchmarks/audio/run.py --budget small --methods udiffse --threads 1 --work /tmp/audio-bench \
        --out benchmarks/audio/results/small-udiffse        # the UDiffSE row alone (baselines re-scored, no SGMSE+)

Per method: PESQ-wb, ESTOI, SI-SDR (mean over the test mixtures, per SNR), NFE and the real-time factor
(compute seconds per second of audio at ``--threads``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SNRS = (-5.0, 0.0, 5.0, 10.0)


@dataclass(frozen=True)
class Budget:
    train_clips: int  # fillets clips read for training (0: all)
    test_clips: int  # test utterances (each mixed at every SNR)
    sweep_clips: int  # utterances of the NFE sweep (at 0 and 5 dB)
    seconds: float  # test clip length
    steps: int  # training steps per model
    batch: int
    frames: int
    ch: int
    ch_mult: tuple[int, ...]
    pc_steps: int
    sweep: tuple[int, ...]
    udiffse_em: int = 5  # UDiffSE outer EM iterations (the paper: 5)
    udiffse_steps: int = 30  # reverse steps per E-step (the paper: 30)
    udiffse_snrs: tuple[float, ...] = (0.0, 5.0)


BUDGETS = {
    "quick": Budget(24, 1, 1, 1.0, 3, 2, 32, 8, (1, 2, 2), 2, (1, 2), 2, 2),
    "small": Budget(600, 3, 2, 2.0, 300, 4, 64, 16, (1, 2, 2, 2), 30, (1, 4, 8, 30), 5, 30),
}
METHODS = ("baselines", "ouve", "sb-ve", "udiffse")


# -- data --------------------------------------------------------------------------------------------------------
def ensure_fillets() -> None:
    from polydiff_audio.data import FILLETS_ROOT

    if Path(FILLETS_ROOT, "sound").is_dir() and Path(FILLETS_ROOT, "music").is_dir():
        return
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "fillets-ng-data-cs", "fillets-ng-data"], check=True)


def _write(folder: Path, name: str, audio: np.ndarray, sr: int) -> None:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    sf.write(str(folder / f"{name}.wav"), audio, sr, subtype="FLOAT")


def prepare(work: Path, budget: Budget, data: str, sr: int = 16000) -> tuple[list, list]:
    """Write ``work/train/{clean,noise}`` (16 kHz WAVs) and return the test ``(clean clips, noise clips)``."""
    from polydiff_audio import data as D

    rng = np.random.default_rng(0)
    if data == "synthetic":
        train_clean = D.synthetic_corpus(budget.train_clips, 3.0, sr, seed=0)
        test_clean = D.synthetic_corpus(budget.test_clips, budget.seconds + 0.5, sr, seed=7, speakers=2)
        train_noise = D.synthetic_noises(D.TRAIN_NOISES, 6.0, sr, seed=0)
        test_noise = D.synthetic_noises(D.TEST_NOISES, 6.0, sr, seed=100)
    else:
        ensure_fillets()
        speakers = D.fillets_speech_files()
        order = sorted(speakers, key=lambda s: -len(speakers[s]))
        test_spk = {order[1]} | {s for i, s in enumerate(order[2:]) if i % 2 == 1}
        train_files = [f for s in order if s not in test_spk for f in speakers[s]]
        test_files = [f for s in sorted(test_spk) for f in speakers[s]]
        rng.shuffle(train_files)
        rng.shuffle(test_files)
        if budget.train_clips:
            train_files = train_files[: budget.train_clips]
        train_clean = D.read_clips(train_files, sr)
        long_test = []
        for f in test_files:  # test utterances at least the test length (read lazily: only as many as needed)
            c = D.read_clips([f], sr)
            if c and len(c[0].audio) >= budget.seconds * sr:
                long_test.append(c[0])
            if len(long_test) == budget.test_clips:
                break
        test_clean = long_test
        music = [f for f in D.fillets_noise_files() if "/music/" in f]
        sfx = [f for f in D.fillets_noise_files() if "/sound/share/" in f]
        train_noise = D.read_clips(music[0::2], sr) + D.synthetic_noises(["white", "brown"], 10.0, sr, seed=0)
        babble = sum(np.resize(c.audio, 10 * sr) for c in train_clean[:6])
        train_noise.append(D.Clip((babble / (np.std(babble) + 1e-9) * 0.1).astype(np.float32), sr, "babble:train"))
        test_noise = D.read_clips(music[1::2], sr) + D.read_clips(sfx, sr) + D.synthetic_noises(["pink"], 10.0, sr, seed=100)
    for i, c in enumerate(train_clean):
        _write(work / "train" / "clean", f"c{i:05d}", c.audio, sr)
    for i, c in enumerate(train_noise):
        _write(work / "train" / "noise", f"n{i:03d}", c.audio, sr)
    return test_clean, test_noise


def test_mixtures(test_clean, test_noise, seconds: float, sr: int = 16000) -> list[dict]:
    """Every test utterance (its first ``seconds``) mixed at every SNR with a seeded held-out noise stretch."""
    from polydiff_audio.data import mix_at_snr, noise_segment

    n = int(seconds * sr)
    out = []
    for i, c in enumerate(test_clean):
        x = c.audio[:n]
        for j, snr in enumerate(SNRS):
            rng = np.random.default_rng(1000 * i + j)
            noise = test_noise[int(rng.integers(0, len(test_noise)))]
            y = mix_at_snr(x, noise_segment(noise.audio, len(x), rng), snr)
            out.append({"clip": i, "snr": snr, "clean": x, "noisy": y, "noise": Path(noise.source).name})
    return out


# -- training and scoring ----------------------------------------------------------------------------------------
def train_model(work: Path, budget: Budget, process: str, threads: int):
    """Train ``work/run-PROCESS`` to ``budget.steps`` (resuming a shorter run as a new stage with its own warm-up and
    cosine schedule; a run already at the budget is loaded, not retrained: its seconds are NaN)."""
    from polydiff import training
    from polydiff.config import resolve_config
    from polydiff.recipes import RunDir
    from polydiff.training import latest_step
    from polydiff_audio.recipes import SGMSERecipe

    rec = SGMSERecipe()
    overrides = [f"data.path='{work / 'train'}'", "data.val_fraction=0.05", "data.val_items=4",
                 f"data.segment_frames={budget.frames}", f"model.process='{process}'", "model.size='tiny'",
                 f"model.ch={budget.ch}", f"model.ch_mult={list(budget.ch_mult)}", f"train.steps={budget.steps}",
                 f"train.batch_size={budget.batch}", "train.lr=5e-4", f"train.warmup_steps={min(50, budget.steps)}",
                 "train.ema_decay=0.99", f"train.checkpoint_every={min(budget.steps, 250)}", "train.log_every=50",
                 f"sample.steps={budget.pc_steps}"]
    cfg = resolve_config(rec, preset="tiny", overrides=overrides)
    run = RunDir(work / f"run-{process}")
    done = latest_step(run.checkpoints) if run.checkpoints.is_dir() else 0
    t0 = time.perf_counter()
    if done < budget.steps:
        training.train(rec, cfg, run, progress=False, resume=done > 0)
    seconds = time.perf_counter() - t0 if done < budget.steps else float("nan")
    return rec, cfg, training.load_model(rec, cfg, run), seconds


def train_udiffse(work: Path, budget: Budget, threads: int):
    """The clean-speech prior of ``audio/udiffse`` on ``work/train/clean`` (the same U-Net size and budget as SGMSE+)."""
    from polydiff import training
    from polydiff.config import resolve_config
    from polydiff.recipes import RunDir
    from polydiff_audio.udiffse import UDiffSERecipe

    rec = UDiffSERecipe()
    overrides = [f"data.path='{work / 'train'}'", "data.val_fraction=0.05", "data.val_items=4",
                 f"data.segment_frames={budget.frames}", "model.size='tiny'", f"model.ch={budget.ch}",
                 f"model.ch_mult={list(budget.ch_mult)}", f"train.steps={budget.steps}", f"train.batch_size={budget.batch}",
                 "train.lr=5e-4", f"train.warmup_steps={min(50, budget.steps)}", "train.ema_decay=0.99",
                 f"train.checkpoint_every={budget.steps}", "train.log_every=50", f"sample.steps={budget.udiffse_steps}",
                 f"model.em_iterations={budget.udiffse_em}", "model.posterior_samples=1"]
    cfg = resolve_config(rec, preset="tiny", overrides=overrides)
    run = RunDir(work / "run-udiffse")
    t0 = time.perf_counter()
    if not (run.checkpoints.is_dir() and any(run.checkpoints.iterdir())):
        training.train(rec, cfg, run, progress=False)
    seconds = time.perf_counter() - t0
    return rec, cfg, training.load_model(rec, cfg, run), seconds


DNSMOS_KEYS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")
USE_DNSMOS = False  # set by --dnsmos


def score_method(mixtures: list[dict], fn) -> tuple[list[dict], float]:
    """Scores per mixture of ``fn(noisy) -> (enhanced, nfe)`` and the real-time factor (DNSMOS with ``--dnsmos``;
    its time is not in the real-time factor)."""
    from polydiff_audio.metrics import score

    rows, compute, audio = [], 0.0, 0.0
    for m in mixtures:
        t0 = time.perf_counter()
        enh, nfe = fn(m["noisy"])
        compute += time.perf_counter() - t0
        audio += len(m["noisy"]) / 16000
        s = score(enh, m["clean"])
        row = {"snr": m["snr"], "pesq": s.pesq, "estoi": s.estoi, "si_sdr": s.si_sdr, "nfe": nfe}
        if USE_DNSMOS:
            from polydiff_audio.dnsmos import dnsmos

            d = dnsmos(enh)
            row.update({"dnsmos_sig": d.sig, "dnsmos_bak": d.bak, "dnsmos_ovrl": d.ovrl})
        rows.append(row)
    return rows, compute / max(audio, 1e-9)


def summarise(rows: list[dict]) -> dict:
    out = {}
    keys = ("pesq", "estoi", "si_sdr") + (DNSMOS_KEYS if rows and "dnsmos_ovrl" in rows[0] else ())
    for snr in (*SNRS, None):
        sel = [r for r in rows if snr is None or r["snr"] == snr]
        if not sel:
            continue
        key = "all" if snr is None else f"{snr:+.0f}"
        out[key] = {k: float(np.nanmean([r[k] for r in sel])) for k in keys}
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", choices=sorted(BUDGETS), default="small")
    ap.add_argument("--data", choices=["fillets", "synthetic"], default="fillets")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder for the prepared WAVs and runs (default: OUT/work)")
    ap.add_argument("--no-sb", action="store_true", help="skip the Schrödinger-bridge model")
    ap.add_argument("--dnsmos", action="store_true", help="also DNSMOS SIG/BAK/OVRL (speechmos; a few seconds per clip)")
    ap.add_argument("--train-steps", type=int, default=None,
                    help="override the budget's training steps (a shorter run in --work is resumed as a new stage)")
    ap.add_argument("--no-sweep", action="store_true", help="skip the NFE sweep")
    ap.add_argument("--full-table-steps", default="",
                    help="comma-separated ddim step counts also scored on every test mixture (e.g. 1: the one-step path)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated subset of {', '.join(METHODS)} (the noisy row is always scored)")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = sorted(set(methods) - set(METHODS))
    if bad:
        ap.error(f"--methods: unknown {', '.join(bad)}; expected a subset of {', '.join(METHODS)}")
    if args.no_sb and "sb-ve" in methods:
        methods.remove("sb-ve")
    global USE_DNSMOS
    USE_DNSMOS = bool(args.dnsmos)
    import torch

    torch.set_num_threads(args.threads)
    budget = BUDGETS[args.budget]
    if args.train_steps is not None:
        if args.train_steps < 1:
            ap.error("--train-steps: expected a positive number of steps")
        budget = dataclasses.replace(budget, steps=args.train_steps)
    if args.no_sweep:
        budget = dataclasses.replace(budget, sweep=())
    out = args.out or Path(__file__).resolve().parent / "results" / args.budget
    out.mkdir(parents=True, exist_ok=True)
    work = args.work or out / "work"
    t_start = time.perf_counter()
    test_clean, test_noise = prepare(work, budget, args.data)
    mixtures = test_mixtures(test_clean, test_noise, budget.seconds)
    sweep_mix = [m for m in mixtures if m["clip"] < budget.sweep_clips and m["snr"] in (0.0, 5.0)]
    print(f"data ready: {len(mixtures)} test mixtures in {time.perf_counter() - t_start:.0f} s", flush=True)

    from polydiff_audio.baselines import spectral_subtraction, wiener_dd

    command = "python benchmarks/audio/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results: dict = {"budget": args.budget, "data": args.data, "threads": args.threads, "budget_spec": budget.__dict__,
                     "methods": {}, "sweep": {}, "train_seconds": {}, "command": command}

    def save() -> None:  # after every stage, so an interrupted run keeps what it measured
        results["wall_seconds"] = time.perf_counter() - t_start
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        (out / "results.md").write_text(markdown(results))

    def record(name: str, rows: list[dict], rtf: float) -> None:
        results["methods"][name] = {"summary": summarise(rows), "rtf": rtf, "nfe": rows[0]["nfe"] if rows else 0}
        print(name, json.dumps(results["methods"][name]["summary"].get("all")), f"rtf {rtf:.3f}", flush=True)
        save()

    if USE_DNSMOS:  # the clean references: DNSMOS's ceiling on this speech (PESQ etc. of clean vs clean are trivial)
        by_id = {id(m["noisy"]): m["clean"] for m in mixtures}
        record("clean (reference)", *score_method(mixtures, lambda y: (by_id[id(y)], 0)))
    record("noisy", *score_method(mixtures, lambda y: (y, 0)))
    if "baselines" in methods:
        record("spectral subtraction", *score_method(mixtures, lambda y: (spectral_subtraction(y), 0)))
        record("Wiener (decision-directed)", *score_method(mixtures, lambda y: (wiener_dd(y), 0)))
    for proc in [m for m in ("ouve", "sb-ve") if m in methods]:
        rec, cfg, model, secs = train_model(work, budget, proc, args.threads)
        results["train_seconds"][proc] = secs
        print(f"trained {proc}: {budget.steps} steps in {secs:.0f} s", flush=True)
        main_sampler, main_steps = ("pc", budget.pc_steps) if proc == "ouve" else ("ddim", budget.pc_steps)
        label = f"SGMSE+ {proc} ({main_sampler} {main_steps})"
        record(label, *score_method(mixtures, lambda y, s=main_sampler, k=main_steps: rec.enhance(model, cfg, y, sampler=s, steps=k, seed=0)))
        for k in [int(v) for v in args.full_table_steps.split(",") if v.strip()]:
            record(f"SGMSE+ {proc} (ddim {k})",
                   *score_method(mixtures, lambda y, k=k: rec.enhance(model, cfg, y, sampler="ddim", steps=k, seed=0)))
        results["checkpoint_step"] = {**results.get("checkpoint_step", {}), proc: budget.steps}
        if not budget.sweep:
            continue
        for steps in budget.sweep:
            rows, rtf = score_method(sweep_mix, lambda y, k=steps: rec.enhance(model, cfg, y, sampler="ddim", steps=k, seed=0))
            results["sweep"][f"{proc} ddim {steps}"] = {"nfe": rows[0]["nfe"], "rtf": rtf, "summary": summarise(rows)}
        rows, rtf = score_method(sweep_mix, lambda y: rec.enhance(model, cfg, y, sampler="pc", steps=budget.pc_steps, seed=0))
        results["sweep"][f"{proc} pc {budget.pc_steps}"] = {"nfe": rows[0]["nfe"], "rtf": rtf, "summary": summarise(rows)}
        save()
    if "udiffse" in methods:
        rec, cfg, model, secs = train_udiffse(work, budget, args.threads)
        results["train_seconds"]["udiffse prior"] = secs
        print(f"trained the udiffse prior: {budget.steps} steps in {secs:.0f} s", flush=True)
        sel = [m for m in mixtures if m["snr"] in budget.udiffse_snrs]
        label = f"UDiffSE (EM {budget.udiffse_em} x ddpm {budget.udiffse_steps})"
        record(label, *score_method(sel, lambda y: rec.enhance(model, cfg, y, sampler="ddpm", steps=budget.udiffse_steps, seed=0)))
    if "baselines" in methods and sweep_mix:
        noisy_sweep, _ = score_method(sweep_mix, lambda y: (y, 0))
        wiener_sweep, _ = score_method(sweep_mix, lambda y: (wiener_dd(y), 0))
        results["sweep"]["noisy"] = {"nfe": 0, "rtf": 0.0, "summary": summarise(noisy_sweep)}
        results["sweep"]["Wiener (decision-directed)"] = {"nfe": 0, "rtf": 0.0, "summary": summarise(wiener_sweep)}
    save()
    print(markdown(results))
    return results


def markdown(r: dict) -> str:
    def fmt(v: float) -> str:
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"

    lines = [f"Command: `{r['command']}` ({r['threads']} thread(s), data: {r['data']}; wall {r.get('wall_seconds', 0.0) / 60:.1f} min; "
             f"training {', '.join(f'{k} {v / 60:.1f} min' for k, v in r['train_seconds'].items())})", "",
             "| method | NFE | RTF | " + " | ".join(f"PESQ {s:+.0f} dB | ESTOI {s:+.0f} | SI-SDR {s:+.0f}" for s in SNRS) +
             " | PESQ all | ESTOI all | SI-SDR all |",
             "|---|---|---|" + "---|" * (3 * len(SNRS) + 3)]
    for name, m in r["methods"].items():
        if name == "clean (reference)":  # only its DNSMOS is informative (below)
            continue
        cells = []
        for key in [f"{s:+.0f}" for s in SNRS] + ["all"]:
            s = m["summary"].get(key, {})
            cells += [fmt(s.get("pesq")), fmt(s.get("estoi")), fmt(s.get("si_sdr"))]
        lines.append(f"| {name} | {m['nfe']} | {m['rtf']:.3f} | " + " | ".join(cells) + " |")
    dn = [(name, m) for name, m in r["methods"].items() if "dnsmos_ovrl" in m["summary"].get("all", {})]
    if dn:
        lines += ["", "DNSMOS (P.835, speechmos; clips at -25 dBFS; mean over the mixtures each method was scored on):", "",
                  "| method | SIG | BAK | OVRL |", "|---|---|---|---|"]
        for name, m in dn:
            a = m["summary"]["all"]
            lines.append(f"| {name} | {fmt(a['dnsmos_sig'])} | {fmt(a['dnsmos_bak'])} | {fmt(a['dnsmos_ovrl'])} |")
    if any(name.startswith("UDiffSE") for name in r["methods"]):
        lines += ["", "UDiffSE is scored at 0 and 5 dB only: its 'all' columns are the mean over those two SNRs."]
    lines += ["", "NFE sweep (mixtures at 0 and 5 dB; NFE per chunk; RTF at the given threads):", "",
              "| method | NFE | RTF | PESQ | ESTOI | SI-SDR |", "|---|---|---|---|---|---|"]
    for name, m in r["sweep"].items():
        s = m["summary"].get("all", {})
        lines.append(f"| {name} | {m['nfe']} | {m['rtf']:.3f} | {fmt(s['pesq'])} | {fmt(s['estoi'])} | {fmt(s['si_sdr'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
