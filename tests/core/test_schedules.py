"""Schedules: derivatives, log-SNR monotonicity and inverse, and the SDE identities, in float64."""

from __future__ import annotations

import pytest
import torch

from polydiff.processes.mean_reverting import OUVE
from polydiff.schedules import SCHEDULES, get_schedule

NAMES = sorted(SCHEDULES)
assert len(NAMES) == 6


def _interior(schedule, n: int = 33) -> torch.Tensor:
    lo = max(schedule.t_min, 1e-3)
    hi = min(schedule.t_max, 0.999)
    return torch.linspace(lo, hi, n, dtype=torch.float64)


def _central(f, t: torch.Tensor, h: float) -> torch.Tensor:
    return (f(t + h) - f(t - h)) / (2 * h)


def assert_matches_fd(exact: torch.Tensor, f, t: torch.Tensor, h: float = 1e-5) -> None:
    """``exact`` equals the central difference of ``f`` within a derived tolerance.

    The truncation error of ``D(h)`` is ``~h^2 f'''/6`` and ``D(2h) - D(h) ~ 3 (D(h) - f')``, so the
    Richardson estimate ``|D(2h) - D(h)|`` bounds it with a factor-3 margin. Rounding adds
    ``~eps |f| / h``; we allow 10x that.
    """
    d1, d2 = _central(f, t, h), _central(f, t, 2 * h)
    tol = (d2 - d1).abs() + 10 * torch.finfo(torch.float64).eps * f(t).abs().clamp(min=1.0) / h
    err = (exact - d1).abs()
    assert bool((err <= tol).all()), f"max error {float(err.max()):.3e}, tolerance there {float(tol[err.argmax()]):.3e}"


def _autograd(f, t: torch.Tensor) -> torch.Tensor:
    t = t.clone().requires_grad_(True)
    out = f(t)
    if not out.requires_grad:  # a constant (alpha = 1 for VE / EDM)
        return torch.zeros_like(t)
    (g,) = torch.autograd.grad(out.sum(), t)
    return g


@pytest.mark.parametrize("name", NAMES + ["ouve"])
def test_derivatives_match_finite_differences_and_autograd(name):
    sched = OUVE() if name == "ouve" else get_schedule(name)
    t = _interior(sched)
    v = sched(t)
    for field, deriv in (("alpha", "d_alpha"), ("sigma", "d_sigma")):
        f = lambda u, field=field: getattr(sched(u), field)  # noqa: E731
        assert_matches_fd(getattr(v, deriv), f, t)
        # autograd differentiates the same closed form exactly (up to float64 rounding)
        torch.testing.assert_close(getattr(v, deriv), _autograd(f, t), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_log_snr_strictly_decreasing_and_inverse(name):
    sched = get_schedule(name)
    t = _interior(sched, 101)
    lam = sched.log_snr(t)
    assert bool((lam[1:] < lam[:-1]).all())
    torch.testing.assert_close(lam, sched(t).log_snr, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sched.t_from_log_snr(lam), t, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_sde_identities(name):
    """f = d log alpha / dt and g^2 = d(sigma^2)/dt - 2 f sigma^2 (checked against finite differences)."""
    sched = get_schedule(name)
    t = _interior(sched)
    v = sched(t)
    log_alpha = lambda u: torch.log(sched(u).alpha)  # noqa: E731
    var = lambda u: sched(u).sigma ** 2  # noqa: E731
    assert_matches_fd(v.drift, log_alpha, t)
    torch.testing.assert_close(v.drift, _autograd(log_alpha, t), rtol=1e-10, atol=1e-12)
    g_sq = _autograd(var, t) - 2 * _autograd(log_alpha, t) * v.sigma**2
    torch.testing.assert_close(v.diffusion_sq, g_sq, rtol=1e-9, atol=1e-12)
    assert bool((v.diffusion_sq > 0).all())


def test_special_forms():
    t = torch.linspace(0.1, 0.9, 9, dtype=torch.float64)
    flow = get_schedule("flow")(t)
    torch.testing.assert_close(flow.alpha, 1 - t)
    torch.testing.assert_close(flow.sigma, t)
    for name in ("vp-linear", "vp-cosine"):
        v = get_schedule(name)(t)
        torch.testing.assert_close(v.alpha**2 + v.sigma**2, torch.ones_like(t))
    sub = get_schedule("sub-vp")(t)
    torch.testing.assert_close(sub.sigma, 1 - sub.alpha**2)
    ve = get_schedule("ve", sigma_min=0.1, sigma_max=10.0)
    torch.testing.assert_close(ve(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)).sigma, torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64))
    edm = get_schedule("edm")
    torch.testing.assert_close(edm(torch.tensor([0.0, 1.0], dtype=torch.float64)).sigma, torch.tensor([0.002, 80.0], dtype=torch.float64))
    torch.testing.assert_close(get_schedule("vp-cosine")(torch.tensor([0.0], dtype=torch.float64)).alpha, torch.ones(1, dtype=torch.float64))


def test_get_schedule_errors_and_config_round_trip():
    with pytest.raises(ValueError, match="vp-linear"):
        get_schedule("nope")
    with pytest.raises(ValueError, match="beta_max"):
        get_schedule("vp-linear", beta_maxx=3.0)
    for name in NAMES:
        s = get_schedule(name)
        assert type(s)(**s.config()) == s
        assert s.prior_scale > 0
