"""Exact oracles for discrete diffusion: enumerable joints, their exact denoisers, and exact sampler chains.

For a joint ``p`` over ``V**L`` token sequences (small ``V`` and ``L``) everything is enumerable:

* the exact masked denoiser ``p(x_0^i | x_t)`` is the marginal of ``p`` restricted to the sequences that
  agree with the unmasked tokens of ``x_t`` (independent of ``t``) — :class:`MaskedOracleNet`;
* the exact uniform-kernel denoiser weights each sequence by ``prod_i q_t(x_t^i | x_0^i)`` —
  :class:`UniformOracleNet`;
* the output distribution of a sampler's own Markov chain (tokens drawn independently per position
  from a per-position kernel) is a product of per-position kernels on the ``(V+1)**L`` or ``V**L``
  states — :func:`masked_chain_distribution`, :func:`uniform_chain_distribution`. These are written
  from the formulas, independently of the samplers and of ``DiscreteProcess.posterior_probs``.

Sequences are indexed lexicographically: ``index(x) = sum_i x_i V**(L-1-i)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..processes import DiscreteProcess


def enumerate_sequences(num_values: int, length: int) -> Tensor:
    """All sequences over ``num_values`` symbols, shape ``(num_values**length, length)``, int64, lexicographic."""
    return torch.tensor(list(itertools.product(range(num_values), repeat=length)), dtype=torch.int64).reshape(-1, length)


def sequence_index(x: Tensor, num_values: int) -> Tensor:
    """Lexicographic index of each row of ``x`` (shape ``(N, L)``) among ``num_values**L`` sequences; shape ``(N,)``."""
    powers = num_values ** torch.arange(x.shape[-1] - 1, -1, -1, dtype=torch.int64)
    return (x.to(torch.int64) * powers).sum(-1)


def random_joint(vocab_size: int, length: int, *, seed: int = 0, scale: float = 1.5) -> Tensor:
    """A seeded, non-factorised joint over ``vocab_size**length`` sequences: ``p ∝ exp(scale * N(0, 1))``; float64 ``(V**L,)``."""
    g = torch.Generator().manual_seed(seed)
    w = torch.exp(scale * torch.randn(vocab_size**length, generator=g, dtype=torch.float64))
    return w / w.sum()


def marginals(joint: Tensor, vocab_size: int, length: int) -> Tensor:
    """Per-position marginals of the joint, shape ``(L, V)``."""
    seqs = enumerate_sequences(vocab_size, length)
    onehot = torch.nn.functional.one_hot(seqs, vocab_size).to(torch.float64)
    return torch.einsum("n,nlv->lv", joint, onehot)


class _JointNet(nn.Module):
    def __init__(self, joint: Tensor, vocab_size: int, length: int) -> None:
        super().__init__()
        if joint.numel() != vocab_size**length:
            raise ValueError(f"joint: expected {vocab_size**length} probabilities (V**L), got {joint.numel()}")
        self.vocab_size, self.length = int(vocab_size), int(length)
        seqs = enumerate_sequences(vocab_size, length)
        self.register_buffer("joint", joint.reshape(-1).to(torch.float64))
        self.register_buffer("seqs", seqs)
        self.register_buffer("onehot", torch.nn.functional.one_hot(seqs, vocab_size).to(torch.float64))

    def _logits(self, weights: Tensor) -> Tensor:
        marg = torch.einsum("bn,nlv->blv", weights, self.onehot)
        marg = marg / marg.sum(-1, keepdim=True)
        return torch.log(marg.clamp(min=1e-300))


class MaskedOracleNet(_JointNet):
    """``net(x_t, t) -> log p(x_0^i | x_t)``, shape ``(B, L, V)``: the exact masked denoiser of ``joint`` (time-independent).

    ``x_t`` has shape ``(B, L)`` with the mask id ``V``. Use with ``prediction="x0_logits"``.
    """

    time_independent = True

    def forward(self, x_t: Tensor, t: Tensor, **cond) -> Tensor:
        v = self.vocab_size
        agree = (self.seqs.unsqueeze(0) == x_t.unsqueeze(1)) | (x_t.unsqueeze(1) == v)  # (B, N, L)
        return self._logits(agree.all(-1).to(torch.float64) * self.joint)


class UniformOracleNet(_JointNet):
    """``net(x_t, t) -> log p(x_0^i | x_t)`` under the uniform kernel of ``process`` (time-dependent), shape ``(B, L, V)``."""

    def __init__(self, joint: Tensor, vocab_size: int, length: int, process: DiscreteProcess) -> None:
        super().__init__(joint, vocab_size, length)
        self.process = process

    def forward(self, x_t: Tensor, t: Tensor, **cond) -> Tensor:
        a = self.process.schedule(t.to(torch.float64)).alpha.reshape(-1, 1, 1)  # (B, 1, 1)
        same = (self.seqs.unsqueeze(0) == x_t.unsqueeze(1)).to(torch.float64)  # (B, N, L)
        lik = (a * same + (1 - a) / self.vocab_size).prod(-1)
        return self._logits(lik * self.joint)


def _chain(states: Tensor, kernels: Tensor, dist: Tensor) -> Tensor:
    """One step of a chain whose tokens move independently: ``T[x, y] = prod_i kernels[x, i, y_i]``."""
    s, length = states.shape
    trans = torch.ones(s, s, dtype=torch.float64)
    for i in range(length):
        trans = trans * kernels[:, i, :][:, states[:, i]]
    return dist @ trans


def masked_chain_distribution(net: MaskedOracleNet, reveal_probs: Sequence[float], start: Tensor | None = None) -> Tensor:
    """Exact output distribution over the ``V**L`` clean sequences of masked-diffusion sampling.

    Starting from ``start`` (tokens ``(L,)`` with mask id ``V``; all-mask by default), each step reveals
    every masked token independently with probability ``reveal_probs[k]`` and draws its value from the
    oracle ``p(x_0^i | x_t)``; unmasked tokens stay. The last entry should be ``1``. Returns float64
    ``(V**L,)`` (mass left on states with a mask is dropped; it is 0 when the last entry is 1).
    """
    v, length = net.vocab_size, net.length
    states = enumerate_sequences(v + 1, length)  # mask id = v
    with torch.no_grad():
        p0 = net(states, torch.zeros(states.shape[0], dtype=torch.float64)).exp()  # (S, L, V)
    dist = torch.zeros(states.shape[0], dtype=torch.float64)
    start = torch.full((length,), v, dtype=torch.int64) if start is None else start.reshape(length).to(torch.int64)
    dist[int(sequence_index(start.unsqueeze(0), v + 1)[0])] = 1.0
    is_mask = (states == v).unsqueeze(-1)
    keep = torch.nn.functional.one_hot(states, v + 1).to(torch.float64)
    for q in reveal_probs:
        move = torch.cat([q * p0, torch.full((*p0.shape[:-1], 1), 1.0 - q, dtype=torch.float64)], dim=-1)
        dist = _chain(states, torch.where(is_mask, move, keep), dist)
    clean = ~(states == v).any(-1)
    return dist[clean]  # clean states are in the same lexicographic order as enumerate_sequences(v, L)


def uniform_chain_distribution(net: UniformOracleNet, times: Sequence[float]) -> Tensor:
    """Exact output distribution of uniform-kernel ancestral sampling from the uniform prior.

    ``times`` is the descending grid ``t_0 > t_1 > ... > t_K``; each step draws every token
    independently from ``sum_x0 q(x_s | x_t, x_0) p(x_0^i | x_t)`` with Bayes' rule
    ``q(x_s | x_t, x_0) = q(x_t | x_s) q(x_s | x_0) / q(x_t | x_0)``. Returns float64 ``(V**L,)``.
    """
    v, length = net.vocab_size, net.length
    states = enumerate_sequences(v, length)
    s_count = states.shape[0]
    dist = torch.full((s_count,), 1.0 / s_count, dtype=torch.float64)
    alphas = net.process.schedule(torch.as_tensor(list(times), dtype=torch.float64)).alpha.tolist()
    for k in range(len(alphas) - 1):
        a_t, a_s = alphas[k], alphas[k + 1]
        with torch.no_grad():
            p0 = net(states, torch.full((s_count,), float(times[k]), dtype=torch.float64)).exp()  # (S, L, V)
        post = uniform_posterior_table(v, a_t, a_s)  # [x_t, x_0, x_s]
        kern = torch.einsum("slo,slon->sln", p0, post[states])  # (S, L, V_s)
        dist = _chain(states, kern, dist)
    return dist


def uniform_posterior_table(v: int, a_t: float, a_s: float) -> Tensor:
    """``q(x_s | x_t, x_0)`` of the uniform kernel by Bayes' rule, indexed ``[x_t, x_0, x_s]``, shape ``(V, V, V)``."""
    eye = torch.eye(v, dtype=torch.float64)
    a_ts = a_t / a_s
    q_t_s = a_ts * eye + (1 - a_ts) / v  # [x_s, x_t]
    q_s_0 = a_s * eye + (1 - a_s) / v  # [x_0, x_s]
    q_t_0 = a_t * eye + (1 - a_t) / v  # [x_0, x_t]
    return q_t_s.T.unsqueeze(1) * q_s_0.unsqueeze(0) / q_t_0.T.unsqueeze(-1)


