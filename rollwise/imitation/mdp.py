"""Exact computations on a :class:`TabularMDP`: occupancies, values, the DP expert, demonstrations.

A policy is either stationary, shape (S, A), or time-indexed, shape (H, S, A); rows are distributions.
"""

from __future__ import annotations

import numpy as np

from rollwise.imitation.envs import TabularMDP, TabularSimulator


def time_indexed(policy: np.ndarray, horizon: int) -> np.ndarray:
    """Broadcast a stationary (S, A) policy to (H, S, A); a (H, S, A) policy is returned unchanged."""
    if policy.ndim == 2:
        return np.broadcast_to(policy, (horizon, *policy.shape))
    if policy.ndim != 3 or policy.shape[0] != horizon:
        raise ValueError(f"policy must be (S,A) or (H={horizon},S,A), got {policy.shape}")
    return policy


def occupancy(mdp: TabularMDP, policy: np.ndarray) -> np.ndarray:
    """Exact state-action occupancy rho_t(s, a) = P(s_t = s, a_t = a); shape (H, S, A)."""
    pi = time_indexed(policy, mdp.horizon)
    rho = np.zeros((mdp.horizon, mdp.n_states, mdp.n_actions))
    d = mdp.start.copy()
    for t in range(mdp.horizon):
        rho[t] = d[:, None] * pi[t]
        d = np.einsum("sa,sap->p", rho[t], mdp.P)
    return rho


def value(mdp: TabularMDP, policy: np.ndarray) -> float:
    """Exact expected return J(pi) = sum_t sum_{s,a} rho_t(s,a) r(s,a)."""
    return float((occupancy(mdp, policy) * mdp.expected_reward).sum())


def optimal_policy(mdp: TabularMDP, stationary: bool = True, tol: float = 1e-9) -> np.ndarray:
    """Deterministic optimal policy by finite-horizon dynamic programming.

    ``stationary=True`` returns the t=0 greedy action at every state, shape (S, A) one-hot (the
    expert of our three environments); otherwise the (H, S, A) time-indexed optimal policy.
    Ties (within ``tol``) go to the lowest action index, so the expert is deterministic.
    """
    H, S, A = mdp.horizon, mdp.n_states, mdp.n_actions
    r = mdp.expected_reward
    v = np.zeros(S)
    greedy = np.zeros((H, S), dtype=int)
    for t in reversed(range(H)):
        q = r + mdp.P @ v  # (S, A)
        greedy[t] = np.argmax(q >= q.max(-1, keepdims=True) - tol, axis=-1)
        v = q.max(-1)
    onehot = np.eye(A)[greedy]  # (H, S, A)
    return onehot[0] if stationary else onehot


def sample_demos(sim: TabularSimulator, policy: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n trajectories of ``policy`` in the simulator: states and actions, each (n, H) int arrays."""
    H = sim.mdp.horizon
    pi = time_indexed(policy, H)
    states = np.zeros((n, H), dtype=int)
    actions = np.zeros((n, H), dtype=int)
    s = sim.reset_batch(n)
    for t in range(H):
        cdf = np.cumsum(pi[t, s], axis=-1)
        a = (sim.rng.random(n)[:, None] >= cdf[:, :-1]).sum(-1)
        states[:, t], actions[:, t] = s, a
        s = sim.step_batch(s, a)
    return states, actions


def empirical_occupancy(states: np.ndarray, actions: np.ndarray, n_states: int, n_actions: int) -> np.ndarray:
    """rho_hat_t(s, a) = (1/N) #{i : (s_t^i, a_t^i) = (s, a)} from (N, H) arrays; shape (H, S, A)."""
    N, H = states.shape
    rho = np.zeros((H, n_states, n_actions))
    t = np.broadcast_to(np.arange(H), (N, H))
    np.add.at(rho, (t.ravel(), states.ravel(), actions.ravel()), 1.0 / N)
    return rho


def tv_error(rho_hat: np.ndarray, rho: np.ndarray) -> float:
    """Sum over steps of the total-variation distance, sum_t 0.5 * ||rho_hat_t - rho_t||_1."""
    return float(0.5 * np.abs(rho_hat - rho).sum())
