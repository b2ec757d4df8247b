"""Recipe ``audio/udiffse``: unsupervised speech enhancement (UDiffSE-style) with a clean-speech prior.

The prior is an unconditional score model of *clean* compressed complex STFTs (the NCSN++-style U-Net of
``audio/sgmse`` with its mixture input held at zero) under a core Gaussian process (``vp-linear`` by default); it
never sees noisy data. Enhancement samples the posterior through the core's score guidance
(:class:`polydiff.guidance.ScoreGuidance`): the noise is zero-mean complex Gaussian with a power spectral density
``V = W H`` (an NMF of rank ``K``), so ``log p(Y | x_t) ~ log CN(Y; x_t / alpha_t, (sigma_t / alpha_t)^2 + V)`` (UDiffSE's
pseudo-likelihood); before each guided step ``W`` and ``H`` are re-estimated (the M-step) by ``nmf_iters``
Itakura-Saito multiplicative updates on ``|Y - x̂_0|^2``, the residual power of the current clean estimate. The
updates are the majorisation-minimisation form (exponent 1/2, Févotte & Idier 2011), which decrease the IS
divergence monotonically. Whole clips are enhanced at once (no chunking).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

import polydiff
from polydiff.guidance import ScoreGuidance
from polydiff.recipes import DataBundle, RunDir
from polydiff.seeding import mix_seed

from .backbones import NCSNppLite, pad_frames, unet_from_config
from .config import PRESETS, AudioConfig, AudioModelConfig
from .data import Clip, crop_or_pad
from .recipes import SGMSERecipe, normalise, spec_config
from .transforms import SpecConfig, spec_to_wav, wav_to_spec

# -- NMF noise model ---------------------------------------------------------------------------------------------------


def is_divergence(power: Tensor, model: Tensor) -> Tensor:
    """Itakura-Saito divergence ``sum (P / V - log(P / V) - 1)`` over the last two axes (``(B,)`` or scalar)."""
    r = power / model
    return (r - torch.log(r) - 1.0).sum(dim=(-2, -1))


def nmf_is_step(power: Tensor, w: Tensor, h: Tensor, eps: float = 1e-12) -> tuple[Tensor, Tensor]:
    """One majorisation-minimisation update of ``H`` then ``W`` for ``min D_IS(P | W H)``:
    ``H <- H [W^T (P V^-2) / W^T V^-1]^(1/2)``, then the same for ``W`` with ``V`` recomputed. Shapes ``P (..., F, T)``,
    ``W (..., F, K)``, ``H (..., K, T)``; every update does not increase the divergence."""
    v = w @ h + eps
    h = h * ((w.transpose(-1, -2) @ (power / v**2)) / (w.transpose(-1, -2) @ (1.0 / v)).clamp_min(eps)).sqrt()
    v = w @ h + eps
    w = w * (((power / v**2) @ h.transpose(-1, -2)) / ((1.0 / v) @ h.transpose(-1, -2)).clamp_min(eps)).sqrt()
    return w, h


class NMFNoiseGuidance(ScoreGuidance):
    """UDiffSE's posterior guidance with an NMF noise PSD re-estimated by EM between sampling steps.

    Args:
        y: the noisy mixture in the model's representation ``(B, 2, F, T)`` (real, imaginary).
        rank: NMF rank ``K``; scale: UDiffSE's ``lambda``; nmf_iters: M-step updates per guided evaluation;
        generator: seeds the positive initial ``W``, ``H``.
    """

    name: ClassVar[str] = "udiffse-nmf"

    def __init__(self, y: Tensor, rank: int = 4, scale: float = 1.5, nmf_iters: int = 1, generator: torch.Generator | None = None,
                 floor: float = 1e-8) -> None:
        b, _, f, t = y.shape
        self.y, self.scale, self.nmf_iters, self.floor = y, float(scale), int(nmf_iters), float(floor)
        p0 = float(y.detach().pow(2).sum(1).mean())
        self.w = (torch.rand(b, f, rank, generator=generator, dtype=torch.float64) + 0.5).to(y.device) * (p0 / rank) ** 0.5
        self.h = (torch.rand(b, rank, t, generator=generator, dtype=torch.float64) + 0.5).to(y.device) * (p0 / rank) ** 0.5
        self.objective: list[float] = []

    def noise_psd(self) -> Tensor:
        """``V = W H`` ``(B, F, T)``."""
        return self.w @ self.h + self.floor

    def m_step(self, x0: Tensor) -> None:
        """``nmf_iters`` IS-NMF updates on the residual power ``|Y - x̂_0|^2``."""
        p = (self.y - x0).detach().double().pow(2).sum(1) + self.floor
        for _ in range(self.nmf_iters):
            self.w, self.h = nmf_is_step(p, self.w, self.h)
        self.objective.append(float(is_divergence(p, self.noise_psd()).sum()))

    def log_likelihood(self, x_t: Tensor, t: Tensor, cond: Any, d: Any, space: Any) -> Tensor:
        from polydiff.guidance.common import alpha_sigma

        self.m_step(d.x0)
        a, s = alpha_sigma(self._process, t, x_t, space)
        var = (s / a) ** 2 + self.noise_psd().to(x_t.dtype)[:, None]  # (B, 1, F, T): both parts of a CN variable
        r = self.y - x_t / a
        return -self.scale * (r.pow(2) / var).sum(dim=(1, 2, 3))

    def wrap(self, model: Any):  # type: ignore[no-untyped-def]
        self._process = model.process
        return super().wrap(model)


# -- the recipe --------------------------------------------------------------------------------------------------------


class UnconditionalUNet(nn.Module):
    """The NCSN++-style U-Net as an unconditional network ``forward(x_t, t)`` (its mixture input held at zero)."""

    def __init__(self, net: NCSNppLite) -> None:
        super().__init__()
        self.net = net
        self.multiple = net.multiple

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.net(x_t, t, torch.zeros_like(x_t))


@dataclass(frozen=True)
class UDiffSEModelConfig(AudioModelConfig):
    prior_process: str = "vp-linear"  # a core Gaussian process for the clean-speech prior
    prediction: str = "eps"
    nmf_rank: int = 4
    guidance_scale: float = 1.5  # UDiffSE's lambda
    nmf_iters: int = 1  # M-step updates per guided step


@dataclass(frozen=True)
class UDiffSEConfig(AudioConfig):
    model: UDiffSEModelConfig = field(default_factory=UDiffSEModelConfig)


UDIFFSE_PRESETS = {k: {**v, "sample.sampler": "ddpm"} for k, v in PRESETS.items()}


class CleanDataset(Dataset):
    """Item ``i``: a seeded crop of clean clip ``i mod n`` (peak-normalised), as ``{"x": (2, F, T)}``."""

    def __init__(self, clips: list[Clip], frames: int, spec: SpecConfig, items: int, seed: int) -> None:
        self.clips, self.spec, self.items, self.seed = clips, spec, items, seed
        self.length = spec.samples_for(frames)

    def __len__(self) -> int:
        return self.items

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        a, _ = crop_or_pad(self.clips[i % len(self.clips)].audio, self.length, np.random.default_rng(mix_seed(self.seed, i)))
        a, _, _ = normalise(np.asarray(a, dtype=np.float32))
        return {"x": wav_to_spec(torch.from_numpy(a)[None], self.spec)[0]}


class UDiffSERecipe(SGMSERecipe):
    """Unsupervised enhancement: a clean-speech prior plus NMF-noise posterior guidance (EM during sampling)."""

    name: ClassVar[str] = "audio/udiffse"
    description: ClassVar[str] = "UDiffSE: clean-speech STFT prior (core Gaussian process) + posterior guidance with an NMF noise model fitted by EM"
    demo: ClassVar[bool] = False
    config_class: ClassVar[type] = UDiffSEConfig
    presets = UDIFFSE_PRESETS
    sample_options = SGMSERecipe.sample_options[:1]

    def datasets(self, cfg: UDiffSEConfig, run: RunDir) -> DataBundle:
        c, d, spec = self.corpus(cfg), cfg.data, spec_config(cfg)
        tr = c.get("train_clean")
        va = c.get("val_clean")
        return DataBundle(train=CleanDataset(tr, d.segment_frames, spec, d.train_items, cfg.train.seed),
                          val=CleanDataset(va, d.segment_frames, spec, d.val_items, 10**6))

    def process(self, cfg: UDiffSEConfig):
        return polydiff.processes.get(cfg.model.prior_process)

    def build_model(self, cfg: UDiffSEConfig, run: RunDir | None = None) -> nn.Module:
        m = cfg.model
        return polydiff.Denoiser(UnconditionalUNet(unet_from_config(m)), self.process(cfg), prediction=m.prediction)

    def enhance(self, model: nn.Module, cfg: UDiffSEConfig, noisy: np.ndarray, *, sampler: str, steps: int, seed: int,
                options: Any = None) -> tuple[np.ndarray, int]:
        """Enhance one clip ``(N,)`` whole; returns ``(enhanced (N,), NFE)``."""
        spec = spec_config(cfg)
        p = next(model.parameters())
        y_wav, _, scale = normalise(np.asarray(noisy, dtype=np.float32))
        y = wav_to_spec(torch.from_numpy(np.ascontiguousarray(y_wav))[None], spec)
        frames = y.shape[-1]
        y, _ = pad_frames(y, getattr(model.net, "multiple", 1))
        gen = torch.Generator().manual_seed(int(seed))
        g = NMFNoiseGuidance(y.to(p.device, p.dtype), rank=cfg.model.nmf_rank, scale=cfg.model.guidance_scale,
                             nmf_iters=cfg.model.nmf_iters, generator=gen)
        r = polydiff.sample(model, shape=tuple(y.shape), sampler=sampler, steps=steps, generator=[torch.Generator(device=p.device).manual_seed(int(seed))],
                            guidance=[g], dtype=p.dtype, device=p.device)
        x = r.x.detach().float().cpu()[..., :frames]
        return spec_to_wav(x, spec, len(y_wav))[0].numpy() * scale, int(r.nfe)


__all__ = ["CleanDataset", "NMFNoiseGuidance", "UDiffSEConfig", "UDiffSERecipe", "UnconditionalUNet", "is_divergence", "nmf_is_step"]
