"""Probe of audio/udiffse on one 0 dB test mixture of the benchmark (after ``run.py --methods udiffse`` has trained the
prior in ``--work``): the noise PSD and the residual powers after EM for a few (EM iterations, steps, lambda) settings,
next to the true noise and speech powers in the compressed STFT domain.

    OMP_NUM_THREADS=1 python benchmarks/audio/udiffse_probe.py --work /tmp/audio-bench
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/audio-bench"))
    ap.add_argument("--budget", default="small")
    a = ap.parse_args(argv)
    import torch

    spec = importlib.util.spec_from_file_location("bench_run", Path(__file__).with_name("run.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    torch.set_num_threads(1)
    budget = mod.BUDGETS[a.budget]
    test_clean, test_noise = mod.prepare(a.work, budget, "fillets")
    m = [x for x in mod.test_mixtures(test_clean, test_noise, budget.seconds) if x["snr"] == 0.0][0]
    rec, cfg, model, _ = mod.train_udiffse(a.work, budget, 1)

    from polydiff_audio.backbones import pad_frames
    from polydiff_audio.recipes import normalise, spec_config
    from polydiff_audio.transforms import wav_to_spec
    from polydiff_audio.udiffse import udiffse_em

    spec_cfg = spec_config(cfg)
    y_wav, x_wav, _ = normalise(m["noisy"], m["clean"])
    Y = pad_frames(wav_to_spec(torch.from_numpy(y_wav)[None], spec_cfg), 64)[0]
    X = pad_frames(wav_to_spec(torch.from_numpy(x_wav)[None], spec_cfg), 64)[0]

    def power(d: torch.Tensor) -> float:
        return float(d.pow(2).sum(1).mean())

    print(f"per-bin power: mixture {power(Y):.4f}, true noise |Y - X|^2 {power(Y - X):.4f}, clean {power(X):.4f}")
    for em, steps, lam in [(5, 10, 1.5), (5, 10, 0.3), (0, 30, 1.5)]:
        t0 = time.perf_counter()
        r = udiffse_em(model, Y, em_iterations=em, steps=steps, rank=4, scale=lam, nmf_iters=1, seed=0)
        print(f"EM {em} x {steps} steps, lambda {lam}: mean V {float(r.noise_psd.mean()):.4f}, |S - Y|^2 {power(r.x - Y):.4f}, "
              f"|S - X|^2 {power(r.x - X):.4f} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
