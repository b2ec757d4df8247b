"""Test helpers of the framework tests: a tiny recipe and plugin objects (not a test module)."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from torch import nn
from torch.utils.data import TensorDataset

import polydiff
from polydiff import hookimpl
from polydiff.errors import DataError
from polydiff.recipes import DataBundle, Recipe, RunDir, SampleConfig, SampleOption, TrainConfig


@dataclass(frozen=True)
class FakeData:
    path: Optional[str] = None
    n: int = 64
    kind: Literal["line", "ring"] = "line"


@dataclass(frozen=True)
class FakeModel:
    width: int = 8
    betas: tuple[float, float] = (0.1, 0.2)


@dataclass(frozen=True)
class FakeConfig:
    data: FakeData = field(default_factory=FakeData)
    model: FakeModel = field(default_factory=FakeModel)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=4, batch_size=16, warmup_steps=1, checkpoint_every=2, log_every=1, bf16=False, ema_decay=0.5))
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(num=8, sampler="euler", steps=4))


class Net(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.lin = nn.Sequential(nn.Linear(3, width), nn.SiLU(), nn.Linear(width, 2))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.cat([x_t, t.to(x_t.dtype)[:, None]], dim=-1))


class FakeRecipe(Recipe):
    """fake/points: 2-D points; data.path names a CSV (missing file -> DataError)."""

    name = "fake/points"
    description = "framework test recipe"
    config_class = FakeConfig
    presets = {"tiny": {"train.steps": 3, "model.width": 4}}
    sample_options = (SampleOption("scale", float, 1.0, "multiply samples"), SampleOption("label", str, "a"),
                      SampleOption("flip", bool, False))
    last_options: dict[str, Any] = {}

    def setup(self, cfg: FakeConfig, run: RunDir) -> None:
        if cfg.data.path is not None and not Path(cfg.data.path).is_file():
            raise DataError(f"data file {cfg.data.path!r} does not exist")

    def datasets(self, cfg: FakeConfig, run: RunDir) -> DataBundle:
        g = torch.Generator().manual_seed(0)
        return DataBundle(train=TensorDataset(torch.randn(cfg.data.n, 2, generator=g)),
                          collate=lambda items: torch.stack([i[0] for i in items]))

    def build_model(self, cfg: FakeConfig, run: RunDir) -> nn.Module:
        return polydiff.Denoiser(Net(cfg.model.width), polydiff.processes.get("flow"), prediction="velocity")

    def sample(self, model: nn.Module, cfg: FakeConfig, run: RunDir, *, num: int, sampler: str, steps: int, seed: int,
               options: Mapping[str, Any]) -> torch.Tensor:
        type(self).last_options = dict(options)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            x = polydiff.sample(model, shape=(num, 2), sampler=sampler, steps=steps, generator=g).x
        return x * options["scale"]

    def write_samples(self, samples: torch.Tensor, out_dir: Path, cfg: FakeConfig, run: RunDir) -> list[Path]:
        path = Path(out_dir) / "points.csv"
        with open(path, "w", newline="") as fh:
            csv.writer(fh).writerows(samples.tolist())
        return [path]

    def evaluate(self, model: nn.Module, cfg: FakeConfig, run: RunDir, samples_dir: Path | None) -> dict[str, float]:
        n = 0.0
        if samples_dir is not None:
            n = float(sum(1 for _ in open(Path(samples_dir) / "points.csv")))
        return {"n": n, "width": float(cfg.model.width)}


class FakePlugin:
    """Registers :class:`FakeRecipe`."""

    @hookimpl
    def register_recipes(self, register):
        register(FakeRecipe())
