"""Split-conformal interval calibration (``polydiff_timeseries.calibration``) against its definition and the
coverage guarantee on Gaussian ensembles whose miscalibration is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polydiff_timeseries.calibration import conformal_scores, fit_interval_calibration, fit_predictive_calibration
from polydiff_timeseries.metrics import coverage


def gaussian_case(rng: np.random.Generator, cells: int, n: int, spread: float, features: int = 2,
                  scales: tuple[float, ...] = (1.0, 1000.0)):
    """Cells with means ``mu``; truths ``mu + sd * Z``; ensembles ``mu + spread * sd * Z'`` (under-dispersed if spread < 1).

    Returns ``samples (n, cells, C)``, ``target (cells, C)``, ``mask (cells, C)``."""
    sd = np.asarray(scales[:features])
    mu = rng.normal(size=(cells, features)) * 5 * sd
    target = mu + sd * rng.normal(size=(cells, features))
    samples = mu[None] + spread * sd * rng.normal(size=(n, cells, features))
    return samples, target, np.ones((cells, features), dtype=bool)


def test_calibrated_intervals_cover_the_level_on_fresh_cells():
    """Ensembles at 0.3x the true spread cover ~38 % (P(|Z| <= 0.3 * 1.645 * ...)); after fitting on 2,000 cells the
    90 % interval covers 90 % of 5,000 fresh cells, within 4 binomial standard deviations of both samples."""
    rng = np.random.default_rng(0)
    cal = fit_interval_calibration(*gaussian_case(rng, 2000, 100, 0.3), level=0.9)
    samples, target, mask = gaussian_case(rng, 5000, 100, 0.3)
    before = coverage(samples, target, mask, 0.9)
    assert before < 0.5
    np.testing.assert_array_less(cal.coverage_before, 0.5)
    after = coverage(cal.apply(samples), target, mask, 0.9)
    sd = math.sqrt(0.9 * 0.1 / 2000 + 0.9 * 0.1 / (5000 * 2))
    assert abs(after - 0.9) < 4 * sd, (before, after)
    # the spread needed is about 1 / 0.3: with no floor the factor estimates it directly
    nofloor = fit_interval_calibration(*gaussian_case(rng, 2000, 100, 0.3), level=0.9, floor=0.0)
    np.testing.assert_allclose(nofloor.factor, 1 / 0.3, rtol=0.1)


def test_a_calibrated_ensemble_keeps_its_spread():
    """Ensembles drawn from the true law need no widening: factor ~ 1 (finite-ensemble quantiles make it a little > 1)."""
    rng = np.random.default_rng(1)
    cal = fit_interval_calibration(*gaussian_case(rng, 4000, 200, 1.0), level=0.9, floor=0.0)
    np.testing.assert_allclose(cal.factor, 1.0, atol=0.08)


def test_conformal_factor_is_the_order_statistic_and_covers_the_calibration_cells():
    """``s`` is the ceil((n + 1) level)-th smallest score, so the calibrated interval covers exactly that many
    calibration cells (continuous scores: no ties), and the score is the smallest factor that covers the cell."""
    rng = np.random.default_rng(2)
    samples, target, mask = gaussian_case(rng, 199, 50, 0.5, features=1)
    cal = fit_interval_calibration(samples, target, mask, level=0.9)
    r = conformal_scores(samples, target, cal.floor, 0.9)[:, 0]
    k = math.ceil(200 * 0.9)
    assert cal.factor[0] == np.sort(r)[k - 1]
    covered = coverage(cal.apply(samples), target, mask, 0.9) * 199
    assert round(covered) == k
    # a cell's score is the boundary: a factor just above it covers the cell, just below does not
    j = int(np.argsort(r)[50])
    for eps, inside in ((1e-6, True), (-1e-6, False)):
        one = type(cal)(0.9, np.array([r[j] + eps]), cal.floor, cal.cells, cal.coverage_before)
        x = one.apply(samples[:, j:j + 1])
        assert bool(coverage(x, target[j:j + 1], mask[j:j + 1], 0.9)) is inside


def test_apply_moves_quantiles_affinely_keeps_the_median_and_masked_cells():
    rng = np.random.default_rng(3)
    samples, target, mask = gaussian_case(rng, 64, 50, 0.4)
    samples = samples + rng.exponential(size=samples.shape)  # skewed: the interval is not symmetric about the median
    cal = fit_interval_calibration(samples, target, mask, level=0.9)
    keep = np.zeros_like(mask)
    keep[:10] = True  # e.g. observed cells or forecast context
    out = cal.apply(samples, ~keep)
    np.testing.assert_array_equal(out[:, :10], samples[:, :10])
    np.testing.assert_allclose(np.median(out, 0), np.median(samples, 0), rtol=0, atol=1e-9 * 1000)
    a = cal.spread(samples)
    med = np.median(samples, 0)
    for q in (0.05, 0.25, 0.75, 0.95):
        want = med + a * (np.quantile(samples, q, 0) - med)
        np.testing.assert_allclose(np.quantile(out, q, 0)[10:], want[10:], rtol=1e-9, atol=1e-9)


def test_calibration_is_per_feature_and_unit_free():
    """Rescaling one feature (x1000) changes neither its factor nor the other feature's."""
    rng = np.random.default_rng(4)
    samples, target, mask = gaussian_case(rng, 500, 50, 0.5, scales=(1.0, 1.0))
    a = fit_interval_calibration(samples, target, mask)
    scale = np.array([1.0, 1000.0])
    b = fit_interval_calibration(samples * scale, target * scale, mask)
    np.testing.assert_allclose(a.factor, b.factor, rtol=1e-9)
    np.testing.assert_allclose(b.floor, a.floor * scale, rtol=1e-9)


