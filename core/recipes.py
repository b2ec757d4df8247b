"""The recipe contract: what a plugin supplies so the shared engine and CLI can train a modality.

A recipe bundles data, process, backbone, defaults, presets, metrics and sample writers. The
engine (``polydiff.training``) and the CLI (``polydiff train/sample/evaluate/demo``) only talk to
this interface, so every modality trains, samples and evaluates the same way.

Configs are nested frozen dataclasses: a recipe's config class has (at least) the sections
``data``, ``model``, ``train`` (a :class:`TrainConfig`), ``sample`` (a :class:`SampleConfig`) and,
optionally, ``eval`` (an :class:`EvalConfig`). Presets are flat override mappings
``{"train.steps": 200, "model.width": 64}`` applied with the same machinery as ``--set key=value``
(``polydiff.config``). A field typed ``Literal["a", "b"]`` is validated by the config layer (an
unknown value is one line naming the key and the choices), so recipes do not check options by hand.

Errors: bad user input (a file, a row, a field, an option) is a :class:`polydiff.errors.UserInputError`
(or its ``DataError`` / ``ConfigError`` subclasses) whose message names it and what was expected; the
CLI prints it as one line with exit code 2. Any other exception is a bug and keeps its traceback.
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
class EvalConfig:
    """``polydiff evaluate`` settings shared by recipes (the ``eval`` section); recipes subclass it.

    Set from the command line with ``polydiff evaluate RUN --set eval.KEY=VALUE``.

    Attributes:
        seed: base seed of the samples ``evaluate`` draws itself (sample ``i`` uses ``mix_seed(seed, i)``).
    """

    seed: int = 0


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

    def loss(self, model: nn.Module, batch: Any, cfg: Any, generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
        """Scalar training loss for one batch. Default: ``model.loss(batch)`` for a Denoiser.

        ``model`` is the bare model :meth:`build_model` returned (the engine unwraps DDP); loss options
        come from ``cfg`` (never set attributes on the model to carry them). ``generator`` is one
        generator or one per sample (``train.per_sample_generators``).
        """
        if isinstance(batch, Mapping) and "x" in batch:
            cond = {k: v for k, v in batch.items() if k != "x"} or None
            return model.loss(batch["x"], cond=cond, generator=generator).loss  # type: ignore[operator]
        return model.loss(batch, generator=generator).loss  # type: ignore[operator]

    def sample_shape(self, cfg: Any) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(2,)``; used by the default :meth:`sample` (dense tensor samples)."""
        raise NotImplementedError(f"{type(self).__name__} must implement sample() or sample_shape()")

    def sample(self, model: nn.Module, cfg: Any, run: RunDir, *, num: int, sampler: str, steps: int, seed: int,
               options: Mapping[str, Any]) -> Any:
        """Draw ``num`` samples in the modality's own representation (in original units).

        Default: dense samples of shape ``(num, *sample_shape(cfg))`` from :func:`polydiff.sample` in
        chunks of ``cfg.sample.batch_size`` with one generator per sample (``mix_seed(seed, i)``), on the
        model's device and dtype, returned on the CPU. ``options`` are passed to the sampler.
        """
        from .samplers import sample as polydiff_sample
        from .samplers import sample_in_chunks
        from .progress import sampling_callback

        p = next(model.parameters())
        shape = tuple(self.sample_shape(cfg))
        batch_size = int(getattr(getattr(cfg, "sample", None), "batch_size", num) or num)
        progress = sampling_callback(calls=-(-num // batch_size))  # a bar over every chunk (None outside the CLI)

        def draw(chunk: Any) -> Any:
            return polydiff_sample(model, shape=(chunk.size, *shape), sampler=sampler, steps=steps, generator=chunk.generators,
                                   dtype=p.dtype, device=p.device, callback=progress, **dict(options))

        with torch.no_grad():
            return sample_in_chunks(draw, num=num, batch_size=batch_size, seed=seed, device=p.device).x.cpu()

    def write_samples(self, samples: Any, out_dir: Path, cfg: Any, run: RunDir) -> list[Path]:
        """Write samples in the modality's file format; return the files written.

        Default (tensor samples): ``samples.csv`` for shape ``(N, D)``, else ``samples.safetensors``.
        """
        from .sample_files import write_tensor_samples

        return write_tensor_samples(samples, out_dir)

    def read_samples(self, samples_dir: Path) -> Any:
        """Read what :meth:`write_samples` wrote (``polydiff evaluate --samples DIR``); a folder without
        readable samples raises :class:`~polydiff.errors.DataError` naming it."""
        from .sample_files import read_tensor_samples

        return read_tensor_samples(samples_dir)

    @abstractmethod
    def evaluate(self, model: nn.Module, cfg: Any, run: RunDir, samples_dir: Path | None) -> dict[str, float]:
        """Metrics as a flat ``{name: number}`` mapping (printed as JSON by ``polydiff evaluate``)."""

    def report(self, metrics: Mapping[str, float], samples_dir: Path, out_dir: Path) -> str:
        """Markdown for ``polydiff demo`` (may write plots into ``out_dir`` and link them)."""
        rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items())
        return f"| metric | value |\n|---|---|\n{rows}\n"


__all__ = ["DataBundle", "EvalConfig", "Recipe", "RunDir", "SampleConfig", "SampleOption", "TrainConfig"]
