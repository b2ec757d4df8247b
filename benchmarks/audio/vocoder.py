"""Vocoder benchmark: audio/diffwave (N ddpm steps, 6 ddim steps and DiffWave's aligned fast 6-step schedule) against
Griffin-Lim on held-out speakers.

Trains ``audio/diffwave`` for ``--steps`` steps on the training speakers of the Fish Fillets NG speech (the same
speaker split as ``run.py``; ``--data synthetic`` uses generated speech-like clips) and resynthesises the first
``--seconds`` of ``--clips`` test-speaker utterances from their 80-band log-mel. Rows: LSD (dB), MCD (dB, orders
1-24), PESQ-wb, ESTOI, NFE and seconds per clip (1 thread). Griffin-Lim: 64 iterations (momentum 0.99) from the exact
linear magnitude, and from the mel through ``InverseMelScale(driver="gelsd")``.

    python benchmarks/audio/vocoder.py --steps 600 --threads 1 --out benchmarks/audio/results/vocoder
    python benchmarks/audio/vocoder.py --run /tmp/vocoder-bench-XXXX/run ...   # score an already trained run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def clips(data: str, n_train: int, n_test: int, seconds: float, sr: int = 16000):
    from polydiff_audio import data as D

    if data == "synthetic":
        return D.synthetic_corpus(n_train, 3.0, sr, seed=0), D.synthetic_corpus(n_test, seconds + 0.5, sr, seed=7, speakers=2)
    speakers = D.fillets_speech_files()
    order = sorted(speakers, key=lambda s: -len(speakers[s]))
    test_spk = {order[1]} | {s for i, s in enumerate(order[2:]) if i % 2 == 1}  # as run.py
    rng = np.random.default_rng(0)
    train_files = [f for s in order if s not in test_spk for f in speakers[s]]
    test_files = [f for s in sorted(test_spk) for f in speakers[s]]
    rng.shuffle(train_files)
    rng.shuffle(test_files)
    test = []
    for f in test_files:
        c = D.read_clips([f], sr)
        if c and len(c[0].audio) >= seconds * sr:
            test.append(c[0])
        if len(test) == n_test:
            break
    return D.read_clips(train_files[:n_train], sr), test


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--sample-steps", type=int, default=50)
    ap.add_argument("--data", choices=["fillets", "synthetic"], default="fillets")
    ap.add_argument("--train-clips", type=int, default=300)
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--run", type=Path, default=None, help="a trained audio/diffwave run to score (skips training)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    import soundfile as sf

    from polydiff.config import resolve_config
    from polydiff.recipes import RunDir
    from polydiff.training import load_model, train
    from polydiff_audio.baselines import griffin_lim, griffin_lim_from_mel
    from polydiff_audio.evaluation_vocoder import vocoder_scores
    from polydiff_audio.transforms import linear_magnitude, mel_spectrogram
    from polydiff_audio.vocoder import DiffWaveRecipe, mel_config

    t0 = time.perf_counter()
    train_clips, test_clips = clips(a.data, 0 if a.run else a.train_clips, a.clips, a.seconds)
    work = Path(tempfile.mkdtemp(prefix="vocoder-bench-"))
    for i, c in enumerate(train_clips):
        (work / "clean").mkdir(exist_ok=True)
        sf.write(work / "clean" / f"c{i:04d}.wav", c.audio, 16000)
    prep = time.perf_counter() - t0
    rec = DiffWaveRecipe()
    cfg = resolve_config(rec, preset="tiny", overrides=[f"model.size='{a.size}'", f"train.steps={a.steps}", "train.batch_size=8",
                                                        "data.segment_samples=4096", f"train.checkpoint_every={a.steps}",
                                                        "train.log_every=100", "train.lr=1e-3", "train.ema_decay=0.99",
                                                        f"data.path='{work / 'clean'}'", "data.val_fraction=0.01"])
    run = RunDir(a.run or work / "run")
    t1 = time.perf_counter()
    if a.run is None:
        train(rec, cfg, run, progress=False)
    else:
        from polydiff.config import load_config

        cfg = load_config(rec, run.config_path)
    train_s = time.perf_counter() - t1
    model = load_model(rec, cfg, run)
    model.eval()
    mel = mel_config(cfg)
    n = int(a.seconds * 16000)
    methods = {
        f"DiffWave ddpm {a.sample_steps}": lambda x, i: rec.vocode(model, cfg, x, sampler="ddpm", steps=a.sample_steps, seed=i,
                                                                    schedule="training"),
        "DiffWave ddim 6": lambda x, i: rec.vocode(model, cfg, x, sampler="ddim", steps=6, seed=i, schedule="training"),
        "DiffWave fast 6 (aligned)": lambda x, i: rec.vocode(model, cfg, x, sampler="ddpm", steps=0, seed=i, schedule="fast"),
        "Griffin-Lim (linear, 64 it)": lambda x, i: (griffin_lim(linear_magnitude(torch.from_numpy(x)[None], mel)[0], mel, len(x), seed=i), 0),
        "Griffin-Lim (mel, 64 it)": lambda x, i: (griffin_lim_from_mel(mel_spectrogram(torch.from_numpy(x)[None], mel)[0], mel, len(x), seed=i), 0),
    }
    rows = {}
    for name, fn in methods.items():
        per = []
        for i, c in enumerate(test_clips):
            x = np.ascontiguousarray(c.audio[:n], dtype=np.float32)
            s0 = time.perf_counter()
            est, nfe = fn(x, i)
            dt = time.perf_counter() - s0
            per.append({**vocoder_scores(est, x), "nfe": nfe, "seconds": dt})
        rows[name] = {k: float(np.nanmean([p[k] for p in per])) for k in per[0]}
    result = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}, "train_clips": len(train_clips),
              "test_clips": len(test_clips), "params": sum(p.numel() for p in model.parameters()),
              "prep_s": prep, "train_s": train_s, "rows": rows}
    lines = ["| method | NFE | s / clip | LSD (dB) | MCD (dB) | PESQ-wb | ESTOI |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['nfe']:.0f} | {r['seconds']:.2f} | {r['lsd']:.2f} | {r['mcd']:.2f} | {r['pesq']:.2f} | {r['estoi']:.2f} |")
    md = "\n".join(lines)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    print(md)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "results.json").write_text(json.dumps(result, indent=1))
        (a.out / "results.md").write_text(md + "\n")
    return result


if __name__ == "__main__":
    main()
