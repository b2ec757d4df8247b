"""Vocoder evaluation: LSD and MCD (:mod:`.metrics`), PESQ-wb and ESTOI of resyntheses against the originals, with NFE
and wall-clock seconds per clip, for the model (N steps and the fast 6-step DDIM) and the Griffin-Lim baselines."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.errors import DataError

from .data import read_audio
from .metrics import estoi, log_spectral_distance, mel_cepstral_distortion, pesq_wb
from .writers import read_wavs


def vocoder_scores(estimate: np.ndarray, reference: np.ndarray, sample_rate: int = 16000) -> dict[str, float]:
    """``{"lsd", "mcd", "pesq", "estoi"}`` of one resynthesis (equal lengths)."""
    return {"lsd": log_spectral_distance(estimate, reference), "mcd": mel_cepstral_distortion(estimate, reference, sample_rate),
            "pesq": pesq_wb(estimate, reference, sample_rate), "estoi": estoi(estimate, reference, sample_rate)}


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    out = {}
    for k in rows[0]:
        v = [r[k] for r in rows if not np.isnan(r[k])]
        out[k] = float(np.mean(v)) if v else float("nan")
    return out


def evaluate_vocoder_folder(samples_dir: Path, reference_dir: Path, sample_rate: int = 16000) -> dict[str, float]:
    """Mean scores of ``samples_dir/*.wav`` against same-named files in ``reference_dir``."""
    if not reference_dir.is_dir():
        raise DataError(f"{reference_dir}: no reference folder (set eval.reference=DIR with the original WAVs, named like the samples)")
    rows, missing = [], 0
    for stem in read_wavs(samples_dir):
        refs = [p for p in reference_dir.iterdir() if p.stem == stem and p.suffix.lower() in (".wav", ".flac", ".ogg")]
        if not refs:
            missing += 1
            continue
        ref, est = read_audio(refs[0], sample_rate), read_audio(samples_dir / f"{stem}.wav", sample_rate)
        n = min(len(ref), len(est))
        rows.append(vocoder_scores(est[:n], ref[:n], sample_rate))
    if not rows:
        raise DataError(f"{samples_dir}: none of its WAV files has a same-named reference in {reference_dir}")
    return {**_mean(rows), "clips": float(len(rows)), "unmatched": float(missing)}


def evaluate_vocoder(recipe: Any, model: Any, cfg: Any, *, seed: int = 0) -> dict[str, float]:
    """Held-out clips: ``{method}_{lsd|mcd|pesq|estoi|nfe|seconds}`` for ``diffwave_<N>`` (``sample.sampler``),
    ``diffwave_ddim<fast_steps>``, ``diffwave_fast<S>`` (DiffWave's aligned fast schedule) and, with ``eval.baselines``,
    ``gl_linear`` and ``gl_mel``."""
    from .baselines import griffin_lim, griffin_lim_from_mel
    from .transforms import linear_magnitude, mel_spectrogram
    from .vocoder import mel_config

    model.eval()
    sr, mel = cfg.data.sample_rate, mel_config(cfg)
    clips = recipe.held_out(cfg, cfg.eval.num_clips, cfg.eval.seconds, seed)
    methods: dict[str, Any] = {
        f"diffwave_{cfg.sample.sampler}{cfg.sample.steps}": lambda a, i: recipe.vocode(model, cfg, a, sampler=cfg.sample.sampler, steps=cfg.sample.steps, seed=i,
                                                                                       schedule="training"),
        f"diffwave_ddim{cfg.eval.fast_steps}": lambda a, i: recipe.vocode(model, cfg, a, sampler="ddim", steps=cfg.eval.fast_steps, seed=i,
                                                                          schedule="training"),
        f"diffwave_fast{len(cfg.sample.fast_betas)}": lambda a, i: recipe.vocode(model, cfg, a, sampler="ddpm", steps=0, seed=i, schedule="fast"),
    }
    if cfg.eval.baselines:
        def gl_lin(a: np.ndarray, i: int) -> tuple[np.ndarray, int]:
            mag = linear_magnitude(torch.from_numpy(a)[None], mel)[0]
            return griffin_lim(mag, mel, len(a), n_iter=cfg.eval.gl_iters, seed=i), 0

        def gl_mel(a: np.ndarray, i: int) -> tuple[np.ndarray, int]:
            m = mel_spectrogram(torch.from_numpy(a)[None], mel)[0]
            return griffin_lim_from_mel(m, mel, len(a), n_iter=cfg.eval.gl_iters, seed=i), 0

        methods["gl_linear"], methods["gl_mel"] = gl_lin, gl_mel
    out: dict[str, float] = {"clips": float(len(clips)), "seconds_audio": float(cfg.eval.seconds)}
    for name, fn in methods.items():
        rows = []
        for i, (_, a) in enumerate(clips):
            t0 = time.perf_counter()
            est, nfe = fn(a, i)
            dt = time.perf_counter() - t0
            rows.append({**vocoder_scores(est, a, sr), "nfe": float(nfe), "seconds": dt})
        out.update({f"{name}_{k}": v for k, v in _mean(rows).items()})
    return out


__all__ = ["evaluate_vocoder", "evaluate_vocoder_folder", "vocoder_scores"]
