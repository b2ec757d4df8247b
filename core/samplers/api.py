"""``polydiff.sample``: build the initial state and the grid, wrap guidance, run a registered sampler."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor

from ..denoiser import known_schedule_values
from ..guidance.base import guided, split_guidance
from ..processes import DiscreteProcess, GaussianProcess, ProductProcess
from ..spaces import DataSpace, infer_space
from ..state import as_state, first_leaf
from ..types import Cond, GeneratorLike, State
from .base import CountingModel, SampleResult, SamplerContext, StepInfo
from .gaussian_common import is_gaussian, precompute_grid
from .grids import custom_grid, time_grid
from .registry import get_sampler


class _StandardCoordinates:
    """Presents a model of an offset process in standard coordinates ``z = x - m_t``."""

    def __init__(self, model: Any, space: DataSpace) -> None:
        self.model = model
        self.process: GaussianProcess = model.process
        self.space = space

    def denoise(self, z_t: State, t: Tensor, cond: Cond | None = None, *, space: DataSpace | None = None) -> Any:
        space = space or self.space
        m = self.process.offset(t, z_t, space=space, cond=cond)
        return self.model.denoise(z_t + m, t, cond, space=space)


def sample(
    model: Any,
    *,
    shape: Sequence[int] | None = None,
    like: State | None = None,
    sampler: str = "euler",
    steps: int = 32,
    generator: GeneratorLike = None,
    cond: Cond | None = None,
    guidance: Any = (),
    t_start: float = 1.0,
    t_end: float | None = None,
    grid: Tensor | Sequence[float] | str | None = None,
    space: DataSpace | None = None,
    x_start: State | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    callback: Callable[[StepInfo], None] | None = None,
    return_trajectory: bool = False,
    **options: Any,
) -> SampleResult:
    """Draw samples from ``model`` (a :class:`~polydiff.Denoiser` or a guided one).

    Args:
        model: the denoiser; ``model.process`` decides which samplers apply.
        shape: batch shape, e.g. ``(B, D)`` (dense states only); or give ``like``.
        like: a template state (structure, dtype, device). With ``t_start`` below the process's
            ``t_max`` and no ``x_start``, ``like`` is taken as clean data and forward-noised to ``t_start``
            (SDEdit-style partial noising).
        sampler: a name from :func:`polydiff.samplers.names`.
        steps: number of sampler steps.
        generator: one ``torch.Generator`` or one per sample (results then do not depend on the batch).
        cond: conditioning passed to the network.
        guidance: guidance objects (model wrappers and/or state corrections).
        t_start: start time (clipped to the process's ``t_max`` and to the sampler's latest start, e.g. just
            below ``t = 1`` for reverse-SDE samplers on the flow schedule); t_end: last time before the step to 0.
        grid: a grid kind (``uniform``, ``log-snr``, ``karras``) or an explicit descending grid; default
            (``None``): the sampler's measured best kind for the process (``SamplerSpec.default_grid``).
        space: the data space (inferred from the state when omitted).
        x_start: the state at ``t_start`` (skips drawing the initial state).
        callback: called with a :class:`~polydiff.samplers.base.StepInfo` after every step.
        return_trajectory: keep every intermediate state.
        **options: sampler options (e.g. ``eta`` for DDIM, ``churn`` for Heun).

    Returns:
        :class:`~polydiff.samplers.base.SampleResult` with ``.x``, ``.nfe``, ``.steps``.
    """
    process = model.process
    spec = get_sampler(sampler)
    if not spec.supports(process):
        from .registry import names as sampler_names

        raise ValueError(f"sampler {sampler!r} does not support process {process.name!r}; use one of: {', '.join(sampler_names(process))}")
    unknown = set(options) - set(spec.options)
    if unknown:
        raise ValueError(f"sampler {sampler!r} has no option(s) {sorted(unknown)}; valid: {sorted(spec.options) or 'none'}")
    template = _template(process, shape, like, x_start, dtype, device)
    space = space or infer_space(template)
    batch_size = space.batch_size(template)

    t_limit = spec.start_for(process)
    if grid is None or isinstance(grid, str):
        kind = grid if grid is not None else spec.grid_for(process)
        g = time_grid(process, steps, kind=kind, t_start=min(float(t_start), t_limit), t_end=t_end)
    else:
        g = custom_grid(grid)
    g = g.to(first_leaf(template).device)
    t0 = float(g[0])

    wrappers, corrections = split_guidance(guidance)
    sampler_model = guided(model, *wrappers)
    if x_start is not None:
        x = as_state(x_start)
    elif like is not None and t0 < t_limit - 1e-12:
        tt = torch.full((batch_size,), t0, dtype=_time_dtype(template), device=first_leaf(template).device)
        x = process.noise(as_state(like), tt, generator=generator, space=space, cond=cond).x_t
    else:
        x = process.prior_sample(template, generator=generator, space=space, cond=cond, t=t0)

    _check_start(model, process, t0)
    offset = isinstance(process, GaussianProcess) and process.has_offset
    if offset:
        sampler_model = _StandardCoordinates(sampler_model, space)
        x = x - process.offset(_full(batch_size, t0, template), x, space=space, cond=cond)
        callback = _offset_callback(callback, process, space, cond) if callback is not None else None

    counted = CountingModel(sampler_model)
    ctx = SamplerContext(
        process=process,
        space=space,
        batch_size=batch_size,
        cond=cond,
        generator=generator,
        corrections=corrections,
        callback=callback,
        keep_trajectory=return_trajectory,
        options={**spec.options, **options},
    )
    if return_trajectory:
        ctx.trajectory.append(x)
    if is_gaussian(process):  # the schedule of the whole grid, evaluated once (samplers and denoiser read it)
        ctx.coefficients = precompute_grid(process, g, batch_size, x)
    known = known_schedule_values(ctx.coefficients.known) if ctx.coefficients is not None else nullcontext()
    with torch.no_grad() if not _needs_grad(wrappers) else torch.enable_grad(), known:
        out = spec.fn(counted, x, g, ctx)
    if offset:
        out = out + process.offset(_full(batch_size, float(g[-1]), template), out, space=space, cond=cond)
    traj = tuple(ctx.trajectory) if return_trajectory else None
    if offset and traj is not None:  # report every state in data coordinates, like .x
        traj = tuple(z + process.offset(_full(batch_size, float(g[i]), template), z, space=space, cond=cond) for i, z in enumerate(traj))
    return SampleResult(x=out, nfe=counted.nfe, steps=len(g) - 1, trajectory=traj, grid=g)


def _check_start(model: Any, process: Any, t0: float) -> None:
    """Refuse a start where ``alpha = 0`` for an eps/score model (its x0 estimate would be infinite),
    and mean-reverting components inside product processes (not supported by the samplers)."""
    from ..types import Prediction

    components = process.components if isinstance(process, ProductProcess) else {"": process}
    prediction = getattr(model, "prediction", None)
    for key, p in components.items():
        if not isinstance(p, GaussianProcess):
            continue
        if key and p.has_offset:
            raise ValueError(f"product component {key!r} drifts toward a conditioning signal (mean offset); "
                             "samplers support mean-reverting processes only on their own, not inside a product")
        pred = prediction.get(key) if isinstance(prediction, dict) else prediction
        if pred in (Prediction.EPS, Prediction.SCORE):
            alpha = float(p.schedule(torch.tensor([t0], dtype=torch.float64)).alpha[0])
            if alpha == 0.0:
                name = f"component {key!r} of the process" if key else f"process {p.name!r}"
                raise ValueError(
                    f"{name} has alpha = 0 at t_start={t0}, where an {pred.value!r} prediction cannot give x0; "
                    "pass t_start below it (e.g. 0.999) or train an x0, v or velocity prediction"
                )


def _offset_callback(callback: Callable[[StepInfo], None], process: GaussianProcess, space: DataSpace, cond: Cond | None):
    """Wrap a step callback so it sees states in data coordinates (``z + m_t``), like ``SampleResult.x``."""
    from dataclasses import replace

    def wrapped(info: StepInfo) -> None:
        callback(replace(info, x=info.x + process.offset(info.t_next, info.x, space=space, cond=cond)))

    return wrapped


def _needs_grad(wrappers: list[Any]) -> bool:
    return any(getattr(w, "needs_grad", False) for w in wrappers)


def _time_dtype(template: State) -> torch.dtype:
    leaf = first_leaf(template)
    return torch.promote_types(leaf.dtype, torch.float32) if leaf.is_floating_point() else torch.float64


def _full(b: int, t: float, template: State) -> Tensor:
    return torch.full((b,), t, dtype=_time_dtype(template), device=first_leaf(template).device)


def _template(process, shape, like, x_start, dtype, device) -> State:
    if like is not None:
        return as_state(like)
    if x_start is not None:
        return as_state(x_start)
    if shape is None:
        raise ValueError("sample() needs shape=..., like=... or x_start=...")
    if isinstance(process, ProductProcess):
        raise ValueError("a product process needs like=... (a composite template state), not shape=")
    if isinstance(process, DiscreteProcess):
        return torch.zeros(tuple(shape), dtype=torch.int64, device=device)
    return torch.zeros(tuple(shape), dtype=dtype or torch.get_default_dtype(), device=device)
