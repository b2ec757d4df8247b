"""Discrete (categorical) forward processes: masked (absorbing), uniform and marginal kernels.

``q(x_t | x_0) = alpha_t * onehot(x_0) + (1 - alpha_t) * pi`` per token, where ``alpha_t`` is the
probability that a token is still clean and ``pi`` is the point mass on the mask token (masked /
absorbing kernel), the uniform distribution over the vocabulary (uniform kernel) or a given
distribution over the vocabulary, usually the training data's marginal (marginal kernel; DiGress,
MiDi, EQGAT-diff).
Posteriors ``q(x_s | x_t, x_0)`` for ``s < t`` are exact closed forms; the model-side posterior
``p(x_s | x_t) = sum_x0 q(x_s | x_t, x_0) p(x_0 | x_t)`` is :meth:`posterior_probs`.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..spaces import DataSpace, infer_space
from ..types import Cond, GeneratorLike, State
from .base import ForwardProcess, Noised


@dataclass(frozen=True)
class DiscreteScheduleValues:
    """``alpha`` (probability a token is clean), ``sigma = 1 - alpha`` and ``d_alpha``; each ``(B,)``."""

    alpha: Tensor
    sigma: Tensor
    d_alpha: Tensor

    @property
    def d_sigma(self) -> Tensor:
        return -self.d_alpha


DISCRETE_SCHEDULES = ("log-linear", "linear", "cosine", "geometric")


def discrete_schedule(kind: str, t: Tensor, eps: float) -> DiscreteScheduleValues:
    """``alpha_t`` for the discrete schedule ``kind``; ``alpha_0 = 1``, ``alpha_1 = eps`` (``0`` for cosine).

    * ``log-linear`` (MDLM/SEDD): total noise ``-log(1 - (1 - eps) t)``, i.e. ``alpha_t = 1 - (1 - eps) t``;
    * ``linear``: identical in ``alpha`` (kept as an alias users expect);
    * ``cosine``: ``alpha_t = cos(pi t / 2)``;
    * ``geometric``: ``alpha_t = eps^t``.
    """
    if kind in ("log-linear", "linear"):
        alpha = 1.0 - (1.0 - eps) * t
        d_alpha = torch.full_like(t, -(1.0 - eps))
    elif kind == "cosine":
        alpha = torch.cos(0.5 * math.pi * t)
        d_alpha = -0.5 * math.pi * torch.sin(0.5 * math.pi * t)
    elif kind == "geometric":
        alpha = eps**t
        d_alpha = alpha * math.log(eps)
    else:
        raise ValueError(f"unknown discrete schedule {kind!r}; expected one of: {', '.join(DISCRETE_SCHEDULES)}")
    return DiscreteScheduleValues(alpha=alpha, sigma=1.0 - alpha, d_alpha=d_alpha)


class DiscreteProcess(ForwardProcess):
    """Shared machinery of categorical processes over ``vocab_size`` clean classes."""

    is_discrete: ClassVar[bool] = True

    def __init__(self, vocab_size: int, schedule: str = "log-linear", eps: float = 1e-3) -> None:
        if int(vocab_size) < 1:
            raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
        if schedule not in DISCRETE_SCHEDULES:
            raise ValueError(f"unknown discrete schedule {schedule!r}; expected one of: {', '.join(DISCRETE_SCHEDULES)}")
        self.vocab_size = int(vocab_size)
        self.schedule_kind = schedule
        self.eps = float(eps)

    @property
    def num_states(self) -> int:
        """Number of values a noisy token can take (``vocab_size``, plus one for the mask)."""
        return self.vocab_size

    def schedule(self, t: Tensor) -> DiscreteScheduleValues:
        return discrete_schedule(self.schedule_kind, t, self.eps)

    @abstractmethod
    def limit_probs(self, like: Tensor) -> Tensor:
        """The limiting distribution ``pi`` over ``num_states``, broadcastable to ``(..., num_states)``."""

    @abstractmethod
    def posterior_probs(self, x_t: Tensor, x0_probs: Tensor, alpha_t: Tensor, alpha_s: Tensor) -> Tensor:
        """``p(x_s | x_t) = sum_x0 q(x_s | x_t, x_0) p(x_0 | x_t)``.

        Args:
            x_t: tokens, shape ``(B, ...)``.
            x0_probs: ``p(x_0 | x_t)``, shape ``(B, ..., vocab_size)``.
            alpha_t, alpha_s: per-token clean probabilities broadcastable to ``x_t`` (``s < t``).

        Returns:
            probabilities over ``num_states``, shape ``(B, ..., num_states)``, float64.
        """

    def marginal_probs(self, x_0: Tensor, alpha_t: Tensor) -> Tensor:
        """``q(x_t | x_0)`` over ``num_states``, shape ``(B, ..., num_states)``; ``alpha_t`` broadcastable to ``x_0``."""
        onehot = torch.nn.functional.one_hot(x_0, self.num_states).to(torch.float64)
        a = alpha_t.to(torch.float64).unsqueeze(-1)
        return a * onehot + (1 - a) * self.limit_probs(x_0)

    def _check_tokens(self, x: Tensor, *, allow_noise_states: bool) -> None:
        if x.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"{self.name} process expects integer token ids, got dtype={x.dtype}")
        hi = self.num_states if allow_noise_states else self.vocab_size
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= hi):
            raise ValueError(f"token ids must lie in [0, {hi}), got range [{int(x.min())}, {int(x.max())}]")

    def prior_sample(
        self, like: State, *, generator: GeneratorLike = None, space: DataSpace | None = None, cond: Cond | None = None, t: float = 1.0
    ) -> Tensor:
        """Tokens drawn from ``q(x_t)`` at ``t`` given no data: the limit ``pi`` at ``t = 1``."""
        if not isinstance(like, Tensor):
            raise TypeError("discrete processes act on a token tensor; use ProductProcess for composite states")
        space = space or infer_space(like)
        probs = self.limit_probs(like).expand(*like.shape, self.num_states)
        return sample_categorical(probs, space.rand_like(like, generator))

    def config(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "schedule": self.schedule_kind, "eps": self.eps}


def sample_categorical(probs: Tensor, u: Tensor) -> Tensor:
    """Inverse-CDF categorical draws in float64.

    Args:
        probs: probabilities (need not be normalised), shape ``(..., K)``.
        u: uniforms in ``[0, 1)``, shape ``(...)`` — one per draw, so per-sample generators work.

    Returns:
        indices, shape ``(...)``, dtype int64.
    """
    p = probs.to(torch.float64)
    cdf = p.cumsum(-1)
    total = cdf[..., -1:]
    idx = torch.searchsorted(cdf, (u.to(torch.float64).unsqueeze(-1) * total).contiguous(), right=True).squeeze(-1)
    # guard against u * total landing on the upper edge through rounding: take the last positive class
    last_pos = (p > 0).to(torch.int64).cumsum(-1).argmax(-1)
    return torch.minimum(idx, last_pos)


class MaskedProcess(DiscreteProcess):
    """Absorbing-state kernel: each token is replaced by ``mask_id`` with probability ``1 - alpha_t``.

    ``mask_id`` defaults to ``vocab_size``, so noisy tokens take ``vocab_size + 1`` values while the
    clean data (and a model's ``x0_logits``) have ``vocab_size`` classes.
    """

    name = "masked"

    def __init__(self, vocab_size: int, mask_id: int | None = None, schedule: str = "log-linear", eps: float = 1e-3) -> None:
        super().__init__(vocab_size, schedule, eps)
        self.mask_id = self.vocab_size if mask_id is None else int(mask_id)
        if self.mask_id != self.vocab_size:
            raise ValueError(
                f"mask_id={mask_id}: polydiff keeps the mask outside the clean vocabulary, so mask_id must equal vocab_size={self.vocab_size}"
            )

    @property
    def num_states(self) -> int:
        return self.vocab_size + 1

    def limit_probs(self, like: Tensor) -> Tensor:
        p = torch.zeros(self.num_states, dtype=torch.float64, device=like.device)
        p[self.mask_id] = 1.0
        return p

    def noise(
        self, x_0: State, t: Tensor, *, generator: GeneratorLike = None, space: DataSpace | None = None, cond: Cond | None = None
    ) -> Noised:
        if not isinstance(x_0, Tensor):
            raise TypeError("MaskedProcess acts on a token tensor")
        self._check_tokens(x_0, allow_noise_states=False)
        space = space or infer_space(x_0)
        alpha = space.expand(self.schedule(t).alpha.to(torch.float64), x_0)
        masked = space.rand_like(x_0, generator) >= alpha
        return Noised(x_t=torch.where(masked, torch.full_like(x_0, self.mask_id), x_0), t=t, noise=masked)

    def posterior_probs(self, x_t: Tensor, x0_probs: Tensor, alpha_t: Tensor, alpha_s: Tensor) -> Tensor:
        a_t = alpha_t.to(torch.float64).unsqueeze(-1)
        a_s = alpha_s.to(torch.float64).unsqueeze(-1)
        p0 = x0_probs.to(torch.float64)
        unmask = (a_s - a_t) / (1 - a_t)  # probability a masked token is revealed between t and s
        out = torch.cat([unmask * p0, (1 - unmask).expand(*p0.shape[:-1], 1)], dim=-1)
        is_mask = (x_t == self.mask_id).unsqueeze(-1)
        keep = torch.nn.functional.one_hot(x_t.clamp(max=self.num_states - 1), self.num_states).to(torch.float64)
        return torch.where(is_mask, out, keep)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "mask_id": self.mask_id}


class _ResamplingKernel(DiscreteProcess):
    """Kernels that keep a token with probability ``alpha_t`` and otherwise redraw it from ``limit_probs``."""

    def _resample_draws(self, x_0: State, t: Tensor, generator: GeneratorLike, space: DataSpace | None) -> tuple[Tensor, Tensor]:
        """``(corrupt, u2)``, both shaped like ``x_0``: which tokens are redrawn (``u >= alpha_t``), and a
        ``U[0, 1)`` draw for the replacement — the same uniform ``u`` rescaled, ``(u - alpha) / (1 - alpha)``."""
        if not isinstance(x_0, Tensor):
            raise TypeError(f"{type(self).__name__} acts on a token tensor")
        self._check_tokens(x_0, allow_noise_states=False)
        space = space or infer_space(x_0)
        alpha = space.expand(self.schedule(t).alpha.to(torch.float64), x_0)
        u = space.rand_like(x_0, generator)
        u2 = ((u - alpha) / (1 - alpha).clamp(min=1e-300)).clamp(0, 1 - 1e-12)
        return u >= alpha, u2


class UniformProcess(_ResamplingKernel):
    """Uniform kernel: each token is resampled uniformly over the vocabulary with probability ``1 - alpha_t``."""

    name = "uniform"

    def limit_probs(self, like: Tensor) -> Tensor:
        return torch.full((self.vocab_size,), 1.0 / self.vocab_size, dtype=torch.float64, device=like.device)

    def noise(
        self, x_0: State, t: Tensor, *, generator: GeneratorLike = None, space: DataSpace | None = None, cond: Cond | None = None
    ) -> Noised:
        corrupt, u2 = self._resample_draws(x_0, t, generator, space)
        repl = (u2 * self.vocab_size).floor().to(torch.int64)
        return Noised(x_t=torch.where(corrupt, repl, x_0), t=t, noise=corrupt)

    def posterior_probs(self, x_t: Tensor, x0_probs: Tensor, alpha_t: Tensor, alpha_s: Tensor) -> Tensor:
        V = self.vocab_size
        a_t = alpha_t.to(torch.float64).unsqueeze(-1)
        a_s = alpha_s.to(torch.float64).unsqueeze(-1)
        a_ts = a_t / a_s  # q(x_t | x_s) = a_ts * delta + (1 - a_ts) / V
        p0 = x0_probs.to(torch.float64)
        onehot_t = torch.nn.functional.one_hot(x_t, V).to(torch.float64)
        q_t_given_0 = a_t * onehot_t + (1 - a_t) / V  # as a function of x_0 (evaluated at x_t)
        w = p0 / q_t_given_0  # p(x_0 | x_t) / q(x_t | x_0)
        mix = a_s * w + (1 - a_s) / V * w.sum(-1, keepdim=True)  # sum_x0 w(x_0) q(x_s = j | x_0)
        lik = a_ts * onehot_t + (1 - a_ts) / V  # q(x_t | x_s = j)
        out = mix * lik
        return out / out.sum(-1, keepdim=True)


class MarginalProcess(_ResamplingKernel):
    """Marginal kernel: with probability ``1 - alpha_t`` a token is redrawn from a fixed distribution ``m``.

    ``q(x_t | x_0) = alpha_t onehot(x_0) + (1 - alpha_t) m``, so the prior at ``t = 1`` (``alpha = eps``,
    nearly 0) is ``m`` itself: with ``m`` the training marginal (DiGress, MiDi, EQGAT-diff) the prior is
    close to the data's per-token statistics. ``m = uniform`` gives :class:`UniformProcess`.

    Args:
        marginal: probabilities over the ``vocab_size`` classes (normalised here); every entry must be
            positive, so every class is reachable and the posterior is defined for every ``x_t``
            (add a pseudo-count to empirical counts).
        schedule, eps: as :class:`DiscreteProcess`.
        vocab_size: optional; must equal ``len(marginal)`` when given.
    """

    name = "marginal"

    def __init__(self, marginal: Any, schedule: str = "log-linear", eps: float = 1e-3, vocab_size: int | None = None) -> None:
        m = torch.as_tensor(marginal, dtype=torch.float64).flatten()
        if m.numel() < 1:
            raise ValueError("marginal: expected at least one probability")
        if vocab_size is not None and int(vocab_size) != m.numel():
            raise ValueError(f"vocab_size={vocab_size} but marginal has {m.numel()} entries")
        if not bool(torch.isfinite(m).all()) or bool((m <= 0).any()):
            raise ValueError(f"marginal probabilities must be finite and positive (add a pseudo-count), got {m.tolist()}")
        super().__init__(m.numel(), schedule, eps)
        self.marginal = m / m.sum()

    def limit_probs(self, like: Tensor) -> Tensor:
        return self.marginal.to(like.device)

    def noise(
        self, x_0: State, t: Tensor, *, generator: GeneratorLike = None, space: DataSpace | None = None, cond: Cond | None = None
    ) -> Noised:
        corrupt, u2 = self._resample_draws(x_0, t, generator, space)
        repl = sample_categorical(self.limit_probs(x_0).expand(*x_0.shape, self.vocab_size), u2)
        return Noised(x_t=torch.where(corrupt, repl, x_0), t=t, noise=corrupt)

    def posterior_probs(self, x_t: Tensor, x0_probs: Tensor, alpha_t: Tensor, alpha_s: Tensor) -> Tensor:
        """``p(x_s = j | x_t) ∝ q(x_t | x_s = j) * sum_x0 p(x_0 | x_t) q(x_s = j | x_0) / q(x_t | x_0)`` (exact, float64)."""
        m = self.limit_probs(x_t)
        a_t = alpha_t.to(torch.float64).unsqueeze(-1)
        a_s = alpha_s.to(torch.float64).unsqueeze(-1)
        a_ts = a_t / a_s  # q(x_t | x_s) = a_ts * delta + (1 - a_ts) * m(x_t)
        p0 = x0_probs.to(torch.float64)
        onehot_t = torch.nn.functional.one_hot(x_t, self.vocab_size).to(torch.float64)
        m_xt = m[x_t].unsqueeze(-1)  # m(x_t), shape (..., 1)
        q_t_given_0 = a_t * onehot_t + (1 - a_t) * m_xt  # q(x_t | x_0) as a function of x_0
        w = p0 / q_t_given_0
        mix = a_s * w + (1 - a_s) * m * w.sum(-1, keepdim=True)  # sum_x0 w(x_0) q(x_s = j | x_0)
        lik = a_ts * onehot_t + (1 - a_ts) * m_xt  # q(x_t | x_s = j)
        out = mix * lik
        return out / out.sum(-1, keepdim=True)

    def config(self) -> dict[str, Any]:
        return {"marginal": [float(v) for v in self.marginal], "schedule": self.schedule_kind, "eps": self.eps}
