"""Configuration of the audio recipes (nested frozen dataclasses) and presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from polydiff.recipes import EvalConfig as BaseEvalConfig
from polydiff.recipes import SampleConfig, TrainConfig


@dataclass(frozen=True)
class AudioDataConfig:
    """``data``: where clean speech and noise come from and how training examples are cut.

    ``path``: a user folder (``noisy/`` + ``clean/`` pairs, or ``clean/`` + ``noise/`` mixed at ``snrs``); ``source``:
    named clean speech that installs offline (``"alsa,espeak,flite,klettres:en,fillets"``, :mod:`polydiff_audio.sources`;
    split by speaker, mixed with generated noise); without either the recipe trains on generated speech-like signals
    mixed with generated noise (no downloads). The benchmark (``benchmarks/audio/run.py``) writes the fillets-ng speech,
    split by speaker, as such a folder.
    """

    path: str | None = None
    source: str | None = None  # named clean-speech sources (comma-separated); an alternative to path
    strict: bool = False  # refuse unreadable or empty files instead of skipping them
    sample_rate: int = 16000
    snrs: tuple[float, ...] = (-5.0, 0.0, 5.0, 10.0)
    segment_frames: int = 256  # STFT frames per training crop (256 = 2.04 s at hop 128)
    train_items: int = 100000  # mixtures per epoch (made on the fly, seeded by index)
    val_items: int = 16
    synthetic_clips: int = 64
    synthetic_seconds: float = 3.0
    val_fraction: float = 0.1  # user folders: the share of clips held out (by file)


@dataclass(frozen=True)
class AudioModelConfig:
    """``model``: the process toward the noisy mixture and the U-Net size."""

    process: Literal["ouve", "sb-ve"] = "ouve"
    theta: float = 1.5
    sigma_min: float = 0.05
    sigma_max: float = 0.5
    sb_k: float = 2.6
    sb_c: float = 0.4
    # x0 ("auto"): the data-prediction objective (SGMSE's `data_prediction`, the SB-VE default); eps: SGMSE+'s original
    # denoising score matching. Measured at the tiny preset (150 steps, PC 8 steps, 2 held-out mixtures): SI-SDR
    # +4.5 dB with x0 against -24.8 dB with eps (noisy input +2.5 dB): at CPU budgets x0 is the default for both processes.
    prediction: Literal["auto", "eps", "x0"] = "auto"
    size: Literal["tiny", "small", "base"] = "small"
    ch: int = 0  # 0: from size
    ch_mult: tuple[int, ...] = ()  # (): from size
    dropout: float = 0.0


@dataclass(frozen=True)
class AudioSampleConfig(SampleConfig):
    """``sample``: the sampler (pc = reverse diffusion + annealed Langevin), chunking of long inputs."""

    sampler: str = "pc"
    steps: int = 30
    batch_size: int = 8
    num: int = 4
    snr: float = 0.5  # pc corrector step size (SGMSE's r)
    corrector_steps: int = 1
    chunk_frames: int = 256  # frames per chunk for long inputs (bounded memory)
    overlap_frames: int = 64  # cross-faded overlap between chunks
    spectrograms: bool = True  # write noisy / enhanced / clean PNGs next to the WAVs (first 4 clips)


@dataclass(frozen=True)
class AudioEvalConfig(BaseEvalConfig):
    """``eval``: number of held-out mixtures, their length, and an optional reference folder of clean WAVs."""

    num_clips: int = 8
    seconds: float = 3.0
    reference: str | None = None
    baselines: bool = True
    dnsmos: bool = False  # DNSMOS SIG/BAK/OVRL (offline; needs speechmos + onnxruntime + librosa)


@dataclass(frozen=True)
class AudioConfig:
    """An audio recipe's config."""

    data: AudioDataConfig = field(default_factory=AudioDataConfig)
    model: AudioModelConfig = field(default_factory=AudioModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=20000, batch_size=8, lr=1e-4, warmup_steps=100,
                                                                   ema_decay=0.999, bf16=False, checkpoint_every=1000))
    sample: AudioSampleConfig = field(default_factory=AudioSampleConfig)
    eval: AudioEvalConfig = field(default_factory=AudioEvalConfig)


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"model.size": "tiny", "data.segment_frames": 32, "data.synthetic_clips": 16, "data.synthetic_seconds": 2.0,
             "data.val_items": 4, "train.steps": 120, "train.batch_size": 4, "train.lr": 2e-3, "train.warmup_steps": 10,
             "train.ema_decay": 0.95, "train.checkpoint_every": 120, "train.log_every": 25, "sample.steps": 8, "sample.num": 2,
             "sample.chunk_frames": 64, "sample.overlap_frames": 16, "eval.num_clips": 2, "eval.seconds": 2.0},
    "small": {"model.size": "small", "data.segment_frames": 128, "train.steps": 4000, "train.batch_size": 8, "train.lr": 5e-4,
              "train.ema_decay": 0.995},
    "base": {"model.size": "base", "data.segment_frames": 256, "train.steps": 200000, "train.batch_size": 16, "train.lr": 1e-4,
             "train.ema_decay": 0.999, "eval.num_clips": 64},
}

