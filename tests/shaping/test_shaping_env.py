"""Environments of spec explors.md §B8: layouts, rewards, horizons, noise and the gymnasium API."""

from collections import deque

import gymnasium
import numpy as np
import pytest

from rollwise.shaping.env import ChainEnv, LineKEnv, RoomEnv, make_env


def discounted(rewards, gamma=0.99):
    return sum(gamma**t * r for t, r in enumerate(rewards))


def run_actions(env, actions):
    env.reset(seed=0)
    rewards, states, done = [], [], False
    for a in actions:
        s, r, term, trunc, _ = env.step(a)
        rewards.append(r)
        states.append(s)
        done = term or trunc
        if done:
            break
    return states, rewards, done


def test_chain_layout_and_best_return():
    env = ChainEnv(noise=0.0)
    assert env.n_states == 62 and env.n_actions == 2
    assert env.start == 40 and env.goal == 60 and env.terminal == 61
    assert env.transitions[0, 0] == 61 and env.transitions[60, 1] == 60 and env.transitions[60, 0] == 59
    states, rewards, done = run_actions(env, [1] * 100)
    assert len(rewards) == 40 and done  # H = 40
    assert states[19] == 60 and sum(rewards) == 20  # 20 steps to the goal, then 1 per step
    assert discounted(rewards) == pytest.approx(sum(0.99**t for t in range(20, 40)))
    assert discounted(rewards) == pytest.approx(14.89, abs=0.01)


def test_chain_left_end_is_absorbing_terminal_without_reward():
    env = ChainEnv(noise=0.0)
    states, rewards, done = run_actions(env, [0] * 100)
    assert len(rewards) == 40 and states[-1] == 0  # H = 40 cuts at state 0, one step before the terminal
    env = ChainEnv(noise=0.0, horizon=60)
    states, rewards, done = run_actions(env, [0] * 100)
    assert states[-1] == 61 and len(rewards) == 41 and done and sum(rewards) == 0


def test_chain_distractor_position():
    env = ChainEnv(distractor=0.01)
    assert env.rewards[25, 0] == 0.01 and env.rewards.sum() == pytest.approx(1.01)


def test_noise_replaces_action_uniformly():
    env = ChainEnv(noise=0.05)
    env.reset(seed=1)
    flips = 0
    for _ in range(20000):
        env.state, env.t = 30, 0
        s, *_ = env.step(1)
        flips += s == 29
    assert flips / 20000 == pytest.approx(0.025, abs=0.005)  # p·(1 − 1/|A|)


def shortest_path(env, src, dst):
    dist, queue = {src: 0}, deque([src])
    while queue:
        s = queue.popleft()
        for a in range(env.n_actions):
            n = int(env.transitions[s, a])
            if n not in dist:
                dist[n] = dist[s] + 1
                queue.append(n)
    return dist[dst]


def test_room_walls_doors_trap_and_goal():
    env = RoomEnv(noise=0.0)
    up, left, down, right = range(4)
    cell = lambda x, y: y * 7 + x  # noqa: E731
    assert env.n_states == 50 and env.start == cell(1, 1) and env.goal == cell(6, 6)
    assert shortest_path(env, env.start, env.goal) == 10
    assert env.transitions[cell(2, 0), right] == cell(2, 0)  # vertical wall
    assert env.transitions[cell(2, 1), right] == cell(3, 1)  # door at y = 1
    assert env.transitions[cell(0, 2), up] == cell(0, 2)  # horizontal wall
    assert env.transitions[cell(1, 2), up] == cell(1, 3)  # door at x = 1
    assert env.transitions[cell(5, 2), up] == cell(5, 3)  # door at x = 5
    assert env.transitions[0, left] == env.terminal and env.transitions[0, down] == env.terminal
    g = env.goal
    assert tuple(env.transitions[g]) == (g, cell(5, 6), cell(6, 5), g)
    assert RoomEnv(down_quirk=True).transitions[g, down] == 42
    assert env.rewards[g, right] == 1 and env.rewards.sum() == 1


def test_room_best_return():
    env = RoomEnv(noise=0.0)
    path = [3, 3, 3, 3, 0, 0, 0, 0, 0, 3] + [3] * 30  # along y = 1, up x = 5, right to the goal
    states, rewards, _ = run_actions(env, path)
    assert len(rewards) == 30 and states[9] == env.goal
    assert discounted(rewards) == pytest.approx(16.47, abs=0.01)


def test_linek_keys_goal_and_horizon():
    env = LineKEnv(noise=0.0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (14,) and 0.3 <= obs[0] <= 0.4 and env.n_actions == 4
    obs, *_ = env.step(2)  # pick outside the key area: nothing happens
    assert obs[1] == 0
    steps = 1
    while obs[0] > 0.1:
        obs, *_ = env.step(0)
        steps += 1
    assert obs[2] == 1
    obs, *_ = env.step(2)
    steps += 1
    assert obs[1] == 1 and obs[4] == 1 and env.count_key(obs) == 10 + int(obs[0] / 0.1)
    total, truncated = 0.0, False
    while not truncated:
        obs, r, term, truncated, _ = env.step(1)
        steps += 1
        total += r
        assert not term
    assert steps == 61  # the episode ends when the step count exceeds H = 60
    assert obs[0] == 1.0 and obs[3] == 1 and total > 0 and env.count_key(obs) == 19


def test_linek_wrong_key_never_pays():
    env = LineKEnv(noise=0.0, start_range=(0.05, 0.05))
    obs, _ = env.reset(seed=3)
    obs, *_ = env.step(3)
    assert obs[1] == 1 and obs[4] == 0 and obs[5:].sum() == 1
    assert env.count_key(obs) >= 20
    assert env.reward(0.95, env.key, 1) == 0.0 and env.reward(0.95, 0, 1) == 1.0


@pytest.mark.parametrize("name", ["chain", "room", "linek"])
def test_gymnasium_api(name):
    from gymnasium.utils.env_checker import check_env

    env = make_env(name)
    assert isinstance(env, gymnasium.Env)
    check_env(env, skip_render_check=True)
    a, _ = env.reset(seed=5)
    b, _ = make_env(name).reset(seed=5)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_make_env_rejects_unknown_name():
    with pytest.raises(ValueError, match="valid: chain, room, linek"):
        make_env("maze")
