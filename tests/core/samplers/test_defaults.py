"""Sampler defaults: the default grid is the measured best, and every listed sampler runs every listed process.

1. For every Gaussian schedule and every ODE sampler, ``polydiff.sample(..., grid=None)`` (the sampler's
   default grid for that process) is at least as close to the closed-form probability-flow map as the best
   other built-in grid at the same NFE budget (10 and 20), up to a relative tie tolerance of 5 % (ties:
   on VE, uniform-in-t *is* uniform-in-log-SNR; on EDM, uniform-in-t *is* Karras' spacing; rounding makes
   such grids differ in the last digits). Data ``N(mu, diag s^2)`` in D = 6, float64, the exact denoiser,
   64 exact draws of the marginal at ``t_max``; error: max abs difference from the exact PF-ODE map to the
   grid's last time followed by the exact x0 estimate (:func:`polydiff.testing.oracles.ideal_sampler_output`).
   Grids a process cannot start (log-SNR spacings from ``alpha = 0``: flow at t = 1) do not compete.

2. For every process in ``polydiff.processes.names()`` and every sampler in ``polydiff.samplers.names(process)``,
   a call with default arguments (steps, grid, start, options) runs and gives finite samples; for Gaussian
   processes (and the Gaussian components of products) the sample mean and std match the exact output
   moments of the ideal sampler started from the prior the call draws (the ideal map is affine in the start,
   so its moments follow from the prior's in closed form). Tolerance per dimension: 5 standard errors for
   ``N`` samples plus a discretisation allowance ``K s / steps^p`` with ``p`` the sampler's (weak) order
   and ``K`` stated below (2-3x the worst measured; run this file as a script to print the measured errors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch

import polydiff
from polydiff import Denoiser, processes
from polydiff.processes import DiscreteProcess, GaussianProcess, MaskedProcess
from polydiff.samplers import GRID_KINDS, get_sampler
from polydiff.spaces import CompositeSpace, DenseSpace
from polydiff.testing.oracles import CompositeOracleNet, GaussianOracleNet, ideal_sampler_output

GAUSSIAN_SCHEDULES = ("vp-linear", "vp-cosine", "ve", "edm", "flow", "sub-vp")
ODE_SAMPLERS = ("euler", "ddim", "heun", "dpm++2m", "dpm++3m")
TIE = 0.05
MU = torch.tensor([0.0, 1.0, -2.0, 0.5, 3.0, -1.0], dtype=torch.float64)
S = torch.tensor([1.0, 0.5, 2.0, 0.2, 1.5, 0.8], dtype=torch.float64)


def _steps(sampler: str, nfe: int) -> int:
    """Most steps within an NFE budget on a grid ending at 0 (heun costs 2 * steps - 1, the others steps)."""
    return (nfe + 1) // 2 if sampler == "heun" else nfe


def _ode_error(model: Denoiser, z: torch.Tensor, sampler: str, nfe: int, grid: str | None) -> float:
    p = model.process
    try:
        r = polydiff.sample(model, x_start=z, sampler=sampler, steps=_steps(sampler, nfe), grid=grid)
    except ValueError:
        return math.inf  # this grid cannot start here
    assert r.nfe <= nfe
    target = ideal_sampler_output(p, MU, S, z, float(r.grid[0]), float(r.grid[-2]))
    return float((r.x - target).abs().max())


@pytest.mark.parametrize("sampler", ODE_SAMPLERS)
@pytest.mark.parametrize("schedule", GAUSSIAN_SCHEDULES)
def test_default_grid_is_the_closest(schedule, sampler):
    p = processes.get(schedule)
    model = Denoiser(GaussianOracleNet(p, MU, S), p, prediction="x0")
    v = p.schedule(torch.tensor([p.t_max], dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    z = v.alpha * MU + torch.sqrt(v.alpha**2 * S**2 + v.sigma**2) * torch.randn(64, 6, generator=g, dtype=torch.float64)
    default = get_sampler(sampler).grid_for(p)
    assert default in GRID_KINDS
    for nfe in (10, 20):
        err_default = _ode_error(model, z, sampler, nfe, None)
        assert math.isfinite(err_default), f"{sampler} on {schedule}: the default grid {default!r} does not run"
        others = {k: _ode_error(model, z, sampler, nfe, k) for k in GRID_KINDS if k != default}
        best = min(others.values())
        assert err_default <= (1 + TIE) * best, f"{sampler} on {schedule} at {nfe} NFE: default {default!r} {err_default:.3e}, others {others}"


# -- every listed sampler on every listed process, default arguments ---------------------------------------

N = 4000
#: per sampler: (weak order p, K) — discretisation allowance K * s / steps**p at the default 32 steps. First-order
#: samplers: K = 2x the worst measured K (euler/ddim 5.7 on vp-linear, ddpm 6.3 on sub-vp, euler-maruyama 5.1 and
#: pc 4.2 on vp-cosine). Second-order ones: the measured errors are at the sampling noise (<= 0.037 s against
#: 5 SE ~ 0.08 s), so K = 40 bounds their bias by 0.04 s at 32 steps.
ALLOWANCE = {
    "euler": (1, 12.0), "ddim": (1, 12.0), "ddpm": (1, 12.0), "mixed-ancestral": (1, 12.0),
    "euler-maruyama": (1, 10.0), "pc": (1, 10.0),
    "heun": (2, 40.0), "dpm++2m": (2, 40.0), "dpm++3m": (2, 40.0),
}


@dataclass
class Case:
    """A model of a process, the keyword arguments of a default ``polydiff.sample`` call and the Gaussian parts to check.

    ``gaussian``: ``{component key or "": (process, mu, s, prior mean of x_0 or None)}``.
    """

    model: Any
    kwargs: dict[str, Any]
    gaussian: dict[str, tuple[GaussianProcess, torch.Tensor, torch.Tensor, torch.Tensor | None]]


class _Logits(torch.nn.Module):
    """Fixed per-position logits ``(B, L, V)`` (a context-free toy network)."""

    time_independent = True

    def __init__(self, length: int, vocab: int) -> None:
        super().__init__()
        self.register_buffer("table", torch.randn(length, vocab, generator=torch.Generator().manual_seed(0), dtype=torch.float64))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        return self.table[: x_t.shape[1]].expand(x_t.shape[0], -1, -1)


def _case(name: str) -> Case:
    if name in GAUSSIAN_SCHEDULES:
        p = processes.get(name)
        return Case(Denoiser(GaussianOracleNet(p, MU, S), p, prediction="x0"), {"shape": (N, 6), "dtype": torch.float64}, {"": (p, MU, S, None)})
    if name in ("ouve", "sb-ve"):  # mean-reverting toward y (the SB-VE bridge ends at y)
        p = processes.get(name)
        mu, s = torch.linspace(-1, 1, 6, dtype=torch.float64), torch.full((6,), 0.1, dtype=torch.float64)
        y = mu.expand(N, 6).clone()  # the signal it reverts to; the prior mean of x_0 is y
        return Case(Denoiser(GaussianOracleNet(p, mu, s), p, prediction="x0"), {"shape": (N, 6), "dtype": torch.float64, "cond": {"y": y}},
                    {"": (p, mu, s, mu)})
    if name in ("masked", "uniform", "marginal"):
        p = processes.get(name, marginal=[1.0, 2.0, 3.0, 4.0, 5.0]) if name == "marginal" else processes.get(name, vocab_size=5)
        return Case(Denoiser(_Logits(8, 5), p, prediction="x0_logits"), {"shape": (64, 8)}, {})
    if name == "product":
        raise AssertionError("product processes are built in _product_cases")
    raise AssertionError(f"process {name!r} has no test case here: add one to _case()")


def _product_cases() -> dict[str, Case]:
    """A product of two Gaussian components with different schedules, and a mixed Gaussian + masked one.

    Different schedules share no log-SNR, so their default grid is uniform in t: ve and edm, for which that is
    a good grid (uniform in log-SNR and Karras' spacing); uniform in t on a VP component costs a long last step.
    """
    a, b = processes.get("ve"), processes.get("edm")
    mu_b, s_b = MU[:3], S[:3]
    gauss = processes.get("product", components={"a": a, "b": b})
    net = CompositeOracleNet({"a": GaussianOracleNet(a, MU, S), "b": GaussianOracleNet(b, mu_b, s_b)})
    like = {"a": torch.zeros(N, 6, dtype=torch.float64), "b": torch.zeros(N, 3, dtype=torch.float64)}
    space = CompositeSpace({"a": DenseSpace(), "b": DenseSpace()})
    g_case = Case(Denoiser(net, gauss, prediction={"a": "x0", "b": "x0"}), {"like": like, "space": space},
                  {"a": (a, MU, S, None), "b": (b, mu_b, s_b, None)})

    c = processes.get("vp-cosine")
    mixed = processes.get("product", components={"pos": c, "tok": MaskedProcess(4)})
    oracle, logits = GaussianOracleNet(c, MU, S), _Logits(5, 4)

    class Net(torch.nn.Module):
        def forward(self, x_t, t):
            return {"pos": oracle(x_t["pos"], t), "tok": logits(x_t["tok"], t)}

    like_m = {"pos": torch.zeros(N, 6, dtype=torch.float64), "tok": torch.zeros(N, 5, dtype=torch.int64)}
    m_case = Case(Denoiser(Net(), mixed, prediction={"pos": "x0", "tok": "x0_logits"}),
                  {"like": like_m, "space": CompositeSpace({"pos": DenseSpace(), "tok": DenseSpace()})}, {"pos": (c, MU, S, None)})
    return {"product[gaussian]": g_case, "product[mixed]": m_case}


def _all_cases() -> list[tuple[str, str]]:
    out = []
    for name in processes.names():
        cases = _product_cases() if name == "product" else {name: _case(name)}
        for cid, case in cases.items():
            out += [(cid, sampler) for sampler in polydiff.samplers.names(case.model.process)]
    return out


def _get_case(cid: str) -> Case:
    return _product_cases()[cid] if cid.startswith("product") else _case(cid)


def _target(process: GaussianProcess, mu, s, prior_mu, t0: float, t_last: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the ideal sampler's output from the prior drawn at ``t0``: ``N(alpha prior_mu, sigma^2)``
    in standard coordinates, pushed through the affine ideal map."""
    v = process.schedule(torch.tensor([t0], dtype=torch.float64))
    m0 = v.alpha * (prior_mu if prior_mu is not None else torch.zeros_like(mu))
    f0 = ideal_sampler_output(process, mu, s, m0.unsqueeze(0), t0, t_last)[0]
    f1 = ideal_sampler_output(process, mu, s, (m0 + v.sigma).unsqueeze(0), t0, t_last)[0]
    return f0, (f1 - f0).abs()


def _moment_errors(case: Case, sampler: str, seed: int = 0):
    r = polydiff.sample(case.model, sampler=sampler, generator=torch.Generator().manual_seed(seed), **case.kwargs)
    out = []
    for key, (p, mu, s, prior_mu) in case.gaussian.items():
        x = r.x[key] if key else r.x
        mean_t, std_t = _target(p, mu, s, prior_mu, float(r.grid[0]), float(r.grid[-2]))
        out.append((key, x, mean_t, std_t, s, r.steps))
    return r, out


@pytest.mark.parametrize(("process", "sampler"), _all_cases())
def test_every_listed_sampler_runs_with_defaults(process, sampler):
    case = _get_case(process)
    r, checks = _moment_errors(case, sampler)
    for leaf in (r.x.values() if isinstance(r.x, dict) else [r.x]):
        if leaf.is_floating_point():
            assert torch.isfinite(leaf).all(), f"{sampler} on {process}: non-finite samples"
    if isinstance(case.model.process, DiscreteProcess):
        v = case.model.process.vocab_size
        assert int(r.x.min()) >= 0 and int(r.x.max()) < v, "a final discrete sample holds only clean tokens"
    order, k = ALLOWANCE.get(sampler, (1, 0.0))
    for key, x, mean_t, std_t, s, steps in checks:
        n = x.shape[0]
        allow = k * s / steps**order
        tol_mean = 5 * std_t / math.sqrt(n) + allow
        tol_std = 5 * std_t / math.sqrt(2 * n) + allow
        err_m, err_s = (x.mean(0) - mean_t).abs(), (x.std(0) - std_t).abs()
        assert (err_m <= tol_mean).all(), f"{sampler} on {process}[{key}]: mean error {err_m} > {tol_mean}"
        assert (err_s <= tol_std).all(), f"{sampler} on {process}[{key}]: std error {err_s} > {tol_std}"


if __name__ == "__main__":  # print the measured discretisation errors (in units of s, times steps**p) behind ALLOWANCE
    worst: dict[str, float] = {}
    for cid, sampler in _all_cases():
        case = _get_case(cid)
        if not case.gaussian:
            continue
        _, checks = _moment_errors(case, sampler)
        order = ALLOWANCE[sampler][0]
        for key, x, mean_t, std_t, s, steps in checks:
            e = max(float(((x.mean(0) - mean_t).abs() / s).max()), float(((x.std(0) - std_t).abs() / s).max()))
            worst[sampler] = max(worst.get(sampler, 0.0), e * steps**order)
            print(f"{cid:18s} {key or '-':4s} {sampler:15s} err/s {e:.4f}  K_measured {e * steps**order:.2f}")
    print({k: round(v, 2) for k, v in worst.items()})
