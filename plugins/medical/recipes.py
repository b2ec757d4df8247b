"""Recipes ``medical/ct-prior`` and ``medical/mri-prior``: a 2-D diffusion prior on windowed slices, sampled
unconditionally (``--task generate``) or as a reconstruction prior (``--task ct`` / ``--task mri``).

Reconstruction is retrospective: the ground-truth slices (``--input FILE`` — DICOM, NIfTI, PNG, NPY — or, without
it, the run's held-out test slices) are windowed with the run's saved window, measured by the task's operator with
Gaussian noise, and reconstructed by the chosen solver; the baseline (FBP / zero-filled) is written beside it.

``--volume-coupling tv-z`` reconstructs the slices as one volume (DiffusionMBIR-style z-TV by ADMM, see
``volume3d``; ``--solver dds`` or ``dc``); without ``--input`` it takes the first contiguous block of held-out slices.
A DICOM input also gets its reconstruction written as a new DICOM series in its study (``recon-dicom/``);
``--dicom`` writes one (a new study) for any input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

import polydiff
from polydiff.errors import DataError, UserInputError
from polydiff.recipes import DataBundle, Recipe, RunDir, SampleOption

from .backbones import UNet2D
from .config import PRESETS, MedConfig
from .data import Volume, Window, ellipse_phantoms, load_volume, resize_slices, resized_affine, split_slices
from .tasks import SOLVERS, SolverSettings, baseline, make_operator, make_task, measure
from .volume3d import COUPLINGS, RHO_OVER_LAM, CouplingSettings, reconstruct_volume
from .writers import ReconSamples, metrics_of, read_all, write_all, write_generated

WINDOW_FILE = "window.json"
SPLIT_FILE = "split.json"


class SliceDataset(Dataset):
    """Slices ``(N, n, n)`` in [0, 1] served as ``(1, n, n)`` float32 in [-1, 1]; with ``flips`` every slice also
    appears flipped left-right (deterministic augmentation: index ``i >= N`` is slice ``i - N`` flipped)."""

    def __init__(self, slices: np.ndarray, flips: bool = True) -> None:
        self.x = torch.from_numpy(2 * slices - 1).float()[:, None]
        self.flips = flips

    def __len__(self) -> int:
        return len(self.x) * (2 if self.flips else 1)

    def __getitem__(self, i: int) -> torch.Tensor:
        n = len(self.x)
        return self.x[i - n].flip(-1) if i >= n else self.x[i]


class MedicalPriorRecipe(Recipe):
    """Shared parts: data, U-Net prior, reconstruction tasks, writers and metrics."""

    config_class: ClassVar[type] = MedConfig
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = PRESETS
    modality: ClassVar[str] = "CT"
    default_task: ClassVar[str] = "ct"
    sample_options: ClassVar[tuple[SampleOption, ...]] = (
        SampleOption("task", str, None, "ct | mri | generate (default: the recipe's modality)"),
        SampleOption("input", str, None, "ground-truth volume or slice (DICOM file/folder, .nii/.nii.gz, .png, .npy); "
                     "default: the run's held-out test slices"),
        SampleOption("solver", str, None, f"{' | '.join(SOLVERS)} (default: sample.solver)"),
        SampleOption("views", int, 16, "CT: number of projection angles"),
        SampleOption("span", float, 180.0, "CT: angular range in degrees (< 180: limited angle)"),
        SampleOption("fan_beam", bool, False, "CT: fan instead of parallel beam"),
        SampleOption("acceleration", float, 4.0, "MRI: undersampling factor"),
        SampleOption("mask", str, "random1d", "MRI: random1d | equispaced1d | gaussian1d | random2d | poisson2d"),
        SampleOption("coils", int, 0, "MRI: simulated receive coils (0: single coil)"),
        SampleOption("noise", float, None, "measurement noise std relative to the measurement RMS (default: sample.noise_std)"),
        SampleOption("volume_coupling", str, "none", f"{' | '.join(COUPLINGS)}: slice by slice, or one volume with total variation "
                     "along z by ADMM (DiffusionMBIR; --solver dds or dc)"),
        SampleOption("tv_lambda", float, CouplingSettings.lam, "tv-z: weight lam of ||D_z x||_1 (prior units x = 2u - 1, ||A|| = 1)"),
        SampleOption("tv_rho", float, None, f"tv-z: ADMM penalty rho (default {RHO_OVER_LAM:g} x the lambda)"),
        SampleOption("dicom", bool, False, "also write the reconstruction as a DICOM series (always done when --input is DICOM)"),
    )

    # -- data ------------------------------------------------------------------------------------
    def volume(self, cfg: MedConfig) -> Volume:
        if cfg.data.path:
            return load_volume(cfg.data.path)
        if cfg.data.name == "phantom":
            return Volume(ellipse_phantoms(cfg.data.phantom_count, cfg.data.size, seed=0), source="phantom", modality=self.modality)
        return load_volume(cfg.data.name)

    def setup(self, cfg: MedConfig, run: RunDir) -> None:
        vol = self.volume(cfg)
        if min(vol.data.shape[1:]) < 8:
            raise DataError(f"{vol.source}: slices of {vol.data.shape[1:]} pixels are too small")
        side = 2 ** (len(cfg.model.channels) - 1)
        if cfg.data.size % side:
            raise UserInputError(f"data.size={cfg.data.size} must be divisible by {side} for model.channels={cfg.model.channels}")
        Window.fit(vol.data, vol.modality or self.modality).save(run.artifacts / WINDOW_FILE)
        train, test = split_slices(len(vol.data), test_fraction=cfg.data.test_fraction, block=cfg.data.block, gap=cfg.data.gap)
        (run.artifacts / SPLIT_FILE).write_text(json.dumps({"train": train.tolist(), "test": test.tolist(), "source": vol.source}))

    def window(self, cfg: MedConfig, run: RunDir) -> Window:
        if not (run.artifacts / WINDOW_FILE).exists():
            self.setup(cfg, run.ensure())
        return Window.load(run.artifacts / WINDOW_FILE)

    def split(self, cfg: MedConfig, run: RunDir) -> dict[str, list[int]]:
        if not (run.artifacts / SPLIT_FILE).exists():
            self.setup(cfg, run.ensure())
        return json.loads((run.artifacts / SPLIT_FILE).read_text())

    def slices(self, cfg: MedConfig, run: RunDir, part: str) -> np.ndarray:
        """Windowed slices of the train or test part, ``(S, n, n)`` in [0, 1]."""
        vol = self.volume(cfg)
        idx = self.split(cfg, run)[part]
        return self.window(cfg, run).forward(resize_slices(vol.data[idx], cfg.data.size))

    def datasets(self, cfg: MedConfig, run: RunDir) -> DataBundle:
        train = self.slices(cfg, run, "train")
        if len(train) < 1:
            raise DataError(f"{self.volume(cfg).source}: no training slices after the train/test split")
        return DataBundle(train=SliceDataset(train, cfg.data.flips), val=SliceDataset(self.slices(cfg, run, "test"), False))

    # -- model -----------------------------------------------------------------------------------
    def build_model(self, cfg: MedConfig, run: RunDir) -> nn.Module:
        m = cfg.model
        net = UNet2D(1, tuple(m.channels), m.blocks, m.attention)
        return polydiff.Denoiser(net, polydiff.processes.get(m.process), prediction=m.prediction)

    def sample_shape(self, cfg: MedConfig) -> tuple[int, ...]:
        return (1, cfg.data.size, cfg.data.size)

    # -- sampling --------------------------------------------------------------------------------
    def sample(self, model: nn.Module, cfg: MedConfig, run: RunDir, *, num: int, sampler: str, steps: int, seed: int,
               options: Mapping[str, Any]) -> Any:
        task = (options.get("task") or self.default_task).lower()
        win = self.window(cfg, run)
        model.eval()
        if task == "generate":
            x = super().sample(model, cfg, run, num=num, sampler=sampler, steps=steps, seed=seed, options={})
            return ("generate", win.inverse(((x[:, 0].double().numpy() + 1) / 2).clip(0, 1)), win)
        t = make_task(task, views=options.get("views"), span=options.get("span"), fan_beam=options.get("fan_beam"),
                      acceleration=options.get("acceleration"), mask=options.get("mask"), coils=options.get("coils"),
                      noise=options.get("noise") if options.get("noise") is not None else cfg.sample.noise_std)
        s = SolverSettings(solver=options.get("solver") or cfg.sample.solver, steps=steps, sampler=sampler,
                           dps_scale=cfg.sample.dps_scale, cg_iters=cfg.sample.cg_iters, dds_eta=cfg.sample.dds_eta,
                           red_lr=cfg.sample.red_lr, red_lam=cfg.sample.red_lam)
        coupling = (options.get("volume_coupling") or "none").lower()
        if coupling not in COUPLINGS:
            raise UserInputError(f"--volume-coupling {coupling!r}: expected one of {', '.join(COUPLINGS)}")
        c = CouplingSettings(kind=coupling, lam=float(options.get("tv_lambda") if options.get("tv_lambda") is not None else CouplingSettings.lam),
                             rho=None if options.get("tv_rho") is None else float(options["tv_rho"]))
        return self.reconstruct_task(model, cfg, run, t, s, num=num, seed=seed, input_path=options.get("input"), coupling=c,
                                     dicom=bool(options.get("dicom")))

    def truth_slices(self, cfg: MedConfig, run: RunDir, num: int, input_path: str | None, *,
                     contiguous: bool = False) -> tuple[np.ndarray, Volume | None, int]:
        """Ground-truth slices in [0, 1]: the middle ``num`` slices of ``input_path`` (with the volume and the first
        slice's index) or the first test slices (``contiguous``: the first contiguous block of them, at most ``num``)."""
        win = self.window(cfg, run)
        if input_path:
            vol = load_volume(input_path)
            k = min(num, len(vol.data))
            start = (len(vol.data) - k) // 2
            return win.forward(resize_slices(vol.data[start:start + k], cfg.data.size)), vol, start
        test = self.slices(cfg, run, "test")
        if len(test) == 0:
            raise DataError(f"{self.volume(cfg).source}: no held-out test slices; pass --input FILE")
        if contiguous:
            idx = np.asarray(self.split(cfg, run)["test"])
            breaks = np.flatnonzero(np.diff(idx) != 1)
            return test[: min(num, int(breaks[0]) + 1 if len(breaks) else len(idx))], None, 0
        return test[:num], None, 0

    def reconstruct_task(self, model: nn.Module, cfg: MedConfig, run: RunDir, task: Any, s: SolverSettings, *, num: int, seed: int,
                         input_path: str | None = None, coupling: CouplingSettings | None = None, dicom: bool = False) -> ReconSamples:
        win = self.window(cfg, run)
        c = coupling or CouplingSettings()
        u, vol, start = self.truth_slices(cfg, run, num, input_path, contiguous=c.kind != "none")
        gen = torch.Generator().manual_seed(seed)
        op = make_operator(task, cfg.data.size, seed=seed)
        ut = torch.from_numpy(u)[:, None]
        y, sigma = measure(op, ut, task, gen)
        base = baseline(op, y)
        rec, nfe, secs = reconstruct_volume(model, op, y, sigma, s, c, generator=gen, init=base)
        spacing, affine = (1.0, 1.0, 1.0), None
        if vol is not None:  # the geometry of the centre-cropped, resized slices start, start + 1, ...
            f = min(vol.data.shape[1:]) / cfg.data.size
            spacing = (vol.spacing[0], vol.spacing[1] * f, vol.spacing[2] * f)
            if vol.affine is not None:
                affine = resized_affine(vol.affine, vol.data.shape[1:], cfg.data.size, start)
        solver = s.solver if c.kind == "none" else f"{s.solver}+{c.kind}"
        out = ReconSamples(recon=win.inverse(rec[:, 0].numpy()), baseline=win.inverse(base[:, 0].double().numpy()),
                           truth=win.inverse(u), task=task.describe(), solver=solver, baseline_name=task.baseline_name,
                           window=(win.lo, win.hi, win.unit), spacing=spacing, affine=affine, nfe=nfe, seconds=secs,
                           reference=None if vol is None else vol.dicom, dicom=dicom, modality=(vol.modality if vol else "") or self.modality)
        return ReconSamples(**{**out.__dict__, "metrics": metrics_of(out)})

    def write_samples(self, samples: Any, out_dir: Path, cfg: MedConfig, run: RunDir) -> list[Path]:
        if isinstance(samples, tuple) and samples and samples[0] == "generate":
            _, slices, win = samples
            return write_generated(slices, Path(out_dir), (win.lo, win.hi, win.unit))
        return write_all(samples, Path(out_dir))

    def read_samples(self, samples_dir: Path) -> ReconSamples:
        return read_all(Path(samples_dir))

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, cfg: MedConfig, run: RunDir, samples_dir: Path | None) -> dict[str, float]:
        """Metrics of a written reconstruction (``--samples DIR``) or of the default task on held-out slices."""
        if samples_dir is not None:
            return metrics_of(read_all(Path(samples_dir)))
        t = make_task(self.default_task, noise=cfg.sample.noise_std)
        s = SolverSettings(solver=cfg.sample.solver, steps=cfg.eval.steps, sampler=cfg.sample.sampler, cg_iters=cfg.sample.cg_iters,
                           dds_eta=cfg.sample.dds_eta)
        return self.reconstruct_task(model, cfg, run, t, s, num=cfg.eval.slices, seed=cfg.eval.seed).metrics


class CTPriorRecipe(MedicalPriorRecipe):
    """2-D diffusion prior on CT slices (HU window); sparse-view / limited-angle CT reconstruction."""

    name: ClassVar[str] = "medical/ct-prior"
    demo: ClassVar[bool] = True
    description: ClassVar[str] = "2-D U-Net diffusion prior on CT slices; sparse-view / limited-angle CT with DPS, DDS, RED-diff, PiGDM, DC"


class MRIPriorRecipe(MedicalPriorRecipe):
    """2-D diffusion prior on MRI magnitude slices; accelerated Cartesian MRI reconstruction."""

    name: ClassVar[str] = "medical/mri-prior"
    description: ClassVar[str] = "2-D U-Net diffusion prior on MRI slices; accelerated Cartesian MRI (single/multi-coil) with DPS, DDS, RED-diff, PiGDM, DC"
    modality: ClassVar[str] = "MR"
    default_task: ClassVar[str] = "mri"


__all__ = ["CTPriorRecipe", "MRIPriorRecipe", "MedicalPriorRecipe", "SliceDataset"]
