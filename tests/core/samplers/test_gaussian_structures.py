"""Gaussian samplers on every data structure, per-sample generators, NFE, callbacks, trajectories and SDEdit."""

from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff import Denoiser, processes
from polydiff.processes import ProductProcess
from polydiff.spaces import CompositeSpace, DenseSpace, MaskedSpace, RaggedSpace, ZeroCoMSpace
from polydiff.testing.oracles import CompositeOracleNet, GaussianOracleNet

SAMPLERS = {
    "euler": {},
    "ddim": {"eta": 0.5},
    "heun": {},
    "heun-churn": {"churn": 5.0},
    "dpm++2m": {},
    "dpm++3m": {},
    "ddpm": {},
    "euler-maruyama": {},
    "pc": {},
}
STOCHASTIC = ("ddim", "heun-churn", "ddpm", "euler-maruyama", "pc")
STEPS = 8
F64 = torch.float64


def _name(case: str) -> str:
    return case.split("-churn")[0]


def _run(model, case, **kw):
    kw.setdefault("steps", STEPS)
    return polydiff.sample(model, sampler=_name(case), **SAMPLERS[case], **kw)


def _gauss(name, mu=0.3, s=0.7, space=None):
    p = processes.get(name)
    return Denoiser(GaussianOracleNet(p, mu, s, space=space), p, prediction="x0")


@pytest.mark.parametrize("shape", [(64,), (16, 5), (8, 3, 7), (4, 2, 5, 6)], ids=["B", "BD", "BCL", "BCHW"])
@pytest.mark.parametrize("case", list(SAMPLERS))
def test_dense_any_rank(case, shape):
    model = _gauss("vp-linear")
    g = torch.Generator().manual_seed(0)
    r = _run(model, case, shape=shape, dtype=F64, generator=g)
    assert r.x.shape == shape and r.x.dtype == F64 and torch.isfinite(r.x).all()


