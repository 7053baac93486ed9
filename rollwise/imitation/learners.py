"""The exact tabular moment-matching learner: min-L1 occupancy matching as a linear program (the min-distance learner of MIMIC-MD, Rajaraman et al. 2020).

    min_pi sum_t ||rho_t^pi - rho_hat_t||_1
        = min_{d >= 0} sum_t sum_{s,a} |d_t(s,a) - rho_hat_t(s,a)|
    s.t. sum_a d_0(s,a) = mu(s),  sum_a d_{t+1}(s',a) = sum_{s,a} P(s'|s,a) d_t(s,a)

solved with scipy's HiGHS. The policy is pi_t(a|s) = d_t(s,a) / sum_a d_t(s,a), uniform where the
mass is zero. MIMIC-MD's restriction to Pi_mimic(D1) (play the D1 expert action on the known set K)
sets d_t(s,a) = 0 for s in K, a != a_E(s). Any target works: the empirical occupancy gives the MM
baseline, the replay estimate gives RE.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from rollwise.imitation.envs import TabularMDP


def flow_constraints(mdp: TabularMDP) -> tuple[sp.csr_matrix, np.ndarray]:
    """Bellman-flow equalities A_eq d = b_eq over d flattened from (H, S, A); A_eq is (H*S, H*S*A)."""
    H, S, A = mdp.horizon, mdp.n_states, mdp.n_actions
    sum_a = sp.kron(sp.eye(S), np.ones((1, A)))  # (S, S*A): sum_a d_t(s, a)
    inflow = sp.csr_matrix(mdp.P.reshape(S * A, S).T)  # (S, S*A): sum_{s,a} P(s'|s,a) d_t(s,a)
    blocks = [[None] * H for _ in range(H)]
    for t in range(H):
        blocks[t][t] = sum_a
        if t > 0:
            blocks[t][t - 1] = -inflow
    a_eq = sp.bmat(blocks, format="csr")
    b_eq = np.zeros(H * S)
    b_eq[:S] = mdp.start
    return a_eq, b_eq


def min_l1_occupancy(mdp: TabularMDP, target: np.ndarray, fixed_actions: np.ndarray | None = None) -> np.ndarray:
    """Occupancy d (H, S, A) of a policy closest in summed L1 to ``target`` (H, S, A).

    fixed_actions: optional (H, S) int array, the action forced at (t, s) where >= 0 (Pi_mimic).
    Variables are [d, u] with u >= |d - target|; the objective is sum u.
    """
    H, S, A = mdp.horizon, mdp.n_states, mdp.n_actions
    n = H * S * A
    if target.shape != (H, S, A):
        raise ValueError(f"target must be (H, S, A) = {(H, S, A)}, got {target.shape}")
    a_flow, b_flow = flow_constraints(mdp)
    a_eq = sp.hstack([a_flow, sp.csr_matrix((H * S, n))], format="csr")
    eye = sp.eye(n, format="csr")
    a_ub = sp.vstack([sp.hstack([eye, -eye]), sp.hstack([-eye, -eye])], format="csr")
    rho = target.ravel()
    b_ub = np.concatenate([rho, -rho])
    upper = np.full(n, np.inf)
    if fixed_actions is not None:
        forced = fixed_actions[:, :, None]  # (H, S, 1)
        banned = (forced >= 0) & (np.arange(A)[None, None, :] != forced)
        upper[banned.ravel()] = 0.0
    bounds = np.stack([np.zeros(2 * n), np.concatenate([upper, np.full(n, np.inf)])], axis=1)
    cost = np.concatenate([np.zeros(n), np.ones(n)])
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_flow, bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"min-L1 occupancy LP failed on {mdp.name}: {res.message}")
    return np.clip(res.x[:n], 0.0, None).reshape(H, S, A)


def policy_from_occupancy(d: np.ndarray, fixed_actions: np.ndarray | None = None, eps: float = 1e-10) -> np.ndarray:
    """pi_t(a|s) = d_t(s,a) / sum_a d_t(s,a), uniform where the mass is <= eps; shape (H, S, A).

    With ``fixed_actions`` (H, S) the forced action is played on K even where d has no mass, so the
    policy lies in Pi_mimic everywhere.
    """
    H, S, A = d.shape
    mass = d.sum(-1, keepdims=True)
    pi = np.where(mass > eps, d / np.where(mass > eps, mass, 1.0), 1.0 / A)
    if fixed_actions is not None:
        on_k = fixed_actions >= 0
        pi[on_k] = np.eye(A)[fixed_actions[on_k]]
    return pi


def moment_matching_policy(mdp: TabularMDP, target: np.ndarray, fixed_actions: np.ndarray | None = None) -> np.ndarray:
    """The LP learner: the (H, S, A) policy whose occupancy is L1-closest to ``target``."""
    return policy_from_occupancy(min_l1_occupancy(mdp, target, fixed_actions), fixed_actions)
