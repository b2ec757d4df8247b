"""Forward processes: marginal moments, the OUVE closed form, discrete frequencies and posteriors."""

from __future__ import annotations

import math

import pytest
import torch

from polydiff import processes
from polydiff.processes import MaskedProcess, UniformProcess
from polydiff.processes.mean_reverting import OUVE
from polydiff.schedules import SCHEDULES

N_DRAWS = 4000


@pytest.mark.parametrize("name", sorted(SCHEDULES) + ["ouve"])
def test_gaussian_noise_marginal_moments(name):
    """Mean and variance of x_t over n draws: s.e. sigma/sqrt(n) and sigma^2 sqrt(2/(n-1)); 5 s.e. allowed."""
    process = processes.get(name)
    x0 = torch.tensor([1.5, -0.5, 0.0, 2.0], dtype=torch.float64)
    y = torch.tensor([0.3, 0.3, -1.0, 0.0], dtype=torch.float64)
    batch = x0.expand(N_DRAWS, 4).clone()
    cond = {"y": y.expand(N_DRAWS, 4)} if name == "ouve" else None
    t = torch.full((N_DRAWS,), 0.4, dtype=torch.float64)
    x_t = process.noise(batch, t, generator=torch.Generator().manual_seed(0), cond=cond).x_t
    v = process.schedule(t[:1])
    mean = v.alpha * x0 + ((1 - v.alpha) * y if name == "ouve" else 0.0)
    sig = float(v.sigma)
    assert bool(((x_t.mean(0) - mean).abs() <= 5 * sig / math.sqrt(N_DRAWS)).all())
    assert bool(((x_t.var(0) - sig**2).abs() <= 5 * sig**2 * math.sqrt(2 / (N_DRAWS - 1))).all())


