"""Configuration of the medical recipes (nested frozen dataclasses) and presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from polydiff.recipes import EvalConfig as BaseEvalConfig
from polydiff.recipes import SampleConfig, TrainConfig

Solver = Literal["dps", "dds", "red-diff", "pigdm", "dc"]


@dataclass(frozen=True)
class DataConfig:
    """``data``: a bundled source (``name``: phantom, pydicom-ct, pydicom-mr, invesalius-ct, mricron-ch2) or
    ``path`` (DICOM file/folder, .nii/.nii.gz, .png, .npy); slices resized to ``size`` x ``size``.

    ``phantom_count``: generated phantoms when ``name = phantom``. Train/test split by blocks of ``block``
    slices (``test_fraction`` of them) with ``gap`` slices dropped on each side (see ``data.split_slices``).
    """

    name: str = "phantom"
    path: str | None = None
    size: int = 32
    phantom_count: int = 256
    test_fraction: float = 0.2
    block: int = 4
    gap: int = 1
    flips: bool = True


@dataclass(frozen=True)
class ModelConfig:
    """``model``: the process and the U-Net widths (``channels``), residual ``blocks`` per level, mid ``attention``."""

    process: str = "vp-cosine"
    prediction: Literal["eps", "x0", "v"] = "v"
    channels: tuple[int, ...] = (32, 64, 128)
    blocks: int = 1
    attention: bool = False


@dataclass(frozen=True)
class MedSampleConfig(SampleConfig):
    """``sample``: sampler defaults plus reconstruction defaults (CLI options override them)."""

    sampler: str = "ddim"
    steps: int = 50
    num: int = 4
    batch_size: int = 8
    solver: Solver = "dds"
    noise_std: float = 0.005  # measurement noise, relative to the measurement's RMS
    dps_scale: float = 1.0
    cg_iters: int = 5
    dds_eta: float = 0.85
    red_lr: float = 0.1
    red_lam: float = 0.25


@dataclass(frozen=True)
class EvalConfig(BaseEvalConfig):
    """``eval``: the default reconstruction task of ``polydiff evaluate`` (without ``--samples``)."""

    slices: int = 4
    steps: int = 25


@dataclass(frozen=True)
class MedConfig:
    """A medical recipe's config."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=4000, batch_size=32, lr=2e-4, warmup_steps=100, bf16=False,
                                                                   ema_decay=0.999, checkpoint_every=1000, log_every=50))
    sample: MedSampleConfig = field(default_factory=MedSampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"train.steps": 160, "train.batch_size": 16, "train.lr": 1e-3, "train.warmup_steps": 20, "train.ema_decay": 0.99,
             "train.checkpoint_every": 160, "train.log_every": 50, "model.channels": (16, 32), "data.size": 32,
             "data.phantom_count": 128, "sample.steps": 20, "eval.steps": 10, "eval.slices": 2},
    "small": {"train.steps": 4000, "train.batch_size": 32, "model.channels": (32, 64, 128), "data.size": 64},
    "base": {"train.steps": 40000, "train.batch_size": 32, "model.channels": (64, 128, 256), "model.blocks": 2,
             "model.attention": True, "data.size": 128},
}

# ---------------------------------------------------------------- ultrasound (medical/us-tissue, medical/us-haze)


@dataclass(frozen=True)
class USDataConfig:
    """``data`` of the ultrasound priors: ``frames`` training and ``test_frames`` held-out IQ frames of ``size`` x ``size``
    pixels simulated by ``simulator`` (``speckle``: convolution model, fast; ``pymust``: MUST's simus + DAS).

    Echogenicity maps: ``name = cysts`` (generated phantoms with cysts and lesions; held-out frames carry the fixed
    evaluation cyst), ``haze`` (haze-power maps; the ``us-haze`` recipe) or, for tissue, a CT/MRI source of
    ``medical/ct-prior`` (``phantom``, ``pydicom-ct``, ``invesalius-ct``, ... or ``path``) whose windowed slices become
    echogenicity. ``seed``: simulation seed (held-out frames use ``seed + 10007``).
    """

    name: str = "cysts"
    path: str | None = None
    simulator: Literal["speckle", "pymust"] = "speckle"
    size: int = 32
    frames: int = 256
    test_frames: int = 8
    seed: int = 0
    flips: bool = True


@dataclass(frozen=True)
class USSampleConfig(SampleConfig):
    """``sample``: sampler defaults and dehazing defaults (CLI options override them).

    ``solver``: ``projection`` (exact Gaussian coupling) or ``dps``; ``gamma``: dehazing strength; ``noise_std``:
    measurement noise std in calibrated IQ units (a uniform echogenicity 1 has ``E|IQ|^2 = 1``); ``eta``: DDIM eta;
    ``dps_scale``, ``dps_tissue``, ``dps_haze``: DPS step and Stevens' per-prior weights ``lambda``, ``kappa``.
    """

    sampler: str = "ddim"
    steps: int = 50
    num: int = 4
    batch_size: int = 8
    solver: Literal["projection", "dps"] = "projection"
    gamma: float = 1.0
    noise_std: float = 0.05
    eta: float = 0.85
    dps_scale: float = 1.0
    dps_tissue: float = 1.0
    dps_haze: float = 1.0


@dataclass(frozen=True)
class USConfig:
    """An ultrasound prior recipe's config."""

    data: USDataConfig = field(default_factory=USDataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=4000, batch_size=32, lr=2e-4, warmup_steps=100, bf16=False,
                                                                   ema_decay=0.999, checkpoint_every=1000, log_every=50))
    sample: USSampleConfig = field(default_factory=USSampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


US_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"train.steps": 150, "train.batch_size": 16, "train.lr": 1e-3, "train.warmup_steps": 20, "train.ema_decay": 0.99,
             "train.checkpoint_every": 150, "train.log_every": 50, "model.channels": (16, 32), "data.size": 32,
             "data.frames": 128, "data.test_frames": 4, "sample.steps": 20, "eval.steps": 10, "eval.slices": 2},
    "small": {"train.steps": 4000, "train.batch_size": 32, "model.channels": (32, 64, 128), "data.size": 32, "data.frames": 512},
    "base": {"train.steps": 40000, "train.batch_size": 32, "model.channels": (64, 128, 256), "model.blocks": 2,
             "model.attention": True, "data.size": 64, "data.frames": 4096},
}

__all__ = ["PRESETS", "US_PRESETS", "DataConfig", "EvalConfig", "MedConfig", "MedSampleConfig", "ModelConfig", "Solver", "USConfig",
           "USDataConfig", "USSampleConfig"]
