"""Why A-RE-2's single-D1 protocol misses: the sampling noise of the averaged unnormalised RE estimate.

Protocol (acceptance row A-RE-2 of ``rollwise repro replay-estimation``): FrozenLake4x4, H = 25, |D1| = |D2| = 2, 300 D2 draws with M = 300 replays each;
pass = per-step TV to rho^E <= 0.03 and mass within 1 +- 0.02 at every step.

Usage: .venv/bin/python benchmarks/imitation_re2_noise.py [--exact-seeds 2000] [--sim-seeds 200]
       [--repeats 200] [--fresh-runs 100] [--quick]
Writes benchmarks/results/imitation_re2_noise.json and .md. Four parts:
  exact  - for D1 draws 0..exact_seeds-1 (drawn as benchmark.bias_check draws them): exact P(leave K by t) and
           the standard deviation of the mass split into the replay and the residual part (benchmark.bias_check_noise);
  sim    - the repro's own bias_check for D1 seeds 0..sim_seeds-1: how often one D1 draw passes;
  fixed  - D1 of seed 0 (the repro's) or 3 fixed, D2 and replays redrawn `repeats` times: measured vs exact
           spread of the mass, P(pass | that D1);
  fresh  - the other reading of "300 independent D2 draws": each draw a fresh dataset of 4 split 2/2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from rollwise.imitation.benchmark import bias_check, bias_check_noise
from rollwise.imitation.envs import TabularMDP, TabularSimulator, frozen_lake
from rollwise.imitation.mdp import occupancy, optimal_policy, sample_demos
from rollwise.imitation.replay import known_actions, replay_occupancy, residual_occupancy
from rollwise.report import markdown_table
from rollwise.runlog import set_threads

N_DRAWS, M, N1, N2 = 300, 300, 2, 2
FIXED_D1_SEEDS = (0, 3)  # the repro's D1 (leaves K w.p. 0.42) and one like the pilot's (0.12: deficit 0.06)
KEY_STATE = 10  # row 2, col 2: the expert passes it w.p. 0.42 within H; whether D1 did decides P(leave K)


def hit_probability(mdp: TabularMDP, expert: np.ndarray) -> np.ndarray:
    """P_E(the expert visits s at some step t < H), exact, for every state s; shape (S,)."""
    hit = np.zeros(mdp.n_states)
    for s in range(mdp.n_states):
        d = mdp.start.copy()
        for _ in range(mdp.horizon):
            hit[s] += d[s]
            d[s] = 0.0
            d = np.einsum("s,sa,sap->p", d, expert, mdp.P)
    return hit


def passes(tv: np.ndarray, mass: np.ndarray) -> bool:
    """The A-RE-2 criterion on per-step (H,) TV and mass."""
    return bool(tv.max() <= 0.03 and np.abs(mass - 1).max() <= 0.02)


def d1_known(mdp: TabularMDP, expert: np.ndarray, seed: int) -> np.ndarray:
    """The known set of D1 exactly as bias_check draws it for ``seed``; (H, S)."""
    s1, a1 = sample_demos(TabularSimulator(mdp, seed), expert, N1)
    return known_actions(s1, a1, mdp.n_states, stationary=True)


def exact_part(mdp: TabularMDP, expert: np.ndarray, seeds: range) -> dict:
    rows = []
    for seed in seeds:
        known = d1_known(mdp, expert, seed)
        noise = bias_check_noise(mdp, known, M, N2, N_DRAWS)
        t = int(noise["sd_mass"].argmax())
        rows.append({"q_end": 1 - noise["p_in"][-1], "sd_mass": noise["sd_mass"][t], "sd_replay": noise["sd_replay"][t],
                     "sd_residual": noise["sd_residual"][t], "tv_expected": noise["tv_expected"].max(),
                     "key_in_K": float(known[0, KEY_STATE] >= 0)})
    cols = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    qs = (0.1, 0.25, 0.5, 0.75, 0.9)
    g = cols["key_in_K"] > 0
    by_key = {f"key_in_K={flag}": {k: float(v[g == flag].mean()) for k, v in cols.items() if k != "key_in_K"}
              for flag in (True, False) if (g == flag).any()}
    return {"n": len(rows), "seed0": rows[0],
            "quantiles": {k: dict(zip(map(str, qs), np.quantile(v, qs).round(4).tolist())) for k, v in cols.items()},
            "mean": {k: float(v.mean()) for k, v in cols.items()}, "mean_by_key_state": by_key,
            "share_deficit_le_0.063": float(np.mean(cols["q_end"] / 2 <= 0.063)),
            "per_seed_q_end": cols["q_end"].round(4).tolist(), "per_seed_key_in_K": g.tolist(),
            "hit_probability": hit_probability(mdp, expert).round(3).tolist()}


def sim_part(mdp: TabularMDP, seeds: range, q_end: list[float], key_in_k: list[bool]) -> dict:
    rows = []
    for seed in seeds:
        r = bias_check(mdp, seeds=[seed])
        rows.append({"seed": seed, "q_end": q_end[seed], "key_in_K": key_in_k[seed], "tv_max": float(r["tv"].max()),
                     "mass_min": float(r["mass"].min()), "mass_max": float(r["mass"].max()),
                     "pass": passes(r["tv"], r["mass"])})
    ok = np.array([r["pass"] for r in rows])
    q = np.array([r["q_end"] for r in rows])
    key = np.array([r["key_in_K"] for r in rows])
    low = q / 2 <= 0.063  # D1 draws whose D2-contains-D1 deficit would be near the pilot's 0.063
    return {"n": len(rows), "p_pass": float(ok.mean()), "se": float(np.sqrt(ok.mean() * (1 - ok.mean()) / ok.size)),
            "p_pass_given_pilot_like_d1": float(ok[low].mean()) if low.any() else None, "n_pilot_like": int(low.sum()),
            "p_pass_given_other_d1": float(ok[~low].mean()) if (~low).any() else None,
            **{f"p_pass_given_key_in_K={flag}": float(ok[key == flag].mean()) for flag in (True, False)
               if (key == flag).any()}, **{f"n_key_in_K={flag}": int((key == flag).sum()) for flag in (True, False)},
            "first_rows": rows[:10]}


def fixed_part(mdp: TabularMDP, expert: np.ndarray, repeats: int, seed: int) -> dict:
    rho_e = occupancy(mdp, expert)
    known = d1_known(mdp, expert, seed)
    noise = bias_check_noise(mdp, known, M, N2, N_DRAWS)
    masses, ok, tvs = [], [], []
    for r in range(repeats):
        sim = TabularSimulator(mdp, 10_000 + r)
        s2, a2 = sample_demos(sim, expert, N2 * N_DRAWS)
        est = residual_occupancy(s2, a2, known, mdp.n_actions) + replay_occupancy(sim, known, mdp.n_actions, M * N_DRAWS)
        tv, mass = 0.5 * np.abs(est - rho_e).sum((1, 2)), est.sum((1, 2))
        masses.append(mass)
        tvs.append(tv.max())
        ok.append(passes(tv, mass))
    masses = np.array(masses)
    t = int(noise["sd_mass"].argmax())
    return {"d1_seed": seed, "q_end": float(1 - noise["p_in"][-1]), "repeats": repeats, "t_max_sd": t, "measured_sd_mass": float(masses[:, t].std(ddof=1)),
            "exact_sd_mass": float(noise["sd_mass"][t]), "exact_sd_replay": float(noise["sd_replay"][t]),
            "exact_sd_residual": float(noise["sd_residual"][t]), "mean_mass_min_over_t": float(masses.mean(0).min()),
            "mean_mass_max_over_t": float(masses.mean(0).max()), "median_tv_max": float(np.median(tvs)),
            "exact_tv_expected_max": float(noise["tv_expected"].max()), "p_pass": float(np.mean(ok))}


def fresh_protocol(mdp: TabularMDP, expert: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """300 draws, each a fresh dataset of N1 + N2 demos split into D1 / D2, M replays each; averaged estimate."""
    H, S, A = mdp.horizon, mdp.n_states, mdp.n_actions
    sim = TabularSimulator(mdp, seed)
    s, a = sample_demos(sim, expert, N_DRAWS * (N1 + N2))
    s, a = s.reshape(N_DRAWS, N1 + N2, H), a.reshape(N_DRAWS, N1 + N2, H)
    known = np.full((N_DRAWS, S), -1)
    rows = np.broadcast_to(np.arange(N_DRAWS)[:, None, None], (N_DRAWS, N1, H))
    known[rows.ravel(), s[:, :N1].ravel()] = a[:, :N1].ravel()
    est = np.zeros((H, S, A))
    s2, a2 = s[:, N1:], a[:, N1:]
    left = np.logical_or.accumulate(known[np.arange(N_DRAWS)[:, None, None], s2] < 0, axis=2)  # (R, N2, H)
    r_i, n_i, t_i = np.nonzero(left)
    np.add.at(est, (t_i, s2[r_i, n_i, t_i], a2[r_i, n_i, t_i]), 1.0 / (N_DRAWS * N2))
    draw = np.repeat(np.arange(N_DRAWS), M)
    st, alive = sim.reset_batch(N_DRAWS * M), np.ones(N_DRAWS * M, dtype=bool)
    for t in range(H):
        act = known[draw, st]
        alive &= act >= 0
        np.add.at(est[t], (st[alive], act[alive]), 1.0 / (N_DRAWS * M))
        st = sim.step_batch(st, np.maximum(act, 0))
    rho_e = occupancy(mdp, expert)
    return 0.5 * np.abs(est - rho_e).sum((1, 2)), est.sum((1, 2))


def fresh_part(mdp: TabularMDP, expert: np.ndarray, runs: int) -> dict:
    res = [fresh_protocol(mdp, expert, 20_000 + r) for r in range(runs)]
    ok = np.array([passes(tv, mass) for tv, mass in res])
    dev = np.array([np.abs(mass - 1).max() for _, mass in res])
    return {"runs": runs, "p_pass": float(ok.mean()), "median_tv_max": float(np.median([tv.max() for tv, _ in res])),
            "median_max_mass_dev": float(np.median(dev)), "sd_mass_end": float(np.std([m[-1] for _, m in res], ddof=1))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exact-seeds", type=int, default=2000)
    p.add_argument("--sim-seeds", type=int, default=200)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--fresh-runs", type=int, default=100)
    p.add_argument("--quick", action="store_true", help="20/10/10/5 instead of the defaults")
    args = p.parse_args(argv)
    if args.quick:
        args.exact_seeds, args.sim_seeds, args.repeats, args.fresh_runs = 20, 10, 10, 5
    set_threads(1)
    mdp = frozen_lake()
    expert = optimal_policy(mdp)
    out: dict = {"command": "python benchmarks/imitation_re2_noise.py " + " ".join(argv or sys.argv[1:])}
    t0 = time.perf_counter()
    out["exact"] = exact_part(mdp, expert, range(max(args.exact_seeds, args.sim_seeds)))
    print("exact", {k: v for k, v in out["exact"].items() if not k.startswith("per_seed")}, flush=True)
    out["sim"] = sim_part(mdp, range(args.sim_seeds), out["exact"]["per_seed_q_end"],
                          out["exact"]["per_seed_key_in_K"])
    print("sim", {k: v for k, v in out["sim"].items() if k != "first_rows"}, flush=True)
    out["fixed"] = [fixed_part(mdp, expert, args.repeats, seed) for seed in FIXED_D1_SEEDS]
    print("fixed", out["fixed"], flush=True)
    out["fresh"] = fresh_part(mdp, expert, args.fresh_runs)
    print("fresh", out["fresh"], flush=True)
    out["seconds"] = time.perf_counter() - t0
    res = Path(__file__).resolve().parent / "results"
    res.mkdir(exist_ok=True)
    name = "imitation_re2_noise" + ("_quick" if args.quick else "")
    (res / f"{name}.json").write_text(json.dumps(out, indent=2))
    q = out["exact"]["quantiles"]
    table = [{"quantity": k, **v} for k, v in q.items()]
    (res / f"{name}.md").write_text(
        f"# A-RE-2 noise analysis\n\n`{out['command']}` ({out['seconds']:.0f} s)\n\n"
        f"## Exact, over {out['exact']['n']} D1 draws (quantiles)\n\n{markdown_table(table)}\n\n"
        f"D1 seed 0: {out['exact']['seed0']}\n\n## One D1 draw, repro's bias_check, {out['sim']['n']} D1 seeds\n\n"
        f"{ {k: v for k, v in out['sim'].items() if k != 'first_rows'} }\n\n{markdown_table(out['sim']['first_rows'])}\n\n"
        f"## D1 fixed, D2 and replays redrawn\n\n{markdown_table(out['fixed'])}\n\n## Fresh (D1, D2) per draw\n\n{out['fresh']}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
