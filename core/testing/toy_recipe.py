"""The toy recipe: a 2-D Gaussian mixture on a circle, learnt by a small MLP denoiser.

``K`` equally weighted modes ``N(mu_k, std^2 I)`` with ``mu_k = radius (cos 2 pi k/K, sin 2 pi k/K)``;
for ``K >= 3`` the mean is 0 and the covariance ``(radius^2 / 2 + std^2) I``, which the metrics use.
It trains in seconds on a CPU and uses polydiff's public API only (``polydiff new-plugin`` copies it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from polydiff import Denoiser, processes
from polydiff.recipes import DataBundle, Recipe, RunDir, SampleConfig, TrainConfig


@dataclass(frozen=True)
class ToyDataConfig:
    """``data``: ``components`` modes on a circle of ``radius``, each with standard deviation ``std``."""

    n_train: int = 4096
    n_val: int = 512
    components: int = 8
    radius: float = 2.0
    std: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class ToyModelConfig:
    """``model``: MLP ``width`` x ``depth`` on ``(x_t, time features)``; process schedule and prediction."""

    width: int = 64
    depth: int = 2
    schedule: str = "vp-cosine"
    prediction: Literal["eps", "x0", "v"] = "v"
    time_features: int = 8
    dtype: Literal["float32", "float64"] = "float32"


@dataclass(frozen=True)
class ToyConfig:
    data: ToyDataConfig = field(default_factory=ToyDataConfig)
    model: ToyModelConfig = field(default_factory=ToyModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=2000, batch_size=128, lr=2e-3, warmup_steps=50, checkpoint_every=500, ema_decay=0.99, log_every=50))
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(num=1000, sampler="euler", steps=64, batch_size=1000))


def mixture_means(data: ToyDataConfig) -> Tensor:
    """Mode centres, shape ``(K, 2)`` float64."""
    angle = 2.0 * math.pi * torch.arange(data.components, dtype=torch.float64) / data.components
    return data.radius * torch.stack([angle.cos(), angle.sin()], dim=-1)


def mixture_sample(data: ToyDataConfig, n: int, seed: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``n`` draws from the mixture, shape ``(n, 2)``, reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(data.components, (n,), generator=g)
    return (mixture_means(data)[k] + data.std * torch.randn(n, 2, generator=g, dtype=torch.float64)).to(dtype)


def mixture_moments(data: ToyDataConfig) -> tuple[Tensor, Tensor]:
    """Exact mean ``(2,)`` and covariance ``(2, 2)`` of the mixture (float64)."""
    mu = mixture_means(data)
    centred = mu - mu.mean(0)
    return mu.mean(0), centred.T @ centred / data.components + data.std**2 * torch.eye(2, dtype=torch.float64)


def sliced_wasserstein(x: Tensor, y: Tensor, *, projections: int = 64, seed: int = 0) -> float:
    """Mean 1-D Wasserstein-1 distance over ``projections`` fixed random directions; ``x``, ``y`` are ``(N, D)``."""
    if x.shape != y.shape:
        raise ValueError(f"sliced_wasserstein needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    d = torch.randn(x.shape[1], projections, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    d = d / d.norm(dim=0, keepdim=True)
    return float(((x.double() @ d).sort(dim=0).values - (y.double() @ d).sort(dim=0).values).abs().mean())


class PointDataset(Dataset):
    """Rows of a ``(N, D)`` tensor as items of shape ``(D,)``."""

    def __init__(self, x: Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> Tensor:
        return self.x[i]


class ToyMLP(nn.Module):
    """``net(x_t, t)``: ``x_t`` ``(B, D)`` and ``t`` ``(B,)`` (as sin/cos features) -> ``(B, D)``."""

    def __init__(self, dim: int = 2, width: int = 64, depth: int = 2, time_features: int = 8) -> None:
        super().__init__()
        if min(width, depth) < 1 or time_features < 2 or time_features % 2:
            raise ValueError(f"model: width, depth >= 1 and time_features even >= 2 expected; got {width}, {depth}, {time_features}")
        self.register_buffer("freqs", torch.pi * 2.0 ** torch.arange(time_features // 2, dtype=torch.float32), persistent=False)
        layers: list[nn.Module] = [nn.Linear(dim + time_features, width), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(width, dim))

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        angles = t.to(x_t.dtype)[:, None] * self.freqs.to(x_t.dtype)  # (B, F/2)
        return self.net(torch.cat([x_t, angles.sin(), angles.cos()], dim=-1))


class ToyRecipe(Recipe):
    """Samples are ``(N, 2)`` tensors: the default ``Recipe.sample`` draws them, the default writer makes a CSV."""

    name = "toy/gaussian-mixture"
    description = "2-D Gaussian mixture on a circle; small MLP denoiser"
    config_class = ToyConfig
    presets: Mapping[str, Mapping[str, Any]] = {
        "tiny": {"train.steps": 300, "train.warmup_steps": 20, "train.checkpoint_every": 100},
        "small": {"train.steps": 2000, "model.width": 128, "model.depth": 3},
        "base": {"train.steps": 10000, "train.batch_size": 256, "model.width": 256, "model.depth": 4},
    }

    def datasets(self, cfg: ToyConfig, run: RunDir) -> DataBundle:
        dtype = getattr(torch, cfg.model.dtype)
        val = PointDataset(mixture_sample(cfg.data, cfg.data.n_val, cfg.data.seed + 1, dtype)) if cfg.data.n_val > 0 else None
        return DataBundle(train=PointDataset(mixture_sample(cfg.data, cfg.data.n_train, cfg.data.seed, dtype)), val=val)

    def build_model(self, cfg: ToyConfig, run: RunDir) -> nn.Module:
        m = cfg.model
        net = ToyMLP(2, m.width, m.depth, m.time_features)
        return Denoiser(net, processes.get(m.schedule), prediction=m.prediction).to(getattr(torch, m.dtype))

    def sample_shape(self, cfg: ToyConfig) -> tuple[int, ...]:  # one sample is a point (x0, x1)
        return (2,)

    def evaluate(self, model: nn.Module, cfg: ToyConfig, run: RunDir, samples_dir: Path | None) -> dict[str, float]:
        """Mean and covariance errors (Frobenius) against the exact moments; sliced W1 against fresh data."""
        sc = cfg.sample
        x = (self.read_samples(samples_dir) if samples_dir is not None else self.sample(
            model, cfg, run, num=sc.num, sampler=sc.sampler, steps=sc.steps, seed=cfg.train.seed, options={})).double()
        mean, cov = mixture_moments(cfg.data)
        return {"n": float(x.shape[0]), "mean_error": float((x.mean(0) - mean).norm()),
                "cov_error": float((torch.cov(x.T) - cov).norm()),
                "sliced_wasserstein": sliced_wasserstein(x, mixture_sample(cfg.data, x.shape[0], cfg.data.seed + 2, torch.float64))}


# -- below: helpers for polydiff's own tests; `polydiff new-plugin` copies everything above this line --


def toy_config(train: Mapping[str, Any] | None = None, model: Mapping[str, Any] | None = None,
               data: Mapping[str, Any] | None = None) -> ToyConfig:
    """A :class:`ToyConfig` with field overrides per section, e.g. ``toy_config(train={"steps": 20})`` (tests)."""
    from dataclasses import replace

    base = ToyConfig()
    return ToyConfig(data=replace(base.data, **dict(data or {})), model=replace(base.model, **dict(model or {})),
                     train=replace(base.train, **dict(train or {})), sample=base.sample)


__all__ = ["PointDataset", "ToyConfig", "ToyDataConfig", "ToyMLP", "ToyModelConfig", "ToyRecipe", "mixture_moments",
           "mixture_sample", "sliced_wasserstein", "toy_config"]
