"""The discrete loss terms the ELBO is built from, against closed forms and an independent Bayes table."""

from __future__ import annotations

import math

import pytest
import torch

from polydiff.losses import discrete_time_elbo_term, masked_nelbo
from polydiff.processes import MaskedProcess, UniformProcess
from polydiff.spaces import DenseSpace
from polydiff.testing.discrete_oracles import uniform_posterior_table

V = 4


def test_masked_nelbo_uniform_logits_closed_form():
    # log-linear: -alpha'/(1 - alpha) = (1 - eps) / ((1 - eps) t) = 1/t; each masked token costs log V
    process = MaskedProcess(V)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, V, (5, 7), generator=g)
    t = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    x_t = process.noise(x0, t, generator=g).x_t
    per, count = masked_nelbo(process, torch.zeros(5, 7, V, dtype=torch.float64), x0, x_t, t, DenseSpace())
    n_masked = (x_t == V).sum(1).to(torch.float64)
    assert torch.allclose(per, n_masked * math.log(V) / t, rtol=1e-12)
    assert count.tolist() == [7.0] * 5


@pytest.mark.parametrize("schedule", ["log-linear", "cosine", "geometric"])
def test_uniform_posterior_matches_bayes_table(schedule):
    process = UniformProcess(V, schedule=schedule)
    g = torch.Generator().manual_seed(1)
    for t, s in [(1.0, 0.75), (0.5, 0.25), (0.2, 0.0)]:
        a_t, a_s = process.schedule(torch.tensor([t, s], dtype=torch.float64)).alpha.tolist()
        table = uniform_posterior_table(V, a_t, a_s)  # [x_t, x_0, x_s]
        x_t = torch.arange(V)
        p0 = torch.softmax(torch.randn(V, V, generator=g, dtype=torch.float64), -1)
        got = process.posterior_probs(x_t, p0, torch.full((V,), a_t, dtype=torch.float64), torch.full((V,), a_s, dtype=torch.float64))
        want = torch.einsum("bo,bon->bn", p0, table[x_t])
        assert torch.allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("process", [UniformProcess(V), MaskedProcess(V)])
def test_discrete_time_elbo_term_is_T_times_the_kl(process):
    steps = 10
    g = torch.Generator().manual_seed(2)
    x0 = torch.randint(0, V, (3, 5), generator=g)
    k = torch.tensor([1, 4, 10])
    t = k.to(torch.float64) / steps
    x_t = process.noise(x0, t, generator=g).x_t
    logits = torch.randn(3, 5, V, generator=g, dtype=torch.float64)
    per, _ = discrete_time_elbo_term(process, logits, x0, x_t, (k - 0.5) / steps, DenseSpace(), steps=steps)
    # independent: KL(q(x_s | x_t, x_0) || p(x_s | x_t)) per token, summed, times T
    from polydiff.denoiser import _interpret

    p0 = _interpret(process, "x0_logits", logits, x_t, t, None, DenseSpace()).probs
    want = []
    for b in range(3):
        a_t, a_s = process.schedule(torch.tensor([t[b], t[b] - 1.0 / steps], dtype=torch.float64)).alpha.tolist()
        total = 0.0
        for i in range(5):
            q, p = _kernel(process, int(x_t[b, i]), int(x0[b, i]), p0[b, i], a_t, a_s)
            total += float((q[q > 0] * (q[q > 0].log() - p[q > 0].log())).sum())
        want.append(steps * total)
    assert torch.allclose(per.to(torch.float64), torch.tensor(want, dtype=torch.float64), rtol=1e-9, atol=1e-12)


def _kernel(process, xt: int, x0: int, p0: torch.Tensor, a_t: float, a_s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``q(x_s | x_t, x_0)`` and ``p(x_s | x_t) = sum_x0 q(x_s | x_t, x0) p0(x0)`` written from the definitions."""
    if isinstance(process, UniformProcess):
        table = uniform_posterior_table(V, a_t, a_s)[xt]  # [x_0, x_s]
        return table[x0], p0 @ table
    if xt != V:  # unmasked: stays
        q = torch.nn.functional.one_hot(torch.tensor(xt), V + 1).to(torch.float64)
        return q, q
    r = (a_s - a_t) / (1 - a_t)
    q = torch.zeros(V + 1, dtype=torch.float64)
    q[x0], q[V] = r, 1 - r
    return q, torch.cat([r * p0, torch.tensor([1 - r], dtype=torch.float64)])