def uniform_exact_nelbo(net: UniformOracleNet, steps: int) -> Tensor:
    """Exact ``-ELBO`` (nats) of the ``steps``-step uniform-kernel model for every clean sequence, float64 ``(V**L,)``.

    ``sum_{k=1}^{T} E_{x_t ~ q(x_t | x_0)} KL(q(x_s | x_t, x_0) || p(x_s | x_t)) + KL(q(x_1 | x_0) || uniform)``
    with ``t = k/T``, ``s = (k-1)/T``, the expectation taken by enumerating all ``x_t``.
    """
    v, length = net.vocab_size, net.length
    states = enumerate_sequences(v, length)  # serves as both x_0 and x_t
    n = states.shape[0]
    total = torch.zeros(n, dtype=torch.float64)
    for k in range(1, steps + 1):
        t, s = k / steps, (k - 1) / steps
        a_t, a_s = net.process.schedule(torch.tensor([t, s], dtype=torch.float64)).alpha.tolist()
        post = uniform_posterior_table(v, a_t, a_s)  # [x_t, x_0, x_s]
        with torch.no_grad():
            p0 = net(states, torch.full((n,), t, dtype=torch.float64)).exp()  # (N_t, L, V)
        p_model = torch.einsum("slo,slon->sln", p0, post[states])  # (N_t, L, V_s)
        # q[x_0, x_t, i, x_s] = post[x_t^i, x_0^i, x_s]
        q = post[states.unsqueeze(0), states.unsqueeze(1)]  # (N_0, N_t, L, V_s)
        kl = torch.where(q > 0, q * (q.clamp(min=1e-300).log() - p_model.unsqueeze(0).log()), torch.zeros_like(q)).sum((-1, -2))
        q_xt = (a_t * (states.unsqueeze(0) == states.unsqueeze(1)).to(torch.float64) + (1 - a_t) / v).prod(-1)  # [x_0, x_t]
        total += (q_xt * kl).sum(1)
    a_1 = float(net.process.schedule(torch.ones(1, dtype=torch.float64)).alpha[0])
    q1 = torch.tensor([a_1 + (1 - a_1) / v] + [(1 - a_1) / v] * (v - 1), dtype=torch.float64)
    prior = float((q1 * (q1 * v).log()).sum()) if a_1 > 0 else 0.0
    return total + length * prior


