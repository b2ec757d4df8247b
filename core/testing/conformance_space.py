"""Conformance tests for :class:`~polydiff.spaces.DataSpace` implementations.

Subclass :class:`DataSpaceContract` in a module named ``test_*.py`` as ``class TestMySpace(...)``
and implement :meth:`~DataSpaceContract.make_space_and_state`; pytest then runs every check.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ..spaces import DataSpace
from ..state import tree_leaves, tree_map
from ..types import State


def per_sample_differs(space: DataSpace, a: State, b: State) -> Tensor:
    """Bool ``(B,)``: whether any (valid) element of sample ``i`` differs between ``a`` and ``b``."""
    diff = tree_map(lambda u, v: (u != v).to(torch.float64), a, b)
    return space.sum(diff) > 0


def assert_same_structure(a: State, b: State, *, what: str = "state") -> None:
    """Same keys (composite states) and, leaf by leaf, the same shape and dtype."""
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        ka = sorted(a) if isinstance(a, Mapping) else None
        kb = sorted(b) if isinstance(b, Mapping) else None
        if ka != kb:
            raise AssertionError(f"{what}: components {ka} != {kb}")
        for k in a:
            assert_same_structure(a[k], b[k], what=f"{what}[{k!r}]")
        return
    if tuple(a.shape) != tuple(b.shape):
        raise AssertionError(f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise AssertionError(f"{what}: dtype {a.dtype} != {b.dtype}")


def per_sample_generators(batch_size: int, seed: int = 0) -> list[torch.Generator]:
    """One CPU generator per sample, seeded ``seed, seed + 1, ...``."""
    return [torch.Generator().manual_seed(seed + i) for i in range(batch_size)]


class DataSpaceContract:
    """Checks every :class:`DataSpace` must pass.

    Subclasses implement :meth:`make_space_and_state`, returning ``(space, x)`` where ``x`` is a
    floating-point state (float64 recommended) with at least two samples.
    """

    #: number of noise draws for the moment check (``E[sum n^2] = dof``)
    n_moment_draws: int = 200

    def make_space_and_state(self) -> tuple[DataSpace, State]:
        raise NotImplementedError("DataSpaceContract subclasses implement make_space_and_state() -> (space, state)")

    # -- helpers ----------------------------------------------------------------------------------
    def _setup(self) -> tuple[DataSpace, State, int]:
        space, x = self.make_space_and_state()
        b = space.batch_size(x)
        assert b >= 2, "make_space_and_state() should return at least two samples"
        return space, x, b

    # -- checks -----------------------------------------------------------------------------------
    def test_batch_size_and_reduction_shapes(self) -> None:
        space, x, b = self._setup()
        for name in ("sum", "dof", "count", "mean"):
            out = getattr(space, name)(x)
            assert tuple(out.shape) == (b,), f"space.{name}(x) has shape {tuple(out.shape)}, expected ({b},)"
        dof, count = space.dof(x).to(torch.float64), space.count(x).to(torch.float64)
        assert bool((dof >= 0).all()) and bool((dof <= count).all()), f"need 0 <= dof <= count, got {dof} / {count}"

    def test_expand_broadcasts_per_sample(self) -> None:
        space, x, b = self._setup()
        s = torch.arange(1, b + 1, dtype=torch.float64)
        ones = tree_map(lambda a: torch.ones_like(a, dtype=torch.float64), x)
        scaled = space.expand(s, ones) * ones
        assert_same_structure(scaled, ones, what="expand(s, x) * x")
        torch.testing.assert_close(space.sum(scaled).to(torch.float64), s * space.count(ones).to(torch.float64))

    def test_expand_rejects_wrong_shape(self) -> None:
        space, x, b = self._setup()
        try:
            space.expand(torch.ones(b + 1, dtype=torch.float64), x)
        except ValueError:
            return
        raise AssertionError("expand() with a (B + 1,) scalar must raise ValueError")

    def test_project_idempotent(self) -> None:
        space, x, _ = self._setup()
        once = space.project(x)
        assert_same_structure(once, x, what="project(x)")
        for a, c in zip(tree_leaves(once), tree_leaves(space.project(once))):
            torch.testing.assert_close(a, c)

    def test_randn_like_is_projected(self) -> None:
        space, x, _ = self._setup()
        n = space.randn_like(x, torch.Generator().manual_seed(0))
        assert_same_structure(n, x, what="randn_like(x)")
        for a, c in zip(tree_leaves(n), tree_leaves(space.project(n))):
            torch.testing.assert_close(a, c)

    def test_rand_like_range(self) -> None:
        space, x, _ = self._setup()
        u = space.rand_like(x, torch.Generator().manual_seed(0))
        for leaf, ref in zip(tree_leaves(u), tree_leaves(x)):
            assert tuple(leaf.shape) == tuple(ref.shape)
            assert bool(((leaf >= 0) & (leaf < 1)).all()), "rand_like must lie in [0, 1)"

    def test_generator_reproducible(self) -> None:
        space, x, _ = self._setup()
        a = space.randn_like(x, torch.Generator().manual_seed(7))
        c = space.randn_like(x, torch.Generator().manual_seed(7))
        for u, v in zip(tree_leaves(a), tree_leaves(c)):
            torch.testing.assert_close(u, v, rtol=0, atol=0)

    def test_per_sample_generators_are_batch_independent(self) -> None:
        space, x, b = self._setup()
        first = space.randn_like(x, per_sample_generators(b))
        again = space.randn_like(x, per_sample_generators(b))
        assert not bool(per_sample_differs(space, first, again).any()), "same per-sample seeds must give the same noise"
        gens = per_sample_generators(b)
        gens[0] = torch.Generator().manual_seed(10_000)
        changed = per_sample_differs(space, first, space.randn_like(x, gens))
        expected = torch.zeros(b, dtype=torch.bool)
        expected[0] = bool(space.dof(x)[0] > 0)
        assert torch.equal(changed.cpu(), expected), f"changing sample 0's generator changed samples {changed.tolist()}"

    def test_noise_energy_matches_dof(self) -> None:
        """``E[space.sum(n * n)] = dof``; the sum is chi-square(dof), so the mean of M draws has s.e. sqrt(2 dof / M)."""
        space, x, _ = self._setup()
        gen = torch.Generator().manual_seed(1)
        m = self.n_moment_draws
        total = sum(space.sum(tree_map(lambda a: a.to(torch.float64) ** 2, space.randn_like(x, gen))) for _ in range(m)) / m
        dof = space.dof(x).to(torch.float64)
        tol = 5 * torch.sqrt(2 * dof / m) + 1e-12
        assert bool(((total - dof).abs() <= tol).all()), f"mean noise energy {total.tolist()} vs dof {dof.tolist()}"


__all__ = ["DataSpaceContract", "assert_same_structure", "per_sample_differs", "per_sample_generators"]
