"""Ultrasound data: echogenicity maps, beamformed IQ frames (pymust or a speckle convolution model), envelope /
B-mode, the haze (multipath clutter) model ``y = a x + b h + n`` as a measurement operator, and fixed ROI masks.

Representation. A frame is the **beamformed complex IQ image** (baseband, after RF demodulation) on an
``n x n`` pixel grid (rows = depth, columns = lateral), stored as two real channels ``(B, 2, n, n)`` (I, Q).
The haze model is additive in this complex domain (RF demodulation and delay-and-sum are linear), as in
Stevens et al. (*Dehazing ultrasound using diffusion models*, IEEE TMI 2024), who add haze to RF data.
Units: every simulator is calibrated so that a uniform echogenicity ``e`` gives ``E|IQ|^2 = e``; the priors work on
``MODEL_SCALE * IQ`` (per-channel std ``0.5 sqrt(e / 2)``).

Simulators (``simulate_iq``):

* ``pymust``: MUST's ``simus`` (linear array L11-5v, 64 elements, 7.6 MHz, one 0-degree plane wave, sampled at
  4 fc) on random scatterers (60 per mm^2) whose reflection coefficients are ``sqrt(e(x, z)) * N(0, 1)``, then
  ``rf2iq`` and delay-and-sum (``dasmtx``) onto the pixel grid (0.1 mm spacing, from 10 mm deep). Calibration (one
  global number): the energy of the beamformed point-spread function of one scatterer at the frame centre times the
  scatterer density; no time-gain or lateral-gain compensation, so the beam profile stays in the frames (a uniform
  phantom measured ``E|IQ|^2 ~ 0.7`` on average). About 1.5 s per 32 x 32 frame (~1,200 scatterers) on one core.
* ``speckle``: the convolution model of fully developed speckle — complex white Gaussian scatterers weighted by
  ``sqrt(e)`` on the pixel grid, convolved with a Gaussian PSF of unit energy (axial/lateral std ``psf_px``); the
  envelope of a uniform region is exactly Rayleigh. Milliseconds per frame; the fast tests and ``tiny`` presets use it.

Haze maps (``haze_maps``) are smooth, depth-decaying clutter-power maps with reverberation bands at multiples of a
random depth; a haze frame is the simulator's output for that map (multipath clutter is speckle of the same imaging
system with a smooth power).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from polydiff.errors import UserInputError

Simulator = Literal["speckle", "pymust"]
MODEL_SCALE = 0.5
"""Model units: ``x = MODEL_SCALE * IQ`` (two channels), calibrated IQ as above."""


# ---------------------------------------------------------------- echogenicity and haze maps


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")


def _smooth_field(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """A smooth random field ``(n, n)`` with zero mean and unit std (Gaussian-filtered white noise, std ``scale * n`` px)."""
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(rng.standard_normal((n, n)), scale * n, mode="wrap")
    return (f - f.mean()) / max(float(f.std()), 1e-12)


@dataclass(frozen=True)
class CystGeometry:
    """The fixed evaluation cyst: centre ``(cy, cx)`` and radius ``r`` as fractions of the frame side; ROIs are the
    disk of radius ``inner * r`` (inside) and the annulus ``[outer[0] r, outer[1] r]`` (background)."""

    cy: float = 0.5
    cx: float = 0.5
    r: float = 0.2
    inner: float = 0.8
    outer: tuple[float, float] = (1.25, 1.85)

    def masks(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Boolean ``(inside, background)`` masks ``(n, n)``."""
        yy, xx = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5, indexing="ij")
        d = np.hypot(yy - self.cy * n, xx - self.cx * n) / (self.r * n)
        return d <= self.inner, (d >= self.outer[0]) & (d <= self.outer[1])


CYST = CystGeometry()


