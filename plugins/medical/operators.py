"""CT and MRI measurement operators: thin adapters from ``deepinv.physics`` to polydiff's ``MeasurementOperator``.

Every operator acts on real images ``x`` of shape ``(B, 1, H, W)`` (batch first) and has

* ``forward(x)`` — ``A x``; ``adjoint(y)`` — ``A^T y`` (the exact adjoint for the real inner product);
* ``pinv(y)`` — the classic baseline (FBP for CT, zero-filled ``A^T y`` for MRI);
* ``norm()`` — the spectral norm ``||A||_2`` by power iteration (cached);
* ``range_space(space)`` — measurements are dense tensors.

The deepinv physics object is built lazily per ``(device, dtype)`` of the input, so an operator follows
its input to any device and precision (float64 for the adjointness tests).

Conventions (checked in ``tests/plugins/medical/test_operators_medical.py``):

* **CT** (``CTOperator``): ``deepinv.physics.Tomography`` with ``normalize=False``: parallel beam equals
  ``skimage.transform.radon(image, theta=angles_deg, circle=False)`` with the sinogram laid out
  ``(B, 1, detectors, views)``, exactly (1e-15) when the padded width ``P = ceil(sqrt(2) n)`` is odd
  (n = 33, 40, 64, ...); for an even ``P`` skimage rotates about pixel ``P // 2`` and deepinv about the
  geometric centre ``(P - 1) / 2`` (a half-pixel shift of the rotation centre). Sparse views: ``views`` angles evenly spread over ``[0, span)`` degrees;
  limited angle: ``span < 180``. Fan beam: deepinv's fan geometry (``fan_parameters``).
* **MRI** (``MRIOperator``): ``y = M * F(S_c x)`` with the centred orthonormal FFT
  ``F = fftshift . fft2(norm="ortho") . ifftshift`` (fastMRI's ``fft2c``); complex k-space stored as two
  real channels ``(B, 2, H, W)`` (single coil) or ``(B, 2, C, H, W)`` (coils). The image is real
  (magnitude priors), so the adjoint is the real part of deepinv's complex adjoint.

Masks (``mri_mask``): deepinv's generators for 1-D random, equispaced and Gaussian variable density
(``random1d``, ``equispaced1d``, ``gaussian1d``); written here, since deepinv lacks them: 2-D variable-density
random (``random2d``) and Poisson-disc (``poisson2d``). Noise models (``add_noise``): Gaussian, Poisson and
log-Poisson for CT (transmission counts ``N0 exp(-mu y)``), Rician for MRI magnitudes.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor

MaskKind = Literal["random1d", "equispaced1d", "gaussian1d", "random2d", "poisson2d"]


class _PhysicsOperator:
    """Shared machinery: lazily built deepinv physics per (device, dtype), power-iteration norm."""

    linear = True

    def __init__(self) -> None:
        self._cache: dict[tuple[str, torch.dtype], Any] = {}
        self._norm: float | None = None

    def _build(self, device: torch.device, dtype: torch.dtype) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def physics(self, like: Tensor) -> Any:
        """The deepinv physics for the device and dtype of ``like``."""
        key = (str(like.device), like.dtype)
        if key not in self._cache:
            self._cache[key] = self._build(like.device, like.dtype)
        return self._cache[key]

    def _check(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[-2:]) != self.image_shape:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__}: expected images (B, 1, {self.image_shape[0]}, {self.image_shape[1]}), got {got}")

    image_shape: tuple[int, int]

    def range_space(self, space: Any) -> Any:
        """Measurements are dense ``(B, ...)`` tensors."""
        from polydiff.spaces import DenseSpace

        return DenseSpace()

    def normal(self, x: Tensor) -> Tensor:
        """``A^T A x``."""
        return self.adjoint(self.forward(x))

    def norm(self, iters: int = 50, dtype: torch.dtype = torch.float64) -> float:
        """Spectral norm ``||A||_2`` by power iteration on ``A^T A`` (deterministic start, cached)."""
        if self._norm is None:
            g = torch.Generator().manual_seed(0)
            v = torch.randn((1, 1, *self.image_shape), generator=g, dtype=dtype)
            v = v / v.norm()
            lam = 0.0
            for _ in range(iters):
                w = self.normal(v)
                lam = float((v * w).sum())
                v = w / w.norm()
            self._norm = math.sqrt(max(lam, 0.0))
        return self._norm


class CTOperator(_PhysicsOperator):
    """Parallel- or fan-beam CT (``deepinv.physics.Tomography``, exact autograd adjoint).

    Args:
        size: image width ``n`` (images are ``n x n``).
        views: number of projection angles, evenly spread over ``[0, span)`` degrees.
        span: angular range in degrees (``180`` full parallel-beam; less is limited angle).
        start: first angle in degrees.
        fan_beam: fan instead of parallel beam; fan_parameters: deepinv's fan geometry dict.
    """

    def __init__(self, size: int, views: int = 16, *, span: float = 180.0, start: float = 0.0, fan_beam: bool = False,
                 fan_parameters: dict[str, Any] | None = None) -> None:
        super().__init__()
        if int(size) < 4 or int(views) < 1 or not 0 < float(span) <= 360:
            raise ValueError(f"CTOperator: need size >= 4, views >= 1, 0 < span <= 360; got size={size}, views={views}, span={span}")
        self.size = int(size)
        self.views = int(views)
        self.span = float(span)
        self.fan_beam = bool(fan_beam)
        self.fan_parameters = fan_parameters
        self.image_shape = (self.size, self.size)
        self.angles = start + torch.arange(self.views, dtype=torch.float64) * (self.span / self.views)

    def _build(self, device: torch.device, dtype: torch.dtype) -> Any:
        from deepinv.physics import Tomography

        return Tomography(angles=self.angles.to(dtype), img_width=self.size, circle=False, normalize=False,
                          fan_beam=self.fan_beam, fan_parameters=self.fan_parameters, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Sinogram ``(B, 1, detectors, views)``."""
        self._check(x)
        return self.physics(x).A(x)

    def adjoint(self, y: Tensor) -> Tensor:
        """Back-projection ``A^T y`` ``(B, 1, n, n)``."""
        return self.physics(y).A_adjoint(y)

    def pinv(self, y: Tensor) -> Tensor:
        """Filtered back-projection (the classic baseline)."""
        return self.physics(y).A_dagger(y, fbp=True)

    def __repr__(self) -> str:
        kind = "fan" if self.fan_beam else "parallel"
        return f"CTOperator({kind}, size={self.size}, views={self.views}, span={self.span:g})"


