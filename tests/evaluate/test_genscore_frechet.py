"""Fréchet distance: equals the textbook scipy computation, zero for identical sets, sane intervals."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import linalg

from clamp3.evaluate.frechet import (
    frechet_bootstrap,
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
)


def direct(x: np.ndarray, y: np.ndarray) -> float:
    """The formula written out with numpy/scipy (no safeguards)."""
    mu_x, mu_y = x.mean(axis=0), y.mean(axis=0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = linalg.sqrtm(cov_x @ cov_y).real
    return float(np.sum((mu_x - mu_y) ** 2) + np.trace(cov_x) + np.trace(cov_y) - 2 * np.trace(root))


@pytest.mark.parametrize(("n_x", "n_y", "dim"), [(300, 200, 16), (120, 80, 48), (50, 400, 24)])
def test_matches_direct_computation(rng, n_x, n_y, dim):
    x = rng.normal(size=(n_x, dim))
    y = rng.normal(size=(n_y, dim)) @ rng.normal(size=(dim, dim)) * 0.4 + 0.3
    expected = direct(x, y)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-7)
    assert frechet_distance_from_stats(*gaussian_stats(x), *gaussian_stats(y)) == pytest.approx(
        expected, rel=1e-7
    )
    assert frechet_distance(y, x) == pytest.approx(expected, rel=1e-7)  # symmetric


def test_identical_sets_give_zero(rng):
    x = rng.normal(size=(200, 32)).astype(np.float32)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance_from_stats(*gaussian_stats(x), *gaussian_stats(x)) == pytest.approx(0.0, abs=1e-6)


def test_mean_shift_only(rng):
    """Same samples shifted by a vector v: FD = |v|^2 exactly."""
    x = rng.normal(size=(100, 8))
    shift = np.arange(8) / 4
    assert frechet_distance(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-9)


def test_fewer_items_than_dimensions_warns_and_stays_finite(rng):
    x, y = rng.normal(size=(20, 64)), rng.normal(size=(30, 64)) + 0.5
    with pytest.warns(UserWarning, match="N < D"):
        exact = frechet_distance(x, y)
    # sqrtm needs the eps safeguard here (singular covariances); it lands on the exact value
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the safeguarded path must not leak scipy warnings
        from_stats = frechet_distance_from_stats(*gaussian_stats(x), *gaussian_stats(y))
    assert np.isfinite(exact) and from_stats == pytest.approx(exact, rel=1e-5)


def test_bootstrap_interval_contains_point_and_is_seeded(rng):
    x = rng.normal(size=(150, 12))
    y = rng.normal(size=(160, 12)) * 1.2 + 0.4
    result = frechet_bootstrap(x, y, n_resamples=60, seed=1)
    lo, hi = result["ci95"]
    assert lo <= result["distance"] <= hi and hi - lo > 0
    assert result["distance"] == pytest.approx(frechet_distance(x, y))
    assert result["bootstrap_bias"] > 0  # resampling with replacement inflates FD
    assert frechet_bootstrap(x, y, n_resamples=60, seed=1) == result
    assert (result["n_generated"], result["n_reference"], result["dim"]) == (150, 160, 12)
    assert frechet_bootstrap(x, x, n_resamples=30)["ci95"][0] == 0.0  # identical sets: clipped at 0


def test_rejects_bad_input(rng):
    with pytest.raises(ValueError, match="dimension mismatch"):
        frechet_distance(rng.normal(size=(5, 3)), rng.normal(size=(5, 4)))
    with pytest.raises(ValueError, match="at least two"):
        frechet_distance(rng.normal(size=(1, 3)), rng.normal(size=(5, 3)))


def test_rank_deficient_set_with_more_items_than_dimensions(rng):
    """50 items but only 10 distinct ones in 16 dimensions: the Gram matrix is singular."""
    x = np.repeat(rng.normal(size=(10, 16)), 5, axis=0)
    y = rng.normal(size=(80, 16)) + 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = frechet_distance_from_stats(*gaussian_stats(x), *gaussian_stats(y))
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-5)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
