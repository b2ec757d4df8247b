"""Peak memory of chunked enhancement (audio/sgmse) or chunked vocoding (audio/diffwave) against input length
(acceptance: independent of the length).

Each length runs in a fresh process: build the ``tiny`` model (weights do not matter for memory), read its peak RSS
after a 1 s warm-up run, process an L-second generated signal, and report the growth of the peak.

    python benchmarks/audio/memory.py --seconds 5 20 60 --chunk-frames 256
    python benchmarks/audio/memory.py --recipe diffwave --seconds 5 20 60 --chunk-frames 64
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(seconds: float, chunk: int, sampler: str, steps: int) -> dict:
    import torch

    from polydiff.config import resolve_config
    from polydiff.recipes import RunDir
    from polydiff_audio.data import mix_at_snr, synthetic_noise, synthetic_speech
    from polydiff_audio.recipes import SGMSERecipe

    torch.set_num_threads(1)
    rec = SGMSERecipe()
    cfg = resolve_config(rec, preset="tiny", overrides=[f"sample.chunk_frames={chunk}", f"sample.overlap_frames={chunk // 4}",
                                                        "sample.batch_size=1"])
    model = rec.build_model(cfg, RunDir("/tmp/unused-run")).eval()
    warm = mix_at_snr(synthetic_speech(1.0, seed=1), synthetic_noise("pink", 1.0), 5.0)
    rec.enhance(model, cfg, warm, sampler=sampler, steps=steps, seed=0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    y = mix_at_snr(synthetic_speech(seconds, seed=2), synthetic_noise("pink", seconds), 5.0)
    t0 = time.perf_counter()
    out, nfe = rec.enhance(model, cfg, y, sampler=sampler, steps=steps, seed=0)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert len(out) == len(y)
    return {"seconds": seconds, "peak_rss_mb": peak / 1024, "growth_mb": (peak - base) / 1024, "wall_s": dt, "nfe": nfe}


def child_vocoder(seconds: float, chunk: int, sampler: str, steps: int) -> dict:
    import torch

    from polydiff.config import resolve_config
    from polydiff_audio.data import synthetic_speech
    from polydiff_audio.vocoder import DiffWaveRecipe

    torch.set_num_threads(1)
    rec = DiffWaveRecipe()
    cfg = resolve_config(rec, preset="tiny", overrides=[f"sample.chunk_frames={chunk}", "sample.overlap_frames=4",
                                                        "sample.context_frames=4"])
    model = rec.build_model(cfg, None).eval()
    rec.vocode(model, cfg, synthetic_speech(1.0, seed=1), sampler=sampler, steps=steps, seed=0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    x = synthetic_speech(seconds, seed=2)
    t0 = time.perf_counter()
    out, nfe = rec.vocode(model, cfg, x, sampler=sampler, steps=steps, seed=0)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert len(out) == len(x)
    return {"recipe": "diffwave", "seconds": seconds, "peak_rss_mb": peak / 1024, "growth_mb": (peak - base) / 1024,
            "wall_s": dt, "nfe": nfe, "waveforms_mb": 2 * 4 * len(x) / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, nargs="+", default=[5.0, 20.0, 60.0])
    ap.add_argument("--chunk-frames", type=int, default=256)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--recipe", choices=["sgmse", "diffwave"], default="sgmse")
    ap.add_argument("--child", type=float, default=None)
    a = ap.parse_args()
    if a.child is not None:
        fn = child if a.recipe == "sgmse" else child_vocoder
        print(json.dumps(fn(a.child, a.chunk_frames, a.sampler, a.steps)))
        return
    for s in a.seconds:
        r = subprocess.run([sys.executable, __file__, "--child", str(s), "--chunk-frames", str(a.chunk_frames), "--sampler", a.sampler,
                            "--steps", str(a.steps), "--recipe", a.recipe], check=True, capture_output=True, text=True)
        print(r.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