class MRIOperator(_PhysicsOperator):
    """Cartesian MRI, single coil (``deepinv.physics.MRI``) or multi-coil (``deepinv.physics.MultiCoilMRI``).

    Args:
        mask: ``(H, W)`` 0/1 sampling mask in centred k-space (see :func:`mri_mask`).
        coil_maps: optional complex ``(C, H, W)`` sensitivities (e.g. :func:`simulate_coil_maps`).
    """

    def __init__(self, mask: Tensor, coil_maps: Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(mask, Tensor) or mask.ndim != 2:
            raise ValueError(f"MRIOperator: mask must be a 2-D tensor (H, W), got {getattr(mask, 'shape', type(mask))}")
        if coil_maps is not None and (coil_maps.ndim != 3 or tuple(coil_maps.shape[1:]) != tuple(mask.shape) or not coil_maps.is_complex()):
            raise ValueError(f"MRIOperator: coil_maps must be complex (C, {mask.shape[0]}, {mask.shape[1]}), got {tuple(coil_maps.shape)} {coil_maps.dtype}")
        self.mask = (mask != 0).to(torch.float64)
        self.coil_maps = coil_maps
        self.image_shape = (int(mask.shape[0]), int(mask.shape[1]))

    @property
    def acceleration(self) -> float:
        return float(self.mask.numel() / self.mask.sum().clamp(min=1))

    def _build(self, device: torch.device, dtype: torch.dtype) -> Any:
        from deepinv.physics import MRI, MultiCoilMRI

        mask = self.mask.to(device=device, dtype=dtype)
        if self.coil_maps is None:
            return MRI(mask=mask, img_size=self.image_shape, device=device)
        cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        return MultiCoilMRI(mask=mask, coil_maps=self.coil_maps.to(device=device, dtype=cdtype), img_size=self.image_shape, device=device)

    def forward(self, x: Tensor) -> Tensor:
        """Masked centred k-space as real/imaginary channels: ``(B, 2, H, W)`` or ``(B, 2, C, H, W)``."""
        self._check(x)
        return self.physics(x).A(torch.cat([x, torch.zeros_like(x)], dim=1))

    def adjoint(self, y: Tensor) -> Tensor:
        """``Re(A^H y)`` ``(B, 1, H, W)``: the adjoint of the real-image operator."""
        return self.physics(y).A_adjoint(y)[:, :1]

    def pinv(self, y: Tensor) -> Tensor:
        """Zero-filled reconstruction: the magnitude of ``A^H y`` (the classic baseline)."""
        z = self.physics(y).A_adjoint(y)
        return z.pow(2).sum(dim=1, keepdim=True).sqrt()

    def __repr__(self) -> str:
        coils = 1 if self.coil_maps is None else self.coil_maps.shape[0]
        return f"MRIOperator(shape={self.image_shape}, coils={coils}, acceleration={self.acceleration:.2f})"


def simulate_coil_maps(n_coils: int, shape: tuple[int, int], *, dtype: torch.dtype = torch.complex128, seed: int = 0) -> Tensor:
    """Smooth complex coil sensitivities ``(C, H, W)``: Gaussian profiles around a ring, a linear phase each,
    normalised so that ``sum_c |S_c|^2 = 1`` at every pixel (so ``A^H A`` is a projection for a full mask)."""
    h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h, dtype=torch.float64), torch.linspace(-1, 1, w, dtype=torch.float64), indexing="ij")
    g = torch.Generator().manual_seed(seed)
    maps = []
    for c in range(n_coils):
        phi = 2 * math.pi * c / n_coils
        cy, cx = 1.2 * math.sin(phi), 1.2 * math.cos(phi)
        mag = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 1.5)
        k = torch.randn(2, generator=g, dtype=torch.float64)
        phase = float(k[0]) * xx + float(k[1]) * yy + phi
        maps.append(mag * torch.exp(1j * phase))
    s = torch.stack(maps)
    s = s / s.abs().pow(2).sum(0, keepdim=True).sqrt()
    return s.to(dtype)