def cyst_phantoms(count: int, n: int, *, seed: int = 0, fixed_cyst: bool = False) -> np.ndarray:
    """Tissue echogenicity maps ``(count, n, n)`` (linear power, background ~1): a smooth textured background with
    1–3 random inclusions (anechoic cysts, hypo- and hyperechoic lesions). With ``fixed_cyst`` every map also has
    the anechoic evaluation cyst :data:`CYST` and no other inclusion overlaps its ROIs."""
    rng = np.random.default_rng(seed)
    yy, xx = _grid(n)
    out = np.empty((count, n, n))
    keep_out = (np.hypot(yy - (2 * CYST.cy - 1), xx - (2 * CYST.cx - 1)) <= 2 * CYST.r * CYST.outer[1] + 0.05)
    for k in range(count):
        level = rng.uniform(0.6, 1.2)
        e = level * np.exp(0.25 * _smooth_field(rng, n, 0.12))
        if rng.random() < 0.5:  # a tissue layer boundary
            z0 = rng.uniform(-0.8, 0.8)
            e = e * np.where(yy + rng.uniform(-0.3, 0.3) * xx > z0, rng.uniform(0.5, 1.6), 1.0)
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(-0.75, 0.75), rng.uniform(-0.75, 0.75)
            ry, rx = rng.uniform(0.12, 0.35), rng.uniform(0.12, 0.35)
            m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            if fixed_cyst and (m & keep_out).any():
                continue
            kind = rng.integers(3)
            factor = (1e-3, rng.uniform(0.15, 0.5), rng.uniform(2.0, 4.0))[kind]
            e = np.where(m, e * factor, e)
        if fixed_cyst:
            inside, _ = CYST.masks(n)
            disk = np.hypot(yy - (2 * CYST.cy - 1), xx - (2 * CYST.cx - 1)) <= 2 * CYST.r
            e = np.where(disk | inside, 1e-3 * level, e)
        out[k] = e
    return out


def echo_from_slices(slices: np.ndarray, *, floor: float = 0.05) -> np.ndarray:
    """Echogenicity maps from windowed CT/MRI slices ``(S, n, n)`` in [0, 1]: ``floor + 1.5 u^2`` (dark fluid stays dark)."""
    u = np.clip(np.asarray(slices, dtype=np.float64), 0, 1)
    return floor + 1.5 * u**2


def haze_maps(count: int, n: int, *, seed: int = 0, level: tuple[float, float] = (0.15, 0.6)) -> np.ndarray:
    """Haze (multipath clutter) power maps ``(count, n, n)``: ``level * exp(-depth / L)`` times reverberation bands
    ``1 + 0.6 cos^2(pi k depth / d0)`` (random period ``d0``) and a smooth lateral/axial modulation."""
    rng = np.random.default_rng(seed)
    yy, xx = _grid(n)
    depth = (yy + 1) / 2  # 0 at the top, 1 at the bottom
    out = np.empty((count, n, n))
    for k in range(count):
        a = rng.uniform(*level)
        decay = np.exp(-depth / rng.uniform(0.4, 2.0))
        d0 = rng.uniform(0.25, 0.6)
        bands = 1 + rng.uniform(0.2, 0.8) * np.cos(math.pi * (depth + rng.uniform(0, 1)) / d0) ** 2
        mod = np.exp(0.3 * _smooth_field(rng, n, 0.25) + rng.uniform(-0.3, 0.3) * xx)
        out[k] = a * decay * bands * mod
    return out


# ---------------------------------------------------------------- simulators


def gaussian_psf(sigma_z: float, sigma_x: float) -> np.ndarray:
    """A real Gaussian PSF of unit energy ``sum psf^2 = 1``, shape ``(2k+1, 2k+1)``."""
    k = int(math.ceil(4 * max(sigma_z, sigma_x)))
    z, x = np.meshgrid(np.arange(-k, k + 1), np.arange(-k, k + 1), indexing="ij")
    p = np.exp(-0.5 * ((z / sigma_z) ** 2 + (x / sigma_x) ** 2))
    return p / np.sqrt((p**2).sum())


