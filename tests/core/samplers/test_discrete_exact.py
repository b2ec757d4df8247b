"""Discrete samplers against an enumerable joint: exact chain distributions, and Monte-Carlo samples vs them.

Truth: a seeded, non-factorised joint ``p`` over ``V**L = 27`` sequences (V = 3, L = 3). Its exact
masked denoiser ``p(x_0^i | x_t)`` and uniform-kernel denoiser are enumerated
(:mod:`polydiff.testing.discrete_oracles`). For a given grid the output distribution of each sampler's
own Markov chain is computed exactly by enumerating the chain (64 or 27 states), from formulas written
independently of the samplers. Two kinds of checks:

* finite-step error: ``TV(chain(steps), p)`` shrinks as steps grow, at first order (``O(1/steps)``);
* implementation: the empirical distribution of ``N`` sampler draws is within the sampling bound of
  the chain's distribution (``E[TV] <= 0.5 sum sqrt(p(1-p)/N)`` plus McDiarmid's deviation at
  ``delta = 1e-6``), and so within ``TV(chain, p) + bound`` of the joint (triangle inequality).
"""

from __future__ import annotations

import math

import pytest
import torch

from polydiff.denoiser import Denoiser
from polydiff.processes import MaskedProcess, UniformProcess
from polydiff.samplers import get_sampler, sample
from polydiff.testing.discrete_oracles import (
    MaskedOracleNet,
    UniformOracleNet,
    empirical_distribution,
    masked_chain_distribution,
    random_joint,
    tv_distance,
    tv_sampling_bound,
    uniform_chain_distribution,
    uniform_tau_chain_distribution,
)

V, L, EPS = 3, 3, 1e-3
N = 10_000


@pytest.fixture(scope="module")
def joint() -> torch.Tensor:
    return random_joint(V, L, seed=0)


@pytest.fixture(scope="module")
def masked_model(joint) -> Denoiser:
    return Denoiser(MaskedOracleNet(joint, V, L), MaskedProcess(V, schedule="log-linear", eps=EPS), "x0_logits")


@pytest.fixture(scope="module")
def uniform_model(joint) -> Denoiser:
    process = UniformProcess(V, schedule="cosine")  # alpha_1 = cos(pi/2) ~ 6e-17: the uniform prior is the exact q(x_1)
    return Denoiser(UniformOracleNet(joint, V, L, process), process, "x0_logits")


def _alpha(t: float) -> float:  # log-linear schedule, written here independently of the library
    return 1.0 - (1.0 - EPS) * t


def reveal_probs(sampler: str, steps: int) -> list[float]:
    """Per-step probability that a masked token is revealed, on the uniform grid 1 -> 0."""
    ts = [1.0 - k / steps for k in range(steps + 1)]
    out = []
    for t, s in zip(ts[:-1], ts[1:], strict=True):
        if s == 0.0:
            out.append(1.0)
        elif sampler == "tau-leaping":  # rate -alpha'/(1 - alpha) frozen at t
            out.append(1.0 - math.exp(-(t - s) * (1.0 - EPS) / (1.0 - _alpha(t))))
        else:
            out.append((_alpha(s) - _alpha(t)) / (1.0 - _alpha(t)))
    return out


@pytest.mark.parametrize("sampler", ["ancestral", "tau-leaping"])
def test_masked_chain_error_shrinks_first_order(masked_model, joint, sampler):
    tv = {n: tv_distance(masked_chain_distribution(masked_model.net, reveal_probs(sampler, n)), joint) for n in (2, 8, 64)}
    assert tv[2] > tv[8] > tv[64] > 0.0
    # first order in 1/steps: going from 8 to 64 steps divides the error by ~8; allow a factor 2
    assert tv[64] <= 2.0 * tv[8] * 8 / 64


UNIFORM_CHAINS = {"ancestral": uniform_chain_distribution, "tau-leaping": uniform_tau_chain_distribution}


@pytest.mark.parametrize("sampler", ["ancestral", "tau-leaping"])
def test_uniform_chain_error_shrinks_first_order(uniform_model, joint, sampler):
    chain = UNIFORM_CHAINS[sampler]
    tv = {n: tv_distance(chain(uniform_model.net, torch.linspace(1, 0, n + 1).tolist()), joint) for n in (2, 8, 64)}
    assert tv[2] > tv[8] > tv[64] > 0.0
    assert tv[64] <= 2.0 * tv[8] * 8 / 64


def test_single_position_uniform_chain_is_exact_for_any_steps():
    # with one position there is no factorisation error: p(x_s | x_t) is the exact reverse kernel
    j = random_joint(V, 1, seed=3)
    process = UniformProcess(V, schedule="cosine")
    net = UniformOracleNet(j, V, 1, process)
    d = uniform_chain_distribution(net, [1.0, 0.0])
    assert tv_distance(d, j) < 1e-12


@pytest.mark.parametrize("sampler", ["ancestral", "cached", "tau-leaping"])
@pytest.mark.parametrize("steps", [2, 16])
def test_masked_samplers_follow_their_exact_chain(masked_model, joint, sampler, steps):
    chain = masked_chain_distribution(masked_model.net, reveal_probs(sampler, steps))
    r = sample(masked_model, shape=(N, L), sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(steps),
               return_trajectory=True)
    assert int((r.x == V).sum()) == 0 and r.steps == steps
    # per step: the fraction of still-masked tokens revealed is Binomial(n, reveal_prob) / n; 5 standard errors
    for k, q in enumerate(reveal_probs(sampler, steps)):
        before, after = r.trajectory[k] == V, r.trajectory[k + 1] == V
        n = int(before.sum())
        if n > 0 and q < 1.0:
            frac = float((before & ~after).sum()) / n
            assert abs(frac - q) <= 5 * math.sqrt(q * (1 - q) / n)
    emp = empirical_distribution(r.x, V)
    bound = tv_sampling_bound(chain, N)
    assert tv_distance(emp, chain) <= bound
    assert tv_distance(emp, joint) <= tv_distance(chain, joint) + bound