@pytest.mark.parametrize("case", list(SAMPLERS))
def test_masked_sequence_keeps_padding_zero(case):
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    space = MaskedSpace(mask)
    model = _gauss("vp-cosine", space=space)
    r = _run(model, case, like=torch.zeros(3, 6, 4, dtype=F64), space=space, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(r.x).all()
    assert (r.x[~mask] == 0).all()
    assert (r.x[mask].abs() > 0).all()


@pytest.mark.parametrize("case", list(SAMPLERS))
def test_ragged_graph_batch(case):
    sizes = torch.tensor([3, 5, 2, 7])
    seg = torch.repeat_interleave(torch.arange(4), sizes)
    space = RaggedSpace(seg)
    model = _gauss("ve", space=space)
    r = _run(model, case, like=torch.zeros(int(sizes.sum()), 3, dtype=F64), space=space, grid="log-snr", generator=torch.Generator().manual_seed(2))
    assert r.x.shape == (17, 3) and torch.isfinite(r.x).all()


@pytest.mark.parametrize("case", list(SAMPLERS))
def test_zero_com_stays_centred(case):
    sizes = torch.tensor([4, 9, 6])
    seg = torch.repeat_interleave(torch.arange(3), sizes)
    space = ZeroCoMSpace(seg)
    model = _gauss("vp-linear", mu=0.0, s=1.3, space=space)
    r = _run(model, case, like=torch.zeros(int(sizes.sum()), 3, dtype=F64), space=space, generator=torch.Generator().manual_seed(3))
    assert torch.isfinite(r.x).all()
    # float64 round-off of a projection of O(1) coordinates summed over <= 9 rows: ~1e-15; bound 1e-12.
    assert space.centre_of_mass(r.x).abs().max() < 1e-12


def _composite(schedules=("vp-cosine", "ve")):
    sizes = torch.tensor([4, 9, 6])
    seg = torch.repeat_interleave(torch.arange(3), sizes)
    space = CompositeSpace({"pos": ZeroCoMSpace(seg), "h": DenseSpace()})
    comps = {"pos": processes.get(schedules[0]), "h": processes.get(schedules[1])}
    net = CompositeOracleNet(
        {"pos": GaussianOracleNet(comps["pos"], 0.0, 1.0, space=space["pos"]), "h": GaussianOracleNet(comps["h"], 0.5, 0.3)}
    )
    model = Denoiser(net, ProductProcess(comps), prediction={"pos": "x0", "h": "x0"})
    like = {"pos": torch.zeros(19, 3, dtype=F64), "h": torch.zeros(3, 4, dtype=F64)}
    return model, space, like


@pytest.mark.parametrize("case", list(SAMPLERS))
def test_composite_state_with_different_schedules(case):
    model, space, like = _composite()
    if case == "heun-churn":  # churn acts on one shared time; different schedules are rejected clearly
        with pytest.raises(ValueError, match="churn"):
            _run(model, case, like=like, space=space)
        model, space, like = _composite(("vp-linear", "vp-linear"))
    r = _run(model, case, like=like, space=space, generator=torch.Generator().manual_seed(4))
    assert set(r.x) == {"pos", "h"} and r.x["pos"].shape == (19, 3) and r.x["h"].shape == (3, 4)
    assert all(torch.isfinite(v).all() for v in r.x.values())
    assert space["pos"].centre_of_mass(r.x["pos"]).abs().max() < 1e-12


def test_composite_moments():
    """The 'h' component (ve schedule) of a product with a vp-cosine 'pos' reproduces N(0.5, 0.3^2): 5 SE + 0.02 s
    (DPM-Solver++(2M), 32 log-SNR steps: allowance as in test_gaussian_moments)."""
    sizes = torch.full((2000,), 3)
    seg = torch.repeat_interleave(torch.arange(2000), sizes)
    space = CompositeSpace({"pos": ZeroCoMSpace(seg), "h": DenseSpace()})
    comps = {"pos": processes.get("vp-cosine"), "h": processes.get("ve")}
    net = CompositeOracleNet({"pos": GaussianOracleNet(comps["pos"], 0.0, 1.0, space=space["pos"]), "h": GaussianOracleNet(comps["h"], 0.5, 0.3)})
    model = Denoiser(net, ProductProcess(comps), prediction={"pos": "x0", "h": "x0"})
    like = {"pos": torch.zeros(6000, 3, dtype=F64), "h": torch.zeros(2000, 2, dtype=F64)}
    # start from the exact marginal of 'h' (the VE prior N(0, 50^2) ignores the data mean) and from the prior for 'pos'
    t0 = comps["pos"].t_max
    g = torch.Generator().manual_seed(11)
    v = comps["h"].schedule(torch.tensor([t0], dtype=F64))
    x_start = {
        "pos": comps["pos"].prior_sample(like["pos"], space=space["pos"], generator=g, t=t0),
        "h": v.alpha * 0.5 + torch.sqrt(v.alpha**2 * 0.09 + v.sigma**2) * torch.randn(2000, 2, generator=g, dtype=F64),
    }
    # log-SNR grid of the 'h' schedule (grid kinds other than 'uniform' need a single Gaussian process)
    grid = polydiff.samplers.time_grid(comps["h"], 32, kind="log-snr", t_start=t0)
    r = polydiff.sample(model, x_start=x_start, space=space, sampler="dpm++2m", grid=grid)
    h = r.x["h"]
    vl = comps["h"].schedule(r.grid[-2:-1])
    target = float(vl.alpha * 0.09 / torch.sqrt(vl.alpha**2 * 0.09 + vl.sigma**2))
    n = 2000
    assert (h.mean(0) - 0.5).abs().max() <= 5 * 0.3 / math.sqrt(n) + 0.02 * 0.3
    assert (h.std(0) - target).abs().max() <= 5 * target / math.sqrt(2 * n) + 0.04 * 0.3


@pytest.mark.parametrize("case", STOCHASTIC)
@pytest.mark.parametrize("structure", ["dense", "masked"])
def test_per_sample_generators_batch_independent(case, structure):
    """With one generator per sample, a sample is the same alone or in a batch (to float64 round-off)."""
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    like = torch.zeros(4, 5, 2, dtype=F64)
    space = MaskedSpace(mask) if structure == "masked" else DenseSpace()
    model = _gauss("vp-linear", space=space)
    gens = [torch.Generator().manual_seed(100 + i) for i in range(4)]
    batch = _run(model, case, like=like, space=space, generator=gens).x
    k = 2
    space_1 = MaskedSpace(mask[k : k + 1]) if structure == "masked" else DenseSpace()
    alone = _run(_gauss("vp-linear", space=space_1), case, like=like[k : k + 1], space=space_1, generator=[torch.Generator().manual_seed(100 + k)]).x
    torch.testing.assert_close(batch[k : k + 1], alone, rtol=0, atol=1e-12)
    assert not torch.allclose(batch[0], batch[1])


@pytest.mark.parametrize(
    "case,nfe_to_zero,nfe_custom",
    [
        ("euler", STEPS, STEPS),
        ("ddim", STEPS, STEPS),
        ("heun", 2 * STEPS - 1, 2 * STEPS),
        ("heun-churn", 2 * STEPS - 1, 2 * STEPS),
        ("dpm++2m", STEPS, STEPS),
        ("ddpm", STEPS, STEPS),
        ("euler-maruyama", STEPS, STEPS),
        ("pc", 2 * STEPS, 2 * STEPS),
    ],
)
def test_nfe_callback_and_trajectory(case, nfe_to_zero, nfe_custom):
    model = _gauss("vp-linear")
    infos = []
    r = _run(model, case, shape=(6, 3), dtype=F64, callback=infos.append, return_trajectory=True, generator=torch.Generator().manual_seed(0))
    assert r.nfe == nfe_to_zero and r.steps == STEPS
    assert len(infos) == STEPS and [i.step for i in infos] == list(range(STEPS))
    assert all(i.t.shape == (6,) and i.x0.shape == (6, 3) for i in infos)
    assert len(r.trajectory) == STEPS + 1
    torch.testing.assert_close(r.trajectory[-1], r.x, rtol=0, atol=0)
    torch.testing.assert_close(infos[-1].x, r.x, rtol=0, atol=0)
    grid = torch.linspace(0.9, 0.1, STEPS + 1, dtype=F64)  # custom grid ending above 0: no final x0 step
    r2 = _run(model, case, shape=(6, 3), dtype=F64, grid=grid, generator=torch.Generator().manual_seed(0))
    assert r2.nfe == nfe_custom


@pytest.mark.parametrize("case", list(SAMPLERS))
def test_sdedit_partial_noising(case):
    """t_start < 1 with like=: clean data are noised to t_start (exact marginal) and sampled back.

    Every sampler runs and starts at t_start; for the second-order ODE samplers (32 log-SNR steps) the output is
    again N(mu, s_eff^2), s_eff = std of x0_hat at the last grid time: 5 SE + the allowances of
    test_gaussian_moments at that step count (0.02 s mean; heun 0.06 s, dpm++2m 0.04 s std).
    """
    mu, s, n = 0.3, 0.7, 4000
    model = _gauss("vp-linear", mu, s)
    g = torch.Generator().manual_seed(5)
    data = mu + s * torch.randn(n, 2, generator=g, dtype=F64)
    r = _run(model, case, like=data, t_start=0.4, generator=g, steps=32, grid="log-snr")
    assert float(r.grid[0]) == pytest.approx(0.4) and torch.isfinite(r.x).all()
    if case in ("heun", "dpm++2m"):
        v = model.process.schedule(r.grid[-2:-1])
        s_eff = float(v.alpha * s**2 / torch.sqrt(v.alpha**2 * s**2 + v.sigma**2))
        allow_std = {"heun": 0.06, "dpm++2m": 0.04}[case]
        assert (r.x.mean(0) - mu).abs().max() <= 5 * s / math.sqrt(n) + 0.02 * s
        assert (r.x.std(0) - s_eff).abs().max() <= 5 * s_eff / math.sqrt(2 * n) + allow_std * s


def test_flow_from_alpha_zero():
    """Flow starts at t = 1 where alpha = 0: ODE samplers handle it (Heun's first step is a single predictor);
    reverse-SDE samplers start at alpha / sigma = 1e-3 (t = 0.999) by default."""
    model = _gauss("flow")
    for case in ("euler", "ddim", "dpm++2m", "ddpm", "heun"):
        r = _run(model, case, shape=(16, 2), dtype=F64, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(r.x).all(), case
    assert _run(model, "heun", shape=(4, 2), dtype=F64).nfe == 2 * STEPS - 2
    for case in ("euler-maruyama", "pc"):  # the reverse SDE is singular at alpha = 0: they start just below it
        r = _run(model, case, shape=(16, 2), dtype=F64, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(r.x).all() and float(r.grid[0]) == pytest.approx(0.999, abs=1e-6), case
        with pytest.raises(ValueError, match="t_start"):  # an explicit grid through t = 1 is refused
            _run(model, case, shape=(4, 2), dtype=F64, grid=torch.linspace(1.0, 0.0, STEPS + 1))


def test_ouve_structures_and_option_errors():
    model = _gauss("ouve")
    y = torch.randn(5, 3, dtype=F64)
    for case in SAMPLERS:
        r = _run(model, case, shape=(5, 3), dtype=F64, cond={"y": y}, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(r.x).all(), case
    with pytest.raises(ValueError, match="churn"):
        polydiff.sample(_gauss("vp-linear"), shape=(2, 2), sampler="heun", churn=-1.0)
    with pytest.raises(ValueError, match="corrector_steps"):
        polydiff.sample(_gauss("vp-linear"), shape=(2, 2), sampler="pc", corrector_steps=-1)
    with pytest.raises(ValueError, match="no option"):
        polydiff.sample(_gauss("vp-linear"), shape=(2, 2), sampler="dpm++2m", eta=1.0)


def test_log_snr_grid_from_alpha_zero() -> None:
    """Flow has alpha = 0 at t = 1 (log-SNR -inf): log-SNR spacings start there from alpha / sigma = 1e-2."""
    import math

    from polydiff import processes
    from polydiff.samplers import time_grid

    p = processes.get("flow")
    for kind in ("log-snr", "karras"):
        g = time_grid(p, 8, kind=kind, t_start=1.0)
        ref = time_grid(p, 8, kind=kind, t_start=1.0 / (1.0 + 1e-2))  # the time where alpha / sigma = 1e-2
        assert float(g[0]) == 1.0 and bool((g[1:] == ref[1:]).all()) and float(g[-1]) == 0.0
        assert math.isclose(float(ref[0]), 1.0 / (1.0 + 1e-2), rel_tol=1e-12)
    g = time_grid(processes.get("flow"), 8, kind="log-snr", t_start=0.999)
    assert bool(torch.isfinite(g).all()) and float(g[0]) == 0.999 and float(g[-1]) == 0.0


def test_log_snr_grid_for_a_product_with_one_shared_schedule() -> None:
    import pytest as _pytest

    from polydiff import processes
    from polydiff.samplers import time_grid

    shared = processes.get("product", components={"a": {"name": "vp-linear"}, "b": {"name": "vp-linear"}})
    single = time_grid(processes.get("vp-linear"), 12, kind="log-snr")
    assert torch.equal(time_grid(shared, 12, kind="log-snr"), single)
    mixed = processes.get("product", components={"a": {"name": "vp-linear"}, "b": {"name": "ve"}})
    with _pytest.raises(ValueError, match="different schedules"):
        time_grid(mixed, 12, kind="karras")
