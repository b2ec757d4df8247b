"""The marginal categorical kernel (DiGress / MiDi / EQGAT-diff) against Bayes' rule by brute force,
its noise frequencies against the closed form, and the x0 cross-entropy objective."""

from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff import processes
from polydiff.losses import x0_cross_entropy
from polydiff.processes import MarginalProcess, UniformProcess
from polydiff.spaces import DenseSpace, RaggedSpace
from polydiff.testing import ProcessContract

M = [0.5, 0.3, 0.15, 0.05]


def _q_t_given_0(m: torch.Tensor, a: float) -> torch.Tensor:
    """``q(x_t | x_0)`` as a matrix ``[x_0, x_t]`` from the definition."""
    v = m.numel()
    return a * torch.eye(v, dtype=torch.float64) + (1 - a) * m[None, :]


def test_registered_and_rebuilt_from_config():
    p = processes.get("marginal", marginal=[2.0, 1.0, 1.0])
    assert isinstance(p, MarginalProcess) and p.vocab_size == 3
    torch.testing.assert_close(p.marginal, torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64))
    q = processes.get("marginal", **p.config())
    torch.testing.assert_close(q.marginal, p.marginal)
    assert "marginal" in processes.names()


@pytest.mark.parametrize("bad", [[0.5, 0.0, 0.5], [1.0, -1.0], [], [float("nan"), 1.0]])
def test_refuses_non_positive_marginals(bad):
    with pytest.raises(ValueError):
        MarginalProcess(bad)


def test_vocab_size_must_match():
    with pytest.raises(ValueError, match="vocab_size"):
        MarginalProcess(M, vocab_size=3)


