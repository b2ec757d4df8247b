"""The recipe contract: what a plugin supplies so the shared engine and CLI can train a modality.

A recipe bundles data, process, backbone, defaults, presets, metrics and sample writers. The
engine (``polydiff.training``) and the CLI (``polydiff train/sample/evaluate/demo``) only talk to
this interface, so every modality trains, samples and evaluates the same way.

Configs are nested frozen dataclasses: a recipe's config class has (at least) the sections
``data``, ``model``, ``train`` (a :class:`TrainConfig`) and ``sample``. Presets are flat override
mappings ``{"train.steps": 200, "model.width": 64}`` applied with the same machinery as
``--set key=value`` (``polydiff.config``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset


@dataclass(frozen=True)
class TrainConfig:
    """Training-engine settings shared by every recipe (the ``train`` section)."""

    steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    grad_accum: int = 1
    ema_decay: float = 0.999
    bf16: bool = True
    compile: bool = False
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    eval_every: int = 0
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0
    max_bad_steps: int = 5
    deterministic: bool = False
    per_sample_generators: bool = False


@dataclass(frozen=True)
class SampleConfig:
    """Sampling defaults (the ``sample`` section); CLI flags override them."""

    num: int = 16
    sampler: str = "euler"
    steps: int = 64
    batch_size: int = 64


@dataclass(frozen=True)
class DataBundle:
    """What a recipe's :meth:`Recipe.datasets` returns.

    Attributes:
        train: map-style dataset of training items. val: optional validation dataset.
        collate: optional collate function (default: ``torch.utils.data.default_collate``).
    """

    train: Dataset
    val: Dataset | None = None
    collate: Callable[[list[Any]], Any] | None = None


@dataclass(frozen=True)
class SampleOption:
    """A recipe-specific ``polydiff sample`` option (e.g. ``--prompt`` for text, ``--horizon`` for forecasts)."""

    name: str
    type: type = str
    default: Any = None
    help: str = ""


class RunDir:
    """A run directory: ``config.toml``, ``checkpoints/``, ``metrics.csv``, ``artifacts/``, ``samples/``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def artifacts(self) -> Path:
        """Where recipes keep what sampling needs besides weights (tokenizer, normalisation stats)."""
        return self.path / "artifacts"

    @property
    def metrics_log(self) -> Path:
        return self.path / "metrics.csv"

    def ensure(self) -> RunDir:
        for p in (self.path, self.checkpoints, self.artifacts):
            p.mkdir(parents=True, exist_ok=True)
        return self


class Recipe(ABC):
    """A trainable modality model. Subclass it and register an instance through ``register_recipes``.

    Class attributes:
        name: ``"<plugin>/<name>"``, e.g. ``"text/mdlm"``.
        description: one line for ``polydiff plugins``.
        config_class: the nested frozen dataclass of the config (with ``train: TrainConfig``).
        presets: ``{"tiny": {...}, "small": {...}, "base": {...}}`` flat override mappings. ``tiny``
            must train on 2 CPU cores in at most 2 minutes on the bundled default data.
        sample_options: extra ``polydiff sample`` options.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    config_class: ClassVar[type]
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    sample_options: ClassVar[tuple[SampleOption, ...]] = ()

    def setup(self, cfg: Any, run: RunDir) -> None:
        """Prepare artefacts into ``run.artifacts`` (tokenizer, normalisation); called before training.

        Must raise ``ValueError`` with one clear line (naming the file) for bad user data.
        """

    @abstractmethod
    def datasets(self, cfg: Any, run: RunDir) -> DataBundle:
        """Training (and validation) data; may read artefacts written by :meth:`setup`."""

    @abstractmethod
    def build_model(self, cfg: Any, run: RunDir) -> nn.Module:
        """The model to train, usually a :class:`polydiff.Denoiser` (its parameters are what is checkpointed)."""

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        """Scalar training loss for one batch. Default: ``model.loss(batch)`` for a Denoiser."""
        if isinstance(batch, Mapping) and "x" in batch:
            cond = {k: v for k, v in batch.items() if k != "x"} or None
            return model.loss(batch["x"], cond=cond, generator=generator).loss  # type: ignore[operator]
        return model.loss(batch, generator=generator).loss  # type: ignore[operator]

    @abstractmethod
    def sample(self, model: nn.Module, cfg: Any, run: RunDir, *, num: int, sampler: str, steps: int, seed: int,
               options: Mapping[str, Any]) -> Any:
        """Draw ``num`` samples in the modality's own representation (in original units)."""

    @abstractmethod
    def write_samples(self, samples: Any, out_dir: Path, cfg: Any, run: RunDir) -> list[Path]:
        """Write samples in the modality's file format; return the files written."""

    @abstractmethod
    def evaluate(self, model: nn.Module, cfg: Any, run: RunDir, samples_dir: Path | None) -> dict[str, float]:
        """Metrics as a flat ``{name: number}`` mapping (printed as JSON by ``polydiff evaluate``)."""

    def report(self, metrics: Mapping[str, float], samples_dir: Path, out_dir: Path) -> str:
        """Markdown for ``polydiff demo`` (may write plots into ``out_dir`` and link them)."""
        rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items())
        return f"| metric | value |\n|---|---|\n{rows}\n"


__all__ = ["DataBundle", "Recipe", "RunDir", "SampleConfig", "SampleOption", "TrainConfig"]
