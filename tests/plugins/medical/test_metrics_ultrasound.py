"""Ultrasound contrast / speckle metrics against analytic truth and scipy, and the simulators' speckle statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from polydiff_medical.metrics import cnr, contrast_db, gcnr, ks_rayleigh, ks_two_sample, speckle_metrics
from polydiff_medical.ultrasound import CYST, cyst_phantoms, haze_maps, simulate_iq


def test_gcnr_disjoint_is_one_and_identical_is_zero() -> None:
    rng = np.random.default_rng(0)
    assert gcnr(rng.uniform(0, 1, 5000), rng.uniform(2, 3, 5000)) == pytest.approx(1.0, abs=1e-12)
    a = rng.standard_normal(4000)
    assert gcnr(a, a.copy()) == pytest.approx(0.0, abs=1e-12)
    assert gcnr(a, rng.permutation(a)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("d", [0.5, 1.0, 2.0])
def test_gcnr_of_two_gaussians_is_one_minus_overlap(d: float) -> None:
    """Two unit-variance Gaussians ``d`` apart overlap by ``OVL = 2 Phi(-d / 2)`` (closed form)."""
    rng = np.random.default_rng(1)
    n = 200_000
    truth = 1 - 2 * stats.norm.cdf(-d / 2)
    assert gcnr(rng.standard_normal(n), d + rng.standard_normal(n)) == pytest.approx(truth, abs=0.015)


def test_cnr_and_contrast_closed_form() -> None:
    rng = np.random.default_rng(2)
    a, b = 3 + 2 * rng.standard_normal(100_000), 1 + 1 * rng.standard_normal(100_000)
    assert cnr(a, b) == pytest.approx(2 / math.sqrt(5), rel=0.01)
    x, y = np.array([1.0, 3.0]), np.array([4.0, 4.0])
    assert cnr(x, y) == pytest.approx(2 / 1.0)  # |2 - 4| / sqrt(1 + 0)
    assert contrast_db(x, y) == pytest.approx(20 * math.log10(0.5))


@pytest.mark.parametrize("ties", [False, True])
def test_ks_two_sample_matches_scipy(ties: bool) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(700), 0.3 + rng.standard_normal(450)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    assert ks_two_sample(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


def test_ks_rayleigh_matches_scipy_kstest() -> None:
    rng = np.random.default_rng(4)
    env = stats.rayleigh.rvs(scale=1.7, size=3000, random_state=rng) * rng.uniform(0.9, 1.1, 3000)
    s = math.sqrt(np.mean(env**2) / 2)
    assert ks_rayleigh(env) == pytest.approx(stats.kstest(env, "rayleigh", args=(0, s)).statistic, abs=1e-12)


def test_speckle_simulator_gives_rayleigh_envelope_with_calibrated_power() -> None:
    """Uniform echogenicity: ``E|IQ|^2 = e`` and a Rayleigh envelope (mean / std = sqrt(pi / (4 - pi)))."""
    iq = simulate_iq(np.full((48, 32, 32), 2.0), simulator="speckle", seed=0)
    env = np.abs(iq)
    assert np.mean(env**2) == pytest.approx(2.0, rel=0.05)
    assert env.mean() / env.std() == pytest.approx(math.sqrt(math.pi / (4 - math.pi)), rel=0.03)
    assert ks_rayleigh(env) < 0.02


def test_fixed_cyst_phantoms_separate_the_rois_and_haze_lowers_gcnr() -> None:
    n = 32
    inside, bg = CYST.masks(n)
    assert inside.sum() > 50 and bg.sum() > 150 and not (inside & bg).any()
    echo = cyst_phantoms(6, n, seed=5, fixed_cyst=True)
    assert echo[:, inside].max() < 0.01 * echo[:, bg].min()  # the ROI is anechoic, the background is tissue
    clean = simulate_iq(echo, simulator="speckle", seed=1)
    hazy = clean + simulate_iq(haze_maps(6, n, seed=2), simulator="speckle", seed=3)
    m_clean = speckle_metrics(np.abs(clean), inside, bg)
    m_hazy = speckle_metrics(np.abs(hazy), inside, bg, reference=np.abs(clean))
    assert m_clean["gcnr"] > m_hazy["gcnr"]
    assert set(m_hazy) >= {"gcnr", "cnr", "contrast_db", "ks_rayleigh", "ks_inside", "ks_background", "rmse_db"}


def test_pymust_simulation_is_linear_in_the_reflection_coefficients() -> None:
    """simus + DAS are linear: echogenicity x4 (coefficients x2, same scatterers) doubles the IQ frame."""
    pytest.importorskip("pymust")
    from polydiff_medical.ultrasound import PymustSettings

    s = PymustSettings(density=20.0)
    e = cyst_phantoms(1, 16, seed=0)
    a = simulate_iq(e, simulator="pymust", seed=7, settings=s)
    b = simulate_iq(4 * e, simulator="pymust", seed=7, settings=s)
    assert a.shape == (1, 16, 16) and np.isfinite(a).all() and np.abs(a).max() > 0
    np.testing.assert_allclose(b, 2 * a, rtol=1e-9, atol=1e-12 * np.abs(a).max())
