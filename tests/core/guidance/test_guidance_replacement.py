"""Replacement (inpainting): forward-noised known values after each step, exact values at t = 0."""

from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff.guidance import Replacement
from polydiff.processes import MaskedProcess, ProductProcess, gaussian
from polydiff.samplers import SamplerContext
from polydiff.spaces import CompositeSpace, DenseSpace
from polydiff.state import StateDict
from polydiff.testing.oracles import GaussianOracleNet


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_replaced_entries_follow_q_xt_given_known():
    """At t the known entries are alpha_t x_known + sigma_t eps: check mean and variance (5 standard errors)."""
    process = gaussian("vp-cosine")
    n = 4000
    known = torch.tensor([1.5, -2.0, 0.0], dtype=torch.float64).expand(n, 3)
    mask = torch.tensor([True, True, False])
    x = torch.full((n, 3), 7.0, dtype=torch.float64)
    t = torch.full((n,), 0.4, dtype=torch.float64)
    ctx = SamplerContext(process=process, space=DenseSpace(), batch_size=n, generator=_gen(0))
    out = Replacement(known, mask).correct(x, t, ctx)
    v = process.schedule(t[:1])
    a, s = float(v.alpha), float(v.sigma)
    assert torch.equal(out[:, 2], x[:, 2])
    obs = out[:, :2]
    assert bool(((obs.mean(0) - a * known[0, :2]).abs() <= 5 * s / math.sqrt(n)).all())
    assert bool(((obs.var(0) - s * s).abs() <= 5 * s * s * math.sqrt(2 / (n - 1))).all())
    at_zero = Replacement(known, mask).correct(x, torch.zeros(n, dtype=torch.float64), ctx)
    assert torch.equal(at_zero[:, :2], known[:, :2])


def test_final_sample_equals_known_and_is_batch_independent():
    process = gaussian("vp-cosine")
    model = polydiff.Denoiser(GaussianOracleNet(process, 0.0, 1.0), process, prediction="x0")
    known = torch.randn(3, 2, 5, generator=_gen(1), dtype=torch.float64)
    mask = torch.rand(3, 2, 5, generator=_gen(2)) < 0.5  # a different mask per sample
    rep = Replacement(known, mask)
    out = polydiff.sample(model, shape=(3, 2, 5), dtype=torch.float64, sampler="ddim", eta=1.0, steps=10, guidance=[rep], generator=[_gen(10 + i) for i in range(3)]).x
    assert torch.equal(out[mask], known[mask])
    one = polydiff.sample(model, shape=(1, 2, 5), dtype=torch.float64, sampler="ddim", eta=1.0, steps=10, guidance=[Replacement(known[1:2], mask[1:2])], generator=[_gen(11)]).x
    torch.testing.assert_close(one, out[1:2], rtol=0, atol=1e-12)


def test_replacement_on_a_product_state_with_tokens():
    gp = gaussian("vp-cosine")
    process = ProductProcess({"pos": gp, "tok": MaskedProcess(4)})
    space = CompositeSpace({"pos": DenseSpace(), "tok": DenseSpace()})
    known = StateDict({"pos": torch.ones(2, 3, dtype=torch.float64), "tok": torch.tensor([[0, 1, 2], [3, 2, 1]])})
    mask = {"pos": torch.tensor([True, False, False]), "tok": torch.tensor([[True, False, True], [False, False, True]])}
    x = StateDict({"pos": torch.zeros(2, 3, dtype=torch.float64), "tok": torch.full((2, 3), 4)})
    ctx = SamplerContext(process=process, space=space, batch_size=2, generator=_gen(3))
    mid = Replacement(known, mask).correct(x, torch.full((2,), 0.5, dtype=torch.float64), ctx)
    assert mid["tok"].tolist() == [[0, 4, 2], [4, 4, 1]]  # clean tokens at every t
    assert torch.equal(mid["pos"][:, 1:], x["pos"][:, 1:]) and not torch.equal(mid["pos"][:, 0], x["pos"][:, 0])
    end = Replacement(known, mask).correct(x, torch.zeros(2, dtype=torch.float64), ctx)
    assert torch.equal(end["pos"][:, 0], known["pos"][:, 0])


def test_replacement_through_sampling_on_a_composite_gaussian_state():
    process = gaussian("vp-cosine")
    oracle = GaussianOracleNet(process, 0.0, 1.0)

    class Net(torch.nn.Module):
        def forward(self, x_t, t):
            return StateDict({k: oracle(v, t) for k, v in x_t.items()})

    model = polydiff.Denoiser(Net(), process, prediction="x0")
    like = StateDict({"a": torch.zeros(4, 3, dtype=torch.float64), "b": torch.zeros(4, 2, dtype=torch.float64)})
    known = StateDict({"a": torch.randn(4, 3, generator=_gen(4), dtype=torch.float64), "b": torch.randn(4, 2, generator=_gen(5), dtype=torch.float64)})
    mask = {"b": torch.tensor([True, False])}
    out = polydiff.sample(model, like=like, sampler="ddim", eta=1.0, steps=8, guidance=[Replacement(known, mask)], generator=_gen(6)).x
    assert torch.equal(out["b"][:, 0], known["b"][:, 0])
    assert not torch.equal(out["a"], known["a"])


def test_replacement_validation():
    with pytest.raises(ValueError, match="known values as a mapping"):
        Replacement(torch.zeros(2, 3), {"a": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="known lacks"):
        Replacement({"a": torch.zeros(2, 3)}, {"b": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="0 and 1"):
        Replacement(torch.zeros(2, 3), torch.full((3,), 2.0))


@pytest.mark.parametrize("product", [False, True])
def test_known_tokens_survive_discrete_sampling(product):
    class Net(torch.nn.Module):
        def forward(self, x_t, t):
            if isinstance(x_t, dict):
                return {"pos": torch.zeros_like(x_t["pos"]), "tok": torch.zeros(*x_t["tok"].shape, 4, dtype=torch.float64)}
            return torch.zeros(*x_t.shape, 4, dtype=torch.float64)

    known_tok = torch.tensor([[0, 1, 2, 3, 0]] * 3)
    tok_mask = torch.tensor([True, False, True, False, True])
    if product:
        process = ProductProcess({"pos": gaussian("vp-cosine"), "tok": MaskedProcess(4)})
        model = polydiff.Denoiser(Net(), process, prediction={"pos": "x0", "tok": "x0_logits"})
        like = StateDict({"pos": torch.zeros(3, 2, dtype=torch.float64), "tok": torch.zeros(3, 5, dtype=torch.int64)})
        known = StateDict({"pos": torch.ones(3, 2, dtype=torch.float64), "tok": known_tok})
        rep = Replacement(known, {"pos": torch.tensor([True, False]), "tok": tok_mask})
    else:
        model = polydiff.Denoiser(Net(), MaskedProcess(4), prediction="x0_logits")
        like, rep = torch.zeros(3, 5, dtype=torch.int64), Replacement(known_tok, tok_mask)
    sampler = polydiff.samplers.names(model.process)[0]
    out = polydiff.sample(model, like=like, sampler=sampler, steps=6, guidance=[rep], generator=_gen(8)).x
    tok = out["tok"] if product else out
    assert torch.equal(tok[:, tok_mask], known_tok[:, tok_mask])
    if product:
        assert torch.equal(out["pos"][:, 0], torch.ones(3, dtype=torch.float64))
