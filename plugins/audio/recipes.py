"""Recipe ``audio/sgmse``: SGMSE+-style speech enhancement in the compressed complex STFT domain.

The process drifts from clean speech toward the noisy mixture ``y`` (OUVE, theta 1.5, sigma 0.05 -> 0.5) or bridges
to it (the SB-VE Schrödinger bridge); an NCSN++-style U-Net sees ``[x_t, y]``. Sampling starts at ``y`` plus noise and
runs the predictor-corrector sampler (reverse diffusion + annealed Langevin, 30 steps x 2 = 60 NFE) or any of the core's
ODE samplers. Long inputs are enhanced in overlapping chunks of STFT frames, cross-faded (overlap-add) into one
spectrogram, so the network's memory does not grow with the input's length.
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

from .backbones import pad_frames, unet_from_config
from .chunking import ChunkedSpectrogram, OverlapAdd, chunk_starts
from .config import PRESETS, AudioConfig
from .data import (
    TEST_NOISES, TRAIN_NOISES, Clip, input_files, load_user_folder, mixture, read_audio,
    resample, synthetic_corpus, synthetic_noises,
)
from .transforms import SpecConfig, wav_to_spec
from .writers import EnhancedSamples, WavSampleFiles


def spec_config(cfg: AudioConfig) -> SpecConfig:
    return SpecConfig(sample_rate=cfg.data.sample_rate)


def normalise(noisy: np.ndarray, clean: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None, float]:
    """SGMSE's loudness normalisation: divide by ``max |noisy|`` (returned, 1 for silence)."""
    scale = float(np.abs(noisy).max()) or 1.0
    return noisy / scale, (None if clean is None else clean / scale), scale


class MixtureDataset(Dataset):
    """Item ``i``: the seeded mixture ``mix_seed(seed, i)`` of a clean crop and a noise stretch at one of ``snrs``,
    as ``{"x": clean (2, F, T), "y": noisy (2, F, T)}`` after normalising by ``max |noisy|``."""

    def __init__(self, clean: list[Clip], noise: list[Clip], snrs, frames: int, spec: SpecConfig, items: int, seed: int) -> None:
        self.clean, self.noise, self.snrs, self.spec = clean, noise, tuple(snrs), spec
        self.length, self.items, self.seed = spec.samples_for(frames), items, seed
        self.padded = sum(len(c.audio) < self.length for c in clean)

    def __len__(self) -> int:
        return self.items

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x, y, _, _ = mixture(self.clean, self.noise, self.snrs, self.length, mix_seed(self.seed, i))
        return _pair(y, x, self.spec)


class PairedDataset(Dataset):
    """Item ``i``: a seeded crop (the same offset in both) of pair ``i mod n`` from a user's ``noisy/`` + ``clean/``."""

    def __init__(self, noisy: list[Clip], clean: list[Clip], frames: int, spec: SpecConfig, items: int, seed: int) -> None:
        self.noisy, self.clean, self.spec = noisy, clean, spec
        self.length, self.items, self.seed = spec.samples_for(frames), items, seed
        self.padded = sum(len(c.audio) < self.length for c in clean)

    def __len__(self) -> int:
        return self.items

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        k = i % len(self.clean)
        rng = np.random.default_rng(mix_seed(self.seed, i))
        both = np.stack([self.noisy[k].audio, self.clean[k].audio])
        n = both.shape[1]
        if n >= self.length:
            s = int(rng.integers(0, n - self.length + 1))
            both = both[:, s:s + self.length]
        else:
            out = np.zeros((2, self.length), dtype=np.float32)
            s = int(rng.integers(0, self.length - n + 1))
            out[:, s:s + n] = both
            both = out
        return _pair(both[0], both[1], self.spec)


def _pair(noisy: np.ndarray, clean: np.ndarray, spec: SpecConfig) -> dict[str, torch.Tensor]:
    y, x, _ = normalise(noisy, clean)
    wav = torch.from_numpy(np.stack([x, y]).astype(np.float32))
    s = wav_to_spec(wav, spec)
    return {"x": s[0], "y": s[1]}


def _split(clips: list[Clip], fraction: float) -> tuple[list[Clip], list[Clip]]:
    n_val = max(1, int(math.ceil(fraction * len(clips)))) if len(clips) > 1 else 0
    return clips[: len(clips) - n_val] or clips, clips[len(clips) - n_val:] or clips


