"""File templates of ``polydiff new-plugin`` (``string.Template``: ``$name``, ``$package``, ``$recipe``...)."""

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A polydiff plugin: the $recipe recipe (2-D Gaussian mixture, small MLP denoiser)."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["polydiff>=0.1"]

[project.optional-dependencies]
dev = ["pytest>=8"]

# polydiff finds the plugin through this entry point (group "polydiff", name = plugin name).
[project.entry-points.polydiff]
$entry_point = "$package.plugin"

[tool.setuptools.packages.find]
where = ["src"]
'''

README = '''\
# $dist

A [polydiff](https://github.com/) plugin made by `polydiff new-plugin $name`. It registers the recipe
`$recipe`: a 2-D Gaussian mixture learnt by a small MLP denoiser (presets `tiny`, `small`, `base`).

```bash
pip install -e .
polydiff plugins                      # lists "$entry_point" with the recipe $recipe
polydiff train $recipe --out runs/a --preset tiny
polydiff sample runs/a --out runs/a/samples
polydiff evaluate runs/a --samples runs/a/samples
pytest                                # the plugin's tests
```

Edit `src/$package/recipe.py` to bring your own data and network; see polydiff's `docs/plugin-guide.md`.
'''

INIT = '''\
"""$dist: a polydiff plugin."""

__version__ = "0.1.0"
'''

PLUGIN = '''\
"""Plugin hooks (entry point ``polydiff: $entry_point``). Import heavy dependencies inside hooks or factories."""

from polydiff import hookimpl


@hookimpl
def register_recipes(register):
    """Register the $recipe recipe."""
    from .recipe import ${Class}Recipe

    register(${Class}Recipe())
'''

RECIPE = '''\
"""The $recipe recipe: K Gaussian modes on a circle, learnt by a small MLP denoiser (v-prediction).

The data are generated (no download): ``K`` equally weighted modes ``N(mu_k, std^2 I)`` with
``mu_k = radius (cos 2 pi k/K, sin 2 pi k/K)``. For ``K >= 3`` the mixture's mean is 0 and its
covariance ``(radius^2 / 2 + std^2) I`` — the metrics compare samples with these exact moments.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

import polydiff
from polydiff.errors import DataError
from polydiff.recipes import DataBundle, Recipe, RunDir, SampleConfig, TrainConfig


@dataclass(frozen=True)
class DataConfig:
    """``modes`` Gaussian modes of standard deviation ``std`` on a circle of ``radius``."""

    n_train: int = 8192
    modes: int = 6
    radius: float = 2.0
    std: float = 0.15
    seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """An MLP of ``depth`` hidden layers of ``width`` units; the forward process and prediction type."""

    width: int = 128
    depth: int = 3
    process: str = "vp-cosine"
    prediction: str = "v"  # v (or x0) stays stable near t = 1, where alpha_t -> 0 amplifies eps errors


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=3000, batch_size=256, lr=2e-3, warmup_steps=50, ema_decay=0.995, checkpoint_every=500, bf16=False))
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(num=2000, sampler="euler", steps=50))


def mode_centres(data: DataConfig) -> Tensor:
    """Mode centres, shape ``(K, 2)`` float64."""
    angle = 2.0 * math.pi * torch.arange(data.modes, dtype=torch.float64) / data.modes
    return data.radius * torch.stack([angle.cos(), angle.sin()], dim=-1)


def draw(data: DataConfig, n: int, seed: int) -> Tensor:
    """``n`` points from the mixture, shape ``(n, 2)`` float32, reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(data.modes, (n,), generator=g)
    return (mode_centres(data)[k] + data.std * torch.randn(n, 2, generator=g, dtype=torch.float64)).float()


def exact_moments(data: DataConfig) -> tuple[Tensor, Tensor]:
    """The mixture's exact mean ``(2,)`` and covariance ``(2, 2)`` (float64)."""
    mu = mode_centres(data)
    centred = mu - mu.mean(0)
    return mu.mean(0), centred.T @ centred / data.modes + data.std**2 * torch.eye(2, dtype=torch.float64)


class Points(Dataset):
    """Rows of an ``(N, 2)`` tensor; each item has shape ``(2,)``."""

    def __init__(self, x: Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> Tensor:
        return self.x[i]


class MLP(nn.Module):
    """``net(x_t, t)``: ``x_t`` ``(B, 2)`` and ``t`` ``(B,)`` in [0, 1] -> ``(B, 2)``."""

    def __init__(self, width: int, depth: int, features: int = 8) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"model.width and model.depth must be >= 1, got {width} and {depth}")
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(features // 2, dtype=torch.float32), persistent=False)
        layers: list[nn.Module] = [nn.Linear(2 + features, width), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(width, 2))

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        angles = t.to(x_t.dtype)[:, None] * self.freqs  # time features (B, F/2)
        return self.net(torch.cat([x_t, angles.sin(), angles.cos()], dim=-1))


class ${Class}Recipe(Recipe):
    """$recipe: a 2-D Gaussian mixture (samples written as CSV)."""

    name = "$recipe"
    description = "2-D Gaussian mixture on a circle, small MLP denoiser (made by polydiff new-plugin)"
    config_class = Config
    demo = True
    presets: Mapping[str, Mapping[str, Any]] = {
        "tiny": {"train.steps": 1500, "train.batch_size": 128, "train.warmup_steps": 20, "train.checkpoint_every": 500,
                 "model.width": 128, "model.depth": 3, "sample.num": 1000, "sample.steps": 32},
        "small": {"train.steps": 5000, "model.width": 256, "model.depth": 3},
        "base": {"train.steps": 20000, "train.batch_size": 512, "model.width": 256, "model.depth": 4},
    }

    def datasets(self, cfg: Config, run: RunDir) -> DataBundle:
        return DataBundle(train=Points(draw(cfg.data, cfg.data.n_train, cfg.data.seed)))

    def build_model(self, cfg: Config, run: RunDir) -> nn.Module:
        net = MLP(cfg.model.width, cfg.model.depth)
        return polydiff.Denoiser(net, polydiff.processes.get(cfg.model.process), prediction=cfg.model.prediction)

    def sample(self, model: nn.Module, cfg: Config, run: RunDir, *, num: int, sampler: str, steps: int, seed: int,
               options: Mapping[str, Any]) -> Tensor:
        """``num`` points, shape ``(num, 2)``."""
        p = next(model.parameters())
        g = torch.Generator(p.device).manual_seed(seed)
        with torch.no_grad():
            out = polydiff.sample(model, shape=(num, 2), sampler=sampler, steps=steps, generator=g,
                                  dtype=p.dtype, device=p.device, **dict(options))
        return out.x.cpu()

    def write_samples(self, samples: Tensor, out_dir: Path, cfg: Config, run: RunDir) -> list[Path]:
        path = Path(out_dir) / "samples.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["x", "y"])
            writer.writerows([[f"{a:.7g}", f"{b:.7g}"] for a, b in samples.tolist()])
        return [path]

    def read_samples(self, samples_dir: Path) -> Tensor:
        """Points from ``samples_dir/samples.csv``, shape ``(N, 2)`` float64."""
        path = Path(samples_dir) / "samples.csv"
        try:
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))[1:]
            return torch.tensor([[float(a), float(b)] for a, b in rows], dtype=torch.float64)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read samples ({exc}); expected a CSV with header x,y") from None

    def evaluate(self, model: nn.Module, cfg: Config, run: RunDir, samples_dir: Path | None) -> dict[str, float]:
        """Mean and covariance errors against the exact moments; the fraction of samples near a mode.

        ``in_mode`` is the fraction within 3 std of the nearest centre; for the data itself it is
        ``P(chi2_2 <= 9) = 1 - exp(-4.5) = 0.989`` (modes far apart compared with std).
        """
        if samples_dir is not None:
            x = self.read_samples(samples_dir)
        else:
            x = self.sample(model, cfg, run, num=cfg.sample.num, sampler=cfg.sample.sampler, steps=cfg.sample.steps,
                            seed=0, options={}).double()
        mean, cov = exact_moments(cfg.data)
        dist = torch.cdist(x, mode_centres(cfg.data)).min(dim=1).values
        return {
            "n": float(x.shape[0]),
            "mean_error": float((x.mean(0) - mean).norm()),
            "cov_error": float((torch.cov(x.T) - cov).norm()),
            "in_mode": float((dist <= 3 * cfg.data.std).double().mean()),
            "in_mode_data": 1.0 - math.exp(-4.5),
        }
