"""Data spaces: expansion, reductions, degrees of freedom and noise for every kind of batch."""

from __future__ import annotations

import math

import pytest
import torch

from polydiff.spaces import CompositeSpace, DenseSpace, MaskedSpace, RaggedSpace, ZeroCoMSpace, infer_space, split_generator

SEG = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
SIZES = torch.tensor([3, 2, 4], dtype=torch.float64)
MASK = torch.tensor([[True, True, False], [True, False, False], [True, True, True]])


@pytest.mark.parametrize("shape", [(4,), (4, 3), (4, 2, 5), (4, 2, 3, 3)])
def test_dense_any_rank(shape):
    space = DenseSpace()
    x = torch.randn(*shape, dtype=torch.float64)
    s = torch.arange(1.0, 5.0, dtype=torch.float64)
    e = space.expand(s, x)
    assert e.shape == (4,) + (1,) * (len(shape) - 1)
    torch.testing.assert_close(space.sum(e * x), s * x.reshape(4, -1).sum(1))
    per = math.prod(shape[1:])
    torch.testing.assert_close(space.dof(x), torch.full((4,), float(per), dtype=torch.float64))
    torch.testing.assert_close(space.mean(x), x.reshape(4, -1).mean(1))
    with pytest.raises(ValueError, match="shape"):
        space.expand(torch.ones(3), x)


def test_masked_space_counts_real_entries_and_zeroes_padding():
    space = MaskedSpace(MASK)
    x = torch.randn(3, 3, 2, dtype=torch.float64)
    torch.testing.assert_close(space.dof(x), torch.tensor([4.0, 2.0, 6.0], dtype=torch.float64))
    n = space.randn_like(x, torch.Generator().manual_seed(0))
    assert bool((n[~MASK] == 0).all()) and bool((n[MASK] != 0).all())
    torch.testing.assert_close(space.sum(x), (x * MASK[..., None]).reshape(3, -1).sum(1))
    with pytest.raises(ValueError, match="mask"):
        MaskedSpace(MASK.float())
    with pytest.raises(ValueError, match="does not match"):
        space.sum(torch.zeros(3, 4))


def test_ragged_space_segments():
    space = RaggedSpace(SEG)
    x = torch.randn(9, 3, dtype=torch.float64)
    assert space.batch_size(x) == 3
    torch.testing.assert_close(space.sizes.to(torch.float64), SIZES)
    torch.testing.assert_close(space.dof(x), 3 * SIZES)
    s = torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)
    torch.testing.assert_close(space.expand(s, x)[:, 0], s[SEG])
    expected = torch.stack([x[SEG == b].sum() for b in range(3)])
    torch.testing.assert_close(space.sum(x), expected)
    with pytest.raises(ValueError, match="rows"):
        space.sum(torch.zeros(8, 3))
    with pytest.raises(ValueError, match="num_segments"):
        RaggedSpace(SEG, num_segments=2)


@pytest.mark.parametrize("d", [2, 3])
def test_zero_com_dof_and_centred_noise(d):
    space = ZeroCoMSpace(SEG)
    x = torch.randn(9, d, dtype=torch.float64)
    torch.testing.assert_close(space.dof(x), d * (SIZES - 1))
    n = space.randn_like(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(space.centre_of_mass(n), torch.zeros(3, d, dtype=torch.float64), rtol=0, atol=1e-14)
    # noise energy per sample is chi-square with d (n - 1) dof: mean of M draws within 5 s.e. sqrt(2 dof / M)
    m = 400
    gen = torch.Generator().manual_seed(1)
    energy = sum(space.sum(space.randn_like(x, gen) ** 2) for _ in range(m)) / m
    dof = d * (SIZES - 1)
    assert bool(((energy - dof).abs() <= 5 * torch.sqrt(2 * dof / m)).all()), energy
    # and it is not the ambient d * n (the difference d is > 5 s.e. for these sizes)
    assert bool(((energy - d * SIZES).abs() > 5 * torch.sqrt(2 * dof / m)).all())


def test_zero_com_projection_is_translation_invariant():
    space = ZeroCoMSpace(SEG)
    x = torch.randn(9, 3, dtype=torch.float64)
    shift = torch.randn(3, 3, dtype=torch.float64)[SEG]
    torch.testing.assert_close(space.project(x + shift), space.project(x))


def test_composite_space_adds_components():
    space = CompositeSpace({"pos": ZeroCoMSpace(SEG), "h": MaskedSpace(MASK), "y": DenseSpace()})
    x = {"pos": torch.randn(9, 3, dtype=torch.float64), "h": torch.randn(3, 3, dtype=torch.float64), "y": torch.randn(3, 2, dtype=torch.float64)}
    assert space.batch_size(x) == 3
    torch.testing.assert_close(space.dof(x), 3 * (SIZES - 1) + MASK.sum(1).double() + 2)
    torch.testing.assert_close(space.sum(x), space["pos"].sum(x["pos"]) + space["h"].sum(x["h"]) + space["y"].sum(x["y"]))
    e = space.expand(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), x)
    assert set(e) == {"pos", "h", "y"}
    with pytest.raises(ValueError, match="components"):
        space.sum({"pos": x["pos"]})
    with pytest.raises(ValueError, match="batch size"):
        space.batch_size({**x, "y": torch.zeros(4, 2)})


def test_infer_space_and_generators():
    assert isinstance(infer_space(torch.zeros(2, 3)), DenseSpace)
    comp = infer_space({"a": torch.zeros(2), "b": torch.zeros(2, 3)})
    assert isinstance(comp, CompositeSpace) and set(comp.spaces) == {"a", "b"}
    with pytest.raises(TypeError):
        infer_space([1, 2])
    with pytest.raises(ValueError, match="one per sample"):
        split_generator([torch.Generator()], 2)


def test_per_sample_generators_match_single_sample_draws():
    """Sample b's noise with its own generator equals a batch-of-one draw with that generator."""
    space = DenseSpace()
    x = torch.zeros(3, 4, dtype=torch.float64)
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    batch = space.randn_like(x, gens)
    alone = space.randn_like(x[1:2], [torch.Generator().manual_seed(1)])
    torch.testing.assert_close(batch[1:2], alone, rtol=0, atol=0)
    ragged = RaggedSpace(SEG)
    rb = ragged.randn_like(torch.zeros(9, 2), [torch.Generator().manual_seed(i) for i in range(3)])
    r1 = RaggedSpace(torch.zeros(2, dtype=torch.long)).randn_like(torch.zeros(2, 2), [torch.Generator().manual_seed(1)])
    torch.testing.assert_close(rb[SEG == 1], r1, rtol=0, atol=0)
