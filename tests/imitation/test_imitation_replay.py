import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollwise.imitation.benchmark import bias_check
from rollwise.imitation.envs import TabularSimulator, drift_chain, frozen_lake
from rollwise.imitation.mdp import empirical_occupancy, occupancy, optimal_policy, sample_demos, tv_error
from rollwise.imitation.replay import (
    ReplayConfig,
    known_actions,
    normalise_per_step,
    replay_estimate,
    replay_occupancy,
    residual_occupancy,
    split_demos,
)


def test_known_actions_stationary_and_time_indexed():
    states = np.array([[0, 1, 2]])
    actions = np.array([[2, 0, 1]])
    k = known_actions(states, actions, n_states=4, stationary=True)
    np.testing.assert_array_equal(k, np.tile([2, 0, 1, -1], (3, 1)))
    k = known_actions(states, actions, n_states=4, stationary=False)
    np.testing.assert_array_equal(k, [[2, -1, -1, -1], [-1, 0, -1, -1], [-1, -1, 1, -1]])


def test_residual_counts_steps_after_first_exit():
    known = np.tile([0, 0, -1], (4, 1))  # states 0, 1 known; 2 not
    states = np.array([[0, 2, 1, 0], [0, 1, 0, 1]])  # first leaves K at t=1, second never
    actions = np.array([[0, 1, 0, 0], [0, 0, 0, 0]])
    r = residual_occupancy(states, actions, known, n_actions=2)
    expected = np.zeros((4, 3, 2))
    expected[1, 2, 1] = expected[2, 1, 0] = expected[3, 0, 0] = 0.5
    np.testing.assert_allclose(r, expected)


def test_replay_with_everything_known_is_the_expert_occupancy():
    mdp = frozen_lake()
    pi = optimal_policy(mdp)
    known = np.tile(pi.argmax(-1), (mdp.horizon, 1))
    rho = replay_occupancy(TabularSimulator(mdp, 0), known, mdp.n_actions, 20000)
    assert tv_error(rho, occupancy(mdp, pi)) / mdp.horizon < 0.02


def test_split_disjoint_and_contains():
    rng = np.random.default_rng(0)
    d1, d2 = split_demos(8, ReplayConfig(), rng)
    assert len(d1) == 4 and len(d2) == 4 and not set(d1) & set(d2)
    d1, d2 = split_demos(8, ReplayConfig(split="d2_contains_d1"), rng)
    assert set(d1) <= set(d2) and len(d2) == 8


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="split"):
        ReplayConfig(split="all")
    with pytest.raises(ValueError, match="d1_fraction"):
        ReplayConfig(d1_fraction=1.0)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 12), st.integers(0, 10_000), st.booleans())
def test_unnormalised_mass_at_most_one_and_normalised_exactly_one(n, seed, stationary):
    mdp = drift_chain(9, 0.3, 12)
    sim = TabularSimulator(mdp, seed)
    states, actions = sample_demos(sim, optimal_policy(mdp), n)
    raw = replay_estimate(sim, states, actions, ReplayConfig(n_replays=200, normalise=False,
                                                             stationary_known=stationary), np.random.default_rng(seed))
    assert np.all(raw.replay.sum((1, 2)) <= 1 + 1e-9) and np.all(raw.residual.sum((1, 2)) <= 1 + 1e-9)
    norm = normalise_per_step(raw.rho, empirical_occupancy(states, actions, mdp.n_states, mdp.n_actions))
    np.testing.assert_allclose(norm.sum((1, 2)), 1.0)


def test_unnormalised_estimator_is_unbiased_and_the_code_split_is_not():
    """A-RE-2: pooled over 4 D1 draws x 300 D2 draws (the 1-draw protocol's noise is the threshold itself)."""
    mdp = frozen_lake()
    good = bias_check(mdp, seeds=range(4))
    assert good["tv"].max() <= 0.03
    np.testing.assert_allclose(good["mass"], 1.0, atol=0.02)
    bad = bias_check(mdp, n_draws=100, seeds=range(4), d2_contains_d1=True)
    assert 1 - bad["mass"].min() >= 0.03


def test_per_state_membership_is_biased_on_trapchain():
    """prefix_weighting=False lets replays wander off K with uniform actions: mass leaks into the trap."""
    from rollwise.imitation.envs import trap_chain

    mdp = trap_chain()
    prefix = bias_check(mdp, n_draws=100, seeds=[0, 1])
    per_state = bias_check(mdp, n_draws=100, seeds=[0, 1], prefix=False)
    assert prefix["mass"].min() > 0.97
    assert per_state["mass"].min() < 0.8
