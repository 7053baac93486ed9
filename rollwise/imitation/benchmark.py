"""The tabular benchmark of ``rollwise repro replay-estimation`` (our CPU protocol): estimator error against N, bias check, value gap against N.

Each function returns plain dicts of numbers, so tests and ``repro.py`` share one implementation.
Seeds: demos for (env, N, seed) come from ``TabularSimulator(mdp, seed)``; the split uses
``default_rng(seed)``. Same seeds give the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from rollwise.imitation.baselines import behavioural_cloning, moment_matching, replay_estimation_policy
from rollwise.imitation.envs import TabularMDP, TabularSimulator
from rollwise.imitation.mdp import (
    empirical_occupancy,
    occupancy,
    optimal_policy,
    sample_demos,
    tv_error,
    value,
)
from rollwise.imitation.replay import (
    ReplayConfig,
    known_actions,
    replay_estimate,
    replay_occupancy,
    residual_occupancy,
)


def estimator_errors(mdp: TabularMDP, ns: Sequence[int], seeds: Sequence[int],
                     cfg: ReplayConfig | None = None) -> dict[str, np.ndarray]:
    """Sum_t TV error to the exact expert occupancy, for the empirical and the RE estimate.

    Returns {"empirical": (len(ns), len(seeds)), "replay": (len(ns), len(seeds))}.
    """
    cfg = cfg or ReplayConfig()
    expert = optimal_policy(mdp)
    rho_e = occupancy(mdp, expert)
    out = {k: np.zeros((len(ns), len(seeds))) for k in ("empirical", "replay")}
    for i, n in enumerate(ns):
        for j, seed in enumerate(seeds):
            sim = TabularSimulator(mdp, seed)
            states, actions = sample_demos(sim, expert, n)
            emp = empirical_occupancy(states, actions, mdp.n_states, mdp.n_actions)
            est = replay_estimate(sim, states, actions, cfg, np.random.default_rng(seed))
            out["empirical"][i, j] = tv_error(emp, rho_e)
            out["replay"][i, j] = tv_error(est.rho, rho_e)
    return out


def loglog_slope(ns: Sequence[int], errors: Sequence[float]) -> float:
    """Least-squares slope of log(error) against log(N) (acceptance row A-RE-4)."""
    return float(np.polyfit(np.log(np.asarray(ns, float)), np.log(np.asarray(errors, float)), 1)[0])


def exact_split_occupancies(mdp: TabularMDP, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expected replay and residual parts of the RE estimate for a fixed known set (steps 3-5 of :mod:`.replay`).

    known: (H, S) cached expert actions (-1 off K). Returns (replay, residual), each (H, S, A):
    replay_t(s,a) = P(pi_BC's prefix stays in K up to t, s_t = s, a_t = a), pi_BC = the cached action
    on K; residual_t(s,a) = P_E(left K by t, s_t = s, a_t = a) under the expert. Their sum is rho^E_t
    exactly when the cached actions are the expert's (a deterministic expert), i.e. RE is unbiased.
    """
    H, S, A = mdp.horizon, mdp.n_states, mdp.n_actions
    expert = optimal_policy(mdp)
    on_k = known >= 0  # (H, S)
    bc = np.zeros((H, S, A))
    bc[np.nonzero(on_k) + (known[on_k],)] = 1.0
    replay, residual = np.zeros((H, S, A)), np.zeros((H, S, A))
    d_in, d_out = mdp.start * on_k[0], mdp.start * ~on_k[0]
    for t in range(H):
        replay[t], residual[t] = d_in[:, None] * bc[t], d_out[:, None] * expert
        if t + 1 < H:
            nxt_in = np.einsum("sa,sap->p", replay[t], mdp.P)
            d_in = nxt_in * on_k[t + 1]
            d_out = np.einsum("sa,sap->p", residual[t], mdp.P) + nxt_in * ~on_k[t + 1]
    return replay, residual


