"""The one model contract samplers see: a network wrapped with its process and prediction type."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .losses import diffusion_loss, discrete_log_probs
from .parameterisation import Denoised, from_x0_eps, to_x0_eps
from .processes import DiscreteProcess, ForwardProcess, GaussianProcess, ProductProcess
from .schedules import ScheduleValues
from .spaces import CompositeSpace, DataSpace, infer_space
from .state import as_state
from .types import DISCRETE_PREDICTIONS, GAUSSIAN_PREDICTIONS, Cond, Prediction, State


@dataclass(frozen=True)
class DiscreteDenoised:
    """A discrete model's ``log p(x_0 | x_t)`` over the clean vocabulary, shape ``(..., vocab_size)``."""

    log_probs: Tensor

    @property
    def probs(self) -> Tensor:
        """``p(x_0 | x_t)`` in float64, shape ``(..., vocab_size)``."""
        return self.log_probs.to(torch.float64).softmax(-1)


@dataclass(frozen=True)
class ProductDenoised:
    """Per-component estimates of a product process: ``{name: Denoised | DiscreteDenoised}``."""

    parts: Mapping[str, Denoised | DiscreteDenoised]

    def __getitem__(self, key: str) -> Denoised | DiscreteDenoised:
        return self.parts[key]


AnyDenoised = Denoised | DiscreteDenoised | ProductDenoised


