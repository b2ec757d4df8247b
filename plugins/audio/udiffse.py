"""Recipe ``audio/udiffse``: unsupervised speech enhancement (UDiffSE-style) with a clean-speech prior.

The prior is an unconditional score model of *clean* compressed complex STFTs (the NCSN++-style U-Net of
``audio/sgmse`` with its mixture input held at zero) under a core Gaussian process (``vp-linear`` by default); it
never sees noisy data. Enhancement samples the posterior through the core's score guidance
(:class:`polydiff.guidance.ScoreGuidance`): the noise is zero-mean complex Gaussian with a power spectral density
``V = W H`` (an NMF of rank ``K``), so ``log p(Y | x_t) ~ log CN(Y; x_t / alpha_t, (sigma_t / alpha_t)^2 + V)`` (UDiffSE's
pseudo-likelihood).

The sampling schedule is the paper's EM (Nortier, Sadeghi & Serizel, ICASSP 2024; the reference code
``joanne-b-nortier/UDiffSE`` runs ``num_EM = 5`` outer iterations of ``num_E = 30`` reverse steps): each **E-step** is
one whole posterior-sampling pass (``steps`` reverse steps from t = 1, ``posterior_samples`` draws) with the noise PSD
``V`` held fixed; each **M-step** then re-fits ``W`` and ``H`` by ``nmf_iters`` Itakura-Saito multiplicative updates on the
residual power ``mean_k |Y - S_k|^2`` of the E-step's draws. After the last iteration the draws are averaged. NFE per
clip: ``em_iterations x steps`` (per draw; the draws run as one batch). ``em_iterations = 0`` selects a one-pass variant
in which ``W``, ``H`` are re-estimated before every guided step from the model's current clean estimate ``x̂_0``
(``steps`` NFE; faster, not the paper's schedule).

Where this differs from the reference code: the prior here is a core Gaussian (VP) process that starts from N(0, I),
not the OUVE process started at the mixture, so the first E-step is guided with the initial ``V`` (positive random
factors at the mixture's mean power) instead of being run unguided; the updates are the majorisation-minimisation form
(exponent 1/2, Févotte & Idier 2011), which decrease the IS divergence monotonically (the reference uses exponent 1);
the likelihood is applied at every step, not every second. Whole clips are enhanced at once (no chunking).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

import polydiff
from polydiff.errors import UserInputError
from polydiff.guidance import ScoreGuidance
from polydiff.recipes import DataBundle, RunDir, SampleOption
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
        y: the noisy mixture in the model's representation ``(B, 2, F, T)`` (real, imaginary); the sampled batch may
            hold several draws per mixture when ``B = 1`` (``y``, ``W``, ``H`` broadcast over the draws).
        rank: NMF rank ``K``; scale: UDiffSE's ``lambda``; nmf_iters: IS-NMF updates per M-step;
        generator: seeds the positive initial ``W``, ``H``.
        per_step: re-estimate ``W``, ``H`` before every guided evaluation from the model's ``x̂_0`` (the one-pass
            variant); ``False``: ``V`` stays fixed while sampling and :meth:`m_step` is called between passes (EM).
    """

    name: ClassVar[str] = "udiffse-nmf"

    def __init__(self, y: Tensor, rank: int = 4, scale: float = 1.5, nmf_iters: int = 1, generator: torch.Generator | None = None,
                 floor: float = 1e-8, per_step: bool = True) -> None:
        b, _, f, t = y.shape
        self.y, self.scale, self.nmf_iters, self.floor = y, float(scale), int(nmf_iters), float(floor)
        self.per_step = bool(per_step)
        p0 = float(y.detach().pow(2).sum(1).mean())
        self.w = (torch.rand(b, f, rank, generator=generator, dtype=torch.float64) + 0.5).to(y.device) * (p0 / rank) ** 0.5
        self.h = (torch.rand(b, rank, t, generator=generator, dtype=torch.float64) + 0.5).to(y.device) * (p0 / rank) ** 0.5
        self.objective: list[float] = []

    def noise_psd(self) -> Tensor:
        """``V = W H`` ``(B, F, T)``."""
        return self.w @ self.h + self.floor

    def residual_power(self, x0: Tensor) -> Tensor:
        """``mean over draws |Y - x0|^2`` ``(B_y, F, T)`` (both channels summed) for ``x0`` ``(B, 2, F, T)``: with one
        mixture (``B_y = 1``) and several draws the power is averaged over the draws (UDiffSE's ``Vm``)."""
        p = (self.y - x0).detach().double().pow(2).sum(1)
        if self.y.shape[0] == 1 and p.shape[0] > 1:
            p = p.mean(0, keepdim=True)
        return p + self.floor

    def m_step(self, x0: Tensor) -> None:
        """``nmf_iters`` IS-NMF updates of ``W``, ``H`` on :meth:`residual_power` of the clean estimate(s) ``x0``."""
        p = self.residual_power(x0)
        for _ in range(self.nmf_iters):
            self.w, self.h = nmf_is_step(p, self.w, self.h)
        self.objective.append(float(is_divergence(p, self.noise_psd()).sum()))

    def log_likelihood(self, x_t: Tensor, t: Tensor, cond: Any, d: Any, space: Any) -> Tensor:
        from polydiff.guidance.common import alpha_sigma

        if self.per_step:
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
    nmf_iters: int = 1  # IS-NMF updates per M-step (the reference code: 1)
    em_iterations: int = 5  # outer EM iterations, each a whole E-step pass of sample.steps (paper: 5 x 30); 0: one pass, M-step per step
    posterior_samples: int = 1  # draws per E-step, averaged at the end (the reference code: 2)