'''

TEST = '''\
"""Tests of the $name plugin: the data against exact moments, registration, and a tiny training run."""

import math

import torch

from polydiff.config import resolve_config
from polydiff.plugins import isolated_plugins
from polydiff.recipes import RunDir
from polydiff.training import load_model, train

from $package import plugin
from $package.recipe import ${Class}Recipe, draw, exact_moments


def test_data_mean_matches_the_exact_mean(polydiff_generator):
    """The sample mean of n draws is within 5 standard errors (sqrt(var / n)) of the exact mean."""
    recipe = ${Class}Recipe()
    cfg = resolve_config(recipe)
    n = 20000
    seed = int(torch.randint(1000, (1,), generator=polydiff_generator))  # polydiff.testing fixture
    x = draw(cfg.data, n, seed).double()
    mean, cov = exact_moments(cfg.data)
    se = (torch.diagonal(cov) / n).sqrt()
    assert ((x.mean(0) - mean).abs() <= 5 * se).all()


def test_plugin_registers_the_recipe():
    with isolated_plugins(("$entry_point", plugin)) as regs:
        assert "$recipe" in regs.recipes.names()


def test_tiny_preset_trains_and_samples(tmp_path):
    recipe = ${Class}Recipe()
    cfg = resolve_config(recipe, preset="tiny", overrides=["train.steps=20"])
    run = RunDir(tmp_path / "run")
    result = train(recipe, cfg, run, progress=False)
    assert result.steps == 20 and math.isfinite(result.final_loss)
    model = load_model(recipe, cfg, run)
    x = recipe.sample(model, cfg, run, num=16, sampler="euler", steps=4, seed=0, options={})
    assert x.shape == (16, 2) and torch.isfinite(x).all()
'''
