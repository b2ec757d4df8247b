"""The sampler contract: one signature, stateless, per-sample generators, NFE counting.

A sampler is a plain function ``fn(model, x, grid, ctx) -> State``: it walks the descending
``grid`` (shape ``(steps + 1,)``) from ``x`` at ``grid[0]`` and returns the state at ``grid[-1]``.
It calls only ``model.denoise(x, t, cond, space=...)`` (one network evaluation each), draws
randomness only through ``ctx.space`` with ``ctx.generator``, applies ``ctx.corrections`` after
each step and reports each step through ``ctx.report``. Everything a call needs lives in its
arguments, so one function serves concurrent requests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from ..processes import ForwardProcess
from ..spaces import DataSpace
from ..types import Cond, GeneratorLike, State


class SamplerModel(Protocol):
    """What samplers call: a :class:`~polydiff.Denoiser` or a guided wrapper of one."""

    process: ForwardProcess

    def denoise(self, x_t: State, t: Tensor, cond: Cond | None = None, *, space: DataSpace | None = None) -> Any: ...


class StateCorrection(Protocol):
    """A correction applied to the state after each sampler step (replacement, projection, ...)."""

    def correct(self, x: State, t: Tensor, ctx: SamplerContext) -> State: ...


@dataclass(frozen=True)
class StepInfo:
    """What a per-step callback receives.

    Attributes:
        step: index of the step just taken (0-based); n_steps: total steps.
        t, t_next: times before and after the step, shape ``(B,)``.
        x: the state at ``t_next`` (in data coordinates, also for mean-reverting processes).
        x0: the estimate used in the step: the x0 estimate (Gaussian), ``p(x0 | x_t)`` probabilities
            (discrete), the whole :class:`~polydiff.denoiser.ProductDenoised` (mixed products), or ``None``.
    """

    step: int
    n_steps: int
    t: Tensor
    t_next: Tensor
    x: State
    x0: Any


@dataclass(frozen=True)
class SampleResult:
    """The output of :func:`polydiff.sample`.

    Attributes:
        x: final samples. nfe: network evaluations made. steps: sampler steps taken.
        trajectory: states after every step (first entry: the initial state) when requested.
        grid: the time grid walked, shape ``(steps + 1,)``.
    """

    x: State
    nfe: int
    steps: int
    trajectory: tuple[State, ...] | None = None
    grid: Tensor | None = None


@dataclass
class SamplerContext:
    """Per-call inputs of a sampler (never shared between calls)."""

    process: ForwardProcess
    space: DataSpace
    batch_size: int
    cond: Cond | None = None
    generator: GeneratorLike = None
    corrections: Sequence[StateCorrection] = ()
    callback: Callable[[StepInfo], None] | None = None
    keep_trajectory: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    trajectory: list[State] = field(default_factory=list)
    #: the schedule evaluated once on the call's grid (a ``GridCoefficients``; Gaussian processes), or ``None``
    coefficients: Any = None

    def times(self, t: Tensor | float, like: Tensor) -> Tensor:
        """Broadcast a grid time to per-sample times ``(B,)`` with ``like``'s dtype and device."""
        # at least float32: half-precision times would quantise a fine grid into zero-length steps
        dtype = torch.promote_types(like.dtype, torch.float32) if like.is_floating_point() else torch.float64
        return torch.full((self.batch_size,), float(t), dtype=dtype, device=like.device)

    def correct(self, x: State, t: Tensor) -> State:
        """Apply every state correction at time ``t`` (shape ``(B,)``)."""
        for c in self.corrections:
            x = c.correct(x, t, self)
        return x

    def report(self, step: int, n_steps: int, t: Tensor, t_next: Tensor, x: State, x0: Any = None) -> None:
        """Record a finished step for the trajectory and the callback."""
        if self.keep_trajectory:
            self.trajectory.append(x)
        if self.callback is not None:
            self.callback(StepInfo(step=step, n_steps=n_steps, t=t, t_next=t_next, x=x, x0=x0))

    def option(self, name: str, default: Any) -> Any:
        """A sampler option (``polydiff.sample(..., name=value)``) or its default."""
        return self.options.get(name, default)


SamplerFn = Callable[[SamplerModel, State, Tensor, SamplerContext], State]


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler.

    Attributes:
        name: registry name. fn: the sampler function.
        kind: ``gaussian``, ``discrete`` or ``any`` (which processes it accepts).
        exact: whether, given the exact denoiser, it samples the model's distribution as steps grow
            (``False`` for heuristics such as confidence-ordered unmasking).
        stochastic: whether it draws noise during sampling.
        options: the keyword options it understands, with defaults.
        description: one line for ``polydiff plugins``.
        supports_product: whether it runs product processes with non-Gaussian components.
        default_grid: the grid kind :func:`polydiff.sample` uses when no ``grid`` is given: a name from
            :data:`~polydiff.samplers.GRID_KINDS`, or a function of the process returning one (chosen by
            measurement; see ``benchmarks/results/sampler_grids.md``).
        start: optional function of the process giving the latest time the sampler can start from
            (e.g. below a singularity of the reverse SDE); ``polydiff.sample`` clips ``t_start`` to it.
    """

    name: str
    fn: SamplerFn
    kind: str
    exact: bool = True
    stochastic: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    supports_product: bool = False
    default_grid: str | Callable[[ForwardProcess], str] = "uniform"
    start: Callable[[ForwardProcess], float] | None = None

    def grid_for(self, process: ForwardProcess) -> str:
        """The default grid kind of this sampler on ``process``."""
        return self.default_grid(process) if callable(self.default_grid) else self.default_grid

    def start_for(self, process: ForwardProcess) -> float:
        """The latest start time on ``process``: ``min(process.t_max, start(process))``."""
        t_max = float(process.t_max)
        return t_max if self.start is None else min(t_max, float(self.start(process)))

    def supports(self, process: ForwardProcess) -> bool:
        """Whether this sampler can run ``process``."""
        from ..processes import ProductProcess

        if isinstance(process, ProductProcess):
            if self.kind == "any" or self.supports_product:
                return True
            return all(self.supports(p) for p in process.components.values()) and self.kind == "gaussian"
        if self.kind == "any":
            return True
        return (self.kind == "discrete") == bool(process.is_discrete)


class CountingModel:
    """Wraps a sampler model and counts its ``denoise`` calls (network evaluations)."""

    def __init__(self, model: SamplerModel) -> None:
        self.model = model
        self.process = model.process
        self.nfe = 0

    def denoise(self, x_t: State, t: Tensor, cond: Cond | None = None, *, space: DataSpace | None = None) -> Any:
        self.nfe += 1
        return self.model.denoise(x_t, t, cond, space=space)
