"""Conformance tests for :class:`~polydiff.processes.ForwardProcess` implementations.

Subclass :class:`ProcessContract` as ``class TestMyProcess(ProcessContract)`` and implement
:meth:`~ProcessContract.make_process` and :meth:`~ProcessContract.make_state`; override
:meth:`~ProcessContract.make_space` / :meth:`~ProcessContract.make_cond` when the state needs a
non-default space or conditioning (mean-reverting processes need their signal).
"""

from __future__ import annotations

from collections.abc import Mapping
import torch
from torch import Tensor

from ..processes import DiscreteProcess, ForwardProcess, GaussianProcess, ProductProcess
from ..spaces import CompositeSpace, DataSpace, infer_space
from ..state import tree_leaves
from ..types import Cond, State
from .conformance_space import assert_same_structure, per_sample_differs, per_sample_generators


def _leaf_processes(process: ForwardProcess, x: State, space: DataSpace) -> list[tuple[ForwardProcess, Tensor, DataSpace]]:
    """``(process, state, space)`` for every non-product component (the process itself otherwise)."""
    if isinstance(process, ProductProcess):
        assert isinstance(space, CompositeSpace) and isinstance(x, Mapping)
        out = []
        for k, p in process.components.items():
            out.extend(_leaf_processes(p, x[k], space[k]))
        return out
    return [(process, x, space)]


