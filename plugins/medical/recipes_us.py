"""Recipes ``medical/us-tissue`` and ``medical/us-haze``: 2-D diffusion priors on beamformed ultrasound IQ frames
(two channels, :mod:`polydiff_medical.ultrasound`) — clean tissue and haze (multipath clutter) — and dehazing by
joint posterior sampling of both (:mod:`polydiff_medical.dehazing`).

Commands::

    polydiff train medical/us-tissue --out T --preset tiny
    polydiff train medical/us-haze --out H --preset tiny
    polydiff sample T --task us-dehaze --haze-run H --out DIR [--input FILE] [--solver projection|dps] [--gamma G]
    polydiff sample T --out DIR                      # --task generate: tissue frames from the prior alone
    polydiff evaluate T --samples DIR                # metrics of a written dehazing

Without ``--input`` the hazy frames are simulated from held-out frames: the tissue run's test frames (fixed anechoic
cyst) plus the haze run's test frames plus white noise (``sample.noise_std``), so the ground truth is known. With
``--input FILE`` (``.npy``/``.npz``: complex IQ ``(S, n, n)`` or ``(n, n)``, or real ``(S, 2, n, n)``, calibrated IQ
units; an ``.npz`` uses key ``y`` or its first array) the frames are dehazed without ground truth.

Written files: ``dehazed.npz`` (``y``, ``tissue``, ``haze``, ``baseline`` and ``truth`` when known, complex IQ),
``figure.png`` (B-mode rows: hazy, baseline, dehazed, estimated haze, truth) and ``dehaze.json`` (metrics, NFE, time).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
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
from .config import US_PRESETS, USConfig
from .ultrasound import CYST, channels_to_iq, cyst_phantoms, echo_from_slices, haze_maps, iq_to_channels, simulate_iq

FRAMES_FILE = "us_frames.npz"
INFO_FILE = "us.json"
HELD_OUT_SEED = 10007


class IQDataset(Dataset):
    """IQ frames ``(N, n, n)`` complex served as ``(2, n, n)`` float32 model units; with ``flips`` index ``i >= N`` is
    frame ``i - N`` flipped laterally. Every index also carries a fixed global phase ``exp(i phi_i)`` (speckle is
    phase invariant; ``phi_i = 2 pi frac(0.618 i)``)."""

    def __init__(self, iq: np.ndarray, flips: bool = True) -> None:
        self.x = iq_to_channels(iq).float()
        self.flips = flips

    def __len__(self) -> int:
        return len(self.x) * (2 if self.flips else 1)

    def __getitem__(self, i: int) -> torch.Tensor:
        n = len(self.x)
        x = self.x[i - n].flip(-1) if i >= n else self.x[i]
        phi = 2 * np.pi * ((0.6180339887 * i) % 1.0)
        c, s = float(np.cos(phi)), float(np.sin(phi))
        return torch.stack([c * x[0] - s * x[1], s * x[0] + c * x[1]])


@dataclass(frozen=True)
class DehazeSamples:
    """A dehazing: complex IQ frames ``(S, n, n)`` (``truth``/``haze_truth`` ``None`` for user input), metrics, NFE, time."""

    y: np.ndarray
    tissue: np.ndarray
    haze: np.ndarray
    baseline: np.ndarray
    truth: np.ndarray | None = None
    haze_truth: np.ndarray | None = None
    method: str = "projection"
    nfe: int = 0
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)


def dehaze_metrics(s: DehazeSamples) -> dict[str, Any]:
    """gCNR / CNR / contrast / KS (and, with ground truth, KS against it and the B-mode RMSE) of the hazy input, the
    baseline and the dehazed frames over the fixed cyst ROIs."""
    from .metrics import speckle_metrics

    inside, bg = CYST.masks(s.y.shape[-1])
    ref = None if s.truth is None else np.abs(s.truth)
    out: dict[str, Any] = {}
    rows = [("hazy", s.y), ("wiener", s.baseline), (s.method, s.tissue)] + ([("truth", s.truth)] if s.truth is not None else [])
    for name, iq in rows:
        for k, v in speckle_metrics(np.abs(iq), inside, bg, reference=ref).items():
            out[f"{name}/{k}"] = v
    out.update({"nfe": s.nfe, "seconds": s.seconds})
    return out


def write_dehaze(s: DehazeSamples, out: Path) -> list[Path]:
    """``dehazed.npz``, ``figure.png`` and ``dehaze.json`` into ``out``."""
    from .ultrasound import bmode

    out.mkdir(parents=True, exist_ok=True)
    arrays = {"y": s.y, "tissue": s.tissue, "haze": s.haze, "baseline": s.baseline}
    if s.truth is not None:
        arrays["truth"] = s.truth
    if s.haze_truth is not None:
        arrays["haze_truth"] = s.haze_truth
    np.savez_compressed(out / "dehazed.npz", **{k: v.astype(np.complex64) for k, v in arrays.items()})
    (out / "dehaze.json").write_text(json.dumps({"method": s.method, "nfe": s.nfe, "seconds": s.seconds, "metrics": s.metrics}, indent=1))
    ref = float(np.abs(s.y).max())
    cols = [("hazy", s.y), ("wiener", s.baseline), (s.method, s.tissue), ("haze est.", s.haze)]
    if s.truth is not None:
        cols.append(("truth", s.truth))
    save_bmode_grid([[bmode(iq[i], ref=ref) for _, iq in cols] for i in range(min(4, len(s.y)))], [c for c, _ in cols], out / "figure.png")
    return [out / "dehazed.npz", out / "figure.png", out / "dehaze.json"]


def save_bmode_grid(rows: list[list[np.ndarray]], titles: list[str], path: Path, dynamic_range: float = 50.0) -> Path:
    """A PNG grid of B-mode images (dB, gray ``[-dynamic_range, 0]``) with column titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nr, nc = len(rows), len(titles)
    fig, axes = plt.subplots(nr, nc, figsize=(2.2 * nc, 2.2 * nr), squeeze=False)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            ax = axes[i][j]
            ax.imshow(img, cmap="gray", vmin=-dynamic_range, vmax=0, aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def read_dehaze(folder: Path) -> DehazeSamples:
    """Read what :func:`write_dehaze` wrote."""
    f, j = folder / "dehazed.npz", folder / "dehaze.json"
    if not f.is_file() or not j.is_file():
        raise DataError(f"{folder}: no dehazing here (expected dehazed.npz and dehaze.json written by 'polydiff sample --task us-dehaze')")
    z = np.load(f)
    meta = json.loads(j.read_text())

    def get(k: str) -> np.ndarray | None:
        return z[k].astype(np.complex128) if k in z.files else None

    return DehazeSamples(y=get("y"), tissue=get("tissue"), haze=get("haze"), baseline=get("baseline"), truth=get("truth"),
                         haze_truth=get("haze_truth"), method=meta.get("method", "projection"), nfe=int(meta.get("nfe", 0)),
                         seconds=float(meta.get("seconds", 0.0)), metrics=meta.get("metrics", {}))


def read_input_frames(path: str, size: int) -> np.ndarray:
    """Complex IQ frames ``(S, size, size)`` from ``--input FILE`` (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"--input {path!r}: file not found (expected .npy or .npz of IQ frames)")
    try:
        if p.suffix == ".npz":
            z = np.load(p)
            a = z["y"] if "y" in z.files else z[z.files[0]]
        elif p.suffix == ".npy":
            a = np.load(p)
        else:
            raise UserInputError(f"--input {path!r}: expected a .npy or .npz file of IQ frames")
    except (OSError, ValueError, IndexError) as e:
        raise UserInputError(f"--input {path!r}: cannot read IQ frames ({e})") from None
    a = np.asarray(a)
    if not np.iscomplexobj(a) and a.ndim == 4 and a.shape[1] == 2:
        a = a[:, 0] + 1j * a[:, 1]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != (size, size) or not np.iscomplexobj(a) or not np.isfinite(a).all():
        raise UserInputError(f"--input {path!r}: expected finite complex IQ frames (S, {size}, {size}) or real (S, 2, {size}, {size}), "
                             f"got {a.dtype} {a.shape}")
    return a.astype(np.complex128)


class UltrasoundPriorRecipe(Recipe):
    """Shared parts: simulated IQ frames, the U-Net prior on two channels, generation and speckle statistics."""

    config_class: ClassVar[type] = USConfig
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = US_PRESETS
    kind: ClassVar[str] = "tissue"

    # -- data ------------------------------------------------------------------------------------
    def echo_maps(self, cfg: USConfig, held_out: bool) -> np.ndarray:
        """Echogenicity maps ``(S, n, n)`` of the training or held-out frames."""
        d = cfg.data
        n, count = d.size, d.test_frames if held_out else d.frames
        seed = d.seed + (HELD_OUT_SEED if held_out else 0)
        if self.kind == "haze" or d.name == "haze":
            return haze_maps(count, n, seed=seed)
        if d.name == "cysts" and not d.path:
            return cyst_phantoms(count, n, seed=seed, fixed_cyst=held_out)
        if held_out:  # evaluation frames always carry the fixed cyst (the ROIs are defined by it)
            return cyst_phantoms(count, n, seed=seed, fixed_cyst=True)
        from .data import Window, load_volume, resize_slices

        vol = load_volume(d.path or d.name)
        u = Window.fit(vol.data, vol.modality).forward(resize_slices(vol.data, n))
        reps = int(np.ceil(count / len(u)))
        return echo_from_slices(np.concatenate([u] * reps)[:count])

    def setup(self, cfg: USConfig, run: RunDir) -> None:
        side = 2 ** (len(cfg.model.channels) - 1)
        if cfg.data.size % side or cfg.data.size < 8:
            raise UserInputError(f"data.size={cfg.data.size} must be >= 8 and divisible by {side} for model.channels={cfg.model.channels}")
        if cfg.data.frames < 1 or cfg.data.test_frames < 1:
            raise UserInputError(f"data.frames={cfg.data.frames}, data.test_frames={cfg.data.test_frames}: expected at least 1 each")
        run.ensure()
        signature = {"kind": self.kind, **{k: getattr(cfg.data, k) for k in ("name", "path", "simulator", "size", "frames", "test_frames", "seed")}}
        if (run.artifacts / FRAMES_FILE).exists() and (run.artifacts / INFO_FILE).exists():
            if json.loads((run.artifacts / INFO_FILE).read_text()).get("signature") == signature:
                return  # simulated already (training resumes, benchmarks rerun)
        train = simulate_iq(self.echo_maps(cfg, False), simulator=cfg.data.simulator, seed=cfg.data.seed)
        test = simulate_iq(self.echo_maps(cfg, True), simulator=cfg.data.simulator, seed=cfg.data.seed + HELD_OUT_SEED)
        np.savez_compressed(run.artifacts / FRAMES_FILE, train=train.astype(np.complex64), test=test.astype(np.complex64))
        x = iq_to_channels(train)
        info = {"kind": self.kind, "simulator": cfg.data.simulator, "size": cfg.data.size, "data_std": float(x.std()),
                "source": cfg.data.path or cfg.data.name, "signature": signature}
        (run.artifacts / INFO_FILE).write_text(json.dumps(info))

    def frames(self, cfg: USConfig, run: RunDir, part: str) -> np.ndarray:
        """Complex IQ frames ``(S, n, n)`` of the ``train`` or ``test`` part (simulated once, kept in the run)."""
        if not (run.artifacts / FRAMES_FILE).exists():
            self.setup(cfg, run)
        return np.load(run.artifacts / FRAMES_FILE)[part].astype(np.complex128)

    def info(self, cfg: USConfig, run: RunDir) -> dict[str, Any]:
        if not (run.artifacts / INFO_FILE).exists():
            self.setup(cfg, run)
        return json.loads((run.artifacts / INFO_FILE).read_text())

    def datasets(self, cfg: USConfig, run: RunDir) -> DataBundle:
        return DataBundle(train=IQDataset(self.frames(cfg, run, "train"), cfg.data.flips), val=IQDataset(self.frames(cfg, run, "test"), False))

    # -- model -----------------------------------------------------------------------------------
    def build_model(self, cfg: USConfig, run: RunDir) -> nn.Module:
        m = cfg.model
        net = UNet2D(2, tuple(m.channels), m.blocks, m.attention)
        return polydiff.Denoiser(net, polydiff.processes.get(m.process), prediction=m.prediction)

    def sample_shape(self, cfg: USConfig) -> tuple[int, ...]:
        return (2, cfg.data.size, cfg.data.size)

    # -- sampling --------------------------------------------------------------------------------
    def generate(self, model: nn.Module, cfg: USConfig, run: RunDir, *, num: int, sampler: str, steps: int, seed: int) -> np.ndarray:
        """``num`` frames from the prior alone, complex IQ ``(num, n, n)``."""
        model.eval()
        x = Recipe.sample(self, model, cfg, run, num=num, sampler=sampler, steps=steps, seed=seed, options={})
        return channels_to_iq(x)

    def sample(self, model: nn.Module, cfg: USConfig, run: RunDir, *, num: int, sampler: str, steps: int, seed: int,
               options: Mapping[str, Any]) -> Any:
        task = (options.get("task") or "generate").lower()
        if task != "generate":
            raise UserInputError(f"--task {task!r}: recipe {self.name} supports generate only (dehazing is sampled from the us-tissue run)")
        return ("generate", self.generate(model, cfg, run, num=num, sampler=sampler, steps=steps, seed=seed))

    def write_samples(self, samples: Any, out_dir: Path, cfg: USConfig, run: RunDir) -> list[Path]:
        from .ultrasound import bmode

        out_dir = Path(out_dir)
        if isinstance(samples, DehazeSamples):
            return write_dehaze(samples, out_dir)
        _, iq = samples
        out_dir.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out_dir / "samples.npz", iq=iq.astype(np.complex64))
        ref = float(np.abs(iq).max())
        k = min(len(iq), 8)
        save_bmode_grid([[bmode(iq[i], ref=ref) for i in range(k)]], [f"#{i}" for i in range(k)], out_dir / "samples.png")
        return [out_dir / "samples.npz", out_dir / "samples.png"]

    def read_samples(self, samples_dir: Path) -> Any:
        d = Path(samples_dir)
        if (d / "dehazed.npz").exists():
            return read_dehaze(d)
        if not (d / "samples.npz").is_file():
            raise DataError(f"{d}: no samples.npz or dehazed.npz written by 'polydiff sample'")
        return ("generate", np.load(d / "samples.npz")["iq"].astype(np.complex128))

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, cfg: USConfig, run: RunDir, samples_dir: Path | None) -> dict[str, float]:
        """A written dehazing's metrics (``--samples DIR``); else speckle statistics of ``eval.slices`` generated frames
        against the held-out frames: two-sample KS of the envelopes normalised by their RMS and KS-Rayleigh of each."""
        from .metrics import ks_rayleigh, ks_two_sample

        if samples_dir is not None:
            s = self.read_samples(Path(samples_dir))
            if isinstance(s, DehazeSamples):
                return dehaze_metrics(s)
            gen = s[1]
        else:
            gen = self.generate(model, cfg, run, num=max(cfg.eval.slices, 1), sampler=cfg.sample.sampler, steps=cfg.eval.steps, seed=cfg.eval.seed)
        test = self.frames(cfg, run, "test")

        def norm(e: np.ndarray) -> np.ndarray:
            e = np.abs(e)
            return (e / np.sqrt(np.mean(e**2, axis=(-2, -1), keepdims=True))).ravel()

        return {"ks_generated_vs_test": ks_two_sample(norm(gen), norm(test)), "ks_rayleigh_generated": ks_rayleigh(norm(gen)),
                "ks_rayleigh_test": ks_rayleigh(norm(test))}


class USTissueRecipe(UltrasoundPriorRecipe):
    """Diffusion prior on clean tissue IQ frames; dehazing with a ``medical/us-haze`` run (``--task us-dehaze``)."""

    name: ClassVar[str] = "medical/us-tissue"
    description: ClassVar[str] = ("2-D U-Net diffusion prior on ultrasound IQ frames (pymust or speckle simulation); "
                                  "dehazing by joint posterior sampling with a medical/us-haze prior")
    kind: ClassVar[str] = "tissue"
    sample_options: ClassVar[tuple[SampleOption, ...]] = (
        SampleOption("task", str, None, "generate | us-dehaze (default: us-dehaze with --haze-run, else generate)"),
        SampleOption("haze_run", str, None, "us-dehaze: the medical/us-haze run directory"),
        SampleOption("input", str, None, "us-dehaze: hazy IQ frames (.npy/.npz, complex (S, n, n) or real (S, 2, n, n)); "
                     "default: held-out tissue + haze frames with known ground truth"),
        SampleOption("solver", str, None, "us-dehaze: projection | dps (default: sample.solver)"),
        SampleOption("gamma", float, None, "us-dehaze: dehazing strength (default: sample.gamma)"),
        SampleOption("noise", float, None, "us-dehaze: measurement noise std, calibrated IQ units (default: sample.noise_std)"),
    )

    def sample(self, model: nn.Module, cfg: USConfig, run: RunDir, *, num: int, sampler: str, steps: int, seed: int,
               options: Mapping[str, Any]) -> Any:
        task = (options.get("task") or ("us-dehaze" if options.get("haze_run") else "generate")).lower()
        if task == "generate":
            return ("generate", self.generate(model, cfg, run, num=num, sampler=sampler, steps=steps, seed=seed))
        if task != "us-dehaze":
            raise UserInputError(f"--task {task!r}: expected generate or us-dehaze")
        if not options.get("haze_run"):
            raise UserInputError("--task us-dehaze needs --haze-run HAZE_RUN (a trained medical/us-haze run directory)")
        return self.dehaze_task(model, cfg, run, haze_run=str(options["haze_run"]), num=num, sampler=sampler, steps=steps, seed=seed,
                                input_path=options.get("input"), solver=options.get("solver"), gamma=options.get("gamma"),
                                noise=options.get("noise"))

    def dehaze_task(self, model: nn.Module, cfg: USConfig, run: RunDir, *, haze_run: str, num: int, sampler: str, steps: int,
                    seed: int, input_path: str | None = None, solver: str | None = None, gamma: float | None = None,
                    noise: float | None = None, truth_frames: tuple[np.ndarray, np.ndarray] | None = None) -> DehazeSamples:
        """Dehaze ``num`` frames with the haze prior of ``haze_run``: the held-out frames of both runs (summed, plus noise),
        ``truth_frames`` = ``(tissue, haze)`` complex IQ ``(S, n, n)`` given by the caller (e.g. another simulator), or
        the hazy frames of ``input_path`` (no ground truth)."""
        from .dehazing import dehaze, wiener_dehaze
        from .ultrasound import MODEL_SCALE

        haze_model, haze_cfg, haze_run_dir = load_haze_run(haze_run)
        n = cfg.data.size
        if haze_cfg.data.size != n:
            raise UserInputError(f"--haze-run {haze_run!r}: frames of {haze_cfg.data.size} pixels, the tissue run's are {n}")
        noise_std = cfg.sample.noise_std if noise is None else float(noise)
        if noise_std < 0:
            raise UserInputError(f"--noise {noise_std}: expected >= 0")
        gen = torch.Generator().manual_seed(seed)
        truth = haze_truth = None
        if input_path:
            y_iq = read_input_frames(input_path, n)[:num]
        else:
            if truth_frames is not None:
                truth, haze_truth = (np.asarray(f, dtype=np.complex128) for f in truth_frames)
            else:
                truth = self.frames(cfg, run, "test")
                haze_truth = HazePriorRecipe().frames(haze_cfg, haze_run_dir, "test")
            k = min(num, len(truth))
            truth = truth[:k]
            haze_truth = np.resize(haze_truth, truth.shape)
            w = torch.randn((k, 2, n, n), generator=gen, dtype=torch.float64).numpy()
            y_iq = truth + haze_truth + noise_std * (w[:, 0] + 1j * w[:, 1]) / np.sqrt(2)
        y = iq_to_channels(y_iq)
        data_std = {"tissue": self.info(cfg, run)["data_std"], "haze": HazePriorRecipe().info(haze_cfg, haze_run_dir)["data_std"]}
        method = solver or cfg.sample.solver
        res = dehaze(model, haze_model, y, noise_std=MODEL_SCALE * max(noise_std, 1e-3) / np.sqrt(2), data_std=data_std, method=method,
                     sampler=sampler, steps=steps, gamma=cfg.sample.gamma if gamma is None else float(gamma), eta=cfg.sample.eta,
                     dps_scale=cfg.sample.dps_scale, dps_weights={"tissue": cfg.sample.dps_tissue, "haze": cfg.sample.dps_haze},
                     generator=gen)
        out = DehazeSamples(y=y_iq, tissue=channels_to_iq(res.tissue), haze=channels_to_iq(res.haze), baseline=wiener_dehaze(y_iq),
                            truth=truth, haze_truth=haze_truth, method=method, nfe=res.nfe, seconds=res.seconds)
        return DehazeSamples(**{**out.__dict__, "metrics": dehaze_metrics(out)})


class HazePriorRecipe(UltrasoundPriorRecipe):
    """Diffusion prior on haze (multipath clutter) IQ frames — the second prior of ``--task us-dehaze``."""

    name: ClassVar[str] = "medical/us-haze"
    description: ClassVar[str] = "2-D U-Net diffusion prior on ultrasound haze (multipath clutter) IQ frames; the haze prior of us-dehaze"
    kind: ClassVar[str] = "haze"
    sample_options: ClassVar[tuple[SampleOption, ...]] = (SampleOption("task", str, None, "generate"),)


def load_haze_run(path: str) -> tuple[nn.Module, USConfig, RunDir]:
    """``(model, cfg, run)`` of a trained ``medical/us-haze`` run (EMA weights)."""
    import tomllib

    from polydiff.config import load_config
    from polydiff.training import load_model

    run = RunDir(path)
    try:
        saved = tomllib.loads(run.config_path.read_text()).get("recipe")
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UserInputError(f"--haze-run {path!r}: cannot read {run.config_path} ({e}); expected a trained medical/us-haze run") from None
    if saved != HazePriorRecipe.name:
        raise UserInputError(f"--haze-run {path!r} is a {saved!r} run; expected a medical/us-haze run")
    rec = HazePriorRecipe()
    cfg = load_config(rec, run.config_path)
    return load_model(rec, cfg, run), cfg, run


__all__ = ["DehazeSamples", "HazePriorRecipe", "IQDataset", "USTissueRecipe", "UltrasoundPriorRecipe", "dehaze_metrics", "load_haze_run",
           "read_dehaze", "read_input_frames", "write_dehaze"]