class EDMPreconditioner(nn.Module):
    """EDM preconditioning (Karras et al. 2022), generalised to ``alpha != 1`` through ``x/alpha``, ``sigma/alpha``.

    The network is called as ``net(c_in * z / alpha, c_noise, **cond)`` with ``c_noise = log(sigma/alpha) / 4``
    of shape ``(B,)`` and the denoiser's x0-estimate is ``c_skip * z / alpha + c_out * F``.
    """

    def __init__(self, sigma_data: float = 0.5) -> None:
        super().__init__()
        self.sigma_data = float(sigma_data)

    def scalings(self, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(c_skip, c_out, c_in, c_noise)``, each ``(B,)``, at noise level ``sigma/alpha``."""
        s = sigma / alpha
        sd = self.sigma_data
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1.0 / (s**2 + sd**2).sqrt()
        c_noise = torch.log(s.clamp(min=1e-20)) / 4.0
        return c_skip, c_out, c_in, c_noise


class Denoiser(nn.Module):
    """A network with its forward process and the type of what it predicts.

    Args:
        net: called as ``net(x_t, t, **cond)`` with ``t`` of shape ``(B,)`` in ``[0, 1]``, returning a
            tensor shaped like ``x_t`` (Gaussian), logits ``(..., vocab_size)`` (``x0_logits``) or a
            mapping of both (product processes).
        process: the forward process.
        prediction: ``eps``, ``x0``, ``v``, ``score``, ``velocity`` or ``x0_logits``; a mapping per
            component for a :class:`~polydiff.processes.ProductProcess`.
        precond: optional :class:`EDMPreconditioner` (Gaussian processes without offset; predicts ``x0``).
        carry_over: for masked processes, the SUBS rule: unmasked tokens keep their value and the
            model never predicts the mask (always true for ``x0_logits`` of a masked process).
    """

    def __init__(
        self,
        net: nn.Module,
        process: ForwardProcess,
        prediction: str | Prediction | Mapping[str, str | Prediction] = "eps",
        *,
        precond: EDMPreconditioner | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.process = process
        self.precond = precond
        self.prediction = _check_prediction(process, prediction)
        self._gaussian = isinstance(process, GaussianProcess)
        if precond is not None:
            if not isinstance(process, GaussianProcess) or process.has_offset:
                raise ValueError("EDM preconditioning needs a Gaussian process without mean offset")
            if self.prediction is not Prediction.X0:
                raise ValueError("with EDM preconditioning the denoiser predicts x0; pass prediction='x0'")

    # -- raw network output ----------------------------------------------------------------------
    def forward(self, x_t: State, t: Tensor, cond: Cond | None = None, *, space: DataSpace | None = None) -> Any:
        """The network output in :attr:`prediction` space (``x0`` when preconditioned)."""
        cond = dict(cond) if cond else {}
        if t.ndim != 1:
            raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
        if self.precond is None:
            return self.net(x_t, t, **cond) if cond else self.net(x_t, t)
        space = space or infer_space(x_t)
        v = schedule_values(self.process, t)  # type: ignore[arg-type]
        c_skip, c_out, c_in, c_noise = self.precond.scalings(v.alpha, v.sigma)
        x_scaled = x_t / space.expand(v.alpha, x_t)
        f = self.net(space.expand(c_in, x_t) * x_scaled, c_noise, **cond)
        return space.expand(c_skip, x_t) * x_scaled + space.expand(c_out, x_t) * f

    # -- estimates in any space ------------------------------------------------------------------
    def denoise(self, x_t: State, t: Tensor, cond: Cond | None = None, *, space: DataSpace | None = None) -> AnyDenoised:
        """One network call turned into the estimate samplers use.

        Gaussian processes: :class:`~polydiff.parameterisation.Denoised` ``(x0, eps)`` in standard
        coordinates (``x_t - m_t``); discrete: :class:`DiscreteDenoised`; products: :class:`ProductDenoised`.
        """
        x_t = as_state(x_t)
        space = space or infer_space(x_t)
        out = self(x_t, t, cond, space=space)
        return self.interpret(out, x_t, t, cond, space=space)

    def interpret(self, out: Any, x_t: State, t: Tensor, cond: Cond | None, *, space: DataSpace) -> AnyDenoised:
        """Turn a raw output (from :meth:`forward`) into a denoised estimate (see :meth:`denoise`)."""
        if self.__dict__.get("_gaussian"):  # the per-step path of every Gaussian sampler: no process-type dispatch
            return _interpret_gaussian(self.process, self.prediction, out, x_t, t, cond, space)  # type: ignore[arg-type]
        return _interpret(self.process, self.prediction, out, x_t, t, cond, space)

    def predict(
        self, x_t: State, t: Tensor, cond: Cond | None = None, *, as_: str | Prediction, space: DataSpace | None = None
    ) -> State:
        """The model's prediction converted exactly to ``as_`` (Gaussian processes)."""
        if not isinstance(self.process, GaussianProcess):
            raise ValueError("predict(as_=...) converts Gaussian predictions; use denoise() for discrete processes")
        x_t = as_state(x_t)
        space = space or infer_space(x_t)
        d = self.denoise(x_t, t, cond, space=space)
        return from_x0_eps(d, as_, self.process.schedule(t), space)  # type: ignore[arg-type]

    def loss(self, x_0: State, **kwargs: Any):
        """Training loss; see :func:`polydiff.losses.diffusion_loss` for the keyword arguments."""
        return diffusion_loss(self, x_0, **kwargs)


#: ``(id(process), id(t))`` -> ``(process, t, values, (alpha, sigma, d_alpha, d_sigma) as numbers)`` where ``values`` is
#: ``process.schedule(t)`` or a zero-argument function returning it (built on first use)
KnownValues = Mapping[tuple[int, int], tuple[ForwardProcess, Tensor, Any, tuple[float, float, float, float]]]
_KNOWN_VALUES: ContextVar[KnownValues | None] = ContextVar("polydiff_known_schedule_values", default=None)


@contextmanager
def known_schedule_values(table: KnownValues) -> Iterator[None]:
    """Within this block, the schedule of ``(process, t)`` comes from ``table`` when ``t`` is the very tensor stored.

    ``table`` maps ``(id(process), id(t))`` to ``(process, t, values, shared)`` where every entry of ``t`` is one grid
    time, ``values`` is ``process.schedule(t)`` (or a function returning it) and ``shared`` holds its
    ``(alpha, sigma, d_alpha, d_sigma)`` as numbers. Samplers evaluate
    the schedule of their whole grid once and enter this block, so a :class:`Denoiser` called at a grid time neither
    evaluates the schedule again nor expands per-sample coefficients. Any other tensor is evaluated as usual; the
    table is per thread and per task (a ``ContextVar``).
    """
    token = _KNOWN_VALUES.set(table)
    try:
        yield
    finally:
        _KNOWN_VALUES.reset(token)


def _known(process: ForwardProcess, t: Tensor):
    table = _KNOWN_VALUES.get()
    if table is not None:
        hit = table.get((id(process), id(t)))
        if hit is not None and hit[0] is process and hit[1] is t:
            return hit
    return None


def schedule_values(process: GaussianProcess, t: Tensor) -> ScheduleValues:
    """``process.schedule(t)`` (each field of shape ``(B,)``), from the active :func:`known_schedule_values` table if it holds ``t``."""
    hit = _known(process, t)
    if hit is None:
        return process.schedule(t)
    return hit[2]() if callable(hit[2]) else hit[2]


def standard_coordinates(process: GaussianProcess, x_t: State, t: Tensor, cond: Cond | None, space: DataSpace) -> State:
    """``z_t = x_t - m_t`` (identity for processes without offset)."""
    m = process.offset(t, x_t, space=space, cond=cond)
    return x_t if m is None else x_t - m


def _interpret(process: ForwardProcess, prediction: Any, out: Any, x_t: State, t: Tensor, cond: Cond | None, space: DataSpace):
    if isinstance(process, ProductProcess):
        if not isinstance(out, Mapping):
            raise ValueError(f"a product-process network must return a mapping with keys {sorted(process.components)}")
        if not isinstance(space, CompositeSpace):
            raise ValueError("a product process needs a CompositeSpace")
        return ProductDenoised(
            {k: _interpret(p, prediction[k], out[k], x_t[k], t, cond, space[k]) for k, p in process.components.items()}
        )
    if isinstance(process, DiscreteProcess):
        return DiscreteDenoised(discrete_log_probs(process, out, x_t))
    assert isinstance(process, GaussianProcess)
    return _interpret_gaussian(process, prediction, out, x_t, t, cond, space)


def _interpret_gaussian(process: GaussianProcess, prediction: Any, out: Any, x_t: State, t: Tensor, cond: Cond | None, space: DataSpace):
    z_t = x_t if not process.has_offset else standard_coordinates(process, x_t, t, cond, space)
    out = out if isinstance(out, Tensor) else as_state(out)
    hit = _known(process, t)
    if hit is not None:  # a grid time: its coefficients are numbers shared by the batch
        return to_x0_eps(out, prediction, z_t, None, space, shared=hit[3])
    return to_x0_eps(out, prediction, z_t, process.schedule(t), space)


def _check_prediction(process: ForwardProcess, prediction: Any) -> Any:
    if isinstance(process, ProductProcess):
        if not isinstance(prediction, Mapping) or set(prediction) != set(process.components):
            raise ValueError(f"prediction must be a mapping with keys {sorted(process.components)} for a product process")
        return {k: _check_prediction(p, prediction[k]) for k, p in process.components.items()}
    pred = Prediction.parse(prediction)
    if process.is_discrete and pred not in DISCRETE_PREDICTIONS:
        raise ValueError(f"prediction={pred.value!r} does not fit the discrete process {process.name!r}; use 'x0_logits'")
    if not process.is_discrete and pred not in GAUSSIAN_PREDICTIONS:
        raise ValueError(f"prediction={pred.value!r} does not fit the Gaussian process {process.name!r}")
    return pred


__all__ = ["AnyDenoised", "Denoised", "Denoiser", "DiscreteDenoised", "EDMPreconditioner", "ProductDenoised", "standard_coordinates"]
