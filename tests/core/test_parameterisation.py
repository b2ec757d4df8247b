"""Exact conversions between the five Gaussian prediction types, round-tripped in float64."""

from __future__ import annotations

import itertools

import pytest
import torch

from polydiff.parameterisation import Denoised, convert, from_x0_eps, to_x0_eps
from polydiff.processes.mean_reverting import OUVE
from polydiff.schedules import SCHEDULES, get_schedule
from polydiff.spaces import CompositeSpace, DenseSpace, RaggedSpace, ZeroCoMSpace
from polydiff.state import StateDict, tree_leaves

PREDS = ["eps", "x0", "v", "score", "velocity"]
SCHEDS = sorted(SCHEDULES) + ["ouve"]
SEG = torch.tensor([0, 0, 1, 1, 1, 2])


def _schedule(name):
    return OUVE() if name == "ouve" else get_schedule(name)


def _cases():
    g = torch.Generator().manual_seed(0)
    dense = (DenseSpace(), lambda: torch.randn(3, 2, 4, generator=g, dtype=torch.float64))
    ragged = (RaggedSpace(SEG), lambda: torch.randn(6, 3, generator=g, dtype=torch.float64))
    comp_space = CompositeSpace({"pos": ZeroCoMSpace(SEG), "h": DenseSpace()})
    comp = (comp_space, lambda: StateDict({"pos": ZeroCoMSpace(SEG).project(torch.randn(6, 3, generator=g, dtype=torch.float64)),
                                           "h": torch.randn(3, 5, generator=g, dtype=torch.float64)}))
    return {"dense": dense, "ragged": ragged, "composite": comp}


def _close(a, b, **kw):
    for u, v in zip(tree_leaves(a), tree_leaves(b)):
        torch.testing.assert_close(u, v, **kw)


@pytest.mark.parametrize("layout", ["dense", "ragged", "composite"])
@pytest.mark.parametrize("name", SCHEDS)
def test_all_conversions_round_trip(name, layout):
    """src -> dst -> src is the identity (rtol 1e-9: the 2x2 solves are well conditioned on [0.05, 0.95])."""
    space, draw = _cases()[layout]
    sched = _schedule(name)
    t = torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)
    values = sched(t)
    x0, eps = draw(), draw()
    z = space.expand(values.alpha, x0) * x0 + space.expand(values.sigma, x0) * eps
    truth = Denoised(x0=x0, eps=eps)
    for src, dst in itertools.product(PREDS, PREDS):
        out = from_x0_eps(truth, src, values, space)
        there = convert(out, src=src, dst=dst, z_t=z, values=values, space=space)
        back = convert(there, src=dst, dst=src, z_t=z, values=values, space=space)
        _close(back, out, rtol=1e-9, atol=1e-9)
        # every prediction carries the exact (x0, eps)
        _close(there, from_x0_eps(truth, dst, values, space), rtol=1e-9, atol=1e-9)
    for src in PREDS:
        d = to_x0_eps(from_x0_eps(truth, src, values, space), src, z, values, space)
        _close(d.x0, x0, rtol=1e-9, atol=1e-9)
        _close(d.eps, eps, rtol=1e-9, atol=1e-9)


def test_closed_forms():
    sched = get_schedule("vp-cosine")
    t = torch.tensor([0.3, 0.6], dtype=torch.float64)
    v = sched(t)
    x0, eps = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    d, space = Denoised(x0, eps), DenseSpace()
    a, s = v.alpha[:, None], v.sigma[:, None]  # dense (B, D) test data
    torch.testing.assert_close(from_x0_eps(d, "v", v, space), a * eps - s * x0)
    torch.testing.assert_close(from_x0_eps(d, "score", v, space), -eps / s)
    torch.testing.assert_close(from_x0_eps(d, "velocity", v, space), v.d_alpha[:, None] * x0 + v.d_sigma[:, None] * eps)


def test_bad_prediction_names():
    v = get_schedule("flow")(torch.tensor([0.5], dtype=torch.float64))
    x = torch.zeros(1, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="eps"):
        to_x0_eps(x, "epsilon", x, v, DenseSpace())
    with pytest.raises(ValueError, match="Gaussian"):
        from_x0_eps(Denoised(x, x), "x0_logits", v, DenseSpace())
