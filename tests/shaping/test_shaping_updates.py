"""A-EX-4 (spec explors.md §C1) and the other update rules: bonus, meta-gradient, REINFORCE, SORS′, LIRPG′."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rollwise.shaping.agents import FrozenMLP, NeuralReinforce, TabularReinforce, reinforce_gradient, softmax
from rollwise.shaping.baselines import NeuralSORS, TabularLIRPG, TabularSORS, make_shaper, simulate
from rollwise.shaping.bonus import CountBonus
from rollwise.shaping.config import ExplorsConfig
from rollwise.shaping.env import ChainEnv
from rollwise.shaping.explors import ShapedReward
from rollwise.shaping.intrinsic import NeuralSelfRS, TabularSelfRS, selfrs_gradient
from rollwise.shaping.rollout import Episode, discounted_returns


def episode(states, actions, rewards, probs, gamma=0.99):
    rewards = np.asarray(rewards, dtype=float)
    return Episode(np.asarray(states), np.asarray(actions), rewards, rewards.copy(), np.asarray(probs, float),
                   discounted_returns(rewards, gamma), discounted_returns(rewards, gamma))


def random_buffer(rng, n_states=6, n_actions=3, n_episodes=4, length=7):
    out = []
    for _ in range(n_episodes):
        s = rng.integers(n_states, size=length)
        a = rng.integers(n_actions, size=length)
        p = softmax(rng.normal(size=(length, n_actions)))
        out.append(episode(s, a, rng.random(length) * (rng.random(length) < 0.3), p))
    return out


# A-EX-4 (i): the bonus -------------------------------------------------------------------------------

def test_bonus_is_one_over_sqrt_one_plus_count_and_zero_at_terminal():
    b = CountBonus(5)
    assert b.step(0, 1, False) == pytest.approx(1.0)  # N(1) = 0
    for _ in range(3):
        b.step(1, 2, False)  # counts the current state 1 three times
    assert b.counts[1] == 3 and b.counts[0] == 1
    assert b.step(0, 1, False) == pytest.approx(1 / np.sqrt(1 + 3))
    assert b.step(0, 4, True) == 0.0
    assert CountBonus(2, lam=2.0, max_bonus=0.5).value(0) == pytest.approx(2 / np.sqrt(16))


def test_bonus_count_order_tabular_vs_neural():
    tab, neu = CountBonus(3), CountBonus(3, count_first=True)
    assert tab.step(1, 1, False) == pytest.approx(1.0)  # bonus first, then N(1) += 1
    assert neu.step(1, 1, False) == pytest.approx(1 / np.sqrt(2))  # N(1) += 1 first


def test_shaped_reward_adds_terms_and_counts_current_state():
    env = ChainEnv()
    learned = TabularSelfRS(env.n_states, env.n_actions)
    learned.phi[40, 1] = 0.25
    shaper = ShapedReward(env, bonus=CountBonus(env.n_states), learned=learned)
    assert shaper.reward(40, 1, 1.0, 41, False) == pytest.approx(1.0 + 0.25 + 1.0)
    assert shaper.reward(41, 0, 0.0, 40, False) == pytest.approx(1 / np.sqrt(2))
    assert shaper.reward(0, 0, 0.0, env.terminal, True) == 0.0
    shaper.learned_active = False
    assert shaper.reward(40, 1, 0.0, 41, False) == pytest.approx(1 / np.sqrt(2))


# A-EX-4 (ii): tabular φ update equals autograd of the §B4 surrogate ----------------------------------

@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_tabular_phi_update_equals_autograd_of_surrogate(seed):
    rng = np.random.default_rng(seed)
    buffer = random_buffer(rng)
    model = TabularSelfRS(6, 3, lr=0.01, critic_lr=0.01)
    model.phi[:] = rng.normal(size=(6, 3))
    model.critic.v[:] = rng.normal(size=6)
    phi0, v0 = model.phi.copy(), model.critic.v.copy()
    model.update(buffer)

    phi = torch.tensor(phi0, requires_grad=True)
    surrogate = torch.zeros((), dtype=torch.float64)
    for e in buffer:
        for s, a, p, g in zip(e.states, e.actions, e.probs, e.returns):
            p = torch.tensor(p)
            surrogate = surrogate + p[a] * (g - v0[s]) * (phi[s, a] - (p * phi[s]).sum())
    surrogate.backward()
    np.testing.assert_allclose(model.phi - phi0, 0.01 * phi.grad.numpy(), rtol=1e-10, atol=1e-12)
    # the critic moves after φ, towards the returns, averaged over all samples
    states = np.concatenate([e.states for e in buffer])
    returns = np.concatenate([e.returns for e in buffer])
    expected = v0 + 0.01 * np.bincount(states, returns - v0[states], minlength=6) / len(states)
    np.testing.assert_allclose(model.critic.v, expected)


def test_selfrs_gradient_golden():
    # one sample, π = (0.25, 0.75), a = 1, advantage 2: w = 0.75·2 = 1.5; grad = w·(e_1 − π)
    grad = selfrs_gradient(np.array([0]), np.array([1]), np.array([[0.25, 0.75]]), np.array([2.0]), 1)
    np.testing.assert_allclose(grad, [[-0.375, 0.375]])


# A-EX-4 (iii): one-state bandit --------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["table", "mlp"])
def test_bandit_phi_prefers_the_paying_action(kind):
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = TabularSelfRS(1, 2) if kind == "table" else NeuralSelfRS(1, 2, hidden=16, lr=1e-2)
    for _ in range(30):
        actions = rng.integers(2, size=10)
        buffer = [episode(np.zeros((1,), int) if kind == "table" else np.ones((1, 1), np.float32), [a],
                          [float(a == 1)], [[0.5, 0.5]]) for a in actions]
        model.update(buffer)
    if kind == "table":
        gap = model.phi[0, 1] - model.phi[0, 0]
    else:
        gap = model.value(np.ones(1), 1) - model.value(np.ones(1), 0)
    assert gap > 0


# A-EX-4 (iv): SORS′ does not update on equal returns --------------------------------------------------

def test_sors_does_not_update_when_all_returns_are_equal():
    rng = np.random.default_rng(0)
    sors = TabularSORS(6, 3, lr=0.01, n_pairs=10, gamma=0.99, rng=rng)
    flat = [episode(rng.integers(6, size=5), rng.integers(3, size=5), np.zeros(5), np.full((5, 3), 1 / 3))
            for _ in range(10)]
    sors.update(flat)
    assert sors.updates == 0 and not sors.phi.any()
    neural = NeuralSORS(2, 3, 8, 1e-3, 10, 0.99, rng)
    before = [p.detach().clone() for p in neural.net.parameters()]
    neural.update([episode(np.zeros((5, 2), np.float32), [0] * 5, [0.0] * 5, np.full((5, 3), 1 / 3))] * 4)
    assert neural.updates == 0
    assert all(torch.equal(a, b) for a, b in zip(before, neural.net.parameters()))


def test_sors_raises_reward_of_the_better_trajectory():
    rng = np.random.default_rng(0)
    sors = TabularSORS(3, 2, lr=0.1, n_pairs=10, gamma=0.99, rng=rng)
    good = episode([0, 1], [1, 1], [0.0, 1.0], np.full((2, 2), 0.5))
    bad = episode([0, 2], [0, 0], [0.0, 0.0], np.full((2, 2), 0.5))
    sors.update([good, bad])
    assert sors.updates == 1
    # one pair, σ(0) = 0.5: φ += 0.1·0.5·(g_good − g_bad)
    expected = np.zeros((3, 2))
    expected[0, 1], expected[1, 1], expected[0, 0], expected[2, 0] = 0.05, 0.05 * 0.99, -0.05, -0.05 * 0.99
    np.testing.assert_allclose(sors.phi, expected)


# agents ---------------------------------------------------------------------------------------------

def test_reinforce_gradient_equals_autograd_and_update_averages():
    rng = np.random.default_rng(1)
    theta = rng.normal(size=(4, 3))
    states, actions, returns = rng.integers(4, size=9), rng.integers(3, size=9), rng.normal(size=9)
    t = torch.tensor(theta, requires_grad=True)
    (torch.log_softmax(t, 1)[states, actions] * torch.tensor(returns)).sum().backward()
    np.testing.assert_allclose(reinforce_gradient(states, actions, returns, softmax(theta)), t.grad.numpy())
    agent = TabularReinforce(4, 3, lr=0.1)
    agent.theta[:] = theta
    agent._refresh()
    e = episode(states, actions, returns, np.full((9, 3), 1 / 3))
    e.shaped_returns = returns
    agent.update([e])
    np.testing.assert_allclose(agent.theta, theta + 0.1 * t.grad.numpy() / 9)
    np.testing.assert_allclose(agent.policy.sum(1), 1.0)


def test_frozen_mlp_matches_torch_and_neural_agent_behaviour_policy():
    torch.manual_seed(0)
    agent = NeuralReinforce(5, 4, lr=1e-3, hidden=16, epsilon=0.2)
    obs = np.random.default_rng(0).random(5).astype(np.float32)
    with torch.no_grad():
        ref = agent.net(torch.as_tensor(obs)).exp().numpy()
    np.testing.assert_allclose(agent.probs(obs), ref, rtol=1e-5)
    counts = np.bincount([agent.act(obs, np.random.default_rng(i), True)[0] for i in range(4000)], minlength=4)
    np.testing.assert_allclose(counts / 4000, 0.8 * ref + 0.05, atol=0.03)
    e = episode(np.tile(obs, (3, 1)), [1, 1, 1], [1.0, 1.0, 1.0], np.tile(ref, (3, 1)))
    agent.update([e])
    assert agent.probs(obs)[1] > ref[1]  # the frozen copy is refreshed after the update
    np.testing.assert_allclose(FrozenMLP(agent.net).logits(obs), agent.frozen.logits(obs))


# LIRPG′ ---------------------------------------------------------------------------------------------

def test_simulate_follows_tables_without_noise():
    env = ChainEnv(noise=0.0)
    right = np.cumsum(np.tile([0.0, 1.0], (env.n_states, 1)), 1)
    S, A, W = simulate(env, np.array([58, 1]), np.array([1, 0]), right, 4, 0.5, np.random.default_rng(0))
    np.testing.assert_array_equal(S[:, 0], [58, 59, 60, 60])
    np.testing.assert_array_equal(S[:, 1], [1, 0, 1, 2])
    np.testing.assert_array_equal(A[0], [1, 0])
    np.testing.assert_allclose(W[:, 0], [1, 0.5, 0.25, 0.125])


def test_lirpg_moves_phi_towards_actions_with_positive_advantage():
    env = ChainEnv(noise=0.0)
    agent = TabularReinforce(env.n_states, env.n_actions)
    lirpg = TabularLIRPG(env, lr=0.1, critic_lr=0.01, gamma=0.99, rng=np.random.default_rng(0))
    good = episode([59, 60], [1, 1], [0.0, 1.0], np.full((2, 2), 0.5))
    lirpg.update([good], agent)
    assert lirpg.phi[59, 1] > 0 and lirpg.phi[60, 1] >= 0 and lirpg.phi[:, 0].sum() == 0


def test_make_shaper_methods_and_errors():
    env, cfg, rng = ChainEnv(), ExplorsConfig(), np.random.default_rng(0)
    shapers = {m: make_shaper(m, env, cfg, rng) for m in ("orig", "explob", "selfrs", "explors", "sors", "lirpg")}
    assert shapers["orig"].bonus is None and shapers["orig"].learned is None
    assert shapers["explob"].bonus is not None and shapers["explob"].learned is None
    assert shapers["selfrs"].bonus is None and isinstance(shapers["selfrs"].learned, TabularSelfRS)
    assert shapers["explors"].bonus is not None and isinstance(shapers["explors"].learned, TabularSelfRS)
    with pytest.raises(ValueError, match="valid: orig, explob"):
        make_shaper("rnd", env, cfg, rng)
    with pytest.raises(ValueError, match="recent"):
        ExplorsConfig(recent=11)


def test_q_learning_backward_sweep_and_epsilon_greedy_policy():
    from rollwise.shaping.agents import TabularQLearning

    agent = TabularQLearning(3, 2, alpha=0.1, epsilon=0.05, gamma=0.99)
    np.testing.assert_allclose(agent.policy, 0.5)  # all ties: uniform
    e = episode([0, 1], [1, 1], [0.0, 1.0], np.full((2, 2), 0.5))
    e.next_states = np.array([1, 2])
    agent.update([e])
    # backward: Q[1,1] = 0.1·1 first, then Q[0,1] = 0.1·(0 + 0.99·0.1)
    np.testing.assert_allclose(agent.q, [[0, 0.0099], [0, 0.1], [0, 0]])
    np.testing.assert_allclose(agent.policy[0], [0.025, 0.975])
    np.testing.assert_allclose(agent.policy[2], [0.5, 0.5])


def test_q_learning_config_clips_phi():
    from rollwise.shaping.training import make_agent

    cfg = ExplorsConfig.q_learning()
    env = ChainEnv()
    assert type(make_agent(env, cfg)).__name__ == "TabularQLearning"
    shaper = make_shaper("explors", env, cfg, np.random.default_rng(0))
    buffer = [episode([59, 60], [1, 1], [0.0, 1.0], np.full((2, 2), 0.5))] * 10
    for _ in range(20):
        shaper.update(buffer, None)
    assert np.abs(shaper.learned.phi).max() == pytest.approx(0.01)
    with pytest.raises(ValueError, match="q_learning"):
        ExplorsConfig(agent="sarsa")


def test_lirpg_all_entries_is_weighted_difference_of_discounted_visits():
    env, g = ChainEnv(noise=0.0), 0.99
    agent = TabularReinforce(env.n_states, env.n_actions)
    agent.theta[:, 1] = 50.0  # deterministic "right" after the first action
    agent._refresh()
    sample = episode([58], [1], [1.0], [[0.5, 0.5]])
    outcomes = set()
    for seed in range(8):  # b ~ π_old is either 1 (same rollout: no change) or 0 (a detour)
        lirpg = TabularLIRPG(env, lr=0.1, critic_lr=0.0, gamma=g, rng=np.random.default_rng(seed), all_entries=True)
        lirpg.update([sample], agent)
        visits_a = np.zeros((env.n_states, 2))
        visits_a[58, 1], visits_a[59, 1] = 1, g
        visits_a[60, 1] = sum(g**t for t in range(2, 40))
        visits_b = np.zeros((env.n_states, 2))
        visits_b[58, 0], visits_b[57, 1], visits_b[58, 1], visits_b[59, 1] = 1, g, g**2, g**3
        visits_b[60, 1] = sum(g**t for t in range(4, 40))
        detour = 0.1 * 0.5 * 1.0 * (visits_a - visits_b)  # lr · π_old(a|s) · (Ḡ − V̄) · (g_a − g_b) / |buffer|
        outcomes.add("same" if np.allclose(lirpg.phi, 0.0) else "detour" if np.allclose(lirpg.phi, detour) else "bad")
    assert outcomes == {"same", "detour"}
