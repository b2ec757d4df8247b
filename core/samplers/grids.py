"""Time grids: descending tensors of ``steps + 1`` times ending at ``t = 0``.

A grid is plain data, so any custom grid works. Built-in kinds place the first ``steps``
points between ``t_start`` and the process's ``t_min`` and end with the final step to ``t = 0``
(where every Gaussian sampler returns the model's ``x0`` estimate):

* ``uniform`` in ``t``;
* ``log-snr`` uniform in ``lambda_t = log(alpha^2/sigma^2)`` (DPM-Solver's choice);
* ``karras`` — Karras et al.'s rho-spacing of ``sigma/alpha`` (``rho = 7``).

Where ``alpha = 0`` at ``t_start`` (flow at ``t = 1``) the two log-SNR spacings start from
:data:`START_LOG_SNR` instead of ``-inf``, keeping ``t_start`` as the first point. Each sampler's default kind
per process is measured (:class:`GridBySchedule`; ``benchmarks/sampler_grids.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..processes import ForwardProcess, GaussianProcess

GRID_KINDS = ("uniform", "log-snr", "karras")

#: The log-SNR a ``log-snr``/``karras`` grid is spaced from when ``alpha = 0`` at its start (the flow schedule at
#: ``t = 1``, log-SNR ``-inf``): ``alpha / sigma = 1e-2`` (about vp-linear's value at t = 1). The grid still
#: starts at ``t_start``; its first step covers the interval up to there, which the samplers take in a form
#: finite at ``alpha = 0``. Measured on flow (benchmarks/sampler_grids.py): with 1e-2, DPM-Solver++ on
#: ``log-snr`` beats ``uniform`` at 10, 20 and 50 NFE; 1e-3 wastes steps at no signal, 1e-1 makes the first step too long.
START_LOG_SNR = 2.0 * math.log(1e-2)


def time_grid(
    process: ForwardProcess,
    steps: int,
    *,
    kind: str = "uniform",
    t_start: float | None = None,
    t_end: float | None = None,
    rho: float = 7.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """A descending grid of ``steps + 1`` times from ``t_start`` to ``0``, float64.

    Args:
        process: the forward process (supplies ``t_min``/``t_max`` and, for ``log-snr``/``karras``, the log-SNR).
        steps: number of sampler steps (intervals), at least 1.
        kind: ``uniform``, ``log-snr`` or ``karras``.
        t_start: first time (default: the process's ``t_max``).
        t_end: last time before the final step to 0 (default: the process's ``t_min``; ``0`` for discrete processes).
        rho: Karras spacing exponent.
    """
    if int(steps) < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    steps = int(steps)
    t_start = process.t_max if t_start is None else float(t_start)
    t_end = process.t_min if t_end is None else float(t_end)
    if not (0.0 <= t_end < t_start <= 1.0):
        raise ValueError(f"need 0 <= t_end < t_start <= 1, got t_start={t_start}, t_end={t_end}")
    if kind not in GRID_KINDS:
        raise ValueError(f"unknown grid kind {kind!r}; expected one of: {', '.join(GRID_KINDS)}")
    n_inner = steps if t_end == 0.0 else steps - 1  # intervals before the final step to 0
    if kind == "uniform" or process.is_discrete:
        if kind != "uniform":
            raise ValueError(f"grid kind {kind!r} needs a Gaussian process (it spaces log-SNR); use 'uniform'")
        pts = torch.linspace(t_start, t_end, n_inner + 1, dtype=torch.float64)
    else:
        pts = _snr_grid(_log_snr_process(process, kind), kind, t_start, t_end, n_inner, rho)
    if t_end > 0.0:
        pts = torch.cat([pts, torch.zeros(1, dtype=torch.float64)])
    return pts.to(device) if device is not None else pts


def _log_snr_process(process: ForwardProcess, kind: str) -> GaussianProcess:
    """The Gaussian process whose log-SNR spaces the grid: the process itself, or the one schedule
    shared by every component of a product process."""
    from ..processes import ProductProcess

    if isinstance(process, GaussianProcess):
        return process
    if isinstance(process, ProductProcess):
        parts = list(process.components.values())
        if all(isinstance(p, GaussianProcess) for p in parts):
            first = parts[0]
            if all(type(p.schedule_fn) is type(first.schedule_fn) and p.schedule_fn == first.schedule_fn for p in parts):
                return first
            raise ValueError(f"grid kind {kind!r}: the product's components have different schedules, so no single "
                             "log-SNR spaces the grid; pass an explicit grid (a descending tensor of times)")
    raise ValueError(f"grid kind {kind!r} needs a Gaussian process (it spaces log-SNR); use 'uniform'")


def _snr_grid(process: GaussianProcess, kind: str, t_start: float, t_end: float, n: int, rho: float) -> Tensor:
    ends = torch.tensor([t_start, t_end], dtype=torch.float64)
    lam = process.log_snr(ends)
    if not torch.isfinite(lam[0]):  # alpha = 0 at t_start: space from START_LOG_SNR, start at t_start
        lam[0] = START_LOG_SNR
        if not bool(lam[1] > lam[0]):
            raise ValueError(f"grid kind {kind!r}: t_end={t_end} is noisier than alpha / sigma = 1e-2; use grid='uniform'")
    if t_end == 0.0 and not torch.isfinite(lam[1]):
        raise ValueError(f"grid kind {kind!r} cannot reach t_end=0 (infinite log-SNR); leave t_end at the process's t_min")
    if n == 0:
        return ends[:1]
    if kind == "log-snr":
        lams = torch.linspace(float(lam[0]), float(lam[1]), n + 1, dtype=torch.float64)
    else:  # karras: rho-spacing of s = sigma / alpha = exp(-lambda / 2)
        s_max, s_min = torch.exp(-0.5 * lam[0]), torch.exp(-0.5 * lam[1])
        ramp = torch.linspace(0, 1, n + 1, dtype=torch.float64)
        s = (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
        lams = -2.0 * torch.log(s)
    t = process.t_from_log_snr(lams).clamp(0.0, 1.0)
    t[0], t[-1] = t_start, t_end  # exact end points
    return t


def schedule_name(process: ForwardProcess) -> str | None:
    """The name of the one Gaussian schedule behind ``process`` (a product's, when its components share it), else ``None``."""
    from ..processes import ProductProcess

    if isinstance(process, GaussianProcess):
        return process.schedule_fn.name
    if isinstance(process, ProductProcess):
        try:
            return _log_snr_process(process, "log-snr").schedule_fn.name
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class GridBySchedule:
    """A sampler's default grid kind as a function of the process: ``table[schedule name]`` or ``fallback``.

    Processes without one Gaussian schedule (discrete processes, products of different schedules) get
    ``uniform``, the only kind defined for them. The tables of the built-in samplers are measured
    (``benchmarks/sampler_grids.py``, recorded in ``benchmarks/results/sampler_grids.md``).
    """

    table: Mapping[str, str] = field(default_factory=dict)
    fallback: str = "uniform"

    def __call__(self, process: ForwardProcess) -> str:
        name = schedule_name(process)
        if name is None:
            return "uniform"
        return self.table.get(name, self.fallback)


def custom_grid(times: Tensor | list[float]) -> Tensor:
    """Validate a user grid: 1-D, strictly descending, within ``[0, 1]``; returned as float64."""
    g = torch.as_tensor(times, dtype=torch.float64)
    if g.ndim != 1 or g.numel() < 2:
        raise ValueError(f"a time grid must be 1-D with at least 2 points, got shape {tuple(g.shape)}")
    if not bool((g[1:] < g[:-1]).all()):
        raise ValueError("a time grid must be strictly descending (t = 1 noise -> t = 0 data)")
    if float(g.min()) < 0.0 or float(g.max()) > 1.0:
        raise ValueError("grid times must lie in [0, 1]")
    return g


# Measured defaults (benchmarks/sampler_grids.py for the ODE samplers: the closest to the exact PF-ODE map at
# 10 and 20 NFE on every built-in schedule; for the stochastic ones the moment errors at 20 and 50 steps).

#: euler / ddim: uniform in t, except Karras' rho-spacing where alpha = 1 (for edm the two coincide).
EULER_GRIDS = GridBySchedule({"ve": "karras", "edm": "karras"}, "uniform")
#: heun: as euler, but log-SNR on vp-cosine (its t_max = 0.9999 puts sigma/alpha ~ 6e3 at the start).
HEUN_GRIDS = GridBySchedule({"ve": "karras", "edm": "karras", "vp-cosine": "log-snr"}, "uniform")
#: DPM-Solver++ (2M, 3M): uniform in log-SNR (DPM-Solver's own choice), on every schedule.
DPM_GRIDS = GridBySchedule({}, "log-snr")
#: DDPM: log-SNR, except uniform in t on flow (moment errors at 20 steps 0.20 vs 0.25; tie at 50).
DDPM_GRIDS = GridBySchedule({"flow": "uniform"}, "log-snr")
#: reverse-SDE samplers: log-SNR on the VP schedules (uniform-t Euler-Maruyama diverges on vp-cosine at 20
#: steps), uniform in t elsewhere (Song et al.'s choice; measured as close or closer).
SDE_GRIDS = GridBySchedule({"vp-linear": "log-snr", "vp-cosine": "log-snr"}, "uniform")