def mri_mask(kind: MaskKind, shape: tuple[int, int], acceleration: float = 4, *, center_fraction: float = 0.08, seed: int = 0) -> Tensor:
    """A centred-k-space sampling mask ``(H, W)`` of 0/1 float64.

    ``random1d`` / ``equispaced1d`` / ``gaussian1d`` sample whole phase-encoding columns with a fully
    sampled centre (deepinv's generators); ``random2d`` samples points with a density decaying from the
    centre, ``poisson2d`` a Poisson-disc pattern (minimum distance between samples, variable density);
    both keep a fully sampled centre square.
    """
    h, w = int(shape[0]), int(shape[1])
    if acceleration < 1:
        raise ValueError(f"mri_mask: acceleration must be >= 1, got {acceleration}")
    if kind in ("random1d", "equispaced1d", "gaussian1d"):
        from deepinv.physics.generator import EquispacedMaskGenerator, GaussianMaskGenerator, RandomMaskGenerator

        cls = {"random1d": RandomMaskGenerator, "equispaced1d": EquispacedMaskGenerator, "gaussian1d": GaussianMaskGenerator}[kind]
        gen = cls(img_size=(h, w), acceleration=int(acceleration), center_fraction=center_fraction, rng=torch.Generator().manual_seed(seed))
        m = gen.step(batch_size=1, seed=seed)["mask"]
        return (m.reshape(-1, h, w)[0] != 0).to(torch.float64)
    if kind == "random2d":
        return _random2d(h, w, acceleration, center_fraction, seed)
    if kind == "poisson2d":
        return _poisson2d(h, w, acceleration, center_fraction, seed)
    raise ValueError(f"mri_mask: unknown kind {kind!r}; choose from random1d, equispaced1d, gaussian1d, random2d, poisson2d")


def _centre(h: int, w: int, center_fraction: float) -> Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    ch, cw = max(1, round(h * center_fraction)), max(1, round(w * center_fraction))
    m[h // 2 - ch // 2: h // 2 - ch // 2 + ch, w // 2 - cw // 2: w // 2 - cw // 2 + cw] = True
    return m


def _radius(h: int, w: int) -> Tensor:
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64) - h // 2, torch.arange(w, dtype=torch.float64) - w // 2, indexing="ij")
    return torch.sqrt((yy / (h / 2)) ** 2 + (xx / (w / 2)) ** 2)


