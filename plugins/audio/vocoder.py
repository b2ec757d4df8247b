"""Recipe ``audio/diffwave``: a DiffWave-style diffusion vocoder (waveform from a log-mel spectrogram).

The core's ``vp-linear`` Gaussian process on waveform crops ``(1, N)``; the network (:mod:`.diffwave`) predicts the
noise from ``x_t``, ``t`` and the normalised log-mel of the clean crop (:func:`~.transforms.log_mel`). Sampling starts
from N(0, I) and runs ``ddpm`` (ancestral, 50 steps by default) or, as a fast path, the core's deterministic
``ddim`` at 6 steps (``--sampler ddim --steps 6``). ``polydiff sample RUN --input FILE_OR_DIR --out DIR`` resynthesises each input from its mel at the
input's own rate and length.

Options from the DiffWave paper: ``sample.schedule = "fast"`` (``polydiff sample RUN --schedule fast``) samples with
DiffWave's 6-step schedule [1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5] aligned to 50 training steps (Algorithm 2;
:mod:`.fast_schedule`); ``model.loss = "l1"`` trains with DiffWave's L1 loss on the noise ``|eps - eps_hat|``.
Long inputs are vocoded in overlapping chunks of mel frames cross-faded in the waveform (``sample.chunk_frames``;
:mod:`.vocoder_chunking`).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

import polydiff
from polydiff.errors import DataError, UserInputError
from polydiff.recipes import DataBundle, Recipe, RunDir, SampleOption
from polydiff.seeding import mix_seed

from .config import VOCODER_PRESETS, VocoderConfig
from .data import Clip, crop_or_pad, input_files, read_audio, read_folder, resample, synthetic_corpus
from .diffwave import SIZES, DiffWaveNet
from .fast_schedule import FastSchedule, fast_schedule, sample_fast
from .transforms import MelConfig, log_mel
from .writers import EnhancedSamples, WavSampleFiles


def mel_config(cfg: VocoderConfig) -> MelConfig:
    d = cfg.data
    return MelConfig(sample_rate=d.sample_rate, n_fft=d.n_fft, hop=d.hop, n_mels=d.n_mels)


class WaveDataset(Dataset):
    """Item ``i``: a seeded crop (``mix_seed(seed, i)``) of clip ``i mod n``, peak-normalised to 0.95 when louder, as
    ``{"x": (1, N), "mel": (n_mels, N // hop + 1)}``."""

    def __init__(self, clips: list[Clip], length: int, mel: MelConfig, items: int, seed: int) -> None:
        self.clips, self.length, self.mel, self.items, self.seed = clips, length, mel, items, seed
        self.padded = sum(len(c.audio) < length for c in clips)

    def __len__(self) -> int:
        return self.items

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng(mix_seed(self.seed, i))
        a, _ = crop_or_pad(self.clips[i % len(self.clips)].audio, self.length, rng)
        x = torch.from_numpy(np.asarray(a, dtype=np.float32))[None]
        return {"x": x, "mel": log_mel(x, self.mel)[0]}


class DiffWaveRecipe(WavSampleFiles, Recipe):
    """DiffWave-style diffusion vocoder conditioned on log-mel spectrograms; Griffin-Lim baselines."""

    name: ClassVar[str] = "audio/diffwave"
    description: ClassVar[str] = ("DiffWave vocoder: waveform diffusion (vp-linear) conditioned on 80-band log-mels; ddpm, 6-step ddim or "
                                  "DiffWave's fast 6-step schedule")
    demo: ClassVar[bool] = False
    config_class: ClassVar[type] = VocoderConfig
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = VOCODER_PRESETS
    sample_options: ClassVar[tuple[SampleOption, ...]] = (
        SampleOption("input", str, None, "a WAV/FLAC/OGG file or a folder of them to resynthesise from their mel (one WAV "
                     "per input, same rate and length); without it: held-out clips"),
        SampleOption("schedule", str, None, "'fast': DiffWave's 6-step schedule (sample.fast_betas, aligned to the "
                     "training noise levels; replaces --sampler and --steps); 'training' (default sample.schedule): --sampler"),
    )

    # -- data --------------------------------------------------------------------------------------
    def corpus(self, cfg: VocoderConfig) -> tuple[list[Clip], list[Clip]]:
        d = cfg.data
        if d.source:
            from .sources import load_sources, split_by_speaker

            if d.path:
                raise UserInputError(f"data.path and data.source are alternatives; got both ({d.path!r}, {d.source!r})")
            return split_by_speaker(load_sources(d.source, d.sample_rate), d.val_fraction)
        if d.path:
            clips = read_folder(d.path, d.sample_rate, strict=d.strict, what="recordings")
            if len(clips) < 2:
                return clips, clips
            n_val = max(1, int(math.ceil(d.val_fraction * len(clips))))
            return clips[:-n_val], clips[-n_val:]
        return (synthetic_corpus(d.synthetic_clips, d.synthetic_seconds, d.sample_rate, seed=0),
                synthetic_corpus(max(2, d.val_items), d.synthetic_seconds, d.sample_rate, seed=1, speakers=2))

    def datasets(self, cfg: VocoderConfig, run: RunDir) -> DataBundle:
        train, val = self.corpus(cfg)
        d, mel = cfg.data, mel_config(cfg)
        tr = WaveDataset(train, d.segment_samples, mel, d.train_items, cfg.train.seed)
        if tr.padded:
            warnings.warn(f"{d.path or 'generated data'}: {tr.padded} of {len(train)} training clips are shorter than the "
                          f"{d.segment_samples}-sample segment and are zero-padded", UserWarning, stacklevel=2)
        return DataBundle(train=tr, val=WaveDataset(val, d.segment_samples, mel, d.val_items, 10**6))

    # -- model -------------------------------------------------------------------------------------
    def process(self, cfg: VocoderConfig):
        return polydiff.processes.get("vp-linear", beta_min=cfg.model.beta_min, beta_max=cfg.model.beta_max)

    def build_model(self, cfg: VocoderConfig, run: RunDir | None = None) -> nn.Module:
        m = cfg.model
        size = dict(SIZES[m.size])
        if m.channels:
            size["channels"] = m.channels
        if m.layers:
            size["layers"] = m.layers
        net = DiffWaveNet(**size, n_mels=cfg.data.n_mels, hop=cfg.data.hop)
        return polydiff.Denoiser(net, self.process(cfg), prediction=m.prediction)

    def loss(self, model: nn.Module, batch: Any, cfg: VocoderConfig, generator: Any = None) -> torch.Tensor:
        """``model.loss = "l2"``: the core's loss. ``"l1"``: DiffWave's ``mean |eps - eps_hat|`` at ``t ~ U`` (the core's
        time sampling), ``x_t`` from the process's own noising.

        Raises:
            UserInputError: ``l1`` with a prediction other than ``eps``.
        """
        if cfg.model.loss == "l2":
            return super().loss(model, batch, cfg, generator)
        if cfg.model.prediction != "eps":
            raise UserInputError(f"model.loss='l1' is DiffWave's L1 loss on the noise and needs model.prediction='eps', "
                                 f"got {cfg.model.prediction!r}")
        x = batch["x"]
        t = polydiff.losses.sample_time(model.process, x.shape[0], generator=generator, device=x.device, dtype=torch.float32)
        noised = model.process.noise(x, t, generator=generator)
        eps_hat = model(noised.x_t, t, {"mel": batch["mel"]})
        return (eps_hat - noised.noise).abs().mean()

    def schedule(self, cfg: VocoderConfig) -> FastSchedule:
        """The fast schedule aligned to this config's process.

        Raises:
            UserInputError: ``sample.fast_betas`` outside (0, 1) or reaching below the last training noise level.
        """
        betas = tuple(cfg.sample.fast_betas)
        if not betas or any(not 0.0 < b < 1.0 for b in betas):
            raise UserInputError(f"sample.fast_betas: expected noise levels in (0, 1), got {list(betas)}")
        try:
            return fast_schedule(self.process(cfg), betas, int(cfg.sample.fast_align_steps))
        except ValueError as exc:
            raise UserInputError(f"sample.fast_betas: {exc} (model.beta_min/beta_max)") from None

    # -- resynthesis -------------------------------------------------------------------------------
    def vocode(self, model: nn.Module, cfg: VocoderConfig, audio: np.ndarray, *, sampler: str, steps: int, seed: int,
               schedule: str | None = None) -> tuple[np.ndarray, int]:
        """Resynthesise a mono clip ``(N,)`` at the model's rate from its log-mel; returns ``(audio (N,), NFE)``.

        ``schedule``: ``"fast"`` (DiffWave's aligned fast schedule), ``"training"`` (``sampler``, ``steps``) or ``None``
        (``sample.schedule``).

        Raises:
            UserInputError: an unknown ``schedule``.
        """
        p = next(model.parameters())
        x = torch.from_numpy(np.asarray(audio, dtype=np.float32))[None]
        mel = log_mel(x, mel_config(cfg))
        gen = torch.Generator(device=p.device).manual_seed(int(seed))
        schedule = cfg.sample.schedule if schedule is None else schedule
        if schedule not in ("training", "fast"):
            raise UserInputError(f"sample option --schedule (or sample.schedule): expected 'training' or 'fast', got {schedule!r}")
        if mel.shape[-1] > cfg.sample.chunk_frames:
            out, nfe, _ = self.vocode_chunks(model, cfg, audio, sampler=sampler, steps=steps, seed=seed, schedule=schedule)
            return out.clip(-1.0, 1.0), nfe
        if schedule == "fast":
            out, nfe = sample_fast(model, (1, 1, x.shape[-1]), self.schedule(cfg), cond={"mel": mel.to(device=p.device, dtype=p.dtype)},
                                   generator=[gen], dtype=p.dtype, device=p.device)
            return out.float().cpu()[0, 0].numpy().clip(-1.0, 1.0), nfe
        with torch.no_grad():
            r = polydiff.sample(model, shape=(1, 1, x.shape[-1]), sampler=sampler, steps=steps, generator=[gen],
                                cond={"mel": mel.to(device=p.device, dtype=p.dtype)}, dtype=p.dtype, device=p.device)
        return r.x.float().cpu()[0, 0].numpy().clip(-1.0, 1.0), int(r.nfe)

    def vocode_chunks(self, model: nn.Module, cfg: VocoderConfig, audio: np.ndarray, *, sampler: str, steps: int, seed: int,
                      schedule: str = "training", chunk_frames: int | None = None) -> tuple[np.ndarray, int, int]:
        """Vocode ``audio`` ``(N,)`` in chunks of ``chunk_frames`` (default ``sample.chunk_frames``) mel frames with
        ``sample.overlap_frames`` cross-faded and ``sample.context_frames`` of context (:mod:`.vocoder_chunking`);
        returns ``(audio (N,), NFE per chunk, chunks)``. Memory besides the waveforms is that of one chunk."""
        from .vocoder_chunking import vocode_chunked

        p = next(model.parameters())
        mel_cfg = mel_config(cfg)
        fast = self.schedule(cfg) if schedule == "fast" else None

        def one(mel: torch.Tensor, x1: torch.Tensor, i: int) -> tuple[torch.Tensor, int]:
            gen = torch.Generator(device=p.device).manual_seed(mix_seed(int(seed), i))
            cond = {"mel": mel.to(device=p.device, dtype=p.dtype)}
            x1 = x1.to(device=p.device, dtype=p.dtype)
            if fast is not None:
                return sample_fast(model, tuple(x1.shape), fast, cond=cond, generator=[gen], dtype=p.dtype, device=p.device, x_start=x1)
            with torch.no_grad():
                r = polydiff.sample(model, shape=tuple(x1.shape), sampler=sampler, steps=steps, generator=[gen], cond=cond,
                                    x_start=x1, dtype=p.dtype, device=p.device)
            return r.x, int(r.nfe)

        chunk = int(cfg.sample.chunk_frames if chunk_frames is None else chunk_frames)
        return vocode_chunked(one, np.asarray(audio, dtype=np.float32), mel_cfg, chunk=chunk, overlap=int(cfg.sample.overlap_frames),
                              context=int(cfg.sample.context_frames), seed=int(seed))

    def vocode_file(self, model: nn.Module, cfg: VocoderConfig, path: Path, **kw: Any) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Read ``path`` (any rate; channels mixed down), resynthesise at the model's rate and return
        ``(resynthesis, original, rate, nfe)`` at the file's own rate and length."""
        import soundfile as sf

        try:
            info = sf.info(str(path))
            audio, _ = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:
            raise DataError(f"{path}: cannot be read as audio ({type(exc).__name__})") from None
        if audio.shape[0] == 0:
            raise DataError(f"{path}: the file holds no samples")
        sr_model = cfg.data.sample_rate
        if audio.shape[1] > 1:
            warnings.warn(f"{path}: {audio.shape[1]} channels mixed down to mono; the resynthesis is mono", UserWarning, stacklevel=2)
        if info.samplerate != sr_model:
            warnings.warn(f"{path}: {info.samplerate} Hz resampled to {sr_model} Hz for the model and back", UserWarning, stacklevel=2)
        original = audio.mean(axis=1)
        out, nfe = self.vocode(model, cfg, read_audio(path, sr_model), **kw)
        if info.samplerate != sr_model:
            out = resample(out, sr_model, int(info.samplerate))
        n = len(original)
        out = out[:n] if len(out) >= n else np.pad(out, (0, n - len(out)))
        return out.astype(np.float32), original.astype(np.float32), int(info.samplerate), nfe

    def held_out(self, cfg: VocoderConfig, num: int, seconds: float, seed: int) -> list[tuple[str, np.ndarray]]:
        """``num`` seeded crops ``(name, audio)`` of ``seconds`` from the validation clips."""
        _, val = self.corpus(cfg)
        length = int(seconds * cfg.data.sample_rate)
        out = []
        for i in range(num):
            a, _ = crop_or_pad(val[i % len(val)].audio, length, np.random.default_rng(mix_seed(seed, i)))
            out.append((f"heldout_{i:03d}", np.asarray(a, dtype=np.float32)))
        return out

    def sample(self, model: nn.Module, cfg: VocoderConfig, run: RunDir, *, num: int, sampler: str, steps: int, seed: int,
               options: Mapping[str, Any]) -> EnhancedSamples:
        model.eval()
        src = options.get("input")
        sched = options.get("schedule")
        names, audio, rates, orig, nfes, secs, refs = [], [], [], [], [], [], []
        if src:
            for i, (name, f) in enumerate(input_files(src)):
                t0 = time.perf_counter()
                out, o, sr, nfe = self.vocode_file(model, cfg, f, sampler=sampler, steps=steps, seed=mix_seed(seed, i), schedule=sched)
                secs.append(time.perf_counter() - t0)
                names.append(name)
                audio.append(out)
                rates.append(sr)
                orig.append(o)
                nfes.append(nfe)
        else:
            for i, (name, a) in enumerate(self.held_out(cfg, num, cfg.eval.seconds, seed)):
                t0 = time.perf_counter()
                out, nfe = self.vocode(model, cfg, a, sampler=sampler, steps=steps, seed=mix_seed(seed, i), schedule=sched)
                secs.append(time.perf_counter() - t0)
                names.append(name)
                audio.append(out)
                rates.append(cfg.data.sample_rate)
                orig.append(a)
                refs.append(a)
                nfes.append(nfe)
        return EnhancedSamples(tuple(names), tuple(audio), tuple(rates), tuple(orig), tuple(nfes), tuple(secs), tuple(refs))

    # -- evaluation --------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, cfg: VocoderConfig, run: RunDir, samples_dir: Path | None) -> dict[str, float]:
        """With ``--samples DIR``: LSD/MCD/PESQ/ESTOI of its WAVs against ``eval.reference`` (or ``DIR/clean``).
        Without: held-out clips resynthesised by the model (``sample.steps`` with ``sample.sampler``, and
        ``eval.fast_steps`` with ddim) and by Griffin-Lim from the linear and the mel magnitude."""
        from .evaluation_vocoder import evaluate_vocoder, evaluate_vocoder_folder

        if samples_dir is not None:
            ref = Path(cfg.eval.reference) if cfg.eval.reference else Path(samples_dir) / "clean"
            return evaluate_vocoder_folder(Path(samples_dir), ref, cfg.data.sample_rate)
        return evaluate_vocoder(self, model, cfg)


__all__ = ["DiffWaveRecipe", "WaveDataset", "mel_config"]
