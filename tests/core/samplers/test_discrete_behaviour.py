"""Discrete samplers: per-sample generators, padding, state corrections (infilling), the confidence heuristic."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from polydiff.denoiser import Denoiser
from polydiff.processes import MaskedProcess, UniformProcess
from polydiff.samplers import names, sample
from polydiff.spaces import MaskedSpace

V = 4
MASKED_SAMPLERS = ["ancestral", "cached", "tau-leaping", "confidence", "mixed-ancestral"]


class IndependentNet(nn.Module):
    """Context-free logits ``(B, L, V)`` from a fixed table ``(L_max, V)`` (a time-independent toy network)."""

    time_independent = True

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", logits.to(torch.float64))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        return self.table[: x_t.shape[1]].expand(x_t.shape[0], -1, -1)


def _model(process, length: int = 8, seed: int = 0) -> Denoiser:
    g = torch.Generator().manual_seed(seed)
    return Denoiser(IndependentNet(2.0 * torch.randn(length, V, generator=g, dtype=torch.float64)), process, "x0_logits")


class FixTokens:
    """Replacement correction for infilling: positions ``where`` always hold ``values``."""

    def __init__(self, where: torch.Tensor, values: torch.Tensor) -> None:
        self.where, self.values = where, values

    def correct(self, x, t, ctx):
        return torch.where(self.where, self.values, x)


def test_registered_for_discrete_processes():
    got = names(MaskedProcess(V))
    for n in ["ancestral", "cached", "tau-leaping", "confidence", "mixed-ancestral"]:
        assert n in got


@pytest.mark.parametrize("sampler", MASKED_SAMPLERS)
def test_per_sample_generators_make_samples_batch_independent(sampler):
    model = _model(MaskedProcess(V))
    gens = lambda: [torch.Generator().manual_seed(10 + i) for i in range(3)]  # noqa: E731
    batch = sample(model, shape=(3, 8), sampler=sampler, steps=6, generator=gens()).x
    for i in range(3):
        alone = sample(model, shape=(1, 8), sampler=sampler, steps=6, generator=[gens()[i]]).x
        assert torch.equal(alone[0], batch[i])


@pytest.mark.parametrize("sampler", ["ancestral", "tau-leaping", "mixed-ancestral"])
def test_uniform_per_sample_generators(sampler):
    model = _model(UniformProcess(V))
    gens = lambda: [torch.Generator().manual_seed(20 + i) for i in range(3)]  # noqa: E731
    batch = sample(model, shape=(3, 8), sampler=sampler, steps=5, generator=gens()).x
    for i in range(3):
        assert torch.equal(sample(model, shape=(1, 8), sampler=sampler, steps=5, generator=[gens()[i]]).x[0], batch[i])


@pytest.mark.parametrize("sampler", MASKED_SAMPLERS)
def test_masked_padding_untouched_and_no_mask_left(sampler):
    model = _model(MaskedProcess(V))
    lengths = torch.tensor([8, 5, 2])
    valid = torch.arange(8).unsqueeze(0) < lengths.unsqueeze(1)
    r = sample(model, shape=(3, 8), sampler=sampler, steps=7, space=MaskedSpace(valid), generator=torch.Generator().manual_seed(0))
    assert bool((r.x[valid] != V).all())  # every real position is revealed
    assert bool((r.x[~valid] == V).all())  # padding keeps its initial (mask) value


@pytest.mark.parametrize("sampler", ["ancestral", "tau-leaping"])
def test_uniform_padding_untouched(sampler):
    model = _model(UniformProcess(V))
    valid = torch.arange(8).unsqueeze(0) < torch.tensor([8, 3]).unsqueeze(1)
    x_start = torch.randint(0, V, (2, 8), generator=torch.Generator().manual_seed(1))
    r = sample(model, x_start=x_start, sampler=sampler, steps=5, space=MaskedSpace(valid), generator=torch.Generator().manual_seed(2))
    assert torch.equal(r.x[~valid], x_start[~valid])


@pytest.mark.parametrize("sampler", MASKED_SAMPLERS)
def test_replacement_correction_keeps_fixed_positions(sampler):
    model = _model(MaskedProcess(V))
    where = torch.zeros(2, 8, dtype=torch.bool)
    where[:, :3] = True  # a known prefix
    values = torch.tensor([[3, 2, 1] + [0] * 5, [0, 0, 3] + [0] * 5])
    seen = []

    def check(info):
        seen.append(bool((info.x[where] == values[where]).all()))

    r = sample(model, shape=(2, 8), sampler=sampler, steps=5, guidance=FixTokens(where, values), callback=check,
               generator=torch.Generator().manual_seed(3))
    assert len(seen) == 5 and all(seen)
    assert torch.equal(r.x[where], values[where]) and bool((r.x != V).all())


def test_confidence_unmasks_on_schedule():
    process = MaskedProcess(V)
    model = _model(process, length=10)
    steps, length = 4, 10
    counts = []
    sample(model, shape=(2, length), sampler="confidence", steps=steps, callback=lambda i: counts.append(int((i.x[0] == V).sum())),
           generator=torch.Generator().manual_seed(4))
    # remaining masks after the step to s: floor(M_0 (1 - alpha_s) / (1 - alpha_1)) with M_0 = L
    a1 = 1.0 - (1.0 - process.eps)
    expected = [math.floor(length * (1.0 - (1.0 - (1.0 - process.eps) * s)) / (1.0 - a1) + 1e-9) for s in (0.75, 0.5, 0.25)] + [0]
    assert counts == expected


def test_confidence_greedy_is_the_argmax_for_a_context_free_model():
    model = _model(MaskedProcess(V), length=8)
    r = sample(model, shape=(3, 8), sampler="confidence", steps=3, greedy=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(r.x, model.net.table.argmax(-1).expand(3, -1))


def test_cached_and_confidence_are_masked_only():
    model = _model(UniformProcess(V))
    listed = names(model.process)
    assert "ancestral" in listed and "tau-leaping" in listed
    for s in ("cached", "confidence"):
        assert s not in listed
        with pytest.raises(ValueError, match="does not support"):
            sample(model, shape=(1, 8), sampler=s, steps=2)


def test_confidence_on_a_ragged_batch_counts_per_sample():
    from polydiff.spaces import RaggedSpace

    seg = torch.tensor([0] * 6 + [1] * 3)
    table = 2.0 * torch.randn(9, V, generator=torch.Generator().manual_seed(6), dtype=torch.float64)

    class RowNet(nn.Module):
        def forward(self, x_t, t, **cond):
            return table

    model = Denoiser(RowNet(), MaskedProcess(V), "x0_logits")
    counts = []
    sample(model, shape=(9,), sampler="confidence", steps=3, space=RaggedSpace(seg), generator=torch.Generator().manual_seed(7),
           callback=lambda i: counts.append([int((i.x[seg == b] == V).sum()) for b in range(2)]))
    # per sample: floor(n_b * (1 - alpha_s) / (1 - alpha_1)) masks remain after the step to s = 2/3, 1/3, 0
    assert counts == [[math.floor(6 * f + 1e-9), math.floor(3 * f + 1e-9)] for f in (2 / 3, 1 / 3)] + [[0, 0]]


def test_cached_can_require_a_time_independent_network():
    model = _model(MaskedProcess(V))
    r = sample(model, shape=(1, 8), sampler="cached", steps=4, require_time_independent=True)
    assert bool((r.x != V).all())
    model.net.time_independent = False
    with pytest.raises(ValueError, match="time_independent"):
        sample(model, shape=(1, 8), sampler="cached", steps=4, require_time_independent=True)
