import numpy as np
import pytest

from rollwise.imitation.baselines import behavioural_cloning, moment_matching
from rollwise.imitation.benchmark import estimator_errors, value_gaps
from rollwise.imitation.envs import TabularSimulator, drift_chain, trap_chain
from rollwise.imitation.learners import flow_constraints, min_l1_occupancy, policy_from_occupancy
from rollwise.imitation.mdp import occupancy, optimal_policy, sample_demos, value


def test_lp_recovers_the_expert_from_its_exact_occupancy():
    mdp = drift_chain(9, 0.3, 10)
    pi_e = optimal_policy(mdp)
    d = min_l1_occupancy(mdp, occupancy(mdp, pi_e))
    assert np.abs(d - occupancy(mdp, pi_e)).sum() < 1e-6
    assert value(mdp, policy_from_occupancy(d)) == pytest.approx(value(mdp, pi_e), abs=1e-6)


def test_lp_solution_satisfies_bellman_flow():
    mdp = trap_chain(length=4, horizon=6)
    rng = np.random.default_rng(0)
    target = rng.random((mdp.horizon, mdp.n_states, mdp.n_actions))
    d = min_l1_occupancy(mdp, target)
    a_eq, b_eq = flow_constraints(mdp)
    np.testing.assert_allclose(a_eq @ d.ravel(), b_eq, atol=1e-8)
    np.testing.assert_allclose(d, occupancy(mdp, policy_from_occupancy(d)), atol=1e-8)


def test_mimic_restriction_forces_the_known_action():
    mdp = trap_chain(length=4, horizon=6)
    fixed = np.full((mdp.horizon, mdp.n_states), -1)
    fixed[:, 0] = 2  # force "stay" at the first cell
    target = occupancy(mdp, optimal_policy(mdp))
    d = min_l1_occupancy(mdp, target, fixed)
    assert np.all(d[:, 0, [0, 1, 3]] == 0)
    pi = policy_from_occupancy(d, fixed)
    assert np.all(pi[:, 0, 2] == 1.0)


def test_policy_from_occupancy_is_uniform_without_mass():
    d = np.zeros((1, 2, 3))
    d[0, 0] = [0.2, 0.6, 0.2]
    pi = policy_from_occupancy(d)
    np.testing.assert_allclose(pi[0, 0], [0.2, 0.6, 0.2])
    np.testing.assert_allclose(pi[0, 1], [1 / 3] * 3)


def test_bc_plays_the_observed_action_and_uniform_elsewhere():
    pi = behavioural_cloning(np.array([[0, 1]]), np.array([[2, 0]]), n_states=3, n_actions=3)
    np.testing.assert_allclose(pi, [[0, 0, 1], [1, 0, 0], [1 / 3] * 3])


def test_mm_on_all_expert_data_copies_chance_events():
    """MM is exact on visited states but its target is noisy: with N=2 it loses value on TrapChain."""
    mdp = trap_chain()
    sim = TabularSimulator(mdp, 0)
    states, actions = sample_demos(sim, optimal_policy(mdp), 2)
    pi = moment_matching(mdp, states, actions)
    assert value(mdp, pi) < value(mdp, optimal_policy(mdp)) - 0.05


def test_same_seed_same_numbers():
    a = estimator_errors(drift_chain(), [4], [0, 1])
    b = estimator_errors(drift_chain(), [4], [0, 1])
    np.testing.assert_array_equal(a["replay"], b["replay"])
    g1 = value_gaps(trap_chain(), [2], [3])
    g2 = value_gaps(trap_chain(), [2], [3])
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])
