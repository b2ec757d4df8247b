"""Posterior sampling on a linear-Gaussian inverse problem, against the closed-form posterior.

Exact methods (guidance by the exact likelihood ``p(y | z_t)``; replacement of observed coordinates
under a diagonal prior with ``sigma_y = 0``) must match the posterior within ``5`` Monte-Carlo
standard errors plus the sampler's discretisation error, which is computed exactly in each test
(the guided model is affine in ``z``, so a deterministic sampler's output law is the push-forward
of the prior: see ``pushforward_moments``). Approximate methods (DPS, CG data consistency) have
their measured posterior errors recorded as regression bounds, and must bring the measurement
residual down to the noise level.

Measured numbers: ``OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/core/guidance/test_guidance_inverse.py -q -s``
prints one ``measured`` line per test.
"""

from __future__ import annotations

import math

import pytest
import torch
from linear_gaussian import dense_problem_instance, make_problem, pushforward_moments

import polydiff
from polydiff.guidance import DPS, ClassifierGradient, ConjugateGradientConsistency, MaskOperator, MatrixOperator, Reconstruction, Replacement

N = 4000  # posterior samples
STEPS = 128


@pytest.fixture(scope="module")
def dense_problem():
    return dense_problem_instance()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _errors(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-coordinate |sample mean - mean| and |sample variance - var|."""
    return (x.mean(0) - mean).abs(), (x.var(0) - var).abs()


def test_exact_likelihood_guidance_matches_posterior(dense_problem):
    p = dense_problem
    m_post, P = p.posterior()
    var = P.diagonal()
    guide = [ClassifierGradient(p.exact_log_likelihood)]
    # discretisation error of Euler at STEPS (exact push-forward), and its first-order decay
    m64, c64 = pushforward_moments(p.model, p.D, STEPS // 2, guidance=guide)
    m128, c128 = pushforward_moments(p.model, p.D, STEPS, guidance=guide)
    disc_m, disc_v = (m128 - m_post).abs(), (c128.diagonal() - var).abs()
    # Euler (the DDIM step) gets the mean right to 1.0e-4..1.7e-4 at every step count from 4 to 128 (measured; the
    # residual does not shrink with steps, so it is not discretisation): the variance shows the first-order decay.
    assert float(disc_m.max()) <= 5e-4
    assert float(disc_v.max()) <= 0.6 * float((c64.diagonal() - var).abs().max())

    x = polydiff.sample(p.model, shape=(N, p.D), dtype=torch.float64, sampler="euler", steps=STEPS, guidance=guide, generator=_gen(1)).x
    err_m, err_v = _errors(x, m_post, var)
    print(f"\nmeasured exact-likelihood: mean err {float(err_m.max()):.4f} var err {float(err_v.max()):.4f} (disc {float(disc_m.max()):.4f}, {float(disc_v.max()):.4f})")
    assert bool((err_m <= 5 * (var / N).sqrt() + disc_m).all()), (err_m, disc_m)
    assert bool((err_v <= 5 * var * math.sqrt(2 / (N - 1)) + disc_v).all()), (err_v, disc_v)


def test_replacement_is_exact_for_diagonal_prior_and_mask():
    """sigma_y = 0, observe coordinates 0, 2, 4: the others are independent of them, so their posterior is the prior."""
    mask = torch.tensor([True, False, True, False, True, False])
    p = make_problem(torch.eye(6, dtype=torch.float64)[mask], 0.0 + 1e-12)
    known = p.x_true.expand(N, p.D).clone()
    x = polydiff.sample(p.model, shape=(N, p.D), dtype=torch.float64, sampler="euler", steps=STEPS, guidance=[Replacement(known, mask)], generator=_gen(2)).x
    assert torch.equal(x[:, mask], known[:, mask])
    m_u, c_u = pushforward_moments(p.model, p.D, STEPS)  # unguided Euler: coordinates evolve independently
    free = ~mask
    var = p.s[free] ** 2
    disc_m, disc_v = (m_u[free] - p.mu[free]).abs(), (c_u.diagonal()[free] - var).abs()
    err_m, err_v = _errors(x[:, free], p.mu[free], var)
    print(f"\nmeasured replacement: mean err {float(err_m.max()):.4f} var err {float(err_v.max()):.4f}")
    assert bool((err_m <= 5 * (var / N).sqrt() + disc_m).all()), (err_m, disc_m)
    assert bool((err_v <= 5 * var * math.sqrt(2 / (N - 1)) + disc_v).all()), (err_v, disc_v)


# ---- approximate methods: regression bounds ------------------------------------------------------

MASK = torch.tensor([True, True, False, True, False, False])


def _setup(kind: str, dense_problem):
    """(problem, operator, y batched for N) for a matrix or a mask operator (sigma_y = 0.2)."""
    if kind == "matrix":
        p = dense_problem
        return p, MatrixOperator(p.A), p.ys(N)
    p = make_problem(torch.eye(6, dtype=torch.float64)[MASK], 0.2)
    y_full = torch.zeros(N, 6, dtype=torch.float64)
    y_full[:, MASK] = p.y
    return p, MaskOperator(MASK), y_full


def _guidance(method: str, op, y, p):
    if method == "dps-l2":
        return DPS(op, y, scale=1.0, noise_std=p.sigma_y)
    if method == "reconstruction-l2sq":
        return Reconstruction(op, y, scale=1.0, noise_std=p.sigma_y)
    return ConjugateGradientConsistency(op, y, lam=p.sigma_y**2, iters=p.D)


# Measured (max over coordinates of |mean err|, |var err|) with the command in the module docstring
# (torch 2.11 CPU, float64, ddim eta=1, 64 steps, N=4000, seed 3); the bounds are 1.5x these.
# The mask rows share their variance error: the unobserved coordinates evolve independently of the
# guidance there, so it is the same Monte-Carlo draw of a prior variance (2 standard errors).
MEASURED = {
    ("matrix", "dps-l2"): (0.1762, 0.0625),
    ("matrix", "reconstruction-l2sq"): (0.1927, 0.0944),
    ("matrix", "cg"): (0.1053, 0.1757),
    ("mask", "dps-l2"): (0.0481, 0.1078),
    ("mask", "reconstruction-l2sq"): (0.0590, 0.1078),
    ("mask", "cg"): (0.0607, 0.1078),
}


@pytest.mark.parametrize("kind,method", sorted(MEASURED))
def test_approximate_posterior_sampling(kind, method, dense_problem):
    p, op, y = _setup(kind, dense_problem)
    m_post, P = p.posterior()
    x = polydiff.sample(p.model, shape=(N, p.D), dtype=torch.float64, sampler="ddim", eta=1.0, steps=64, guidance=[_guidance(method, op, y, p)], generator=_gen(3)).x
    err_m, err_v = _errors(x, m_post, P.diagonal())
    residual = (p.y - x @ p.A.T).pow(2).sum(1).mean().sqrt()  # RMS ||y - A x||
    noise_level = p.sigma_y * math.sqrt(p.m)
    print(f"\nmeasured {kind} {method}: mean err {float(err_m.max()):.4f} var err {float(err_v.max()):.4f} residual/noise {float(residual / noise_level):.3f}")
    assert float(residual) <= 2 * noise_level
    bound_m, bound_v = MEASURED[(kind, method)]
    assert float(err_m.max()) <= 1.5 * bound_m
    assert float(err_v.max()) <= 1.5 * bound_v


def test_unguided_residual_exceeds_noise_level(dense_problem):
    """The residual check above can fail: the prior's samples miss the measurements."""
    p = dense_problem
    x = polydiff.sample(p.model, shape=(N, p.D), dtype=torch.float64, sampler="ddim", eta=1.0, steps=64, generator=_gen(3)).x
    residual = (p.y - x @ p.A.T).pow(2).sum(1).mean().sqrt()
    assert float(residual) > 2 * p.sigma_y * math.sqrt(p.m)


def test_guidance_composes_in_one_sampling_call(dense_problem):
    """CFG (with a trivial null condition) + DPS + replacement together: one forward per step, known entries exact."""
    from polydiff.guidance import ClassifierFree

    p = dense_problem
    mask = torch.tensor([False, False, False, False, True, True])
    known = p.x_true.expand(8, p.D).clone()

    class CondModel:  # the oracle with an ignored conditioning input
        process = p.model.process

        def denoise(self, x_t, t, cond=None, *, space=None):
            return p.model.denoise(x_t, t, None, space=space)

    guidance = [ClassifierFree(2.0, {"label": 0.0}), DPS(MatrixOperator(p.A), p.ys(8), noise_std=p.sigma_y), Replacement(known, mask)]
    res = polydiff.sample(CondModel(), shape=(8, p.D), dtype=torch.float64, sampler="ddim", eta=1.0, steps=12, cond={"label": torch.ones(8, dtype=torch.float64)}, guidance=guidance, generator=_gen(4))
    assert res.nfe == 12
    assert torch.equal(res.x[:, mask], known[:, mask])
    assert bool(torch.isfinite(res.x).all())


def test_every_guidance_has_a_name():
    from polydiff import guidance as G

    names = [G.ClassifierFree.name, G.ClassifierGradient.name, G.Reconstruction.name, G.DPS.name, G.Replacement.name, G.ConjugateGradientConsistency.name]
    assert len(set(names)) == len(names) and all(isinstance(n, str) and n for n in names)
    assert G.DPS.needs_grad and G.ClassifierGradient.needs_grad and not G.ClassifierFree.needs_grad and not G.ConjugateGradientConsistency.needs_grad
