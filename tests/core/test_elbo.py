"""Discrete ELBOs against enumerable truth (V = 3, L = 3: 27 sequences).

* Masked process, exact (time-independent) denoiser: the continuous-time NELBO equals the any-order
  autoregressive loss averaged over orders, and every order gives ``-log p(x)`` exactly, so
  ``E[-ELBO(x)] = -log p(x)`` for every ``x`` (the bound is tight) and ``E_p[-ELBO] = H(p)``.
* Masked process, context-free model ``m_i``: ``E[-ELBO(x)] = ∫ -alpha~'/(1 - alpha~) · (1 - alpha~) dt ·
  sum_i -log m_i(x_i) = sum_i -log m_i(x_i)``; with uniform ``m_i`` this is ``L log V`` for every ``x``.
* Uniform process: the ``T``-step ELBO bounds the likelihood of ``T``-step ancestral sampling ``p_T``
  (enumerated exactly); the exact ELBO (enumerated over ``x_t``) satisfies ``-ELBO(x) >= -log p_T(x)``
  and the Monte-Carlo estimate matches it.
Monte-Carlo tolerances: 5 standard errors of the mean over ``R = 100`` independent replicates (27 comparisons;
Bonferroni at a family-wise 1e-4 needs 4.6 for a normal mean; re-running 10 other seeds gave a largest |z| of 4.3).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from polydiff.denoiser import Denoiser
from polydiff.likelihood import ElboResult, elbo
from polydiff.processes import MaskedProcess, UniformProcess, get
from polydiff.spaces import MaskedSpace
from polydiff.testing.discrete_oracles import (
    MaskedOracleNet,
    UniformOracleNet,
    entropy,
    enumerate_sequences,
    marginals,
    random_joint,
    uniform_chain_distribution,
    uniform_exact_nelbo,
)

V, L, R = 3, 3, 100


class ContextFree(nn.Module):
    """``log m_i(x_i)`` from a table ``(L_max, V)``, ignoring the context."""

    def __init__(self, log_m: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("log_m", log_m.to(torch.float64))

    def forward(self, x_t, t, **cond):
        return self.log_m[: x_t.shape[1]].expand(x_t.shape[0], -1, -1)


@pytest.fixture(scope="module")
def joint() -> torch.Tensor:
    return random_joint(V, L, seed=0)


def _replicated(model, n_t: int, seed: int, **kw) -> tuple[torch.Tensor, torch.Tensor, ElboResult]:
    seqs = enumerate_sequences(V, L)
    r = elbo(model, seqs.repeat(R, 1), n_t=n_t, generator=torch.Generator().manual_seed(seed), **kw)
    nats = r.nats.reshape(R, -1)
    return nats.mean(0), nats.std(0) / math.sqrt(R), r


def test_masked_exact_model_elbo_is_tight(joint):
    model = Denoiser(MaskedOracleNet(joint, V, L), MaskedProcess(V), "x0_logits")
    mean, se, r = _replicated(model, n_t=32, seed=0)
    nll = -joint.log()
    assert bool(((mean - nll).abs() <= 5 * se).all())
    # data average: E_p[-ELBO] = H(p); its standard error from the per-sequence ones
    avg, avg_se = float((joint * mean).sum()), float((joint.pow(2) * se.pow(2)).sum().sqrt())
    assert abs(avg - entropy(joint)) <= 5 * avg_se
    assert r.prior.abs().max() == 0 and r.steps is None
    assert torch.allclose(r.bits_per_token, r.nats / (L * math.log(2.0)))


def test_masked_context_free_model_analytic(joint):
    m = marginals(joint, V, L)
    model = Denoiser(ContextFree(m.log()), MaskedProcess(V), "x0_logits")
    mean, se, _ = _replicated(model, n_t=32, seed=1)
    seqs = enumerate_sequences(V, L)
    analytic = -m.log().gather(1, seqs.T).sum(0)  # sum_i -log m_i(x_i) per sequence
    assert bool(((mean - analytic).abs() <= 5 * se + 1e-12).all())
    # a worse model than the truth: E_p[-ELBO] = sum_i H(m_i) >= H(p)
    assert float((joint * analytic).sum()) > entropy(joint)


def test_masked_uniform_model_is_L_log_V():
    model = Denoiser(ContextFree(torch.zeros(L, V)), MaskedProcess(V, schedule="cosine"), "x0_logits")
    mean, se, r = _replicated(model, n_t=16, seed=2)
    assert bool(((mean - L * math.log(V)).abs() <= 5 * se).all())
    assert abs(r.mean_bits_per_token - math.log2(V)) <= 5 * float(se.max()) / (L * math.log(2.0))


@pytest.mark.parametrize("steps", [2, 8])
def test_uniform_elbo_bounds_the_T_step_model(joint, steps):
    process = UniformProcess(V, schedule="log-linear")
    net = UniformOracleNet(joint, V, L, process)
    exact = uniform_exact_nelbo(net, steps)  # (27,)
    p_T = uniform_chain_distribution(net, torch.linspace(1, 0, steps + 1).tolist())
    assert bool((exact >= -p_T.log() - 1e-9).all())  # the bound, exactly
    assert float((joint * exact).sum()) >= entropy(joint)
    mean, se, r = _replicated(Denoiser(net, process, "x0_logits"), n_t=steps, seed=3, steps=steps)
    assert bool(((mean - exact).abs() <= 5 * se).all())
    assert r.steps == steps and float(r.prior.min()) > 0  # alpha_1 = 1e-3 > 0: a small positive prior KL


def test_padding_counts_only_real_tokens():
    log_m = torch.log_softmax(torch.randn(6, V, generator=torch.Generator().manual_seed(0), dtype=torch.float64), -1)
    model = Denoiser(ContextFree(log_m), MaskedProcess(V), "x0_logits")
    x = torch.randint(0, V, (2, 6), generator=torch.Generator().manual_seed(1))
    valid = torch.arange(6).unsqueeze(0) < torch.tensor([6, 2]).unsqueeze(1)
    xs, vs = x.repeat(200, 1), valid.repeat(200, 1)
    r = elbo(model, xs, n_t=8, space=MaskedSpace(vs), generator=torch.Generator().manual_seed(2))
    nats = r.nats.reshape(200, 2)
    mean, se = nats.mean(0), nats.std(0) / math.sqrt(200)
    analytic = torch.stack([-(log_m.gather(1, x[b].unsqueeze(1)).squeeze(1) * valid[b]).sum() for b in range(2)])
    assert bool(((mean - analytic).abs() <= 5 * se).all())
    assert r.tokens[:2].tolist() == [6.0, 2.0]


def test_per_sample_generators_batch_independent(joint):
    model = Denoiser(MaskedOracleNet(joint, V, L), MaskedProcess(V), "x0_logits")
    x = enumerate_sequences(V, L)[:3]
    gens = lambda: [torch.Generator().manual_seed(7 + i) for i in range(3)]  # noqa: E731
    batch = elbo(model, x, n_t=4, generator=gens()).nats
    for i in range(3):
        assert torch.equal(elbo(model, x[i : i + 1], n_t=4, generator=[gens()[i]]).nats[0], batch[i])


def test_bad_inputs():
    model = Denoiser(ContextFree(torch.zeros(L, V)), MaskedProcess(V), "x0_logits")
    with pytest.raises(ValueError, match="n_t"):
        elbo(model, torch.zeros(1, L, dtype=torch.int64), n_t=0)
    with pytest.raises(ValueError, match="integer"):
        elbo(model, torch.zeros(1, L), n_t=2)
    gauss = Denoiser(nn.Identity(), get("vp-cosine"), "x0")
    with pytest.raises(ValueError, match="discrete"):
        elbo(gauss, torch.zeros(1, L, dtype=torch.int64))