def bias_check_noise(mdp: TabularMDP, known: np.ndarray, n_replays: int = 300, n_d2: int = 2,
                     n_draws: int = 300) -> dict[str, np.ndarray]:
    """Exact sampling noise of :func:`bias_check`'s averaged unnormalised estimate for a fixed D1.

    The averaged estimate's mass at step t is (fraction of R*M replays still in K) + (fraction of the
    R*|D2| held-out demos that left K): two independent binomial means, R = ``n_draws``. Returns per
    step (H,): "p_in" = P(prefix in K up to t), "sd_replay" and "sd_residual" (standard deviations of
    the two parts of the mass), "sd_mass" (their root sum of squares) and "tv_expected", the expected
    per-step TV to rho^E from noise alone (normal approximation per (s, a) cell: sum_cells sd * sqrt(2/pi)/2).
    """
    replay, residual = exact_split_occupancies(mdp, known)
    n_rep, n_res = n_replays * n_draws, n_d2 * n_draws
    p_in, q_left = replay.sum((1, 2)), residual.sum((1, 2))
    var_rep, var_res = p_in * (1 - p_in) / n_rep, q_left * (1 - q_left) / n_res
    cell_sd = np.sqrt(replay * (1 - replay) / n_rep + residual * (1 - residual) / n_res)
    return {"p_in": p_in, "sd_replay": np.sqrt(var_rep), "sd_residual": np.sqrt(var_res),
            "sd_mass": np.sqrt(var_rep + var_res), "tv_expected": 0.5 * np.sqrt(2 / np.pi) * cell_sd.sum((1, 2))}


def bias_check(mdp: TabularMDP, n_draws: int = 300, n_replays: int = 300, n_d1: int = 2, n_d2: int = 2,
               d2_contains_d1: bool = False, seeds: Sequence[int] = (0,), prefix: bool = True) -> dict[str, np.ndarray]:
    """Average the unnormalised RE estimate over independent D2 draws (acceptance row A-RE-2).

    For each seed, D1 (``n_d1`` demos) is drawn once and ``n_draws`` draws each take ``n_d2`` fresh
    demos as D2, or D1 plus them when ``d2_contains_d1`` (the code's choice); every draw replays M =
    ``n_replays`` times. The average over draws is computed in one pass: the mean of R replay
    estimates of M replays each is one replay estimate of R*M replays, and the mean of R residuals
    over equal-size D2s is the residual over their union. The result is averaged over seeds.
    Returns per-step "tv" (H,) of the average to rho^E, its per-step "mass" (H,), and "mass_se" (H,),
    the standard error of the residual mass estimated from the draws (the dominant noise). For the
    disjoint prefix estimator it also returns the exact "p_leave" (H,), P_E(left K by t) averaged over
    seeds, and "mass_sd_exact" (H,), the exact s.d. of "mass" (see :func:`bias_check_noise`), with
    "mass_sd_replay"/"mass_sd_residual" its two parts; NaN for the other variants. ``prefix=False``
    checks the per-state variant (ReplayConfig.prefix_weighting=False).
    """
    expert = optimal_policy(mdp)
    rho_e = occupancy(mdp, expert)
    mean = np.zeros_like(rho_e)
    left = []
    exact = {k: np.zeros(mdp.horizon) for k in ("p_leave", "var_replay", "var_residual")}
    for seed in seeds:
        sim = TabularSimulator(mdp, seed)
        s1, a1 = sample_demos(sim, expert, n_d1)
        known = known_actions(s1, a1, mdp.n_states, stationary=True)
        noise = bias_check_noise(mdp, known, n_replays, n_d2, n_draws)
        exact["p_leave"] += (1 - noise["p_in"]) / len(seeds)
        exact["var_replay"] += noise["sd_replay"] ** 2 / len(seeds) ** 2
        exact["var_residual"] += noise["sd_residual"] ** 2 / len(seeds) ** 2
        s2, a2 = sample_demos(sim, expert, n_d2 * n_draws)
        if d2_contains_d1:
            s2, a2 = np.concatenate([np.tile(s1, (n_draws, 1)), s2]), np.concatenate([np.tile(a1, (n_draws, 1)), a2])
        resid = residual_occupancy(s2, a2, known, mdp.n_actions, prefix)
        mean += (replay_occupancy(sim, known, mdp.n_actions, n_replays * n_draws, prefix) + resid) / len(seeds)
        left.append(resid.sum((1, 2)))
    n_d2_all = n_draws * (n_d2 + (n_d1 if d2_contains_d1 else 0))
    q = np.mean(left, axis=0)
    se = np.sqrt(q * (1 - q) / (n_d2_all * len(seeds)))
    valid = 1.0 if prefix and not d2_contains_d1 else np.nan
    return {"tv": 0.5 * np.abs(mean - rho_e).sum((1, 2)), "mass": mean.sum((1, 2)), "mass_se": se,
            "p_leave": exact["p_leave"] * valid, "mass_sd_replay": np.sqrt(exact["var_replay"]) * valid,
            "mass_sd_residual": np.sqrt(exact["var_residual"]) * valid,
            "mass_sd_exact": np.sqrt(exact["var_replay"] + exact["var_residual"]) * valid}


