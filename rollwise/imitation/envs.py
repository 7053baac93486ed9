"""Tabular episodic MDPs with known dynamics, and a simulator over them (the environments of our CPU benchmark).

Every environment is a :class:`TabularMDP` (transition tensor ``P``, reward tensor, start distribution,
horizon), so values and occupancies are exact (see :mod:`rollwise.imitation.mdp`). Learners and the
replay estimator do not read ``P``: they sample through :class:`TabularSimulator`, which offers
``reset/step`` for one episode, ``clone_state/set_state`` for replay from a saved point, and batched
``reset_batch/step_batch`` so that thousands of replays run as one NumPy loop over time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rollwise.shapes import Dim


@dataclass
class TabularMDP:
    """A finite-horizon MDP.

    P: (S, A, S) transition probabilities, rows sum to 1.
    reward: (S, A, S) reward of the transition (s, a, s').
    start: (S,) start distribution.
    horizon: H, the number of decisions per episode (t = 0 .. H-1).
    """

    name: str
    P: np.ndarray
    reward: np.ndarray
    start: np.ndarray
    horizon: int
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        S, A, S2 = self.P.shape
        if S != S2 or self.reward.shape != self.P.shape or self.start.shape != (S,):
            raise ValueError(f"{self.name}: P {self.P.shape}, reward {self.reward.shape}, start "
                             f"{self.start.shape} must be (S,A,S), (S,A,S), (S,)")
        if not np.allclose(self.P.sum(-1), 1.0) or not np.isclose(self.start.sum(), 1.0):
            raise ValueError(f"{self.name}: P rows and start must sum to 1")

    n_states = Dim("P", 0)  # S
    n_actions = Dim("P", 1)  # A

    @property
    def expected_reward(self) -> np.ndarray:
        """r(s, a) = sum_s' P(s'|s,a) reward(s,a,s'); shape (S, A)."""
        return (self.P * self.reward).sum(-1)


class TabularSimulator:
    """Sampling access to a :class:`TabularMDP`: what a learner that "can call the simulator" gets."""

    def __init__(self, mdp: TabularMDP, seed: int = 0) -> None:
        self.mdp = mdp
        self.rng = np.random.default_rng(seed)
        self._cdf = np.cumsum(mdp.P, axis=-1)
        self._cdf[..., -1] = 1.0
        self._start_cdf = np.cumsum(mdp.start)
        self._start_cdf[-1] = 1.0
        self.state = 0
        self.t = 0

    # -- one episode -------------------------------------------------------------------------------
    def reset(self) -> int:
        self.state = int(np.searchsorted(self._start_cdf, self.rng.random(), side="right"))
        self.t = 0
        return self.state

    def step(self, action: int) -> tuple[int, float, bool]:
        """Take ``action``; returns (next state, reward, episode over)."""
        s = self.state
        s2 = int(np.searchsorted(self._cdf[s, action], self.rng.random(), side="right"))
        r = float(self.mdp.reward[s, action, s2])
        self.state, self.t = s2, self.t + 1
        return s2, r, self.t >= self.mdp.horizon

    def clone_state(self) -> tuple[int, int]:
        """(state, time step): enough to resume an episode with :meth:`set_state`."""
        return self.state, self.t

    def set_state(self, saved: tuple[int, int]) -> None:
        self.state, self.t = int(saved[0]), int(saved[1])

    # -- many episodes at once ---------------------------------------------------------------------
    def reset_batch(self, n: int) -> np.ndarray:
        """n start states, shape (n,)."""
        return np.searchsorted(self._start_cdf, self.rng.random(n), side="right")

    def step_batch(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Next states for paired (n,) states and actions; shape (n,)."""
        cdf = self._cdf[states, actions]  # (n, S)
        u = self.rng.random(len(states))[:, None]
        return (u >= cdf).sum(-1)


def drift_chain(n_states: int = 21, drift: float = 0.4, horizon: int = 25) -> TabularMDP:
    """DriftChain(K, p): a line; actions left/stay/right, then a +-1 push with prob p (p/2 each sign).

    Reward 1 for being at the centre; start at the centre.
    """
    K, c = n_states, n_states // 2
    P = np.zeros((K, 3, K))
    for s in range(K):
        for a in range(3):
            s1 = min(max(s + a - 1, 0), K - 1)
            P[s, a, s1] += 1.0 - drift
            P[s, a, max(s1 - 1, 0)] += drift / 2
            P[s, a, min(s1 + 1, K - 1)] += drift / 2
    reward = np.zeros_like(P)
    reward[c] = 1.0
    start = np.zeros(K)
    start[c] = 1.0
    return TabularMDP(f"DriftChain(K={K},p={drift})", P, reward, start, horizon, {"centre": c})


FROZEN_LAKE_4X4 = ("SFFF", "FHFH", "FFFH", "HFFG")
_MOVES = ((0, -1), (1, 0), (0, 1), (-1, 0))  # left, down, right, up (gymnasium's order)


def frozen_lake(grid: tuple[str, ...] = FROZEN_LAKE_4X4, horizon: int = 25) -> TabularMDP:
    """Slippery FrozenLake: the intended move w.p. 1/3, each perpendicular move w.p. 1/3.

    Holes and the goal absorb; reward 1 on entering the goal.
    """
    rows, cols = len(grid), len(grid[0])
    S = rows * cols
    P = np.zeros((S, 4, S))
    reward = np.zeros((S, 4, S))
    for s in range(S):
        r, c = divmod(s, cols)
        cell = grid[r][c]
        for a in range(4):
            if cell in "HG":
                P[s, a, s] = 1.0
                continue
            for b in ((a - 1) % 4, a, (a + 1) % 4):
                dr, dc = _MOVES[b]
                r2, c2 = min(max(r + dr, 0), rows - 1), min(max(c + dc, 0), cols - 1)
                s2 = r2 * cols + c2
                P[s, a, s2] += 1.0 / 3.0
                if grid[r2][c2] == "G":
                    reward[s, a, s2] = 1.0
    start = np.zeros(S)
    start["".join(grid).index("S")] = 1.0
    return TabularMDP("FrozenLake4x4-slippery", P, reward, start, horizon, {"grid": grid})


def trap_chain(length: int = 10, slip: float = 0.2, n_actions: int = 4, horizon: int = 30,
               key_seed: int = 0) -> TabularMDP:
    """TrapChain(L, p, A): corridor 0..L-1, side states sigma_i, one absorbing trap.

    Corridor cell i: action 0 moves forward (clipped at L-1), the others stay; then, w.p. p, the move
    is lost and the agent slips to sigma_i instead. In sigma_i exactly one "key" action (random, fixed
    by ``key_seed``) returns to i, every other action leads to the trap. Reward 1 per step spent at the
    last corridor cell. States: corridor 0..L-1, sides L..2L-1, trap 2L.
    (Our choice: a slip happens before the move; this gives J_E = 13.9 at the defaults, the value our pilot
    implementation measured; "after" gives about 16.)
    """
    L, A = length, n_actions
    S, trap = 2 * L + 1, 2 * L
    keys = np.random.default_rng(key_seed).integers(0, A, size=L)
    P = np.zeros((S, A, S))
    for i in range(L):
        for a in range(A):
            dest = min(i + 1, L - 1) if a == 0 else i
            P[i, a, dest] += 1.0 - slip
            P[i, a, L + i] += slip
            P[L + i, a, i if a == keys[i] else trap] = 1.0
    P[trap, :, trap] = 1.0
    reward = np.zeros_like(P)
    reward[L - 1] = 1.0
    start = np.zeros(S)
    start[0] = 1.0
    return TabularMDP(f"TrapChain(L={L},p={slip},A={A})", P, reward, start, horizon,
                      {"keys": keys, "trap": trap})


ENVIRONMENTS = {"drift_chain": drift_chain, "frozen_lake": frozen_lake, "trap_chain": trap_chain}


def make_env(name: str, **kwargs: Any) -> TabularMDP:
    """Build a tabular environment by name (one of :data:`ENVIRONMENTS`)."""
    if name not in ENVIRONMENTS:
        raise KeyError(f"unknown tabular environment {name!r}; valid: {', '.join(ENVIRONMENTS)}")
    return ENVIRONMENTS[name](**kwargs)