__all__ = ["AudioConfig", "AudioDataConfig", "AudioEvalConfig", "AudioModelConfig", "AudioSampleConfig", "PRESETS"]


# -- audio/diffwave ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VocoderDataConfig:
    """``data``: clean recordings (``path``: a folder of WAV/FLAC/OGG, any layout; ``source``: named clean speech such as
    ``"alsa,espeak,flite"``, split by speaker; without either: generated speech-like clips) cut into seeded crops of
    ``segment_samples``; the mel front-end (80 bands, n_fft 1024, hop 256)."""

    path: str | None = None
    source: str | None = None
    strict: bool = False
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 80
    segment_samples: int = 16000
    train_items: int = 100000
    val_items: int = 8
    synthetic_clips: int = 64
    synthetic_seconds: float = 3.0
    val_fraction: float = 0.1


@dataclass(frozen=True)
class VocoderModelConfig:
    """``model``: the DiffWave network size and the core's ``vp-linear`` process (beta from ``beta_min`` to
    ``beta_max`` over t in [0, 1]; DiffWave's 50-step linspace(1e-4, 0.05) is beta_min 0.005, beta_max 2.5 in these
    units, whose end point alpha_bar = 0.29 is not the N(0, I) the core's samplers start from, so the default is the
    standard 0.1 -> 20)."""

    size: Literal["tiny", "small", "base"] = "small"
    channels: int = 0  # 0: from size
    layers: int = 0
    beta_min: float = 0.1
    beta_max: float = 20.0
    prediction: Literal["eps", "x0"] = "eps"
    loss: Literal["l2", "l1"] = "l2"  # l1: DiffWave's |eps - eps_hat| (needs prediction eps); l2: the core's MSE


@dataclass(frozen=True)
class VocoderSampleConfig(SampleConfig):
    """``sample``: ``ddpm`` (ancestral, 50 steps) by default. ``schedule = "fast"``: DiffWave's fast schedule
    (``fast_betas``, aligned to ``fast_align_steps`` training steps; :mod:`polydiff_audio.fast_schedule`), which
    replaces the sampler and its steps; ``--sampler ddim --steps 6`` is the other few-step path."""

    sampler: str = "ddpm"
    steps: int = 50
    schedule: Literal["training", "fast"] = "training"
    fast_betas: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5)  # DiffWave's T_infer = 6
    fast_align_steps: int = 50  # the training steps the fast schedule is aligned to (DiffWave: T = 50)
    chunk_frames: int = 512  # inputs longer than this many mel frames (8.2 s at hop 256) are vocoded in chunks
    overlap_frames: int = 8  # cross-faded overlap of the chunks' kept parts
    context_frames: int = 8  # frames sampled on either side of a chunk and discarded
    batch_size: int = 4
    num: int = 4
    spectrograms: bool = True


@dataclass(frozen=True)
class VocoderEvalConfig(BaseEvalConfig):
    """``eval``: held-out clips resynthesised by the model (``sample.steps`` and ``fast_steps`` DDIM steps) and by
    Griffin-Lim (``gl_iters``) from the linear and the mel spectrogram; LSD, MCD, PESQ, ESTOI, seconds."""

    num_clips: int = 4
    seconds: float = 2.0
    reference: str | None = None
    baselines: bool = True
    fast_steps: int = 6
    gl_iters: int = 64


@dataclass(frozen=True)
class VocoderConfig:
    data: VocoderDataConfig = field(default_factory=VocoderDataConfig)
    model: VocoderModelConfig = field(default_factory=VocoderModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100000, batch_size=8, lr=2e-4, warmup_steps=100,
                                                                   ema_decay=0.999, bf16=False, checkpoint_every=1000))
    sample: VocoderSampleConfig = field(default_factory=VocoderSampleConfig)
    eval: VocoderEvalConfig = field(default_factory=VocoderEvalConfig)


VOCODER_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"model.size": "tiny", "data.segment_samples": 2048, "data.synthetic_clips": 16, "data.synthetic_seconds": 2.0,
             "data.val_items": 2, "train.steps": 150, "train.batch_size": 4, "train.lr": 2e-3, "train.warmup_steps": 10,
             "train.ema_decay": 0.95, "train.checkpoint_every": 150, "train.log_every": 25, "sample.steps": 20,
             "sample.num": 2, "eval.num_clips": 2, "eval.seconds": 1.0, "eval.gl_iters": 32},
    "small": {"model.size": "small", "data.segment_samples": 8192, "train.steps": 6000, "train.batch_size": 8, "train.lr": 5e-4,
              "train.ema_decay": 0.995},
    "base": {"model.size": "base", "data.segment_samples": 16000, "train.steps": 500000, "train.batch_size": 16,
             "train.lr": 2e-4, "train.ema_decay": 0.9999, "eval.num_clips": 32},
}

__all__ += ["VOCODER_PRESETS", "VocoderConfig", "VocoderDataConfig", "VocoderEvalConfig", "VocoderModelConfig", "VocoderSampleConfig"]
