"""Probabilistic metrics against closed forms, and the generation metrics' sanity on identical data."""

from __future__ import annotations

import math

import numpy as np

from polydiff_timeseries.metrics import coverage, crps_exact, crps_quantile, crps_sum, crps_sum_complete_rows, point_errors


def test_exact_crps_matches_gaussian_closed_form():
    # CRPS(N(0,1), y) = y (2 Phi(y) - 1) + 2 phi(y) - 1/sqrt(pi)
    rng = np.random.default_rng(0)
    n = 20000
    samples = rng.standard_normal((n, 1))
    y = np.array([0.7])
    phi = math.exp(-0.49 / 2) / math.sqrt(2 * math.pi)
    big_phi = 0.5 * (1 + math.erf(0.7 / math.sqrt(2)))
    truth = 0.7 * (2 * big_phi - 1) + 2 * phi - 1 / math.sqrt(math.pi)
    # the ensemble estimator's standard error is below sd(|X - y|)/sqrt(n) + sd(|X-X'|)/sqrt(n) < 2/sqrt(n)
    assert abs(crps_exact(samples, y, np.array([True])) - truth) <= 5 * 2 / math.sqrt(n)


def test_point_mass_reduces_to_normalised_absolute_error():
    y = np.array([[1.0, -2.0], [3.0, 4.0]])
    pred = y + np.array([[0.5, 0.0], [-1.0, 0.0]])
    samples = np.repeat(pred[None], 5, axis=0)
    mask = np.ones_like(y, dtype=bool)
    # every quantile equals pred: QL_q = 2 |pred - y| (q or 1-q); mean over symmetric q gives sum|e| / sum|y|
    assert np.isclose(crps_quantile(samples, y, mask), 1.5 / 10.0)
    assert np.isclose(crps_exact(samples, y, mask), 1.5 / 4)
    assert point_errors(samples, y, mask) == {"mse": (0.25 + 1.0) / 4, "mae": 1.5 / 4}
    assert np.isclose(crps_sum(samples, y, mask), (0.5 + 1.0) / (1.0 + 7.0))


def test_crps_sum_variants_on_a_point_mass_with_a_partial_mask():
    # rows: (target 1, 2, 3), (4, 5, 6); errors on the targets only. Row 0 has 2 of 3 targets, row 1 all.
    y = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = np.array([[True, True, False], [True, True, True]])
    pred = y + np.array([[0.5, 0.5, 0.0], [-1.0, 0.0, 0.0]])
    samples = np.repeat(pred[None], 7, axis=0)
    # CSDI: sum all features (known feature carries its value), weight rows by their target fraction
    w = np.array([2 / 3, 1.0])
    csdi = (w * np.abs(pred.sum(-1) - y.sum(-1))).sum() / (w * np.abs(y.sum(-1))).sum()
    assert np.isclose(crps_sum(samples, y, mask), csdi)
    assert np.isclose(csdi, (2 / 3 * 1.0 + 1.0) / (2 / 3 * 6 + 15))
    # complete rows only (row 1), target features only
    assert np.isclose(crps_sum_complete_rows(samples, y, mask), 1.0 / 15.0)
    # the two agree when every entry is a target
    full = np.ones_like(mask)
    assert np.isclose(crps_sum(samples, y, full), crps_sum_complete_rows(samples, y, full))


def test_coverage_of_the_true_distribution():
    rng = np.random.default_rng(1)
    m = 4000
    samples = rng.standard_normal((400, m))
    y = rng.standard_normal(m)
    mask = np.ones(m, dtype=bool)
    for level in (0.5, 0.9):
        # binomial standard error sqrt(p(1-p)/m), plus the sample-quantile error of 400 draws (~0.02 in level)
        assert abs(coverage(samples, y, mask, level) - level) <= 5 * math.sqrt(level * (1 - level) / m) + 0.02