def test_ouve_closed_form_solves_the_moment_odes():
    """For dx = gamma (y - x) dt + g dw the mean obeys m' = gamma (y - m) (so alpha' = -gamma alpha, alpha_0 = 1)
    and the variance obeys v' = -2 gamma v + g^2 with v_0 = 0 (exact moment ODEs of a linear SDE)."""
    sched = OUVE()
    t = torch.linspace(0.01, 1.0, 50, dtype=torch.float64).requires_grad_(True)
    v = sched(t)
    (d_alpha,) = torch.autograd.grad(v.alpha.sum(), t, retain_graph=True)
    (d_var,) = torch.autograd.grad((v.sigma**2).sum(), t)
    L = math.log(sched.sigma_max / sched.sigma_min)
    g_sq = (sched.sigma_min * torch.exp(L * t.detach())) ** 2 * 2 * L
    torch.testing.assert_close(d_alpha, -sched.gamma * v.alpha.detach())
    torch.testing.assert_close(d_var, -2 * sched.gamma * v.sigma.detach() ** 2 + g_sq)
    zero = sched(torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(zero.alpha, torch.ones(1, dtype=torch.float64))
    torch.testing.assert_close(zero.sigma, torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(v.diffusion_sq.detach(), g_sq)
    process = processes.get("ouve")
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    drift, g = process.sde(x, torch.full((5,), 0.3, dtype=torch.float64), cond={"y": y})
    torch.testing.assert_close(drift, sched.gamma * (y - x))
    assert g.shape == (5,)


@pytest.mark.parametrize("kind", ["masked", "uniform"])
@pytest.mark.parametrize("schedule", ["log-linear", "cosine", "geometric"])
def test_discrete_noise_frequencies(kind, schedule):
    """P(x_t = x_0) = alpha (masked) or alpha + (1 - alpha)/V (uniform); binomial s.e. sqrt(p (1-p) / n)."""
    v_size = 4
    process = processes.get(kind, vocab_size=v_size, schedule=schedule)
    n = 20000
    x0 = torch.randint(0, v_size, (n // 10, 10), generator=torch.Generator().manual_seed(0))
    t = torch.full((x0.shape[0],), 0.6, dtype=torch.float64)
    x_t = process.noise(x0, t, generator=torch.Generator().manual_seed(1)).x_t
    a = float(process.schedule(t[:1]).alpha)
    if kind == "masked":
        probs = {"clean": a, "mask": 1 - a}
        freqs = {"clean": float((x_t == x0).double().mean()), "mask": float((x_t == v_size).double().mean())}
    else:
        probs = {"clean": a + (1 - a) / v_size, "other": (1 - a) / v_size}
        other = (x_t == (x0 + 1) % v_size).double().mean()
        freqs = {"clean": float((x_t == x0).double().mean()), "other": float(other)}
    for key, p in probs.items():
        assert abs(freqs[key] - p) <= 5 * math.sqrt(p * (1 - p) / n), (key, freqs[key], p)


def _transition(process, a_from: float, a_to: float) -> torch.Tensor:
    """``q(x_t = k | x_s = j)`` over ``num_states`` (rows j), with ``alpha_{t|s} = a_to / a_from``."""
    k = process.num_states
    r = a_to / a_from
    pi = process.limit_probs(torch.zeros(1))
    mat = r * torch.eye(k, dtype=torch.float64) + (1 - r) * pi[None, :]
    if isinstance(process, MaskedProcess):
        mat[process.mask_id] = 0.0
        mat[process.mask_id, process.mask_id] = 1.0  # absorbing
    return mat


@pytest.mark.parametrize("cls", [MaskedProcess, UniformProcess])
def test_posteriors_match_bayes_rule_by_brute_force(cls):
    process = cls(vocab_size=3)
    v, k = process.vocab_size, process.num_states
    a_t, a_s = 0.3, 0.7
    q_s = process.marginal_probs(torch.arange(v), torch.full((v,), a_s, dtype=torch.float64))  # (V, K): q(x_s | x_0)
    trans = _transition(process, a_s, a_t)  # (K, K): q(x_t | x_s)
    q_t = q_s @ trans  # (V, K) q(x_t | x_0), must equal the closed form
    torch.testing.assert_close(q_t, process.marginal_probs(torch.arange(v), torch.full((v,), a_t, dtype=torch.float64)))
    gen = torch.Generator().manual_seed(0)
    p0 = torch.softmax(torch.randn(v, generator=gen, dtype=torch.float64), 0)  # a model's p(x_0 | x_t)
    for j in range(k):
        # brute force: q(x_s | x_t = j, x_0) = q(x_t = j | x_s) q(x_s | x_0) / q(x_t = j | x_0)
        joint = q_s * trans[:, j][None, :]  # (V, K)
        reachable = q_t[:, j] > 0
        post = joint[reachable] / q_t[reachable, j : j + 1]
        xt = torch.full((int(reachable.sum()),), j, dtype=torch.int64)
        onehot = torch.nn.functional.one_hot(torch.arange(v)[reachable], v).to(torch.float64)
        a_tt = torch.full(xt.shape, a_t, dtype=torch.float64)
        a_ss = torch.full(xt.shape, a_s, dtype=torch.float64)
        torch.testing.assert_close(process.posterior_probs(xt, onehot, a_tt, a_ss), post, rtol=1e-12, atol=1e-12)
        # model side: p(x_s | x_t) = sum_x0 q(x_s | x_t, x_0) p(x_0 | x_t), over x_0 consistent with x_t
        if isinstance(process, MaskedProcess) and j != process.mask_id:
            continue  # an unmasked x_t pins x_0 (SUBS carry-over), checked by the one-hot case above
        mix = (p0[reachable, None] * post).sum(0) / p0[reachable].sum()
        got = process.posterior_probs(xt[:1], p0[None, :], a_tt[:1], a_ss[:1])[0]
        torch.testing.assert_close(got, mix, rtol=1e-12, atol=1e-12)


def test_get_errors_list_known_names():
    with pytest.raises(ValueError) as info:
        processes.get("no-such-process")
    for name in ("vp-linear", "masked", "product", "ouve"):
        assert name in str(info.value)
    with pytest.raises(ValueError, match="vp-linear"):
        processes.get("vp-linear", nonsense=1)
    assert set(processes.names()) >= {"vp-linear", "vp-cosine", "ve", "edm", "flow", "sub-vp", "ouve", "masked", "uniform", "product"}


def test_prior_log_prob_is_the_gaussian_density():
    process = processes.get("ve")
    x = torch.randn(3, 4, dtype=torch.float64)
    s = float(process.schedule(torch.ones(1, dtype=torch.float64)).sigma)
    expected = torch.distributions.Normal(0.0, s).log_prob(x).sum(1)
    torch.testing.assert_close(process.prior_log_prob(x), expected)