def uniform_tau_chain_distribution(net: UniformOracleNet, times: Sequence[float]) -> Tensor:
    """Exact output distribution of uniform-kernel τ-leaping from the uniform prior, float64 ``(V**L,)``.

    Per token at ``x`` and time ``t``: reverse rates ``R(x -> y) = beta_t / V * sum_x0 p(x0 | x_t) q_t(y | x0) / q_t(x | x0)``
    for ``y != x`` with ``beta_t = -alpha'_t / alpha_t``; over ``[s, t]`` the token leaves ``x`` with probability
    ``1 - exp(-(t - s) sum_y R(x -> y))`` to ``y`` in proportion to ``R(x -> y)``.
    """
    v, length = net.vocab_size, net.length
    states = enumerate_sequences(v, length)
    s_count = states.shape[0]
    dist = torch.full((s_count,), 1.0 / s_count, dtype=torch.float64)
    eye = torch.eye(v, dtype=torch.float64)
    for t, s in zip(list(times)[:-1], list(times)[1:], strict=True):
        val = net.process.schedule(torch.tensor([float(t)], dtype=torch.float64))
        a_t, beta = float(val.alpha[0]), float(-val.d_alpha[0] / val.alpha[0])
        with torch.no_grad():
            p0 = net(states, torch.full((s_count,), float(t), dtype=torch.float64)).exp()  # (S, L, V)
        q_t_0 = a_t * eye + (1 - a_t) / v  # [x_0, y]
        ratio = q_t_0.unsqueeze(0) / q_t_0.T.unsqueeze(-1)  # [x, x_0, y] = q_t(y | x_0) / q_t(x | x_0)
        rates = beta / v * torch.einsum("slo,sloy->sly", p0, ratio[states])  # (S, L, V)
        rates = rates * (1 - torch.nn.functional.one_hot(states, v).to(torch.float64))
        total = rates.sum(-1, keepdim=True)
        leave = -torch.expm1(-(float(t) - float(s)) * total)
        kern = leave * rates / total.clamp(min=1e-300) + (1 - leave) * torch.nn.functional.one_hot(states, v).to(torch.float64)
        dist = _chain(states, kern, dist)
    return dist


