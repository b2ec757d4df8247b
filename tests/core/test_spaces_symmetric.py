"""SymmetricMatrixSpace (GDSS adjacency): the public DataSpace contract, exact symmetry of the noise, zero diagonal
and padding, the free-coordinate count n (n - 1) / 2, and draws that do not depend on the padded size."""

from __future__ import annotations

import pytest
import torch

from polydiff.spaces import SymmetricMatrixSpace
from polydiff.testing import DataSpaceContract


def _mask(sizes: list[int], width: int) -> torch.Tensor:
    return torch.arange(width)[None, :] < torch.tensor(sizes)[:, None]


class TestSymmetricMatrixSpace(DataSpaceContract):
    def make_space_and_state(self):
        mask = _mask([4, 2, 5, 1], 5)
        x = torch.randn(4, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        return SymmetricMatrixSpace(mask), x


class TestSymmetricMatrixSpaceChannels(DataSpaceContract):
    def make_space_and_state(self):
        mask = _mask([3, 6], 6)
        x = torch.randn(2, 6, 6, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        return SymmetricMatrixSpace(mask), x


@pytest.mark.parametrize("per_sample", [False, True])
def test_noise_is_exactly_symmetric_with_zero_diagonal_and_padding(per_sample):
    sizes = [4, 2, 5, 1, 0]
    mask = _mask(sizes, 6)
    space = SymmetricMatrixSpace(mask)
    x = torch.zeros(5, 6, 6, dtype=torch.float64)
    gen = [torch.Generator().manual_seed(i) for i in range(5)] if per_sample else torch.Generator().manual_seed(0)
    n = space.randn_like(x, gen)
    assert torch.equal(n, n.transpose(1, 2))  # exact, not approximately
    assert torch.equal(torch.diagonal(n, dim1=1, dim2=2), torch.zeros(5, 6, dtype=torch.float64))
    pair = mask[:, :, None] & mask[:, None, :]
    assert bool((n[~pair] == 0).all())
    off = pair & ~torch.eye(6, dtype=torch.bool)
    assert bool((n[off] != 0).all())  # every real off-diagonal entry is drawn
    assert space.dof(x).tolist() == [n_ * (n_ - 1) / 2 for n_ in sizes]
    ones = torch.ones_like(x)
    assert space.count(ones).tolist() == space.dof(x).tolist()


def test_channels_count_and_mirror():
    space = SymmetricMatrixSpace(_mask([3, 4], 4))
    x = torch.zeros(2, 4, 4, 3, dtype=torch.float64)
    n = space.randn_like(x, torch.Generator().manual_seed(2))
    assert torch.equal(n, n.transpose(1, 2))
    assert space.dof(x).tolist() == [3 * 3.0, 6 * 3.0]


def test_per_sample_draw_does_not_depend_on_padding():
    gens = lambda: [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)]  # noqa: E731
    small = SymmetricMatrixSpace(_mask([3, 2], 3)).randn_like(torch.zeros(2, 3, 3, dtype=torch.float64), gens())
    wide = SymmetricMatrixSpace(_mask([3, 2], 7)).randn_like(torch.zeros(2, 7, 7, dtype=torch.float64), gens())
    assert torch.equal(wide[:, :3, :3], small)


def test_project_symmetrises_and_masks():
    mask = _mask([3, 2], 3)
    space = SymmetricMatrixSpace(mask)
    x = torch.arange(18, dtype=torch.float64).reshape(2, 3, 3)
    p = space.project(x)
    assert torch.equal(p, p.transpose(1, 2))
    assert p[0, 0, 1] == 0.5 * (x[0, 0, 1] + x[0, 1, 0])
    assert p[1, 0, 2] == 0 and p[1, 2, 2] == 0 and p[0, 1, 1] == 0
    # the sum counts each free coordinate once
    assert space.sum(p).tolist() == [float(p[0, 0, 1] + p[0, 0, 2] + p[0, 1, 2]), float(p[1, 0, 1])]


def test_rejects_bad_mask_and_shape():
    with pytest.raises(ValueError, match="mask"):
        SymmetricMatrixSpace(torch.ones(2, 3))
    with pytest.raises(ValueError, match="does not match"):
        SymmetricMatrixSpace(_mask([2], 3)).sum(torch.zeros(1, 3, 4))
