"""T0 unit tests for the dynamical measures (spec tf_bayes.md 3.2, 5.2)."""

import math

import numpy as np
import pytest

from rollwise.dynamics.data import LorenzConfig, make_lorenz
from rollwise.dynamics.measures import (
    max_lyapunov,
    power_spectrum_distance,
    prediction_error,
    state_space_divergence,
    stsp_binning,
    stsp_gmm,
)


@pytest.fixture(scope="module")
def lorenz():
    return make_lorenz(LorenzConfig())


def test_self_distance_is_zero(lorenz):
    x = lorenz.test
    assert stsp_binning(x, x) == pytest.approx(0.0, abs=1e-12)
    assert power_spectrum_distance(x[:10_000], x[:10_000]) == pytest.approx(0.0, abs=1e-6)
    assert stsp_gmm(x, x) == pytest.approx(0.0, abs=1e-12)


def test_independent_true_trajectories_are_close(lorenz):
    """Spec 5.2: D_stsp (100k vs 100k) < 0.1, D_H (10k) < 0.06 for two true trajectories."""
    assert stsp_binning(lorenz.test, lorenz.train) < 0.1
    assert power_spectrum_distance(lorenz.test[:10_000], lorenz.train[:10_000]) < 0.06


def test_constant_series_is_far_and_failures(lorenz):
    const = np.zeros((10_000, 3)) + lorenz.test.mean(0)
    assert stsp_binning(lorenz.test, const) > 10
    bad = lorenz.train[:10_000].copy()
    bad[5000:] = np.nan
    assert state_space_divergence(lorenz.test, bad) == math.inf
    assert power_spectrum_distance(lorenz.test[:10_000], bad) == 1.0


def test_binning_hand_computed():
    true = np.array([[0.0], [1.0], [1.0], [1.0]])
    gen = np.array([[0.0], [0.0], [0.0], [1.0]])
    # 2 bins over [0 - 0.1 sd, 1 + 0.1 sd]; alpha -> 0: KL((1/4, 3/4) || (3/4, 1/4))
    want = 0.25 * math.log(1 / 3) + 0.75 * math.log(3)
    assert stsp_binning(true, gen, n_bins=2, alpha=1e-12) == pytest.approx(want, rel=1e-9)


def test_lyapunov_of_linear_map():
    M = 4
    p = {"A": np.array([0.5, 0.9, 0.3, 0.2]), "W": np.zeros((M, M)), "h": np.zeros(M), "L": np.zeros((1, 3))}
    assert max_lyapunov(p, np.ones(3), n_pwl=1, n_steps=500, transient=10) == pytest.approx(math.log(0.9), 1e-6)


def test_prediction_error_zero_for_identity_map():
    M = 4
    p = {"A": np.ones(M), "W": np.zeros((M, M)), "h": np.zeros(M), "L": np.zeros((1, 3))}
    x = np.ones((100, 3))
    assert prediction_error(p, x, n_pwl=1, horizon=5) == 0.0


def test_high_dimensional_series_use_the_gmm_version():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2000, 12)), rng.normal(size=(2000, 12))
    assert state_space_divergence(a, a) == pytest.approx(0.0, abs=1e-12)
    near, far = state_space_divergence(a, b), state_space_divergence(a, b + 3.0)
    assert near < far and far > 1.0
