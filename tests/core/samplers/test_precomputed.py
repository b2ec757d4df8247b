"""The grid's schedule, evaluated once and handed to the denoiser, changes no sample.

``polydiff.sample`` evaluates the schedule once per grid point and lets the denoiser convert its output with
those numbers (:func:`polydiff.denoiser.known_schedule_values`). Turning that hand-over off (the denoiser
evaluates the schedule itself) must give the same samples up to float64 rounding (1e-12: a few ulps per step).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import polydiff
from polydiff import Denoiser, processes
from polydiff.samplers import api
from polydiff.spaces import CompositeSpace, DenseSpace
from polydiff.testing.oracles import CompositeOracleNet, GaussianOracleNet


class EpsOracle(torch.nn.Module):
    """The exact denoiser of ``N(0.5, 0.7^2)`` data, returned as an eps prediction (so x0 is converted lazily)."""

    def __init__(self, process) -> None:
        super().__init__()
        self.process, self.x0 = process, GaussianOracleNet(process, 0.5, 0.7)

    def forward(self, x, t):
        v = self.process.schedule(t)
        return (x - v.alpha[:, None] * self.x0(x, t)) / v.sigma[:, None]


def _without_hand_over(monkeypatch):
    real = api.precompute_grid
    monkeypatch.setattr(api, "precompute_grid", lambda *a, **k: replace(real(*a, **k), known={}))


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpm++2m", "dpm++3m", "ddim", "ddpm", "euler-maruyama", "pc"])
@pytest.mark.parametrize("prediction", ["eps", "x0"])
def test_hand_over_changes_no_sample(sampler, prediction, monkeypatch):
    p = processes.get("vp-linear")
    net = EpsOracle(p) if prediction == "eps" else GaussianOracleNet(p, 0.5, 0.7)
    model = Denoiser(net, p, prediction=prediction)
    opts = {"eta": 0.5} if sampler == "ddim" else {}
    kw = dict(shape=(8, 3), dtype=torch.float64, sampler=sampler, steps=12, t_start=0.98, **opts)
    a = polydiff.sample(model, generator=torch.Generator().manual_seed(0), **kw).x
    _without_hand_over(monkeypatch)
    b = polydiff.sample(model, generator=torch.Generator().manual_seed(0), **kw).x
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_hand_over_per_component_schedules(monkeypatch):
    """A product of two schedules: each component's numbers come from its own schedule."""
    a_p, b_p = processes.get("ve"), processes.get("flow")
    proc = processes.get("product", components={"a": a_p, "b": b_p})
    net = CompositeOracleNet({"a": GaussianOracleNet(a_p, 0.5, 0.7), "b": GaussianOracleNet(b_p, -1.0, 0.3)})
    model = Denoiser(net, proc, prediction={"a": "x0", "b": "x0"})
    like = {"a": torch.zeros(8, 3, dtype=torch.float64), "b": torch.zeros(8, 2, dtype=torch.float64)}
    kw = dict(like=like, space=CompositeSpace({"a": DenseSpace(), "b": DenseSpace()}), sampler="dpm++2m", steps=12)
    x = polydiff.sample(model, generator=torch.Generator().manual_seed(0), **kw).x
    _without_hand_over(monkeypatch)
    y = polydiff.sample(model, generator=torch.Generator().manual_seed(0), **kw).x
    for k in like:
        torch.testing.assert_close(x[k], y[k], rtol=0, atol=1e-12)