def test_collapsed_ensembles_are_widened_through_the_floor():
    """With near-identical samples (spread 1e-6) the median floor still yields about 90 % coverage on fresh cells."""
    rng = np.random.default_rng(5)
    cal = fit_interval_calibration(*gaussian_case(rng, 2000, 50, 1e-6, features=1), level=0.9)
    samples, target, mask = gaussian_case(rng, 5000, 50, 1e-6, features=1)
    assert coverage(samples, target, mask, 0.9) < 0.01
    after = coverage(cal.apply(samples), target, mask, 0.9)
    assert abs(after - 0.9) < 4 * math.sqrt(0.09 / 2000 + 0.09 / 5000)


@pytest.mark.parametrize("kwargs, match", [({"level": 1.0}, "level"), ({"floor": -1.0}, "floor")])
def test_bad_arguments_are_refused(kwargs, match):
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match=match):
        fit_interval_calibration(*gaussian_case(rng, 50, 20, 0.5), **kwargs)


def test_too_few_calibration_cells_are_refused():
    rng = np.random.default_rng(7)
    samples, target, mask = gaussian_case(rng, 5, 20, 0.5)
    with pytest.raises(ValueError, match="at least 9"):
        fit_interval_calibration(samples, target, mask, level=0.9)
    with pytest.raises(ValueError, match=r"must be \(N"):
        fit_interval_calibration(samples[:, :4], target, mask)


def laplace_case(rng: np.random.Generator, cells: int, n: int, bias: float = 0.0):
    """Gaussian ensembles at 0.3x the spread, truths with Laplace errors (heavier tails) and an optional bias."""
    mu = rng.normal(size=(cells, 1)) * 5
    target = mu + bias + rng.laplace(scale=1.0, size=(cells, 1))
    samples = mu[None] + 0.3 * rng.normal(size=(n, cells, 1))
    return samples, target, np.ones((cells, 1), dtype=bool)


def test_predictive_calibration_covers_every_level_where_scaling_covers_one():
    """With heavier-tailed errors than samples, scaling for 90 % over-covers at 50 %; the conformal predictive
    distribution covers both levels (4 binomial standard deviations) and has the lower CRPS."""
    from polydiff_timeseries.metrics import crps_exact

    rng = np.random.default_rng(8)
    fit_args = laplace_case(rng, 3000, 100)
    samples, target, mask = laplace_case(rng, 5000, 100)
    pred = fit_predictive_calibration(*fit_args)
    scaled = fit_interval_calibration(*fit_args, level=0.9, floor=0.0)
    p, s = pred.apply(samples), scaled.apply(samples)
    for level in (0.5, 0.9):
        tol = 4 * math.sqrt(level * (1 - level) * (1 / 3000 + 1 / 5000)) + 1 / 100  # + the 100-draw quantile grid
        assert abs(coverage(p, target, mask, level) - level) < tol, level
    assert coverage(s, target, mask, 0.5) > 0.5 + 0.05  # the shape of the samples, not their width, is wrong
    assert crps_exact(p, target, mask) < crps_exact(s, target, mask) < crps_exact(samples, target, mask)


def test_predictive_calibration_keeps_each_draws_rank_and_corrects_a_bias():
    """Ensemble copula coupling: every draw keeps its rank in every cell (the model's dependence across cells is
    kept); the residuals' median moves the centre by the bias."""
    rng = np.random.default_rng(9)
    pred = fit_predictive_calibration(*laplace_case(rng, 3000, 50, bias=1.0))
    samples, target, mask = laplace_case(rng, 400, 50, bias=1.0)
    out = pred.apply(samples)
    np.testing.assert_array_equal(np.argsort(out, axis=0, kind="stable"), np.argsort(samples, axis=0, kind="stable"))
    before = np.abs(np.median(samples, 0) - target).mean()
    after = np.abs(np.median(out, 0) - target).mean()
    assert after < before - 0.3  # Laplace(1) errors: mean |error| 1 unbiased vs ~1.37 with bias 1


def test_predictive_calibration_leaves_unmasked_cells_and_refuses_too_few_cells():
    rng = np.random.default_rng(10)
    samples, target, mask = laplace_case(rng, 200, 20)
    pred = fit_predictive_calibration(samples, target, mask)
    keep = np.zeros_like(mask)
    keep[:50] = True
    out = pred.apply(samples, ~keep)
    np.testing.assert_array_equal(out[:, :50], samples[:, :50])
    assert not np.allclose(out[:, 50:], samples[:, 50:])
    with pytest.raises(ValueError, match="at least 20"):
        fit_predictive_calibration(samples[:, :10], target[:10], mask[:10])
    # a feature with no calibration cells is left as drawn, not collapsed onto its median
    two = np.concatenate([samples, samples], -1)
    m2 = np.stack([mask[:, 0], np.zeros(len(mask), dtype=bool)], -1)
    pred2 = fit_predictive_calibration(two, np.concatenate([target, target], -1), m2)
    assert pred2.cells.tolist() == [200, 0]
    np.testing.assert_array_equal(pred2.apply(two)[..., 1], two[..., 1])
    with pytest.raises(ValueError, match="fitted on 1"):
        pred.apply(np.zeros((5, 3, 2)))