def _random2d(h: int, w: int, acceleration: float, center_fraction: float, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = _centre(h, w, center_fraction)
    target = h * w / acceleration
    dens = (1 - _radius(h, w) / math.sqrt(2)).clamp(min=0) ** 2 + 1e-3
    # scale the density so that the expected number of samples outside the centre meets the target
    need = max(target - float(centre.sum()), 0.0)
    lo, hi = 0.0, 1e6
    for _ in range(60):
        c = (lo + hi) / 2
        if float((dens * c).clamp(max=1)[~centre].sum()) > need:
            hi = c
        else:
            lo = c
    p = (dens * lo).clamp(max=1)
    m = torch.rand(h, w, generator=g, dtype=torch.float64) < p
    return (m | centre).to(torch.float64)


def _poisson2d(h: int, w: int, acceleration: float, center_fraction: float, seed: int) -> Tensor:
    """Variable-density Poisson-disc sampling by dart throwing: a candidate at radius ``r`` is accepted if no
    accepted sample lies within ``d0 (1 + 2 r)``; ``d0`` is bisected to meet the acceleration."""
    centre = _centre(h, w, center_fraction)
    target = h * w / acceleration
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(h * w, generator=g)
    rad = _radius(h, w).reshape(-1)
    ys, xs = order // w, order % w

    def throw(d0: float) -> Tensor:
        taken = torch.zeros(h, w, dtype=torch.bool)
        for i, yi, xi in zip(order.tolist(), ys.tolist(), xs.tolist(), strict=True):
            d = d0 * (1 + 2 * float(rad[i]))
            r = int(math.ceil(d))
            win = taken[max(0, yi - r): yi + r + 1, max(0, xi - r): xi + r + 1]
            if win.any():
                wy, wx = torch.nonzero(win, as_tuple=True)
                dist = torch.sqrt((wy + max(0, yi - r) - yi).double() ** 2 + (wx + max(0, xi - r) - xi).double() ** 2)
                if bool((dist < d).any()):
                    continue
            taken[yi, xi] = True
        return taken | centre

    lo, hi = 0.3, float(max(h, w))
    best = throw(lo)
    for _ in range(12):
        mid = (lo + hi) / 2
        m = throw(mid)
        if float(m.sum()) >= target:
            lo, best = mid, m
        else:
            hi = mid
    return best.to(torch.float64)


NoiseKind = Literal["none", "gaussian", "poisson", "log-poisson", "rician"]


def add_noise(y: Tensor, kind: NoiseKind, level: float, *, generator: torch.Generator | None = None, mu: float = 0.02) -> Tensor:
    """Noisy measurements.

    * ``gaussian``: ``y + level * n``;
    * ``poisson``: ``Poisson(y * level) / level`` (``level`` = photons per unit; ``y >= 0``);
    * ``log-poisson`` (CT): counts ``N ~ Poisson(N0 exp(-mu y))`` with ``N0 = level``, returned as
      ``-log(max(N, 1) / N0) / mu`` (line integrals again);
    * ``rician`` (MRI magnitude): ``|y + level (n1 + i n2)|`` for a real ``y``.
    """
    if kind == "none" or level == 0:
        return y.clone()
    if kind == "gaussian":
        return y + level * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    if kind == "poisson":
        return torch.poisson(y.clamp(min=0) * level, generator=generator) / level
    if kind == "log-poisson":
        counts = torch.poisson(level * torch.exp(-mu * y), generator=generator)
        return -torch.log(counts.clamp(min=1) / level) / mu
    if kind == "rician":
        n1 = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        n2 = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        return torch.sqrt((y + level * n1) ** 2 + (level * n2) ** 2)
    raise ValueError(f"add_noise: unknown noise kind {kind!r}; choose from gaussian, poisson, log-poisson, rician")


def fbp(op: CTOperator, y: Tensor) -> Tensor:
    """Filtered back-projection baseline (``op.pinv``)."""
    return op.pinv(y)


def zero_filled(op: MRIOperator, y: Tensor) -> Tensor:
    """Zero-filled MRI baseline (``op.pinv``)."""
    return op.pinv(y)


__all__ = ["CTOperator", "MRIOperator", "ScaledOperator", "normalised", "MaskKind", "NoiseKind", "add_noise", "fbp", "mri_mask", "simulate_coil_maps", "zero_filled"]


class ScaledOperator:
    """``s A`` for a linear operator ``A`` (e.g. ``s = 1 / ||A||`` to normalise CT so CG and step sizes are scale-free)."""

    linear = True

    def __init__(self, operator: Any, scale: float) -> None:
        self.operator = operator
        self.scale = float(scale)
        self.image_shape = operator.image_shape

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * self.operator.forward(x)

    def adjoint(self, y: Tensor) -> Tensor:
        return self.scale * self.operator.adjoint(y)

    def pinv(self, y: Tensor) -> Tensor:
        return self.operator.pinv(y / self.scale)

    def normal(self, x: Tensor) -> Tensor:
        return self.adjoint(self.forward(x))

    def norm(self) -> float:
        return abs(self.scale) * self.operator.norm()

    def range_space(self, space: Any) -> Any:
        return self.operator.range_space(space)

    def __repr__(self) -> str:
        return f"{self.scale:.4g} * {self.operator!r}"


def normalised(operator: Any) -> ScaledOperator:
    """``A / ||A||_2``."""
    return ScaledOperator(operator, 1.0 / operator.norm())