def empirical_distribution(x: Tensor, vocab_size: int) -> Tensor:
    """Empirical distribution of rows of ``x`` (shape ``(N, L)``, clean tokens) over ``V**L`` sequences, float64."""
    idx = sequence_index(x, vocab_size)
    return torch.bincount(idx, minlength=vocab_size ** x.shape[-1]).to(torch.float64) / x.shape[0]


def tv_distance(p: Tensor, q: Tensor) -> float:
    """Total-variation distance ``0.5 * sum |p - q|``."""
    return 0.5 * float((p.to(torch.float64) - q.to(torch.float64)).abs().sum())


def tv_sampling_bound(p: Tensor, n: int, *, delta: float = 1e-6) -> float:
    """A bound on ``TV(empirical of n draws from p, p)`` that holds with probability ``>= 1 - delta``.

    ``E[TV] <= 0.5 * sum_k sqrt(p_k (1 - p_k) / n)`` (Jensen on each ``|count/n - p_k|``), and TV is a
    function of ``n`` independent draws that changes by at most ``1/n`` when one draw changes, so
    McDiarmid gives ``P(TV - E[TV] >= eps) <= exp(-2 n eps^2)``: ``eps = sqrt(log(1/delta) / (2 n))``.
    """
    p = p.to(torch.float64)
    mean_bound = 0.5 * float((p * (1 - p) / n).sqrt().sum())
    return mean_bound + math.sqrt(math.log(1.0 / delta) / (2.0 * n))


def entropy(p: Tensor) -> float:
    """Shannon entropy in nats of a distribution vector."""
    p = p.to(torch.float64)
    return float(-(p[p > 0] * p[p > 0].log()).sum())


__all__ = [
    "MaskedOracleNet",
    "UniformOracleNet",
    "empirical_distribution",
    "entropy",
    "enumerate_sequences",
    "marginals",
    "masked_chain_distribution",
    "random_joint",
    "sequence_index",
    "tv_distance",
    "tv_sampling_bound",
    "uniform_chain_distribution",
    "uniform_exact_nelbo",
    "uniform_posterior_table",
    "uniform_tau_chain_distribution",
]
