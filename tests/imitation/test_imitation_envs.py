import numpy as np
import pytest

from rollwise.imitation.envs import TabularSimulator, drift_chain, frozen_lake, make_env, trap_chain
from rollwise.imitation.mdp import occupancy, optimal_policy, sample_demos, value

ENVS = [drift_chain(), frozen_lake(), trap_chain()]


@pytest.mark.parametrize("mdp", ENVS, ids=lambda m: m.name)
def test_occupancy_is_a_distribution_per_step(mdp):
    pi = np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)
    rho = occupancy(mdp, pi)
    assert rho.shape == (mdp.horizon, mdp.n_states, mdp.n_actions)
    np.testing.assert_allclose(rho.sum((1, 2)), 1.0, atol=1e-12)


def test_drift_chain_expert_moves_toward_centre():
    mdp = drift_chain()
    a = optimal_policy(mdp).argmax(-1)
    c = mdp.info["centre"]
    assert np.all(a[:c] == 2) and a[c] == 1 and np.all(a[c + 1:] == 0)


def test_trap_chain_expert_value_matches_spec():
    mdp = trap_chain()
    pi = optimal_policy(mdp)
    assert value(mdp, pi) == pytest.approx(13.9, abs=0.05)  # spec §C1: J_E ~ 13.9
    L = 10
    assert np.all(pi[:L].argmax(-1) == 0)  # forward in the corridor
    np.testing.assert_array_equal(pi[L:2 * L].argmax(-1), mdp.info["keys"])  # the key on side states


def test_frozen_lake_dynamics_golden():
    mdp = frozen_lake()
    # from the start (0), "down" (1): down to 4 w.p. 1/3, left (wall: stay at 0) 1/3, right to 1 w.p. 1/3
    np.testing.assert_allclose(mdp.P[0, 1, [0, 1, 4]], [1 / 3, 1 / 3, 1 / 3])
    assert mdp.P[5, 2, 5] == 1.0  # a hole absorbs
    assert mdp.reward[14, 2, 15] == 1.0 and mdp.reward[15, 2, 15] == 0.0  # reward only on entering G


def test_monte_carlo_return_matches_exact_value():
    mdp = make_env("frozen_lake")
    pi = optimal_policy(mdp)
    sim = TabularSimulator(mdp, seed=3)
    states, actions = sample_demos(sim, pi, 4000)
    r = mdp.expected_reward[states, actions].sum(1)
    assert r.mean() == pytest.approx(value(mdp, pi), abs=4 * r.std() / np.sqrt(len(r)))


def test_clone_and_set_state_replays_the_same_step():
    sim = TabularSimulator(trap_chain(), seed=0)
    sim.reset()
    saved = sim.clone_state()
    rng_state = sim.rng.bit_generator.state
    first = [sim.step(0)[0] for _ in range(5)]
    sim.set_state(saved)
    sim.rng.bit_generator.state = rng_state
    assert [sim.step(0)[0] for _ in range(5)] == first
    sim.set_state((3, 7))
    assert sim.clone_state() == (3, 7)


def test_step_batch_frequencies_follow_p():
    mdp = drift_chain()
    sim = TabularSimulator(mdp, seed=1)
    n = 20000
    nxt = sim.step_batch(np.full(n, 10), np.full(n, 2))
    freq = np.bincount(nxt, minlength=mdp.n_states) / n
    np.testing.assert_allclose(freq, mdp.P[10, 2], atol=0.015)


def test_unknown_env_name_lists_valid_ones():
    with pytest.raises(KeyError, match="drift_chain"):
        make_env("nope")