@pytest.mark.parametrize("sampler", ["ancestral", "tau-leaping"])
@pytest.mark.parametrize("steps", [2, 16])
def test_uniform_samplers_follow_their_exact_chain(uniform_model, joint, sampler, steps):
    chain = UNIFORM_CHAINS[sampler](uniform_model.net, torch.linspace(1, 0, steps + 1).tolist())
    r = sample(uniform_model, shape=(N, L), sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(5 + steps))
    emp = empirical_distribution(r.x, V)
    bound = tv_sampling_bound(chain, N)
    assert tv_distance(emp, chain) <= bound
    assert tv_distance(emp, joint) <= tv_distance(chain, joint) + bound


def test_cached_equals_ancestral_with_fewer_network_calls(masked_model):
    steps = 64
    gens = lambda: [torch.Generator().manual_seed(100 + i) for i in range(4)]  # noqa: E731
    for i in range(4):  # one sample at a time: the cache skips every step where nothing changed
        a = sample(masked_model, shape=(1, L), sampler="ancestral", steps=steps, generator=[gens()[i]])
        c = sample(masked_model, shape=(1, L), sampler="cached", steps=steps, generator=[gens()[i]])
        assert torch.equal(a.x, c.x)
        assert a.nfe == steps and c.steps == steps
        # the network is called at the first step and after each step that changed a token: at most L + 1 calls
        assert c.nfe <= L + 1
    a = sample(masked_model, shape=(4, L), sampler="ancestral", steps=steps, generator=gens())
    c = sample(masked_model, shape=(4, L), sampler="cached", steps=steps, generator=gens())
    assert torch.equal(a.x, c.x) and c.nfe < a.nfe


def test_exactness_flags():
    assert get_sampler("ancestral").exact and get_sampler("cached").exact and get_sampler("tau-leaping").exact
    assert not get_sampler("confidence").exact
    assert get_sampler("mixed-ancestral").supports_product


class FixTokens:
    """Replacement correction for infilling: positions ``where`` always hold ``values``."""

    def __init__(self, where: torch.Tensor, values: torch.Tensor) -> None:
        self.where, self.values = where, values

    def correct(self, x, t, ctx):
        return torch.where(self.where, self.values, x)


@pytest.mark.parametrize("sampler", ["ancestral", "cached", "tau-leaping"])
def test_infilling_samples_the_exact_conditional(masked_model, joint, sampler):
    # position 0 is known (token 2): start from [2, mask, mask] and keep it with a replacement correction
    steps = 16
    start = torch.tensor([2, V, V])
    x_start = start.expand(N, L).clone()
    fix = FixTokens(torch.tensor([True, False, False]).expand(N, L), x_start)
    r = sample(masked_model, x_start=x_start, sampler=sampler, steps=steps, guidance=fix, generator=torch.Generator().manual_seed(9))
    chain = masked_chain_distribution(masked_model.net, reveal_probs(sampler, steps), start=start)
    assert tv_distance(empirical_distribution(r.x, V), chain) <= tv_sampling_bound(chain, N)
    # the chain converges to the true conditional p(x | x^0 = 2)
    seqs = torch.tensor([[a, b, c] for a in range(V) for b in range(V) for c in range(V)])
    cond = torch.where(seqs[:, 0] == 2, joint, torch.zeros_like(joint))
    cond = cond / cond.sum()
    fine = masked_chain_distribution(masked_model.net, reveal_probs(sampler, 64), start=start)
    assert tv_distance(fine, cond) < tv_distance(chain, cond)
    assert tv_distance(fine, cond) <= 2.0 * tv_distance(chain, cond) * 16 / 64  # first order, factor-2 allowance


def test_tau_leaping_marginal_kernel():
    """τ-leaping's marginal-kernel rates: with m uniform they are the uniform kernel's; for any m a leap over
    ``[s, t]`` matches the exact posterior ``q(x_s | x_t, p0)`` up to ``O((t - s)^2)`` (the rates are frozen at ``t``),
    so the error shrinks ~4x when the step halves (asserted: < 0.35x)."""
    from polydiff.processes import MarginalProcess
    from polydiff.samplers.base import SamplerContext
    from polydiff.samplers.discrete_tau import uniform_leap_probs
    from polydiff.spaces import DenseSpace

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (64, 3), generator=g)
    p0 = torch.softmax(torch.randn(64, 3, 4, generator=g, dtype=torch.float64), -1)
    t = torch.full((64,), 0.6, dtype=torch.float64)
    uni, marg_u = UniformProcess(4), MarginalProcess([1.0, 1.0, 1.0, 1.0])
    ctx = SamplerContext(process=uni, space=DenseSpace(), batch_size=64)
    s = t - 0.01
    torch.testing.assert_close(uniform_leap_probs(marg_u, x, p0, t, s, ctx), uniform_leap_probs(uni, x, p0, t, s, ctx), rtol=0, atol=1e-12)
    marg = MarginalProcess([0.1, 0.2, 0.3, 0.4])
    errs = []
    for dt in (0.02, 0.01):
        s = t - dt
        exact = marg.posterior_probs(x, p0, marg.schedule(t).alpha.view(-1, 1), marg.schedule(s).alpha.view(-1, 1))
        errs.append(float((uniform_leap_probs(marg, x, p0, t, s, ctx) - exact).abs().max()))
    assert 0 < errs[1] < 0.35 * errs[0], errs
