"""Episodes and rollouts on the shaped reward (the authors' ``utils.generate_sampled_data``).

One :class:`Episode` stores what every update needs: states, actions, the extrinsic reward R̄ and the
shaped reward R̂ of each step, π(·|s_t) at rollout time, and both returns-to-go, Ḡ_t (extrinsic) and
Ĝ_t (shaped, computed with the bonus and φ frozen at rollout time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy.signal import lfilter


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = Σ_{k≥t} γ^{k-t} r_k. ``rewards``: (T,) -> (T,)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.size == 0:
        return r
    return lfilter([1.0], [1.0, -gamma], r[::-1])[::-1].copy()


@dataclass
class Episode:
    """One rollout. ``states``: (T,) int (tabular) or (T, obs_dim) float (LineK)."""

    states: np.ndarray
    actions: np.ndarray        # (T,) int
    rewards: np.ndarray        # (T,) extrinsic R̄(s_t, a_t)
    shaped: np.ndarray         # (T,) R̂ = R̄ + R_self + R_explore
    probs: np.ndarray          # (T, n_actions) π(·|s_t) stored at rollout time
    returns: np.ndarray        # (T,) Ḡ_t, extrinsic return-to-go
    shaped_returns: np.ndarray  # (T,) Ĝ_t, shaped return-to-go
    next_states: np.ndarray | None = None  # (T,) or (T, obs_dim): s_{t+1} (Q-learning targets)

    @property
    def extrinsic_return(self) -> float:
        """Ḡ_0 = Σ_t γ^t R̄_t, the evaluation metric."""
        return float(self.returns[0]) if len(self.returns) else 0.0


class Agent(Protocol):
    def act(self, obs: Any, rng: np.random.Generator, explore: bool) -> tuple[int, np.ndarray]: ...

    def update(self, episodes: list[Episode]) -> None: ...


class Shaper(Protocol):
    def reward(self, obs: Any, action: int, extrinsic: float, next_obs: Any, terminated: bool) -> float: ...

    def update(self, buffer: list[Episode], agent: Agent) -> None: ...


def rollout(env: Any, agent: Agent, shaper: Shaper, rng: np.random.Generator, gamma: float,
            explore: bool = True) -> Episode:
    """Roll out one episode with the agent's current policy on the shaped reward ."""
    obs, _ = env.reset()
    states, actions, rewards, shaped, probs, next_states = [], [], [], [], [], []
    while True:
        a, p = agent.act(obs, rng, explore)
        next_obs, r, terminated, truncated, _ = env.step(a)
        states.append(obs)
        actions.append(a)
        rewards.append(r)
        shaped.append(shaper.reward(obs, a, r, next_obs, terminated))
        probs.append(p)
        next_states.append(next_obs)
        if terminated or truncated:
            break
        obs = next_obs
    rewards_arr, shaped_arr = np.asarray(rewards, dtype=np.float64), np.asarray(shaped, dtype=np.float64)
    return Episode(np.asarray(states), np.asarray(actions, dtype=np.int64), rewards_arr, shaped_arr,
                   np.asarray(probs, dtype=np.float64), discounted_returns(rewards_arr, gamma),
                   discounted_returns(shaped_arr, gamma), np.asarray(next_states))


def stack(episodes: list[Episode]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate (states, actions, probs, extrinsic returns) over episodes: (N,), (N,), (N, A), (N,)."""
    return (np.concatenate([e.states for e in episodes]), np.concatenate([e.actions for e in episodes]),
            np.concatenate([e.probs for e in episodes]), np.concatenate([e.returns for e in episodes]))
