"""A 1-D noisy point mass: the small continuous environment of the deep RE path (acceptance row A-RE-5).

x' = clip(x + dt * (clip(a, -1, 1) + w sin(3 x) + sigma * eps), -x_max, x_max),  eps ~ N(0, 1),
reward = 1 - min(|x'|, 1), start x_0 ~ U(-start_range, start_range), horizon H.

Action noise with sigma = 0.5 mirrors the authors' ``NoisyWrapper`` (Gaussian noise added to the
action). The "wind" w sin(3x) makes the expert's action a non-monotone function of the
state, so that BC from few demos extrapolates differently across ensemble members (our choice). The
expert cancels the wind and drives the mass to the origin: a_E(x) = clip(-gain * x - w sin(3x), -1, 1).
It is a ``gymnasium.Env`` for single episodes (with ``clone_state/set_state``) and has batched
NumPy ``reset_batch/step_batch`` for many rollouts at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np


@dataclass
class PointMassConfig:
    """Noisy point-mass settings."""

    horizon: int = 40  # steps per episode
    dt: float = 0.25  # integration step
    noise: float = 0.5  # std of the Gaussian action noise (NoisyWrapper's default)
    x_max: float = 2.0  # the position is clipped to [-x_max, x_max]
    start_range: float = 1.5  # x_0 ~ U(-start_range, start_range)
    wind: float = 0.5  # amplitude w of the position-dependent drift w * sin(3x)
    expert_gain: float = 0.5  # expert a_E(x) = clip(-gain * x - w sin(3x), -1, 1)


class NoisyPointMass(gym.Env):
    """Observation (1,) position, action (1,) in [-1, 1]."""

    def __init__(self, cfg: PointMassConfig | None = None) -> None:
        self.cfg = cfg or PointMassConfig()
        c = self.cfg
        self.observation_space = gym.spaces.Box(-c.x_max, c.x_max, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._rng = np.random.default_rng(0)
        self.x, self.t = 0.0, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.x, self.t = float(self.reset_batch(1, self._rng)[0, 0]), 0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        x2, r = self.step_batch(np.array([[self.x]]), np.asarray(action, float).reshape(1, 1), self._rng)
        self.x, self.t = float(x2[0, 0]), self.t + 1
        return np.array([self.x], np.float32), float(r[0]), False, self.t >= self.cfg.horizon, {}

    def clone_state(self) -> tuple[float, int, dict[str, Any]]:
        return self.x, self.t, self._rng.bit_generator.state

    def set_state(self, saved: tuple[float, int, dict[str, Any]]) -> None:
        self.x, self.t = saved[0], saved[1]
        self._rng.bit_generator.state = saved[2]

    # -- batched ------------------------------------------------------------------------------------
    def reset_batch(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n start positions, shape (n, 1)."""
        return rng.uniform(-self.cfg.start_range, self.cfg.start_range, size=(n, 1))

    def step_batch(self, x: np.ndarray, a: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Next positions (n, 1) and rewards (n,) for positions x (n, 1) and actions a (n, 1)."""
        c = self.cfg
        noisy = np.clip(a, -1.0, 1.0) + c.wind * np.sin(3.0 * x) + c.noise * rng.standard_normal(x.shape)
        x2 = np.clip(x + c.dt * noisy, -c.x_max, c.x_max)
        return x2, 1.0 - np.minimum(np.abs(x2[:, 0]), 1.0)

    def expert_action(self, x: np.ndarray) -> np.ndarray:
        """The deterministic expert, shape like x."""
        return np.clip(-self.cfg.expert_gain * x - self.cfg.wind * np.sin(3.0 * x), -1.0, 1.0)


def rollouts(env: NoisyPointMass, act, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n episodes of ``act`` (maps (n, 1) positions to (n, 1) actions).

    Returns states (n, H, 1), actions (n, H, 1) as played (before clipping), returns (n,).
    """
    H = env.cfg.horizon
    states, actions = np.zeros((n, H, 1)), np.zeros((n, H, 1))
    ret = np.zeros(n)
    x = env.reset_batch(n, rng)
    for t in range(H):
        a = act(x)
        states[:, t], actions[:, t] = x, a
        x, r = env.step_batch(x, a, rng)
        ret += r
    return states, actions, ret
