"""The EXPLORS environments (as the authors' code): Chain, Room (four rooms) and LineK.

All three are ``gymnasium.Env`` subclasses with the usual ``reset(seed=...) -> (obs, info)`` and
``step(a) -> (obs, reward, terminated, truncated, info)``. The reward of a step is the sparse extrinsic
reward R̄(s, a) of the current state and action; γ = 0.99 everywhere.

Chain and Room are tabular: their dynamics are two tables, ``transitions[s, a]`` (the next state of
the noise-free move) and ``rewards[s, a]``. With probability ``noise`` the chosen action is replaced by
one drawn uniformly from all actions (possibly the same one), exactly the authors' transition matrix
``(1 - p)·P_clean[·|s,a] + p·mean_b P_clean[·|s,b]``. Vectorised rollouts (LIRPG′) read the same tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

GAMMA = 0.99


class TabularEnv(gymnasium.Env):
    """A finite MDP with an absorbing terminal state, built from deterministic tables plus action noise.

    Subclasses fill ``transitions`` (n_states, n_actions) int, ``rewards`` (n_states, n_actions) float,
    ``start``, ``terminal`` and ``horizon``. The episode is truncated after ``horizon`` steps and
    terminated when it enters ``terminal``.
    """

    transitions: np.ndarray
    rewards: np.ndarray
    start: int
    terminal: int
    horizon: int
    noise: float
    gamma: float = GAMMA

    def _init_spaces(self) -> None:
        self.n_states, self.n_actions = self.transitions.shape
        self.observation_space = spaces.Discrete(self.n_states)
        self.action_space = spaces.Discrete(self.n_actions)
        self.state = self.start
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self.state, self.t = self.start, 0
        return self.state, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        s = self.state
        reward = float(self.rewards[s, action])  # R̄(s, a) is paid for the chosen action (code semantics)
        rng = self.np_random
        if rng.random() < self.noise:
            action = int(rng.integers(self.n_actions))
        self.state = int(self.transitions[s, action])
        self.t += 1
        terminated = self.state == self.terminal
        truncated = (not terminated) and self.t >= self.horizon
        return self.state, reward, terminated, truncated, {}

    def count_key(self, obs: int) -> int:
        """ψ(s) of the exploration bonus: the identity on tabular states."""
        return int(obs)

    def is_terminal(self, obs: int) -> bool:
        return int(obs) == self.terminal


class ChainEnv(TabularEnv):
    """Chain (``env_chain_n1_n2.py``): states 0..n1+n2 on a line plus an absorbing terminal.

    Start at ``n2``; actions 0 = left, 1 = right. Left at 0 enters the terminal (no reward). The goal is
    ``n1 + n2``: right there stays and pays 1 every step; left goes back one cell. Distractor: reward
    ``distractor`` for left at ``n2 - 15``. Best discounted return for (20, 40, H=40) ≈ 14.9.
    """

    def __init__(self, n1: int = 20, n2: int = 40, noise: float = 0.05, horizon: int = 40,
                 distractor: float = 0.0, distractor_offset: int = 15):
        goal, terminal = n1 + n2, n1 + n2 + 1
        n_states = n1 + n2 + 2
        T = np.zeros((n_states, 2), dtype=np.int64)
        for s in range(goal + 1):
            T[s, 0] = s - 1 if s > 0 else terminal
            T[s, 1] = min(s + 1, goal)
        T[terminal] = terminal
        R = np.zeros((n_states, 2))
        R[goal, 1] = 1.0
        R[n2 - distractor_offset, 0] = distractor
        self.transitions, self.rewards = T, R
        self.start, self.terminal, self.goal = n2, terminal, goal
        self.horizon, self.noise = horizon, noise
        self._init_spaces()


@dataclass(frozen=True)
class RoomLayout:
    """The four-room walls of ``env_fourroom.py``: blocked cell edges of a ``size`` x ``size`` grid."""

    size: int

    @property
    def doors(self) -> tuple[int, int]:
        """Open positions along each wall (0-based): x for the horizontal wall, y for the vertical one."""
        n = self.size
        return (math.ceil(n / 3.0) - 2, math.ceil(2 * (n + 2) / 3.0) - 1)

    @property
    def wall(self) -> int:
        """The horizontal wall lies between rows wall-1 and wall; the vertical between columns wall-1, wall."""
        return self.size // 2

    def blocked(self, x: int, y: int, dx: int, dy: int) -> bool:
        w, doors = self.wall, self.doors
        if dy != 0 and {y, y + dy} == {w - 1, w} and x not in doors:
            return True
        return dx != 0 and {x, x + dx} == {w - 1, w} and y not in doors


class RoomEnv(TabularEnv):
    """Room (``env_fourroom.py``, gridsizefull 7): four rooms, start (1, 1), goal (6, 6), H = 30.

    State ``y * size + x`` plus a terminal; actions 0 up, 1 left, 2 down, 3 right. Moves into a wall or
    off the grid stay put. Corner (0, 0): left/down enter the terminal (a trap). At the goal: right stays
    and pays 1, up stays, left goes to (5, 6), down goes to (6, 5) — or, with ``down_quirk``, to cell
    42 = (0, 6) as the authors' code does (our benchmark uses (6, 5)). Distractor: reward
    ``distractor`` for up at (1, 0). Shortest path 10 steps, best return ≈ 16.5.
    """

    MOVES = ((0, 1), (-1, 0), (0, -1), (1, 0))  # up, left, down, right

    def __init__(self, size: int = 7, noise: float = 0.05, horizon: int = 30, distractor: float = 0.0,
                 down_quirk: bool = False):
        layout = RoomLayout(size)
        n_cells = size * size
        terminal = n_cells
        T = np.zeros((n_cells + 1, 4), dtype=np.int64)
        for s in range(n_cells):
            x, y = s % size, s // size
            for a, (dx, dy) in enumerate(self.MOVES):
                nx, ny = x + dx, y + dy
                inside = 0 <= nx < size and 0 <= ny < size
                T[s, a] = ny * size + nx if inside and not layout.blocked(x, y, dx, dy) else s
        T[0, 1] = T[0, 2] = terminal  # the trap corner
        goal = n_cells - 1
        T[goal] = (goal, goal - 1, 42 if down_quirk else goal - size, goal)
        T[terminal] = terminal
        R = np.zeros((n_cells + 1, 4))
        R[goal, 3] = 1.0
        R[1, 0] = distractor  # up at (1, 0)
        self.transitions, self.rewards, self.layout = T, R, layout
        self.start, self.terminal, self.goal = size + 1, terminal, goal
        self.horizon, self.noise, self.size = horizon, noise, size
        self._init_spaces()


class LineKEnv(gymnasium.Env):
    """LineK (``env_linekeymulti.py``, n_picks = 10): a continuous line with keys, 4 actions.

    x ∈ [0, 1], start x ~ U[0.3, 0.4]. Actions: 0 left, 1 right (move by U[0.074, 0.076], reversed with
    probability ``noise``, clipped to [0, 1]); 2 picks the correct key, 3 picks a wrong one (uniform
    among the other ``n_picks - 1``). Picks work only in the key area x ∈ [0, 0.1] without a key.
    Observation (4 + n_picks): [x, has_key, in_key_area, in_goal_area, one-hot of the held key].
    Reward 1 for right in the goal area [0.9, 1] holding the correct key (paid every step); distractor:
    ``distractor`` for right in the goal area without it. The episode ends when the step count exceeds
    ``horizon`` (so ``horizon + 1`` steps, as in the code).
    """

    KEY_AREA = (0.0, 0.1)
    GOAL_AREA = (0.9, 1.0)
    MOVE = (0.074, 0.076)
    N_BINS = 10

    def __init__(self, n_picks: int = 10, noise: float = 0.05, horizon: int = 60,
                 start_range: tuple[float, float] = (0.3, 0.4), distractor: float = 0.0):
        self.n_picks, self.noise, self.horizon = n_picks, noise, horizon
        self.start_range, self.distractor = start_range, distractor
        self.n_actions = 3 if n_picks == 1 else 4
        self.obs_dim = 4 + n_picks
        self.gamma = GAMMA
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.obs_dim,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_actions)
        self.n_count_keys = self.N_BINS * (1 + n_picks)
        self.x, self.key, self.steps = 0.0, -1, 1

    def _obs(self) -> np.ndarray:
        o = np.zeros(self.obs_dim, dtype=np.float32)
        o[0] = self.x
        o[1] = float(self.key >= 0)
        o[2] = float(self.KEY_AREA[0] <= self.x <= self.KEY_AREA[1])
        o[3] = float(self.GOAL_AREA[0] <= self.x <= self.GOAL_AREA[1])
        if self.key >= 0:
            o[4 + self.key] = 1.0
        return o

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(*self.start_range))
        self.key, self.steps = -1, 1
        return self._obs(), {}

    def reward(self, x: float, key: int, action: int) -> float:
        """R̄(s, a): right in the goal area pays 1 with the correct key (index 0), else the distractor."""
        if action == 1 and self.GOAL_AREA[0] <= x <= self.GOAL_AREA[1]:
            return 1.0 if key == 0 else self.distractor
        return 0.0

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        rng = self.np_random
        reward = self.reward(self.x, self.key, action)
        if action < 2:
            if rng.random() < self.noise:
                action = 1 - action
            move = rng.uniform(*self.MOVE)
            self.x = float(min(max(self.x + (move if action == 1 else -move), 0.0), 1.0))
        elif self.key < 0 and self.KEY_AREA[0] <= self.x <= self.KEY_AREA[1]:
            self.key = 0 if action == 2 else int(rng.integers(1, self.n_picks))
        truncated = self.steps > self.horizon
        self.steps += 1
        return self._obs(), reward, False, truncated, {}

    def count_key(self, obs: np.ndarray) -> int:
        """ψ(s): key_status·10 + ⌊x/0.1⌋ (x = 1 in the last bin); key_status = 1 + key index or 0."""
        status = 1 + int(np.argmax(obs[4:])) if obs[1] == 1 else 0
        return status * self.N_BINS + min(int(math.floor(float(obs[0]) / 0.1)), self.N_BINS - 1)

    def is_terminal(self, obs: np.ndarray) -> bool:
        return False


def make_env(name: str, **kwargs: Any) -> gymnasium.Env:
    """``chain`` | ``room`` | ``linek`` with our benchmark's defaults (keyword arguments override them)."""
    envs = {"chain": ChainEnv, "room": RoomEnv, "linek": LineKEnv}
    if name not in envs:
        raise ValueError(f"unknown EXPLORS environment {name!r}; valid: {', '.join(envs)}")
    return envs[name](**kwargs)
