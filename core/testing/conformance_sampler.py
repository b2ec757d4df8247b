"""Conformance tests for samplers and guidance.

Subclass :class:`SamplerContract` (set :attr:`~SamplerContract.sampler_name`, implement
:meth:`~SamplerContract.make_model` and :meth:`~SamplerContract.make_like`) or
:class:`GuidanceContract` (implement ``make_guidance``, ``make_model`` and ``make_like``).
The model must treat samples independently (no batch statistics) for the batch-independence check.
"""

from __future__ import annotations

from typing import Any

import torch

from ..guidance import guided, split_guidance
from ..samplers import StepInfo, names, sample
from ..spaces import DataSpace, infer_space
from ..state import as_state, tree_leaves
from ..types import Cond, State
from .conformance_space import assert_same_structure, per_sample_differs, per_sample_generators


def _finite(x: State) -> bool:
    return all(bool(torch.isfinite(leaf).all()) for leaf in tree_leaves(x) if leaf.is_floating_point())


class _SamplingBase:
    #: sampler steps used by the checks
    steps: int = 4

    def make_model(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} implements make_model() -> a Denoiser")

    def make_like(self) -> State:
        """A template state (structure, dtype) with at least two samples."""
        raise NotImplementedError(f"{type(self).__name__} implements make_like() -> a template state")

    def make_space(self, like: State) -> DataSpace | None:
        return None

    def make_cond(self, like: State) -> Cond | None:
        return None

    def sample_options(self) -> dict[str, Any]:
        """Extra keyword options passed to :func:`polydiff.sample` (e.g. ``eta``)."""
        return {}

    def _kw(self, like: State) -> dict[str, Any]:
        return {"like": like, "steps": self.steps, "space": self.make_space(like), "cond": self.make_cond(like), **self.sample_options()}


class SamplerContract(_SamplingBase):
    """Checks every registered sampler must pass for a model of a process it supports."""

    sampler_name: str = ""

    def _run(self, **extra: Any):
        model, like = self.make_model(), as_state(self.make_like())
        kw = {**self._kw(like), **extra}
        return model, like, sample(model, sampler=self.sampler_name, **kw)

    def test_supports_model_process(self) -> None:
        model = self.make_model()
        assert self.sampler_name in names(model.process), f"{self.sampler_name!r} is not listed for {model.process.name!r}"

    def test_default_grid_is_a_grid_kind(self) -> None:
        """``polydiff.sample(..., grid=None)`` uses the sampler's default kind for the process: it must be a known one."""
        from ..samplers import GRID_KINDS, get_sampler

        model = self.make_model()
        kind = get_sampler(self.sampler_name).grid_for(model.process)
        assert kind in GRID_KINDS, f"{self.sampler_name!r}: default grid {kind!r} for {model.process.name!r} is not one of {GRID_KINDS}"

    def test_shapes_and_nfe(self) -> None:
        _, like, res = self._run(generator=torch.Generator().manual_seed(0))
        assert_same_structure(res.x, like, what=f"{self.sampler_name} sample")
        assert _finite(res.x), "samples must be finite"
        assert res.nfe > 0, "a sampler must evaluate the network"
        assert res.steps == self.steps and res.grid is not None and len(res.grid) == self.steps + 1

    def test_deterministic_with_fixed_generator(self) -> None:
        _, like, a = self._run(generator=torch.Generator().manual_seed(3))
        _, _, b = self._run(generator=torch.Generator().manual_seed(3))
        for u, v in zip(tree_leaves(a.x), tree_leaves(b.x)):
            torch.testing.assert_close(u, v, rtol=0, atol=0)

    def test_per_sample_generators_batch_independent(self) -> None:
        like = as_state(self.make_like())
        space = self.make_space(like) or infer_space(like)
        b = space.batch_size(like)
        _, _, first = self._run(generator=per_sample_generators(b))
        _, _, again = self._run(generator=per_sample_generators(b))
        assert not bool(per_sample_differs(space, first.x, again.x).any()), "same per-sample seeds must give the same samples"
        gens = per_sample_generators(b)
        gens[0] = torch.Generator().manual_seed(10_000)
        _, _, other = self._run(generator=gens)
        changed = per_sample_differs(space, first.x, other.x)
        assert not bool(changed[1:].any()), f"changing sample 0's generator changed samples {changed.tolist()}"

    def test_callback_and_trajectory(self) -> None:
        seen: list[StepInfo] = []
        _, like, res = self._run(generator=torch.Generator().manual_seed(0), callback=seen.append, return_trajectory=True)
        assert len(seen) == res.steps, f"callback called {len(seen)} times for {res.steps} steps"
        assert [s.step for s in seen] == list(range(res.steps))
        assert res.trajectory is not None and len(res.trajectory) == res.steps + 1
        for state in res.trajectory:
            assert_same_structure(state, like, what="trajectory entry")

    def test_partial_start(self) -> None:
        """``t_start < 1`` (SDEdit-style): the grid starts there and shapes are preserved."""
        _, like, res = self._run(generator=torch.Generator().manual_seed(0), t_start=0.5)
        assert res.grid is not None and abs(float(res.grid[0]) - 0.5) < 1e-12
        assert_same_structure(res.x, like, what="sample from t_start=0.5")
        assert _finite(res.x)


class GuidanceContract(_SamplingBase):
    """Checks for a guidance object (a model wrapper, a state correction, or both)."""

    #: the sampler used; default: the first that supports the model's process
    sampler_name: str | None = None

    def make_guidance(self) -> Any:
        raise NotImplementedError("GuidanceContract subclasses implement make_guidance()")

    def _sampler(self, model: Any) -> str:
        if self.sampler_name:
            return self.sampler_name
        available = names(model.process)
        assert available, f"no sampler supports {model.process.name!r}"
        return "euler" if "euler" in available else available[0]

    def test_has_wrap_or_correct(self) -> None:
        wrappers, corrections = split_guidance(self.make_guidance())
        assert wrappers or corrections

    def test_wrapped_model_keeps_process(self) -> None:
        model, g = self.make_model(), self.make_guidance()
        wrapped = guided(model, *split_guidance(g)[0])
        assert wrapped.process is model.process
        assert callable(getattr(wrapped, "denoise", None))

    def test_guided_sampling_preserves_shapes(self) -> None:
        model, like = self.make_model(), as_state(self.make_like())
        res = sample(model, sampler=self._sampler(model), guidance=self.make_guidance(), generator=torch.Generator().manual_seed(0),
                     **self._kw(like))
        assert_same_structure(res.x, like, what="guided sample")
        assert _finite(res.x) and res.nfe > 0

    def test_guided_sampling_deterministic(self) -> None:
        model, like = self.make_model(), as_state(self.make_like())
        runs = [
            sample(model, sampler=self._sampler(model), guidance=self.make_guidance(), generator=torch.Generator().manual_seed(1),
                   **self._kw(like)).x
            for _ in range(2)
        ]
        for u, v in zip(tree_leaves(runs[0]), tree_leaves(runs[1])):
            torch.testing.assert_close(u, v, rtol=0, atol=0)


__all__ = ["GuidanceContract", "SamplerContract"]
