"""Tabular replay estimation (Swamy et al., NeurIPS 2022, arXiv 2205.15397).

RE replaces the empirical expert occupancy, the target of moment matching, by

    rho_RE_t(s,a) = replay_t(s,a) + resid_t(s,a)                                               (step 5)

The paper's full text was not available; the estimator is that of MIMIC-MD (Rajaraman et al. 2020,
"Toward the Fundamental Limits of Imitation Learning") with simulator replay in place of the known model,
which the abstract describes. The steps referred to below:

1. split the N demos at random into disjoint D1 and D2 (about N/2 each);
2. the known set K = the states (or time-indexed (t, s) pairs) seen in D1, where the expert's action is known;
3. ``replay_t`` re-executes the cached D1 expert actions M times in the simulator, counting step t only while
   the rollout's prefix s_0..s_t stayed in K;
4. ``resid_t`` counts the held-out D2 trajectories that have left K by step t;
5. the estimate is their sum;
6. M >> N^2 replays (reconstructed: the abstract asks only for poly(N));
7. optionally, each step's estimate is divided by its mass (reconstructed).

With D1 and D2 disjoint the sum is an unbiased estimate of rho^E_t; with D2 containing D1 (the authors'
code) it is not (acceptance row A-RE-2 of ``rollwise repro replay-estimation``).

Reconstructed choices are flags of :class:`ReplayConfig` (see ``docs/replay_estimation.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rollwise.imitation.envs import TabularSimulator
from rollwise.imitation.mdp import empirical_occupancy

SPLITS = ("disjoint", "d2_contains_d1")


@dataclass
class ReplayConfig:
    """Tabular replay estimator settings (steps of the module docstring)."""

    n_replays: int = 2000  # M, replays of the cached expert actions (step 6: M >> N^2)
    split: str = "disjoint"  # "disjoint" (theory) or "d2_contains_d1" (the authors' code; biased)
    d1_fraction: float = 0.5  # share of the N demos that goes to D1 (step 1: about N/2)
    stationary_known: bool = True  # K = states seen in D1 (True) or time-indexed (t, s) pairs (False)
    normalise: bool = True  # divide rho_t by its mass (step 7, reconstructed)
    prefix_weighting: bool = True  # count a step only while the prefix stayed in K (theory); False:
    # per-state membership, as the deep code's alpha(s_t) (replays go on with uniform actions off K; biased)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"ReplayConfig.split={self.split!r}; valid: {', '.join(SPLITS)}")
        if not 0.0 < self.d1_fraction < 1.0:
            raise ValueError(f"ReplayConfig.d1_fraction={self.d1_fraction} must be in (0, 1)")
        if self.n_replays < 1:
            raise ValueError(f"ReplayConfig.n_replays={self.n_replays} must be >= 1")


@dataclass
class ReplayEstimate:
    """The RE target and its parts; all occupancies are (H, S, A)."""

    rho: np.ndarray  # the estimate (normalised if the config says so)
    replay: np.ndarray  # replay part, mass = P(prefix inside K up to t)
    residual: np.ndarray  # D2 part, mass = fraction of D2 that left K by t
    known: np.ndarray  # (H, S) expert action on K, -1 off K
    d1: np.ndarray  # indices of the D1 demos
    d2: np.ndarray  # indices of the D2 demos


def split_demos(n: int, cfg: ReplayConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random split of n demos into (D1, D2) index arrays (step 1).

    ``disjoint``: D1 gets round(n * d1_fraction) (at least 1, at most n-1) demos, D2 the rest.
    ``d2_contains_d1``: the same D1, but D2 = all n demos (the authors' code's choice).
    """
    if n < 2:
        raise ValueError(f"replay estimation needs at least 2 demos to split, got {n}")
    perm = rng.permutation(n)
    n1 = min(max(int(round(n * cfg.d1_fraction)), 1), n - 1)
    d1 = np.sort(perm[:n1])
    d2 = np.sort(perm[n1:]) if cfg.split == "disjoint" else np.arange(n)
    return d1, d2