def speckle_iq(echo: np.ndarray, *, rng: np.random.Generator, psf_px: tuple[float, float] = (0.9, 1.3)) -> np.ndarray:
    """Convolution-model IQ frames ``(S, n, n)`` complex: ``(sqrt(e) * w) * psf`` with ``w`` circular complex white noise
    of unit variance; for a uniform ``e`` the frame has ``E|IQ|^2 = e`` and a Rayleigh envelope."""
    from scipy.signal import fftconvolve

    echo = np.asarray(echo, dtype=np.float64)
    psf = gaussian_psf(*psf_px)
    k = psf.shape[0] // 2
    s, n, m = echo.shape
    pad = np.pad(echo, ((0, 0), (k, k), (k, k)), mode="reflect")
    w = (rng.standard_normal(pad.shape) + 1j * rng.standard_normal(pad.shape)) / math.sqrt(2)
    return fftconvolve(np.sqrt(np.maximum(pad, 0)) * w, psf[None], mode="valid", axes=(1, 2))[:, :n, :m]


@dataclass(frozen=True)
class PymustSettings:
    """Geometry of the pymust simulation: ``probe`` (pymust name), ``elements`` used, pixel spacing ``pixel_mm``,
    frame top ``depth_mm``, scatterers per mm^2 ``density`` and a scatterer margin around the frame ``margin_mm``."""

    probe: str = "L11-5v"
    elements: int = 64
    pixel_mm: float = 0.1
    depth_mm: float = 10.0
    density: float = 60.0
    margin_mm: float = 0.6