@dataclass(frozen=True)
class UDiffSEConfig(AudioConfig):
    model: UDiffSEModelConfig = field(default_factory=UDiffSEModelConfig)


UDIFFSE_PRESETS = {k: {**v, "sample.sampler": "ddpm"} for k, v in PRESETS.items()}
UDIFFSE_PRESETS["tiny"] = {**UDIFFSE_PRESETS["tiny"], "model.em_iterations": 2}


@dataclass(frozen=True)
class EMResult:
    """What :func:`udiffse_em` returns: the averaged estimate ``x`` ``(1, 2, F, T)``, the last E-step's draws
    ``draws`` ``(P, 2, F, T)``, the NFE per draw, and the noise PSD ``V`` ``(1, F, T)`` after the last M-step."""

    x: Tensor
    draws: Tensor
    nfe: int
    noise_psd: Tensor
    objective: tuple[float, ...]


def udiffse_em(model: Any, y: Tensor, *, em_iterations: int, steps: int, sampler: str = "ddpm", posterior_samples: int = 1,
               rank: int = 4, scale: float = 1.5, nmf_iters: int = 1, seed: int = 0) -> EMResult:
    """UDiffSE's EM for one mixture ``y`` ``(1, 2, F, T)`` (model representation, frames padded for the network).

    ``em_iterations >= 1``: E-step = a posterior-sampling pass of ``steps`` reverse steps (``posterior_samples`` draws,
    generators ``mix_seed(seed, j, k)``) with ``V = W H`` fixed; M-step = ``nmf_iters`` IS-NMF updates on
    ``mean_k |Y - S_k|^2``. ``em_iterations = 0``: one pass with the M-step before every guided step on ``x̂_0``.
    """
    if y.ndim != 4 or y.shape[0] != 1:
        raise ValueError(f"udiffse_em: y must be one mixture (1, 2, F, T), got {tuple(y.shape)}")
    p = int(posterior_samples)
    gen = torch.Generator().manual_seed(int(seed))
    g = NMFNoiseGuidance(y, rank=rank, scale=scale, nmf_iters=nmf_iters, generator=gen, per_step=em_iterations == 0)
    shape = (p, *y.shape[1:])
    nfe = 0
    r = None
    for j in range(max(1, int(em_iterations))):
        gens = [torch.Generator(device=y.device).manual_seed(mix_seed(int(seed), j, k)) for k in range(p)]
        r = polydiff.sample(model, shape=shape, sampler=sampler, steps=steps, generator=gens, guidance=[g], dtype=y.dtype,
                            device=y.device)
        nfe += int(r.nfe)
        if em_iterations:
            g.m_step(r.x.detach())
    assert r is not None
    draws = r.x.detach()
    return EMResult(draws.mean(0, keepdim=True), draws, nfe, g.noise_psd().detach(), tuple(g.objective))


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
    sample_options = SGMSERecipe.sample_options[:1] + (
        SampleOption("em_iterations", int, None, "outer EM iterations, each a whole posterior-sampling pass of --steps with "
                     "the NMF noise model fixed, re-fitted between passes (default model.em_iterations = 5; 0: one pass "
                     "with the M-step before every step)"),
        SampleOption("posterior_samples", int, None, "draws per E-step, averaged (default model.posterior_samples)"),
    )

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
                options: Mapping[str, Any] | None = None) -> tuple[np.ndarray, int]:
        """Enhance one clip ``(N,)`` whole with :func:`udiffse_em`; returns ``(enhanced (N,), NFE per draw)``.

        Options ``em_iterations`` and ``posterior_samples`` (``polydiff sample --em-iterations N``) override the config.

        Raises:
            UserInputError: a negative ``em_iterations`` or a ``posterior_samples`` below 1.
        """
        opts = options or {}
        em = _option(opts, "em_iterations", cfg.model.em_iterations, 0)
        draws = _option(opts, "posterior_samples", cfg.model.posterior_samples, 1)
        spec = spec_config(cfg)
        p = next(model.parameters())
        y_wav, _, scale = normalise(np.asarray(noisy, dtype=np.float32))
        y = wav_to_spec(torch.from_numpy(np.ascontiguousarray(y_wav))[None], spec)
        frames = y.shape[-1]
        y, _ = pad_frames(y, getattr(model.net, "multiple", 1))
        m = cfg.model
        res = udiffse_em(model, y.to(p.device, p.dtype), em_iterations=em, steps=steps, sampler=sampler, posterior_samples=draws,
                         rank=m.nmf_rank, scale=m.guidance_scale, nmf_iters=m.nmf_iters, seed=seed)
        x = res.x.float().cpu()[..., :frames]
        return spec_to_wav(x, spec, len(y_wav))[0].numpy() * scale, res.nfe


def _option(opts: Mapping[str, Any], name: str, default: int, minimum: int) -> int:
    v = opts.get(name)
    v = default if v is None else v
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        flag = "--" + name.replace("_", "-")
        raise UserInputError(f"sample option {flag} (or model.{name}): expected an integer >= {minimum}, got {v!r}")
    return int(v)


__all__ = ["CleanDataset", "EMResult", "NMFNoiseGuidance", "udiffse_em", "UDiffSEConfig", "UDiffSERecipe", "UnconditionalUNet", "is_divergence", "nmf_is_step"]