def known_actions(states: np.ndarray, actions: np.ndarray, n_states: int, stationary: bool) -> np.ndarray:
    """The known set K with its cached expert actions, shape (H, S): action index on K, -1 elsewhere.

    states, actions: (N1, H) D1 demos. Stationary K holds every state seen at any step (same row for
    every t); time-indexed K holds the (t, s) pairs seen (step 2). The expert is deterministic,
    so a state's action is unique; if demos disagree the later one wins.
    """
    H = states.shape[1]
    known = np.full((H, n_states), -1, dtype=int)
    if stationary:
        row = np.full(n_states, -1, dtype=int)
        row[states.ravel()] = actions.ravel()
        known[:] = row
    else:
        t = np.broadcast_to(np.arange(H), states.shape)
        known[t.ravel(), states.ravel()] = actions.ravel()
    return known


def replay_occupancy(sim: TabularSimulator, known: np.ndarray, n_actions: int, n_replays: int,
                     prefix: bool = True) -> np.ndarray:
    """replay_t(s,a) = (1/M) sum_m 1[prefix of rollout m inside K up to t, s_t^m = s, a_t^m = a].

    Rolls out pi_BC (the cached action on K) M times from the start distribution, all M at once;
    a rollout stops at its first exit from K (step 3). With ``prefix=False`` rollouts go on
    off K with uniform actions (BC's choice there) and every step with s_t in K counts. Shape (H, S, A).
    """
    H, S = known.shape
    rho = np.zeros((H, S, n_actions))
    s = sim.reset_batch(n_replays)
    for t in range(H):
        a = known[t, s]
        on_k = a >= 0
        np.add.at(rho[t], (s[on_k], a[on_k]), 1.0 / n_replays)
        if prefix:
            s, a = s[on_k], a[on_k]
            if len(s) == 0:
                break
        else:
            a = np.where(on_k, a, sim.rng.integers(0, n_actions, size=len(s)))
        s = sim.step_batch(s, a)
    return rho


def residual_occupancy(states: np.ndarray, actions: np.ndarray, known: np.ndarray, n_actions: int,
                       prefix: bool = True) -> np.ndarray:
    """resid_t(s,a) = (1/|D2|) sum_{tau in D2} 1[tau left K at some step <= t, s_t = s, a_t = a].

    states, actions: (N2, H) D2 demos; known: (H, S). With ``prefix=False`` a step counts when s_t is
    off K (per-state membership). Shape (H, S, A) (step 4).
    """
    N, H = states.shape
    off_k = known[np.arange(H)[None, :], states] < 0  # (N, H)
    left = np.logical_or.accumulate(off_k, axis=1) if prefix else off_k
    rho = np.zeros((H, known.shape[1], n_actions))
    n_idx, t_idx = np.nonzero(left)
    np.add.at(rho, (t_idx, states[n_idx, t_idx], actions[n_idx, t_idx]), 1.0 / N)
    return rho


def normalise_per_step(rho: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """rho_t / sum_{s,a} rho_t(s,a); a step with no mass takes ``fallback``'s row (step 7)."""
    mass = rho.sum(axis=(1, 2), keepdims=True)
    return np.where(mass > 0, rho / np.where(mass > 0, mass, 1.0), fallback)


def replay_estimate(sim: TabularSimulator, states: np.ndarray, actions: np.ndarray, cfg: ReplayConfig,
                    rng: np.random.Generator) -> ReplayEstimate:
    """Replay estimate of the expert occupancy from (N, H) expert states/actions (steps 1-7).

    ``rng`` draws the split; the simulator's own generator drives the replays.
    """
    S, A = sim.mdp.n_states, sim.mdp.n_actions
    d1, d2 = split_demos(len(states), cfg, rng)
    known = known_actions(states[d1], actions[d1], S, cfg.stationary_known)
    replay = replay_occupancy(sim, known, A, cfg.n_replays, cfg.prefix_weighting)
    residual = residual_occupancy(states[d2], actions[d2], known, A, cfg.prefix_weighting)
    rho = replay + residual  # step 5
    if cfg.normalise:
        rho = normalise_per_step(rho, empirical_occupancy(states, actions, S, A))
    return ReplayEstimate(rho, replay, residual, known, d1, d2)