@pytest.mark.parametrize("schedule", ["log-linear", "cosine"])
def test_noise_frequencies_match_the_kernel(schedule):
    """P(x_t = j | x_0) = alpha 1[j = x_0] + (1 - alpha) m_j; five binomial standard errors."""
    process = MarginalProcess(M, schedule=schedule)
    n_rows, width = 4000, 10
    x0 = torch.randint(0, 4, (n_rows, width), generator=torch.Generator().manual_seed(0))
    t = torch.full((n_rows,), 0.55, dtype=torch.float64)
    x_t = process.noise(x0, t, generator=torch.Generator().manual_seed(1)).x_t
    a = float(process.schedule(t[:1]).alpha)
    table = _q_t_given_0(torch.tensor(M, dtype=torch.float64), a)
    for x0_val in range(4):
        sel = x_t[x0 == x0_val]
        n = sel.numel()
        for j in range(4):
            p = float(table[x0_val, j])
            f = float((sel == j).double().mean())
            assert abs(f - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-12, (x0_val, j, f, p)


def test_prior_is_the_marginal():
    process = MarginalProcess(M)
    x = process.prior_sample(torch.zeros(20000, dtype=torch.int64), generator=torch.Generator().manual_seed(3))
    freq = torch.bincount(x, minlength=4).double() / x.numel()
    for j, p in enumerate(M):
        assert abs(float(freq[j]) - p) <= 5 * math.sqrt(p * (1 - p) / x.numel())


def test_posterior_matches_bayes_rule_by_brute_force():
    process = MarginalProcess(M)
    m = process.marginal
    v = process.vocab_size
    a_t, a_s = 0.3, 0.7
    q_s0 = _q_t_given_0(m, a_s)  # [x_0, x_s]
    q_ts = (a_t / a_s) * torch.eye(v, dtype=torch.float64) + (1 - a_t / a_s) * m[None, :]  # [x_s, x_t]
    q_t0 = q_s0 @ q_ts  # Chapman-Kolmogorov must give the closed form
    torch.testing.assert_close(q_t0, _q_t_given_0(m, a_t), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(process.marginal_probs(torch.arange(v), torch.full((v,), a_t, dtype=torch.float64)), q_t0)
    gen = torch.Generator().manual_seed(0)
    p0 = torch.softmax(torch.randn(v, v, generator=gen, dtype=torch.float64), -1)  # a model's p(x_0 | x_t = j), row j
    for j in range(v):
        post = q_s0 * q_ts[:, j][None, :] / q_t0[:, j : j + 1]  # q(x_s | x_t = j, x_0), [x_0, x_s]
        ones = torch.full((v,), a_t, dtype=torch.float64), torch.full((v,), a_s, dtype=torch.float64)
        xt = torch.full((v,), j, dtype=torch.int64)
        onehot = torch.eye(v, dtype=torch.float64)
        torch.testing.assert_close(process.posterior_probs(xt, onehot, *ones), post, rtol=1e-12, atol=1e-12)
        got = process.posterior_probs(xt[:1], p0[j : j + 1], ones[0][:1], ones[1][:1])[0]
        torch.testing.assert_close(got, p0[j] @ post, rtol=1e-12, atol=1e-12)


def test_uniform_marginal_equals_the_uniform_kernel():
    v = 5
    a, b = MarginalProcess([1.0] * v), UniformProcess(v)
    gen = torch.Generator().manual_seed(4)
    xt = torch.randint(0, v, (7, 3), generator=gen)
    p0 = torch.softmax(torch.randn(7, 3, v, generator=gen, dtype=torch.float64), -1)
    at, as_ = torch.full((7, 3), 0.2, dtype=torch.float64), torch.full((7, 3), 0.6, dtype=torch.float64)
    torch.testing.assert_close(a.posterior_probs(xt, p0, at, as_), b.posterior_probs(xt, p0, at, as_), rtol=1e-12, atol=1e-14)


def test_x0_cross_entropy_is_the_negative_log_likelihood_of_x0():
    process = MarginalProcess(M)
    gen = torch.Generator().manual_seed(5)
    seg = torch.tensor([0, 0, 0, 1, 1])
    space = RaggedSpace(seg)
    x0 = torch.randint(0, 4, (5,), generator=gen)
    logits = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    per, count = x0_cross_entropy(process, logits, x0, x0, space)
    nll = -torch.log_softmax(logits, -1)[torch.arange(5), x0]
    torch.testing.assert_close(per, torch.stack([nll[:3].sum(), nll[3:].sum()]))
    assert count.tolist() == [3.0, 2.0]


def test_product_loss_with_ce_objective_runs_on_ragged_states():
    seg = torch.tensor([0, 0, 0, 1, 1])
    proc = processes.get("product", components={"tok": MarginalProcess(M)}, weights={"tok": 2.0})

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))

        def forward(self, x, t):
            return {"tok": self.w.expand(x["tok"].shape[0], 4)}

    model = polydiff.Denoiser(Net(), proc, prediction={"tok": "x0_logits"})
    from polydiff.spaces import CompositeSpace

    x0 = {"tok": torch.tensor([0, 1, 2, 3, 0])}
    out = model.loss(x0, space=CompositeSpace({"tok": RaggedSpace(seg)}), discrete_objective="ce",
                     generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.per_sample, torch.full((2,), 2.0 * math.log(4), dtype=torch.float64))


class TestMarginalContract(ProcessContract):
    def make_process(self):
        return MarginalProcess(M)

    def make_state(self):
        return torch.randint(0, 4, (4, 6), generator=torch.Generator().manual_seed(0))

    def make_space(self, x_0):
        return DenseSpace()


def test_truncated_snr_weighting_is_the_clamped_snr():
    """EQGAT-diff's ``snr_t`` weighting: ``clamp(alpha^2 / sigma^2, 0.05, 1.5)``, on both clamps and between."""
    from polydiff.losses import WEIGHTINGS, gaussian_weight

    assert "truncated-snr" in WEIGHTINGS
    v = processes.get("vp-cosine").schedule(torch.tensor([0.05, 0.5, 0.62, 0.97], dtype=torch.float64))
    snr = v.alpha**2 / v.sigma**2
    want = torch.tensor([min(max(float(s), 0.05), 1.5) for s in snr], dtype=torch.float64)
    got = gaussian_weight("truncated-snr", v)
    torch.testing.assert_close(got, want)
    assert float(got[0]) == 1.5 and float(got[-1]) == 0.05 and 0.05 < float(got[2]) < 1.5