class SGMSERecipe(WavSampleFiles, Recipe):
    """SGMSE+-style diffusion speech enhancement (OUVE or the Schrödinger bridge toward the noisy mixture)."""

    name: ClassVar[str] = "audio/sgmse"
    description: ClassVar[str] = "SGMSE+ speech enhancement: complex STFT, OUVE or Schrödinger bridge, NCSN++-style U-Net, PC sampler"
    demo: ClassVar[bool] = True
    config_class: ClassVar[type] = AudioConfig
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = PRESETS
    sample_options: ClassVar[tuple[SampleOption, ...]] = (
        SampleOption("input", str, None, "a WAV/FLAC/OGG file or a folder of them to enhance (one WAV per input, same "
                     "rate and length); without it: held-out generated mixtures"),
        SampleOption("snr", float, None, "pc sampler: Langevin corrector step size r (default sample.snr)"),
        SampleOption("corrector_steps", int, None, "pc sampler: corrector steps per step (default sample.corrector_steps)"),
    )

    # -- data ------------------------------------------------------------------------------------
    def corpus(self, cfg: AudioConfig) -> dict[str, Any]:
        """``{"kind": "mix"|"paired", train/val clips}`` from ``data.source`` (split by speaker, generated noise),
        ``data.path`` or the generated default."""
        d = cfg.data
        sr = d.sample_rate
        if d.source:
            from .sources import load_sources, split_by_speaker

            if d.path:
                raise UserInputError(f"data.path and data.source are alternatives; got both ({d.path!r}, {d.source!r})")
            tc, vc = split_by_speaker(load_sources(d.source, sr), d.val_fraction)
            return {"kind": "mix", "train_clean": tc, "train_noise": synthetic_noises(TRAIN_NOISES, 6.0, sr, seed=0),
                    "val_clean": vc, "val_noise": synthetic_noises(TEST_NOISES, 6.0, sr, seed=100)}
        if d.path:
            user = load_user_folder(d.path, sr, strict=d.strict)
            if user.kind == "paired":
                tc, vc = _split(user.clean, d.val_fraction)
                tn, vn = _split(user.noisy, d.val_fraction)
                return {"kind": "paired", "train_clean": tc, "train_noisy": tn, "val_clean": vc, "val_noisy": vn}
            tc, vc = _split(user.clean, d.val_fraction)
            tn, vn = _split(user.noise, d.val_fraction)
            return {"kind": "mix", "train_clean": tc, "train_noise": tn, "val_clean": vc, "val_noise": vn}
        secs = d.synthetic_seconds
        return {"kind": "mix", "train_clean": synthetic_corpus(d.synthetic_clips, secs, sr, seed=0),
                "train_noise": synthetic_noises(TRAIN_NOISES, 6.0, sr, seed=0),
                "val_clean": synthetic_corpus(max(4, d.val_items), secs, sr, seed=1, speakers=2),
                "val_noise": synthetic_noises(TEST_NOISES, 6.0, sr, seed=100)}

    def datasets(self, cfg: AudioConfig, run: RunDir) -> DataBundle:
        c = self.corpus(cfg)
        d, spec = cfg.data, spec_config(cfg)
        if c["kind"] == "paired":
            tr = PairedDataset(c["train_noisy"], c["train_clean"], d.segment_frames, spec, d.train_items, cfg.train.seed)
            va = PairedDataset(c["val_noisy"], c["val_clean"], d.segment_frames, spec, d.val_items, 10**6)
        else:
            tr = MixtureDataset(c["train_clean"], c["train_noise"], d.snrs, d.segment_frames, spec, d.train_items, cfg.train.seed)
            va = MixtureDataset(c["val_clean"], c["val_noise"], d.snrs, d.segment_frames, spec, d.val_items, 10**6)
        if tr.padded:
            warnings.warn(f"{d.path or 'generated data'}: {tr.padded} of {len(tr.clean)} training clips are shorter than the "
                          f"{d.segment_frames}-frame segment and are zero-padded", UserWarning, stacklevel=2)
        return DataBundle(train=tr, val=va)

    # -- model -----------------------------------------------------------------------------------
    def process(self, cfg: AudioConfig):
        m = cfg.model
        if m.process == "ouve":
            return polydiff.processes.get("ouve", gamma=m.theta, sigma_min=m.sigma_min, sigma_max=m.sigma_max)
        return polydiff.processes.get("sb-ve", k=m.sb_k, c=m.sb_c)

    def build_model(self, cfg: AudioConfig, run: RunDir) -> nn.Module:
        m = cfg.model
        net = unet_from_config(m)
        pred = "x0" if m.prediction == "auto" else m.prediction
        return polydiff.Denoiser(net, self.process(cfg), prediction=pred)

    # -- enhancement -----------------------------------------------------------------------------
    def enhance(self, model: nn.Module, cfg: AudioConfig, noisy: np.ndarray, *, sampler: str, steps: int, seed: int,
                options: Mapping[str, Any] | None = None) -> tuple[np.ndarray, int]:
        """Enhance one mono clip ``(N,)`` at the model's rate; returns ``(enhanced (N,), NFE per chunk)``.

        The spectrogram is cut into chunks of ``sample.chunk_frames`` frames overlapping by ``sample.overlap_frames``,
        computed chunk by chunk from the waveform; each chunk is sampled on its own (generator ``mix_seed(seed, chunk)``),
        ``sample.batch_size`` chunks at a time, and the chunks are cross-faded with linear ramps over the overlaps and
        inverted to the waveform as they finish (:mod:`polydiff_audio.chunking`): memory beyond the input and output
        waveforms does not grow with the length.
        """
        spec = spec_config(cfg)
        device, dtype = _device_dtype(model)
        y_wav, _, scale = normalise(np.asarray(noisy, dtype=np.float32))
        source = ChunkedSpectrogram(np.ascontiguousarray(y_wav, dtype=np.float32), spec)
        T = source.frames
        chunk = max(8, int(cfg.sample.chunk_frames))
        overlap = min(max(0, int(cfg.sample.overlap_frames)), chunk // 2)
        starts = chunk_starts(T, chunk, overlap)
        size = min(chunk, T)
        sink = OverlapAdd(len(y_wav), spec, overlap)
        opts = self._sampler_options(cfg, sampler, options or {})
        multiple = model.net.multiple if hasattr(model.net, "multiple") else 1
        nfe = 0
        bs = max(1, int(cfg.sample.batch_size))
        for b0 in range(0, len(starts), bs):
            group = starts[b0:b0 + bs]
            ys, _ = pad_frames(torch.stack([source.chunk(s, size) for s in group]), multiple)
            gens = [torch.Generator(device=device).manual_seed(mix_seed(seed, b0 + j)) for j in range(len(group))]
            with torch.no_grad():
                r = polydiff.sample(model, shape=tuple(ys.shape), sampler=sampler, steps=steps, generator=gens,
                                    cond={"y": ys.to(device=device, dtype=dtype)}, dtype=dtype, device=device, **opts)
            nfe = r.nfe  # network evaluations per chunk (every chunk gets the same)
            xs = r.x.float().cpu()[..., :size]
            for j, s in enumerate(group):
                sink.add(s, xs[j])
            sink.flush(starts[b0 + bs] if b0 + bs < len(starts) else T)
        return sink.result() * scale, nfe

    @staticmethod
    def _sampler_options(cfg: AudioConfig, sampler: str, options: Mapping[str, Any]) -> dict[str, Any]:
        if sampler != "pc":
            return {}
        snr = options.get("snr")
        k = options.get("corrector_steps")
        return {"snr": float(cfg.sample.snr if snr is None else snr),
                "corrector_steps": int(cfg.sample.corrector_steps if k is None else k)}

    def enhance_file(self, model: nn.Module, cfg: AudioConfig, path: Path, **kw: Any) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Read ``path`` (any rate, channels mixed down), enhance at the model's rate, return
        ``(enhanced, noisy, rate, nfe)`` at the file's own rate and length."""
        import soundfile as sf

        try:
            info = sf.info(str(path))
        except Exception as exc:
            raise DataError(f"{path}: cannot be read as audio ({type(exc).__name__})") from None
        sr_model = cfg.data.sample_rate
        noisy_model = read_audio(path, sr_model)
        audio, _ = sf.read(str(path), dtype="float32", always_2d=True)
        if audio.shape[1] > 1:
            warnings.warn(f"{path}: {audio.shape[1]} channels mixed down to mono; the enhanced file is mono", UserWarning, stacklevel=2)
        if info.samplerate != sr_model:
            warnings.warn(f"{path}: {info.samplerate} Hz resampled to {sr_model} Hz for the model and back", UserWarning, stacklevel=2)
        noisy = audio.mean(axis=1)
        enhanced, nfe = self.enhance(model, cfg, noisy_model, **kw)
        if info.samplerate != sr_model:
            enhanced = resample(enhanced, sr_model, int(info.samplerate))
        n = len(noisy)
        enhanced = enhanced[:n] if len(enhanced) >= n else np.pad(enhanced, (0, n - len(enhanced)))
        return enhanced.astype(np.float32), noisy.astype(np.float32), int(info.samplerate), nfe

    def held_out(self, cfg: AudioConfig, num: int, seconds: float, seed: int) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
        """``num`` seeded validation mixtures ``(name, clean, noisy, snr)`` of ``seconds`` each."""
        c = self.corpus(cfg)
        length = int(seconds * cfg.data.sample_rate)
        out = []
        for i in range(num):
            if c["kind"] == "paired":
                k = i % len(c["val_clean"])
                rng = np.random.default_rng(mix_seed(seed, i))
                clean_full, noisy_full = c["val_clean"][k].audio, c["val_noisy"][k].audio
                n = min(length, len(clean_full))
                s = int(rng.integers(0, len(clean_full) - n + 1))
                out.append((Path(c["val_clean"][k].source).stem + f"_{i}", clean_full[s:s + n], noisy_full[s:s + n], float("nan")))
            else:
                x, y, snr, _ = mixture(c["val_clean"], c["val_noise"], cfg.data.snrs, length, mix_seed(seed, i))
                out.append((f"heldout_{i:03d}_snr{snr:+.0f}", x, y, snr))
        return out

    def sample(self, model: nn.Module, cfg: AudioConfig, run: RunDir, *, num: int, sampler: str, steps: int, seed: int,
               options: Mapping[str, Any]) -> EnhancedSamples:
        model.eval()
        kw = dict(sampler=sampler, steps=steps, seed=seed, options=options)
        src = options.get("input")
        names, audio, rates, noisy_l, clean_l, nfes, secs = [], [], [], [], [], [], []
        if src:
            for name, f in input_files(src):
                t0 = time.perf_counter()
                enh, noisy, sr, nfe = self.enhance_file(model, cfg, f, **kw)
                secs.append(time.perf_counter() - t0)
                names.append(name)
                audio.append(enh)
                rates.append(sr)
                noisy_l.append(noisy)
                nfes.append(nfe)
        else:
            for name, x, y, _ in self.held_out(cfg, num, cfg.eval.seconds, seed):
                t0 = time.perf_counter()
                enh, nfe = self.enhance(model, cfg, y, **kw)
                secs.append(time.perf_counter() - t0)
                names.append(name)
                audio.append(enh)
                rates.append(cfg.data.sample_rate)
                noisy_l.append(y)
                clean_l.append(x)
                nfes.append(nfe)
        return EnhancedSamples(tuple(names), tuple(audio), tuple(rates), tuple(noisy_l), tuple(nfes), tuple(secs), tuple(clean_l))

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, cfg: AudioConfig, run: RunDir, samples_dir: Path | None) -> dict[str, float]:
        """With ``--samples DIR``: PESQ/ESTOI/SI-SDR of its WAVs against ``eval.reference`` (or ``DIR/clean``), by file name.
        Without: held-out mixtures scored for the noisy input, the baselines and the model (NFE, real-time factor)."""
        from .evaluation import evaluate_folder, evaluate_model

        if samples_dir is not None:
            ref = Path(cfg.eval.reference) if cfg.eval.reference else Path(samples_dir) / "clean"
            return evaluate_folder(Path(samples_dir), ref, cfg.data.sample_rate, dnsmos=cfg.eval.dnsmos)
        return evaluate_model(self, model, cfg)


    def report(self, metrics: Mapping[str, float], samples_dir: Path, out_dir: Path) -> str:
        """The metrics table and the first noisy / enhanced / clean spectrogram figure."""
        import shutil

        md = super().report(metrics, samples_dir, out_dir)
        figs = sorted((Path(samples_dir) / "spectrograms").glob("*.png"))
        if figs:
            dest = Path(out_dir) / f"audio_sgmse_{figs[0].name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(figs[0], dest)
            md += f"\n![noisy / enhanced / clean spectrograms]({dest.name})\n"
        return md


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters(), None)
    return (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)


__all__ = ["MixtureDataset", "PairedDataset", "SGMSERecipe", "normalise", "spec_config"]