def value_gaps(mdp: TabularMDP, ns: Sequence[int], seeds: Sequence[int],
               cfg: ReplayConfig | None = None) -> dict[str, np.ndarray]:
    """Exact value gap J_E - J_pi for BC, MM, RE-mimic and RE-free (acceptance row A-RE-3).

    Returns {method: (len(ns), len(seeds))}; also "RE-mimic-unnormalised".
    """
    cfg = cfg or ReplayConfig()
    raw = replace(cfg, normalise=False)
    expert = optimal_policy(mdp)
    j_e = value(mdp, expert)
    methods = ("BC", "MM", "RE-mimic", "RE-free", "RE-mimic-unnormalised")
    out = {k: np.zeros((len(ns), len(seeds))) for k in methods}
    for i, n in enumerate(ns):
        for j, seed in enumerate(seeds):
            sim = TabularSimulator(mdp, seed)
            states, actions = sample_demos(sim, expert, n)
            policies = {
                "BC": behavioural_cloning(states, actions, mdp.n_states, mdp.n_actions),
                "MM": moment_matching(mdp, states, actions),
                "RE-mimic": replay_estimation_policy(sim, states, actions, cfg, np.random.default_rng(seed)),
                "RE-free": replay_estimation_policy(sim, states, actions, cfg, np.random.default_rng(seed),
                                                    mimic=False),
                "RE-mimic-unnormalised": replay_estimation_policy(sim, states, actions, raw,
                                                                  np.random.default_rng(seed)),
            }
            for name, pi in policies.items():
                out[name][i, j] = j_e - value(mdp, pi)
    return out


def split_bias_gaps(mdp: TabularMDP, ns: Sequence[int], seeds: Sequence[int], normalise: bool = False,
                    mimic: bool = False) -> dict[str, np.ndarray]:
    """Value gap of RE (time-indexed K) with a disjoint split vs D2 = D (the split-bias pitfall), and of MM.

    The defaults (unnormalised, no Pi_mimic restriction) reproduce the pilot's numbers (gap about 3
    with D2 = D against 0.7-1.0 disjoint on DriftChain(9, 0.3, H=20)); self-normalisation and the
    mimic restriction largely hide the bias in value terms. Returns {method: (len(ns), len(seeds))}.
    """
    base = ReplayConfig(stationary_known=False, normalise=normalise)
    variants = {"RE-disjoint": base, "RE-d2-contains-d1": replace(base, split="d2_contains_d1")}
    expert = optimal_policy(mdp)
    j_e = value(mdp, expert)
    out = {k: np.zeros((len(ns), len(seeds))) for k in (*variants, "MM")}
    for i, n in enumerate(ns):
        for j, seed in enumerate(seeds):
            sim = TabularSimulator(mdp, seed)
            states, actions = sample_demos(sim, expert, n)
            for name, cfg in variants.items():
                pi = replay_estimation_policy(sim, states, actions, cfg, np.random.default_rng(seed), mimic=mimic)
                out[name][i, j] = j_e - value(mdp, pi)
            out["MM"][i, j] = j_e - value(mdp, moment_matching(mdp, states, actions))
    return out

