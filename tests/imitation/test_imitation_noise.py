"""Exact replay/residual split and the A-RE-2 sampling noise (benchmark.exact_split_occupancies, bias_check_noise)."""

import numpy as np

from rollwise.imitation.benchmark import bias_check_noise, exact_split_occupancies
from rollwise.imitation.envs import TabularMDP, TabularSimulator, frozen_lake
from rollwise.imitation.mdp import occupancy, optimal_policy, sample_demos
from rollwise.imitation.replay import known_actions, replay_occupancy, residual_occupancy


def _leaky_mdp(horizon: int = 4) -> TabularMDP:
    """State 0 (start) stays w.p. 1/2 or falls into absorbing state 1; one action."""
    P = np.array([[[0.5, 0.5]], [[0.0, 1.0]]])
    return TabularMDP("leaky", P, np.zeros_like(P), np.array([1.0, 0.0]), horizon)


def test_noise_golden_values_on_a_two_state_chain():
    mdp = _leaky_mdp()
    known = np.tile([0, -1], (4, 1))  # K = {0}
    noise = bias_check_noise(mdp, known, n_replays=10, n_d2=2, n_draws=5)
    p = 0.5 ** np.arange(4)
    np.testing.assert_allclose(noise["p_in"], p)
    np.testing.assert_allclose(noise["sd_replay"], np.sqrt(p * (1 - p) / 50))
    np.testing.assert_allclose(noise["sd_residual"], np.sqrt(p * (1 - p) / 10))
    np.testing.assert_allclose(noise["sd_mass"] ** 2, p * (1 - p) * (1 / 50 + 1 / 10))


def test_exact_parts_sum_to_the_expert_occupancy_and_match_sampling():
    mdp = frozen_lake()
    expert = optimal_policy(mdp)
    sim = TabularSimulator(mdp, 3)
    s1, a1 = sample_demos(sim, expert, 2)
    known = known_actions(s1, a1, mdp.n_states, stationary=True)
    replay, residual = exact_split_occupancies(mdp, known)
    np.testing.assert_allclose(replay + residual, occupancy(mdp, expert), atol=1e-12)  # RE is unbiased given D1
    q = residual.sum((1, 2))
    assert q[-1] > 0.01 and np.all(np.diff(q) >= -1e-12)  # leaving K is absorbing for the residual
    sampled = replay_occupancy(sim, known, mdp.n_actions, 40_000)
    assert np.abs(sampled - replay).sum((1, 2)).max() < 0.03
    s2, a2 = sample_demos(sim, expert, 20_000)
    assert np.abs(residual_occupancy(s2, a2, known, mdp.n_actions) - residual).sum((1, 2)).max() < 0.04


def test_measured_mass_spread_matches_the_exact_noise():
    """D1 fixed; 40 redraws of D2 (30 x 2 demos) and of the replays: the step-24 mass spread is the binomial one."""
    mdp = frozen_lake()
    expert = optimal_policy(mdp)
    s1, a1 = sample_demos(TabularSimulator(mdp, 0), expert, 2)  # D1 of bias_check's seed 0: leaves K w.p. 0.42
    known = known_actions(s1, a1, mdp.n_states, stationary=True)
    masses = []
    for r in range(40):
        sim = TabularSimulator(mdp, 100 + r)
        s2, a2 = sample_demos(sim, expert, 60)
        est = residual_occupancy(s2, a2, known, mdp.n_actions) + replay_occupancy(sim, known, mdp.n_actions, 9000)
        masses.append(est[-1].sum())
    exact = bias_check_noise(mdp, known, n_replays=300, n_d2=2, n_draws=30)["sd_mass"][-1]
    assert 0.06 < exact < 0.07  # sqrt(0.42 * 0.58 / 60) = 0.064, plus the small replay part
    assert abs(np.mean(masses) - 1) < 3 * exact / np.sqrt(40)
    assert 0.7 * exact < np.std(masses, ddof=1) < 1.3 * exact


def test_bias_check_reports_the_exact_noise_of_its_d1():
    from rollwise.imitation.benchmark import bias_check

    res = bias_check(frozen_lake(), n_draws=50, seeds=[0])
    assert abs(res["p_leave"][-1] - 0.419) < 0.001
    np.testing.assert_allclose(res["mass_sd_exact"] ** 2, res["mass_sd_replay"] ** 2 + res["mass_sd_residual"] ** 2)
    assert np.all(res["mass_sd_replay"] < res["mass_sd_residual"] + 1e-12)
    assert np.isnan(bias_check(frozen_lake(), n_draws=20, seeds=[0], d2_contains_d1=True)["mass_sd_exact"]).all()
