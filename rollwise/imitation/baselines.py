"""What replay estimation is compared against, and the tabular RE learner built the same way.

* BC: the expert action on observed states, uniform elsewhere.
* MM: the min-L1 LP learner (:mod:`.learners`) matched to the empirical occupancy of all N demos.
* RE-mimic / RE-free: the same LP learner matched to the replay estimate, with or without the
  Pi_mimic(D1) restriction (MIMIC-MD's; whether the RE paper keeps it is not known: reconstructed).
"""

from __future__ import annotations

import numpy as np

from rollwise.imitation.envs import TabularMDP, TabularSimulator
from rollwise.imitation.learners import moment_matching_policy
from rollwise.imitation.mdp import empirical_occupancy
from rollwise.imitation.replay import ReplayConfig, replay_estimate


def behavioural_cloning(states: np.ndarray, actions: np.ndarray, n_states: int, n_actions: int) -> np.ndarray:
    """Stationary BC policy (S, A) from (N, H) demos: the observed action, uniform on unseen states.

    Where demos disagree at a state (never for a deterministic expert) BC plays the majority action.
    """
    counts = np.zeros((n_states, n_actions))
    np.add.at(counts, (states.ravel(), actions.ravel()), 1.0)
    seen = counts.sum(-1) > 0
    pi = np.full((n_states, n_actions), 1.0 / n_actions)
    pi[seen] = np.eye(n_actions)[counts[seen].argmax(-1)]
    return pi


def moment_matching(mdp: TabularMDP, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """MM baseline: LP learner on the empirical occupancy of all demos; policy (H, S, A)."""
    target = empirical_occupancy(states, actions, mdp.n_states, mdp.n_actions)
    return moment_matching_policy(mdp, target)


def replay_estimation_policy(sim: TabularSimulator, states: np.ndarray, actions: np.ndarray, cfg: ReplayConfig,
                             rng: np.random.Generator, mimic: bool = True) -> np.ndarray:
    """RE + the LP learner; ``mimic`` restricts it to Pi_mimic(D1) (RE-mimic) or not (RE-free)."""
    est = replay_estimate(sim, states, actions, cfg, rng)
    return moment_matching_policy(sim.mdp, est.rho, est.known if mimic else None)