class PymustSimulator:
    """pymust ``simus`` + ``rf2iq`` + ``dasmtx`` onto an ``n x n`` grid (see the module docstring).

    The DAS matrix is built once per RF length; frames are calibrated by the point-spread-function energy.
    """

    def __init__(self, n: int, settings: PymustSettings = PymustSettings()) -> None:
        import pymust

        self.n = int(n)
        self.s = settings
        p = pymust.getparam(settings.probe)
        p.Nelements = int(settings.elements)
        p.fs = 4 * p.fc
        self.param = p
        self.delays = pymust.txdelay(p, 0)
        side = self.n * settings.pixel_mm * 1e-3
        self.x_px = (np.arange(self.n) - (self.n - 1) / 2) * settings.pixel_mm * 1e-3
        self.z_px = settings.depth_mm * 1e-3 + np.arange(self.n) * settings.pixel_mm * 1e-3
        self.xi, self.zi = np.meshgrid(self.x_px, self.z_px)  # (n, n): rows = depth
        self.side = side
        # a fixed RF length: the echo of the deepest possible scatterer, plus the pulse
        zmax = self.z_px[-1] + settings.margin_mm * 1e-3
        self.n_samples = int(math.ceil(2 * math.hypot(zmax, side + p.Nelements * p.pitch / 2) / p.c * p.fs)) + 64
        self._das: Any = None
        self.calibration = self._calibrate()

    def _rf(self, x: np.ndarray, z: np.ndarray, rc: np.ndarray) -> np.ndarray:
        import pymust

        rf, _ = pymust.simus(x, z, rc, self.delays, self.param)
        out = np.zeros((self.n_samples, rf.shape[1]))
        m = min(self.n_samples, rf.shape[0])
        out[:m] = rf[:m]
        return out

    def _beamform(self, rf: np.ndarray) -> np.ndarray:
        import pymust

        iq = pymust.rf2iq(rf, self.param)
        if self._das is None:
            self._das = pymust.dasmtx(iq, self.xi, self.zi, self.delays, self.param)
        return (self._das @ iq.flatten(order="F")).reshape(self.xi.shape, order="F")

    def _calibrate(self) -> float:
        """``density * sum |PSF|^2 * pixel area``: ``E|IQ|^2`` of a uniform unit echogenicity before normalisation."""
        psf = self._beamform(self._rf(np.array([0.0]), np.array([self.z_px[self.n // 2]]), np.array([1.0])))
        area_mm2 = self.s.pixel_mm**2
        return float(self.s.density * (np.abs(psf) ** 2).sum() * area_mm2)

    def simulate(self, echo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """IQ frames ``(S, n, n)`` complex for echogenicity maps ``(S, n, n)``."""
        echo = np.asarray(echo, dtype=np.float64)
        mg = self.s.margin_mm * 1e-3
        lo_x, hi_x = self.x_px[0] - mg, self.x_px[-1] + mg
        lo_z, hi_z = self.z_px[0] - mg, self.z_px[-1] + mg
        count = int(round(self.s.density * (hi_x - lo_x) * (hi_z - lo_z) * 1e6))
        out = np.empty(echo.shape, dtype=np.complex128)
        px = self.s.pixel_mm * 1e-3
        for k, e in enumerate(echo):
            x = rng.uniform(lo_x, hi_x, count)
            z = rng.uniform(lo_z, hi_z, count)
            j = np.clip(np.round((x - self.x_px[0]) / px).astype(int), 0, self.n - 1)
            i = np.clip(np.round((z - self.z_px[0]) / px).astype(int), 0, self.n - 1)
            rc = np.sqrt(np.maximum(e[i, j], 0)) * rng.standard_normal(count)
            out[k] = self._beamform(self._rf(x, z, rc))
        return out / math.sqrt(self.calibration)


_PYMUST: dict[tuple[int, PymustSettings], PymustSimulator] = {}


def simulate_iq(echo: np.ndarray, *, simulator: Simulator = "speckle", seed: int = 0,
                settings: PymustSettings | None = None) -> np.ndarray:
    """Calibrated IQ frames ``(S, n, n)`` complex128 of echogenicity maps ``(S, n, n)`` (``E|IQ|^2 = e``)."""
    rng = np.random.default_rng(seed)
    if simulator == "speckle":
        return speckle_iq(echo, rng=rng)
    if simulator == "pymust":
        key = (int(echo.shape[-1]), settings or PymustSettings())
        if key not in _PYMUST:
            _PYMUST[key] = PymustSimulator(*key)
        return _PYMUST[key].simulate(echo, rng)
    raise UserInputError(f"data.simulator={simulator!r}: expected speckle or pymust")


# ---------------------------------------------------------------- representations


def iq_to_channels(iq: np.ndarray | Tensor) -> Tensor:
    """Complex ``(S, n, n)`` -> real ``(S, 2, n, n)`` in model units (``MODEL_SCALE * [Re, Im]``), float64."""
    z = torch.as_tensor(np.asarray(iq)) if not isinstance(iq, Tensor) else iq
    return MODEL_SCALE * torch.stack([z.real, z.imag], dim=1).to(torch.float64)


def channels_to_iq(x: Tensor | np.ndarray) -> np.ndarray:
    """Model units ``(S, 2, n, n)`` -> calibrated complex IQ ``(S, n, n)``."""
    a = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
    return (a[:, 0] + 1j * a[:, 1]) / MODEL_SCALE


def envelope(iq: np.ndarray) -> np.ndarray:
    """Envelope ``|IQ|`` (linear amplitude)."""
    return np.abs(np.asarray(iq))


def bmode(iq: np.ndarray, *, dynamic_range: float = 50.0, ref: float | None = None) -> np.ndarray:
    """Log-compressed B-mode in dB, ``20 log10(|IQ| / ref)`` clipped to ``[-dynamic_range, 0]``; ``ref`` defaults to
    the maximum envelope of all frames given."""
    env = envelope(iq)
    r = float(env.max()) if ref is None else float(ref)
    return np.clip(20 * np.log10(np.maximum(env, 1e-12) / max(r, 1e-300)), -dynamic_range, 0.0)


# ---------------------------------------------------------------- the haze operator


class HazeOperator:
    """Haze model ``y = a x + b h``: a linear operator on the composite state ``{"tissue": x, "haze": h}``
    (each ``(B, 2, n, n)``, IQ channels) with measurements ``y`` ``(B, 2, n, n)``.

    * ``forward(s) = a s["tissue"] + b s["haze"]``;
    * ``adjoint(y) = {"tissue": a y, "haze": b y}`` (the exact adjoint for the sum of real inner products);
    * ``pinv(y) = {"tissue": a y, "haze": b y} / (a^2 + b^2)`` — the minimum-norm solution (``A A^T = (a^2 + b^2) I``);
    * ``norm() = sqrt(a^2 + b^2)`` (the spectral norm).
    """

    linear = True
    keys = ("tissue", "haze")

    def __init__(self, tissue_gain: float = 1.0, haze_gain: float = 1.0) -> None:
        if not (math.isfinite(tissue_gain) and math.isfinite(haze_gain)) or tissue_gain == 0 == haze_gain:
            raise ValueError(f"HazeOperator: gains must be finite and not both zero, got {tissue_gain}, {haze_gain}")
        self.a = float(tissue_gain)
        self.b = float(haze_gain)

    def _check(self, s: Any) -> None:
        from collections.abc import Mapping

        if not isinstance(s, Mapping) or set(s) != set(self.keys):
            got = sorted(s) if isinstance(s, Mapping) else type(s).__name__
            raise ValueError(f"HazeOperator: expected a state with components {list(self.keys)}, got {got}")
        if s["tissue"].shape != s["haze"].shape:
            raise ValueError(f"HazeOperator: tissue {tuple(s['tissue'].shape)} and haze {tuple(s['haze'].shape)} differ in shape")

    def forward(self, s: Any) -> Tensor:
        """``a x + b h`` ``(B, 2, n, n)``."""
        self._check(s)
        return self.a * s["tissue"] + self.b * s["haze"]

    def adjoint(self, y: Tensor) -> Any:
        """``{"tissue": a y, "haze": b y}``."""
        from polydiff import StateDict

        return StateDict({"tissue": self.a * y, "haze": self.b * y})

    def pinv(self, y: Tensor) -> Any:
        """Minimum-norm solution ``A^T (A A^T)^{-1} y``."""
        from polydiff import StateDict

        c = self.a**2 + self.b**2
        return StateDict({"tissue": self.a * y / c, "haze": self.b * y / c})

    def norm(self) -> float:
        return math.sqrt(self.a**2 + self.b**2)

    def range_space(self, space: Any) -> Any:
        """Measurements are dense ``(B, 2, n, n)`` tensors."""
        from polydiff.spaces import DenseSpace

        return DenseSpace()

    def __repr__(self) -> str:
        return f"HazeOperator(tissue_gain={self.a:g}, haze_gain={self.b:g})"


REAL_FRAMES = (
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", "Philips adult echo (JPEG lossless)"),
    ("gdcm-US-ALOKA-16.dcm", "ALOKA B-mode (palette colour)"),
    ("color3d_jpeg_baseline.dcm", "SonoSite cine, frame 60 (JPEG baseline)"),
)
"""The real B-mode frames of ``pydicom-data`` used for qualitative checks (file, description)."""


def real_bmode_frames() -> list[tuple[str, np.ndarray]]:
    """The :data:`REAL_FRAMES` decoded from the installed ``pydicom-data`` package: ``(description, image)`` with
    ``image`` ``(H, W)`` grey or ``(H, W, 3)`` RGB in [0, 1] (a cine gives its middle frame; palette colour is applied).
    JPEG-lossless decoding needs ``pylibjpeg`` + ``pylibjpeg-libjpeg``; nothing is downloaded."""
    import pydicom
    from pydicom.data import get_testdata_file

    out = []
    for fname, desc in REAL_FRAMES:
        path = get_testdata_file(fname, download=False)
        if path is None:
            raise UserInputError(f"{fname}: not found; install the pydicom-data package (pip install pydicom-data)")
        ds = pydicom.dcmread(path)
        a = ds.pixel_array
        if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            a = apply_color_lut(a, ds)
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            a = a[len(a) // 2]
        a = a.astype(np.float64)
        out.append((desc, (a - a.min()) / max(float(a.max() - a.min()), 1e-12)))
    return out


def add_measurement_noise(y: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """``y + std * N(0, I)`` (white Gaussian noise in the IQ channels)."""
    return y + std * torch.randn(y.shape, generator=generator, dtype=y.dtype)


__all__ = ["CYST", "MODEL_SCALE", "CystGeometry", "HazeOperator", "PymustSettings", "PymustSimulator", "Simulator",
           "REAL_FRAMES", "add_measurement_noise", "bmode", "channels_to_iq", "cyst_phantoms", "echo_from_slices", "envelope",
           "gaussian_psf", "haze_maps", "iq_to_channels", "real_bmode_frames", "simulate_iq", "speckle_iq"]
