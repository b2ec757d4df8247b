"""Evaluation of ``audio/sgmse``: a folder of enhanced WAVs against references, or the model on held-out mixtures
next to the noisy input and the classic baselines (PESQ-wb, ESTOI, SI-SDR; NFE and real-time factor)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from polydiff.errors import DataError

from .baselines import spectral_subtraction, wiener_dd
from .data import read_audio
from .metrics import mean_scores, score
from .writers import read_wavs


def dnsmos_means(clips: list[np.ndarray], sample_rate: int = 16000) -> dict[str, float]:
    """Mean DNSMOS ``{"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"}`` over clips (:mod:`.dnsmos`)."""
    from .dnsmos import dnsmos

    rows = [dnsmos(c, sample_rate) for c in clips]
    return {f"dnsmos_{k}": float(np.mean([getattr(r, k) for r in rows])) for k in ("sig", "bak", "ovrl", "p808")}


def evaluate_folder(samples_dir: Path, reference_dir: Path, sample_rate: int = 16000, *, dnsmos: bool = False) -> dict[str, float]:
    """Mean metrics of ``samples_dir/*.wav`` against the same-named files in ``reference_dir`` (resampled to 16 kHz);
    with ``dnsmos`` also the mean DNSMOS of the matched samples (non-intrusive)."""
    if not reference_dir.is_dir():
        raise DataError(f"{reference_dir}: no reference folder (set eval.reference=DIR with the clean WAVs, named like the samples)")
    est = read_wavs(samples_dir)
    scores = []
    matched: list[np.ndarray] = []
    missing = []
    for stem, (audio, sr) in est.items():
        refs = [p for p in reference_dir.iterdir() if p.stem == stem and p.suffix.lower() in (".wav", ".flac", ".ogg")]
        if not refs:
            missing.append(stem)
            continue
        ref = read_audio(refs[0], sample_rate)
        a = read_audio(samples_dir / f"{stem}.wav", sample_rate) if sr != sample_rate else audio
        n = min(len(a), len(ref))
        scores.append(score(a[:n], ref[:n], sample_rate))
        matched.append(a[:n])
    if not scores:
        raise DataError(f"{samples_dir}: none of its {len(est)} WAV files has a same-named reference in {reference_dir}")
    out = {f"{k}": v for k, v in mean_scores(scores).items()}
    out["clips"] = float(len(scores))
    out["unmatched"] = float(len(missing))
    if dnsmos:
        out.update(dnsmos_means(matched, sample_rate))
    return out


def evaluate_model(recipe: Any, model: Any, cfg: Any) -> dict[str, float]:
    """Held-out mixtures (``eval.num_clips`` of ``eval.seconds``, seed ``eval.seed``): metrics of the noisy input,
    spectral subtraction and the Wiener filter (``eval.baselines``) and the model with the config's sampler; with
    ``eval.dnsmos`` also DNSMOS SIG/BAK/OVRL/P.808 of each row and of the clean references (``clean/dnsmos_*``)."""
    sr = cfg.data.sample_rate
    clips = recipe.held_out(cfg, cfg.eval.num_clips, cfg.eval.seconds, cfg.eval.seed)
    rows: dict[str, list] = {"noisy": [], "model": []}
    if cfg.eval.baselines:
        rows["specsub"], rows["wiener"] = [], []
    nfe, secs, audio_s = 0, 0.0, 0.0
    audio: dict[str, list[np.ndarray]] = {k: [] for k in [*rows, "clean"]}
    model.eval()
    for i, (_, x, y, _) in enumerate(clips):
        rows["noisy"].append(score(y, x, sr))
        audio["noisy"].append(y)
        audio["clean"].append(x)
        if cfg.eval.baselines:
            for name, fn in (("specsub", spectral_subtraction), ("wiener", wiener_dd)):
                est = fn(y, sr)
                rows[name].append(score(est, x, sr))
                audio[name].append(est)
        t0 = time.perf_counter()
        enh, n = recipe.enhance(model, cfg, y, sampler=cfg.sample.sampler, steps=cfg.sample.steps, seed=cfg.eval.seed + i)
        secs += time.perf_counter() - t0
        audio_s += len(y) / sr
        nfe = n
        rows["model"].append(score(enh, x, sr))
        audio["model"].append(enh)
    out: dict[str, float] = {}
    for name, sc in rows.items():
        for k, v in mean_scores(sc).items():
            out[f"{name}/{k}"] = v
    if getattr(cfg.eval, "dnsmos", False):
        for name, clips_ in audio.items():
            out.update({f"{name}/{k}": v for k, v in dnsmos_means(clips_, sr).items()})
    out["model/nfe"] = float(nfe)  # per chunk of sample.chunk_frames frames
    out["model/rtf"] = secs / max(audio_s, 1e-9)
    out["clips"] = float(len(clips))
    return out


__all__ = ["evaluate_folder", "evaluate_model"]