class ProcessContract:
    """Checks every forward process must pass (Gaussian, discrete, product and plugin ones)."""

    #: tolerance of the log-SNR round trip ``t(lambda(t)) = t`` in float64
    log_snr_atol: float = 1e-8

    def make_process(self) -> ForwardProcess:
        raise NotImplementedError("ProcessContract subclasses implement make_process()")

    def make_state(self) -> State:
        """Clean data ``x_0`` with at least two samples (float64 for Gaussian, int64 tokens for discrete)."""
        raise NotImplementedError("ProcessContract subclasses implement make_state()")

    def make_space(self, x_0: State) -> DataSpace | None:
        """The data space of ``x_0`` (default: inferred)."""
        return None

    def make_cond(self, x_0: State) -> Cond | None:
        """Conditioning the process needs (default: none)."""
        return None

    # -- helpers ----------------------------------------------------------------------------------
    def _setup(self) -> tuple[ForwardProcess, State, DataSpace, Cond | None, int]:
        process = self.make_process()
        x = self.make_state()
        space = self.make_space(x) or infer_space(x)
        b = space.batch_size(x)
        assert b >= 2, "make_state() should return at least two samples"
        return process, x, space, self.make_cond(x), b

    @staticmethod
    def _times(b: int, lo: float, hi: float) -> Tensor:
        return torch.linspace(lo, hi, b, dtype=torch.float64)

    # -- checks -----------------------------------------------------------------------------------
    def test_schedule_shapes(self) -> None:
        process, x, space, _, b = self._setup()
        t = self._times(b, process.t_min, process.t_max)
        for p, _, _ in _leaf_processes(process, x, space):
            v = p.schedule(t)
            for name in ("alpha", "sigma", "d_alpha", "d_sigma"):
                val = getattr(v, name)
                assert tuple(val.shape) == (b,), f"{p.name}: schedule(t).{name} has shape {tuple(val.shape)}, expected ({b},)"
                assert bool(torch.isfinite(val).all()), f"{p.name}: schedule(t).{name} is not finite on [t_min, t_max]"

    def test_time_range(self) -> None:
        process = self.make_process()
        assert 0.0 <= process.t_min < process.t_max <= 1.0, f"need 0 <= t_min < t_max <= 1, got {process.t_min}, {process.t_max}"

    def test_schedule_ends(self) -> None:
        """``alpha_0 = 1`` (data at t = 0); the signal-to-noise ratio falls from ``t_min`` to ``t_max``."""
        process, x, space, _, _ = self._setup()
        for p, _, _ in _leaf_processes(process, x, space):
            ends = torch.tensor([0.0, p.t_min, p.t_max], dtype=torch.float64)
            v = p.schedule(ends)
            torch.testing.assert_close(v.alpha[0], torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-6)
            if isinstance(p, DiscreteProcess):
                torch.testing.assert_close(v.sigma, 1.0 - v.alpha, rtol=0, atol=1e-12)
                assert float(v.alpha[2]) < float(v.alpha[1]) <= 1.0 and float(v.alpha[2]) >= 0.0
            else:
                snr = (v.alpha / v.sigma) ** 2
                assert float(snr[2]) < float(snr[1]), f"{p.name}: SNR must fall from t_min to t_max"
                assert float(v.sigma[2]) > 0.0

    def test_log_snr_round_trip(self) -> None:
        process, x, space, _, _ = self._setup()
        for p, _, _ in _leaf_processes(process, x, space):
            if not isinstance(p, GaussianProcess):
                continue
            t = torch.linspace(max(p.t_min, 1e-3), min(p.t_max, 0.999), 17, dtype=torch.float64)
            lam = p.log_snr(t)
            assert bool((lam[1:] < lam[:-1]).all()), f"{p.name}: log-SNR must be strictly decreasing"
            torch.testing.assert_close(p.t_from_log_snr(lam), t, rtol=0, atol=self.log_snr_atol)

    def test_noise_shapes(self) -> None:
        process, x, space, cond, b = self._setup()
        t = self._times(b, process.t_min, process.t_max)
        noised = process.noise(x, t, generator=torch.Generator().manual_seed(0), space=space, cond=cond)
        assert_same_structure(noised.x_t, x, what="noise(x_0, t).x_t")
        assert noised.t is t or torch.equal(noised.t, t)
        for leaf in tree_leaves(noised.x_t):
            if leaf.is_floating_point():
                assert bool(torch.isfinite(leaf).all()), "x_t must be finite"

    def test_noise_at_zero_is_data_for_discrete(self) -> None:
        process, x, space, cond, b = self._setup()
        for p, xk, sk in _leaf_processes(process, x, space):
            if isinstance(p, DiscreteProcess):
                out = p.noise(xk, torch.zeros(b, dtype=torch.float64), generator=torch.Generator().manual_seed(0), space=sk, cond=cond)
                assert torch.equal(out.x_t, xk), f"{p.name}: at t = 0 the tokens must be unchanged"

    def test_prior_sample_shapes(self) -> None:
        process, x, space, cond, _ = self._setup()
        prior = process.prior_sample(x, generator=torch.Generator().manual_seed(0), space=space, cond=cond)
        assert_same_structure(prior, x, what="prior_sample(like=x_0)")

    def test_per_sample_generators(self) -> None:
        """Same per-sample seeds give the same draws; changing sample 0's seed changes only sample 0."""
        process, x, space, cond, b = self._setup()
        t = torch.full((b,), 0.5 * (process.t_min + process.t_max), dtype=torch.float64)
        for draw in (
            lambda g: process.noise(x, t, generator=g, space=space, cond=cond).x_t,
            lambda g: process.prior_sample(x, generator=g, space=space, cond=cond),
        ):
            first = draw(per_sample_generators(b))
            assert not bool(per_sample_differs(space, first, draw(per_sample_generators(b))).any())
            gens = per_sample_generators(b)
            gens[0] = torch.Generator().manual_seed(10_000)
            changed = per_sample_differs(space, first, draw(gens))
            assert not bool(changed[1:].any()), f"changing sample 0's generator changed samples {changed.tolist()}"

    def test_discrete_posterior_consistency(self) -> None:
        """``q(x_s | x_t, x_0)`` normalises and ``sum_{x_t} q(x_s | x_t, x_0) q(x_t | x_0) = q(x_s | x_0)``."""
        process, x, space, _, _ = self._setup()
        for p, _, _ in _leaf_processes(process, x, space):
            if not isinstance(p, DiscreteProcess):
                continue
            v, k = p.vocab_size, p.num_states
            x0 = torch.arange(v)  # every clean value, one row each
            onehot0 = torch.nn.functional.one_hot(x0, v).to(torch.float64)
            for t_val, s_val in ((0.7, 0.3), (1.0, 0.5), (0.2, 0.0)):
                a_t = p.schedule(torch.tensor([t_val], dtype=torch.float64)).alpha.expand(v)
                a_s = p.schedule(torch.tensor([s_val], dtype=torch.float64)).alpha.expand(v)
                q_t = p.marginal_probs(x0, a_t)  # (V, K)
                recon = torch.zeros(v, k, dtype=torch.float64)
                for j in range(k):
                    xt = torch.full((v,), j, dtype=torch.int64)
                    post = p.posterior_probs(xt, onehot0, a_t, a_s)  # (V, K)
                    reachable = q_t[:, j] > 0
                    if bool(reachable.any()):
                        torch.testing.assert_close(post[reachable].sum(-1), torch.ones(int(reachable.sum()), dtype=torch.float64))
                        assert bool((post[reachable] >= 0).all())
                    recon = recon + torch.where(reachable[:, None], post, torch.zeros_like(post)) * q_t[:, j : j + 1]
                torch.testing.assert_close(recon, p.marginal_probs(x0, a_s), rtol=0, atol=1e-12)

    def test_gaussian_prior_log_prob_shape(self) -> None:
        process, x, space, cond, b = self._setup()
        for p, xk, sk in _leaf_processes(process, x, space):
            if isinstance(p, GaussianProcess):
                lp = p.prior_log_prob(p.prior_sample(xk, space=sk, cond=cond), space=sk, cond=cond)
                assert tuple(lp.shape) == (b,) and bool(torch.isfinite(lp).all())


__all__ = ["ProcessContract"]
