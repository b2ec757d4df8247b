"""A toy recipe: a 2-D Gaussian mixture on a circle, learnt by a small MLP epsilon-prediction denoiser.

It exercises the whole recipe contract in seconds on a CPU (training engine, checkpoints, sampling,
sample writing and evaluation), so framework tests and plugin authors have a known-good recipe.
It is deliberately *not* registered through an entry point; tests register it through a test plugin.

The mixture has ``K`` equally weighted components ``N(mu_k, s^2 I)`` with ``mu_k = r (cos 2 pi k/K,
sin 2 pi k/K)``; for ``K >= 3`` its mean is 0 and its covariance ``(r^2/2 + s^2) I``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..denoiser import Denoiser
from ..processes.gaussian import gaussian
from ..recipes import DataBundle, Recipe, RunDir, SampleConfig, TrainConfig
from ..samplers import sample as polydiff_sample

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class ToyDataConfig:
    """The mixture: ``components`` modes on a circle of ``radius``, each with standard deviation ``std``."""

    n_train: int = 4096
    n_val: int = 512
    components: int = 8
    radius: float = 2.0
    std: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class ToyModelConfig:
    """MLP ``width`` x ``depth`` on ``(x, time features)``; ``dtype`` is ``float32`` or ``float64``.

    The default ``v`` prediction stays well conditioned near ``t = 1``; an ``eps`` model on ``vp-cosine``
    works too but amplifies its error by ``sigma/alpha`` (~5000 at ``t_max``) on a uniform grid, so sample
    it on the ``log-snr`` grid.
    """

    width: int = 64
    depth: int = 2
    schedule: str = "vp-cosine"
    prediction: str = "v"
    time_features: int = 8
    dtype: str = "float32"


@dataclass(frozen=True)
class ToyConfig:
    data: ToyDataConfig = field(default_factory=ToyDataConfig)
    model: ToyModelConfig = field(default_factory=ToyModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=2000, batch_size=128, lr=2e-3, warmup_steps=50, checkpoint_every=500, ema_decay=0.99, log_every=50))
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(num=1000, sampler="euler", steps=64, batch_size=1000))


def toy_config(train: Mapping[str, Any] | None = None, model: Mapping[str, Any] | None = None,
               data: Mapping[str, Any] | None = None) -> ToyConfig:
    """A :class:`ToyConfig` with field overrides per section, e.g. ``toy_config(train={"steps": 20})``."""
    base = ToyConfig()
    return ToyConfig(
        data=replace(base.data, **dict(data or {})),
        model=replace(base.model, **dict(model or {})),
        train=replace(base.train, **dict(train or {})),
        sample=base.sample,
    )


def mixture_means(data: ToyDataConfig, dtype: torch.dtype = torch.float64) -> Tensor:
    """Component means, shape ``(K, 2)``."""
    angle = 2.0 * math.pi * torch.arange(data.components, dtype=torch.float64) / data.components
    return (data.radius * torch.stack([angle.cos(), angle.sin()], dim=-1)).to(dtype)


def mixture_sample(data: ToyDataConfig, n: int, seed: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``n`` draws from the mixture, shape ``(n, 2)``, reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(data.components, (n,), generator=g)
    x = mixture_means(data)[k] + data.std * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x.to(dtype)


def mixture_moments(data: ToyDataConfig) -> tuple[Tensor, Tensor]:
    """Exact mean ``(2,)`` and covariance ``(2, 2)`` of the mixture (float64)."""
    mu = mixture_means(data)
    mean = mu.mean(0)
    centred = mu - mean
    cov = centred.T @ centred / data.components + data.std**2 * torch.eye(2, dtype=torch.float64)
    return mean, cov


class PointDataset(Dataset):
    """Rows of a ``(N, D)`` tensor as items of shape ``(D,)``."""

    def __init__(self, x: Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> Tensor:
        return self.x[i]


class ToyMLP(nn.Module):
    """``eps_hat = MLP([x_t, sin/cos features of t])``; ``x_t`` ``(B, D)``, ``t`` ``(B,)`` -> ``(B, D)``."""

    def __init__(self, dim: int = 2, width: int = 64, depth: int = 2, time_features: int = 8) -> None:
        super().__init__()
        if width < 1 or depth < 1 or time_features < 2 or time_features % 2:
            raise ValueError(f"model: width and depth must be >= 1 and time_features even >= 2; got {width}, {depth}, {time_features}")
        self.register_buffer("freqs", torch.pi * 2.0 ** torch.arange(time_features // 2, dtype=torch.float32), persistent=False)
        layers: list[nn.Module] = [nn.Linear(dim + time_features, width), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        angles = t.to(x_t.dtype)[:, None] * self.freqs.to(x_t.dtype)  # (B, F/2): t is per-sample, not broadcast data
        return self.net(torch.cat([x_t, angles.sin(), angles.cos()], dim=-1))


class ToyRecipe(Recipe):
    """``toy/gaussian-mixture``: the framework's own test recipe (2-D data, samples as CSV)."""

    name = "toy/gaussian-mixture"
    description = "2-D Gaussian mixture on a circle; small MLP eps-denoiser (framework tests and demos)"
    config_class = ToyConfig
    presets: Mapping[str, Mapping[str, Any]] = {
        "tiny": {"train.steps": 300, "train.batch_size": 128, "train.warmup_steps": 20, "train.checkpoint_every": 100,
                 "train.log_every": 50, "model.width": 64, "model.depth": 2},
        "small": {"train.steps": 2000, "model.width": 128, "model.depth": 3},
        "base": {"train.steps": 10000, "train.batch_size": 256, "model.width": 256, "model.depth": 4},
    }

    def datasets(self, cfg: ToyConfig, run: RunDir) -> DataBundle:
        dtype = _DTYPES[cfg.model.dtype]
        train = mixture_sample(cfg.data, cfg.data.n_train, cfg.data.seed, dtype)
        val = mixture_sample(cfg.data, cfg.data.n_val, cfg.data.seed + 1, dtype) if cfg.data.n_val > 0 else None
        return DataBundle(train=PointDataset(train), val=PointDataset(val) if val is not None else None)

    def build_model(self, cfg: ToyConfig, run: RunDir) -> nn.Module:
        if cfg.model.dtype not in _DTYPES:
            raise ValueError(f"model.dtype must be one of {sorted(_DTYPES)}, got {cfg.model.dtype!r}")
        net = ToyMLP(2, cfg.model.width, cfg.model.depth, cfg.model.time_features)
        return Denoiser(net, gaussian(cfg.model.schedule), prediction=cfg.model.prediction).to(_DTYPES[cfg.model.dtype])

    def sample(self, model: nn.Module, cfg: ToyConfig, run: RunDir, *, num: int, sampler: str, steps: int, seed: int,
               options: Mapping[str, Any]) -> Tensor:
        """``num`` points, shape ``(num, 2)``."""
        p = next(model.parameters())
        g = torch.Generator(p.device).manual_seed(seed)
        with torch.no_grad():
            return polydiff_sample(model, shape=(num, 2), sampler=sampler, steps=steps, generator=g,
                                   dtype=p.dtype, device=p.device, **dict(options)).x.cpu()

    def write_samples(self, samples: Tensor, out_dir: Path, cfg: ToyConfig, run: RunDir) -> list[Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "samples.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["x0", "x1"])
            w.writerows([[f"{a:.8g}", f"{b:.8g}"] for a, b in samples.tolist()])
        return [path]

    def read_samples(self, samples_dir: Path) -> Tensor:
        """Points from ``samples_dir/samples.csv``, shape ``(N, 2)`` float64."""
        path = Path(samples_dir) / "samples.csv"
        try:
            with open(path, newline="") as f:
                rows = list(csv.reader(f))[1:]
            return torch.tensor([[float(a), float(b)] for a, b in rows], dtype=torch.float64)
        except (OSError, ValueError) as e:
            from ..errors import DataError

            raise DataError(f"{path}: cannot read samples ({e}); expected a CSV with header x0,x1") from None

    def evaluate(self, model: nn.Module, cfg: ToyConfig, run: RunDir, samples_dir: Path | None) -> dict[str, float]:
        """Mean error, covariance error (Frobenius) against the exact moments, and sliced W1 against fresh data."""
        if samples_dir is not None:
            x = self.read_samples(samples_dir)
        else:
            x = self.sample(model, cfg, run, num=cfg.sample.num, sampler=cfg.sample.sampler, steps=cfg.sample.steps,
                            seed=cfg.train.seed, options={}).to(torch.float64)
        ref = mixture_sample(cfg.data, x.shape[0], cfg.data.seed + 2, torch.float64)
        mean, cov = mixture_moments(cfg.data)
        return {
            "n": float(x.shape[0]),
            "mean_error": float((x.mean(0) - mean).norm()),
            "cov_error": float((torch.cov(x.T) - cov).norm()),
            "sliced_wasserstein": sliced_wasserstein(x, ref),
        }


def sliced_wasserstein(x: Tensor, y: Tensor, *, projections: int = 64, seed: int = 0) -> float:
    """Mean 1-D Wasserstein-1 distance over ``projections`` fixed random directions; ``x``, ``y`` are ``(N, D)``."""
    if x.shape != y.shape:
        raise ValueError(f"sliced_wasserstein needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(x.shape[1], projections, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=0, keepdim=True)
    px = (x.to(torch.float64) @ d).sort(dim=0).values
    py = (y.to(torch.float64) @ d).sort(dim=0).values
    return float((px - py).abs().mean())


__all__ = ["PointDataset", "ToyConfig", "ToyDataConfig", "ToyMLP", "ToyModelConfig", "ToyRecipe", "mixture_moments",
           "mixture_sample", "sliced_wasserstein", "toy_config"]
