"""``rollwise repro replay-estimation``: the tabular benchmark plus the deep smoke run.

Rows: A-RE-1 (estimator error ratio), A-RE-2 (unbiasedness and the D2-contains-D1 deficit), A-RE-3
(TrapChain value gaps), A-RE-4 (error-vs-N slopes), A-RE-5 (deep path), the split-bias pitfall and
the wall-clock budget. The paper's full text was not available: its rates are shown beside our
slopes, and our pilot implementation's numbers are quoted, marked 'pilot'.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rollwise.imitation.adversarial import AdversarialConfig
from rollwise.imitation.benchmark import (
    bias_check,
    estimator_errors,
    loglog_slope,
    split_bias_gaps,
    value_gaps,
)
from rollwise.imitation.deep import DeepConfig, run_deep
from rollwise.imitation.envs import drift_chain, frozen_lake, trap_chain
from rollwise.imitation.replay import ReplayConfig
from rollwise.report import ReproReport, bar_plot, line_plot
from rollwise.runlog import seed_everything, set_threads


@dataclass
class ReproConfig:
    """Sizes of the benchmark (the full run; ``quick`` shrinks the slow parts)."""

    estimator_ns: tuple[int, ...] = (2, 4, 8, 16, 32)  # N for the estimator error (A-RE-1, A-RE-4)
    estimator_seeds: int = 20  # seeds per (env, N) for the estimator error
    gap_ns: tuple[int, ...] = (2, 4, 8, 16)  # N for the TrapChain value gap (A-RE-3)
    gap_seeds: int = 12  # seeds per N for the value gap
    bias_seeds: int = 10  # D1 draws pooled in the high-power A-RE-2 check (300 D2 draws each)
    protocol_d1_draws: int = 200  # separate single-D1 A-RE-2 runs, to measure how often the single-draw protocol passes
    split_seeds: int = 10  # seeds per N for the split-bias pitfall on DriftChain(9, 0.3, H=20)
    prefix_seeds: int = 10  # D1 draws pooled in the prefix vs per-state bias check
    deep_seeds: int = 3  # seeds of the deep smoke run
    deep: DeepConfig = field(default_factory=DeepConfig)  # the deep smoke run's settings

    @classmethod
    def quick(cls) -> ReproConfig:
        deep = DeepConfig(bc_steps=800, eval_episodes=30, adversarial=AdversarialConfig(outer_iters=12))
        return cls(estimator_seeds=10, gap_ns=(2, 4, 8), gap_seeds=10, bias_seeds=4, protocol_d1_draws=20,
                   split_seeds=4, prefix_seeds=2, deep_seeds=1, deep=deep)


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else 0.0


def _estimator_section(report: ReproReport, cfg: ReproConfig, seeds: list[int], out: Path) -> None:
    ns = list(cfg.estimator_ns)
    envs = {"DriftChain": drift_chain(), "FrozenLake4x4": frozen_lake(), "TrapChain": trap_chain()}
    rows, slopes = [], {}
    for name, mdp in envs.items():
        err = estimator_errors(mdp, ns, seeds)
        emp, rep = err["empirical"].mean(1), err["replay"].mean(1)
        for i, n in enumerate(ns):
            rows.append({"env": name, "N": n, "empirical": emp[i], "empirical_se": _mean_se(err["empirical"][i])[1],
                         "RE": rep[i], "RE_se": _mean_se(err["replay"][i])[1], "ratio": rep[i] / emp[i]})
        slopes[name] = (loglog_slope(ns, emp), loglog_slope(ns, rep))
        fig = line_plot(out / f"estimator_error_{name}.png", {"empirical": (ns, emp), "replay (RE)": (ns, rep)},
                        "N expert trajectories", "sum_t TV(rho_hat_t, rho^E_t)",
                        title=f"{name}: estimator error vs N ({len(seeds)} seeds)", logx=True, logy=True)
        report.figures.append(str(fig))
        if name in ("DriftChain", "FrozenLake4x4"):
            picked = [r for r in rows if r["env"] == name and r["N"] in (4, 8, 16)]
            worst = max(r["ratio"] for r in picked) if picked else float("nan")
            report.add(f"A-RE-1 {name}: max RE/empirical TV ratio, N in 4,8,16", worst,
                       paper="pilot 0.04-0.43", target="<= 0.6", passed=bool(worst <= 0.6) if picked else None,
                       note=f"{len(seeds)} seeds; N=16: {picked[-1]['RE']:.2f} vs {picked[-1]['empirical']:.2f}"
                       if picked else "N 4,8,16 not run")
    report.tables["Estimator error sum_t TV (mean over seeds)"] = rows
    emp_s, rep_s = slopes["FrozenLake4x4"]
    report.add("A-RE-4 FrozenLake log-log slope, empirical", emp_s, paper="-0.5 (H/sqrt(N) rate; pilot -0.47)",
               note=f"N = {ns}")
    report.add("A-RE-4 FrozenLake log-log slope, RE", rep_s, paper="-> -1 (H^1.5/N rate; pilot -0.77)",
               target="<= empirical - 0.15", passed=bool(rep_s <= emp_s - 0.15), note=f"difference {rep_s - emp_s:.2f}")
    report.tables["Error-vs-N log-log slopes"] = [
        {"env": k, "empirical": v[0], "RE": v[1], "difference": v[1] - v[0]} for k, v in slopes.items()]


def _protocol_passes(res: dict[str, np.ndarray]) -> bool:
    """A-RE-2's criterion: per-step TV <= 0.03 and mass within 1 +- 0.02 at every step."""
    return bool(res["tv"].max() <= 0.03 and np.abs(res["mass"] - 1).max() <= 0.02)


def _bias_section(report: ReproReport, cfg: ReproConfig, seeds: list[int], out: Path) -> None:
    mdp = frozen_lake()
    single = bias_check(mdp, seeds=seeds[:1])
    pooled = bias_check(mdp, seeds=seeds[: cfg.bias_seeds])
    buggy = bias_check(mdp, seeds=seeds[: cfg.bias_seeds], d2_contains_d1=True)
    for label, res in (("single-draw protocol: 1 D1 draw x 300 D2 draws", single),
                       (f"pooled: {min(cfg.bias_seeds, len(seeds))} D1 draws x 300 D2 draws", pooled)):
        tv, lo, hi = float(res["tv"].max()), float(res["mass"].min()), float(res["mass"].max())
        t = int(res["mass_sd_exact"].argmax())
        report.add(f"A-RE-2 unnormalised RE, {label}: max per-step TV / mass range",
                   f"{tv:.4f} / [{lo:.3f}, {hi:.3f}]", paper="pilot 0.019 / [0.997, 1.011]",
                   target="TV <= 0.03, mass in 1 +- 0.02", passed=_protocol_passes(res),
                   note=f"exact for these D1s: P(leave K by t={t}) = {float(res['p_leave'][t]):.3f}, s.d. of the "
                        f"mass {float(res['mass_sd_exact'][t]):.4f} (replays {float(res['mass_sd_replay'][t]):.4f}, "
                        f"D2 residual {float(res['mass_sd_residual'][t]):.4f})")
    if cfg.protocol_d1_draws:
        runs = [bias_check(mdp, seeds=[1000 + i]) for i in range(cfg.protocol_d1_draws)]
        ok = np.array([_protocol_passes(r) for r in runs])
        q = np.array([float(r["p_leave"][-1]) for r in runs])
        low = q <= 0.126  # D1 draws whose D2-contains-D1 deficit (q/2) is at most the pilot's 0.063
        report.add("A-RE-2 single-draw protocol: share of single D1 draws that pass", float(ok.mean()),
                   paper="pilot: its one D1 draw passed (deficit 0.063 -> P(leave K) ~ 0.13)", passed=None,
                   note=f"{ok.size} D1 draws (seeds 1000+), s.e. {float(ok.std() / np.sqrt(ok.size)):.3f}; "
                        f"P(leave K by H) <= 0.126 in {int(low.sum())}: pass {float(ok[low].mean()) if low.any() else 0:.2f},"
                        f" others pass {float(ok[~low].mean()) if (~low).any() else 0:.2f}")
    deficit = float(1 - buggy["mass"].min())
    report.add("A-RE-2 D2 = D1 u D2' (the code's split): max mass deficit", deficit, paper="pilot 0.063",
               target=">= 0.03", passed=bool(deficit >= 0.03), note="regression test for D2 containing D1")
    steps = list(range(mdp.horizon))
    fig = line_plot(out / "bias_mass.png", {"disjoint (pooled)": (steps, pooled["mass"]),
                                             "D2 contains D1": (steps, buggy["mass"])},
                    "step t", "mass of the averaged unnormalised estimate", title="FrozenLake: RE bias check")
    report.figures.append(str(fig))


def _gap_section(report: ReproReport, cfg: ReproConfig, seeds: list[int], out: Path) -> None:
    ns = list(cfg.gap_ns)
    gaps = value_gaps(trap_chain(), ns, seeds[: cfg.gap_seeds])
    means = {k: v.mean(1) for k, v in gaps.items()}
    report.tables["TrapChain value gap J_E - J_pi (mean +- s.e.)"] = [
        {"N": n, **{k: f"{_mean_se(v[i])[0]:.3f} +- {_mean_se(v[i])[1]:.3f}" for k, v in gaps.items()}}
        for i, n in enumerate(ns)]
    idx = [i for i, n in enumerate(ns) if n in (2, 4, 8)]
    re_, bc, mm = means["RE-mimic"][idx], means["BC"][idx], means["MM"][idx]
    n_seeds = gaps["BC"].shape[1]
    report.add("A-RE-3 TrapChain N 2,4,8: max mean gap RE-mimic", float(re_.max()), paper="pilot 0.000",
               target="<= 0.1", passed=bool(re_.max() <= 0.1), note=f"{n_seeds} seeds")
    report.add("A-RE-3 TrapChain N 2,4,8: min mean gap BC", float(bc.min()), paper="pilot >= 1.8",
               target=">= 1.0", passed=bool(bc.min() >= 1.0), note=f"by N: {np.round(bc, 2).tolist()}")
    report.add("A-RE-3 TrapChain N 2,4,8: min mean gap MM", float(mm.min()), paper="pilot >= 0.8",
               target=">= 0.3", passed=bool(mm.min() >= 0.3), note=f"by N: {np.round(mm, 2).tolist()}")
    report.add("A-RE-3 RE-mimic below BC and MM at every N", bool(np.all(re_ < np.minimum(bc, mm))),
               target="true", passed=bool(np.all(re_ < np.minimum(bc, mm))))
    fig = line_plot(out / "value_gap_trapchain.png", {k: (ns, v) for k, v in means.items()},
                    "N expert trajectories", "J_E - J_pi", title=f"TrapChain value gap ({n_seeds} seeds)", logx=True)
    report.figures.append(str(fig))


def _split_section(report: ReproReport, cfg: ReproConfig, seeds: list[int]) -> None:
    ns = [2, 4, 8, 16]
    gaps = split_bias_gaps(drift_chain(9, 0.3, 20), ns, seeds[: cfg.split_seeds])
    means = {k: v.mean(1) for k, v in gaps.items()}
    report.tables["Split pitfall: DriftChain(9, 0.3, H=20), time-indexed K, unnormalised RE-free, gap"] = [
        {"N": n, **{k: v[i] for k, v in means.items()}} for i, n in enumerate(ns)]
    worse = bool(np.all(means["RE-d2-contains-d1"] > means["RE-disjoint"]))
    report.add("Split pitfall: gap with D2 = D above the disjoint split at every N",
               f"{np.round(means['RE-d2-contains-d1'], 2).tolist()} vs {np.round(means['RE-disjoint'], 2).tolist()}",
               paper="pilot ~3 vs 0.7-1.0", passed=None, note=f"informational; {worse=}")


def _prefix_section(report: ReproReport, cfg: ReproConfig, seeds: list[int]) -> None:
    """Prefix (theory) vs per-state (the deep code's convention) known-set membership, tabular."""
    ns = [n for n in cfg.estimator_ns if n in (4, 16)]
    rows = []
    for name, mdp in {"FrozenLake4x4": frozen_lake(), "TrapChain": trap_chain()}.items():
        per_state = estimator_errors(mdp, ns, seeds, ReplayConfig(prefix_weighting=False))["replay"].mean(1)
        prefix = estimator_errors(mdp, ns, seeds)["replay"].mean(1)
        bias = {p: bias_check(mdp, seeds=seeds[: cfg.prefix_seeds], prefix=p) for p in (True, False)}
        rows.append({"env": name, **{f"TV error N={n}, prefix / per-state": f"{prefix[i]:.2f} / {per_state[i]:.2f}"
                                      for i, n in enumerate(ns)},
                     "unnormalised bias: max step TV, prefix / per-state":
                         f"{bias[True]['tv'].max():.3f} / {bias[False]['tv'].max():.3f}",
                     "min mass, prefix / per-state": f"{bias[True]['mass'].min():.3f} / {bias[False]['mass'].min():.3f}"})
    report.tables["Prefix vs per-state membership (ReplayConfig.prefix_weighting; normalised error, "
                  "pooled bias check)"] = rows


def _deep_section(report: ReproReport, cfg: ReproConfig, seeds: list[int], out: Path) -> None:
    runs = [run_deep(cfg.deep, seed=s) for s in seeds[: cfg.deep_seeds]]
    keys = ("expert_return", "bc_return", "mm_return", "re_return")
    mean = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    report.tables["Deep path (noisy point mass), evaluation return"] = [
        {"seed": s, **{k: r[k] for k in (*keys, "alpha_min", "alpha_max", "weight_sum", "seconds")}}
        for s, r in zip(seeds, runs)]
    slowest = max(r["seconds"] for r in runs)
    alpha_ok = all(0 < r["alpha_min"] and r["alpha_max"] < 1 for r in runs)
    weights_ok = all(abs(r["weight_sum"] - 1) < 1e-4 and r["weight_min"] >= 0 for r in runs)
    tol = 0.1 * abs(mean["expert_return"])
    report.add("A-RE-5 deep path: seconds per end-to-end run (max)", slowest, target="< 120",
               passed=bool(slowest < 120), note="wall-clock on a shared 2-core CPU")
    report.add("A-RE-5 deep path: alpha in (0,1) and weights sum to 1", bool(alpha_ok and weights_ok),
               target="true", passed=bool(alpha_ok and weights_ok),
               note=f"alpha range [{min(r['alpha_min'] for r in runs):.3f}, {max(r['alpha_max'] for r in runs):.3f}]")
    report.add("A-RE-5 deep path: mean return RE vs BC", f"{mean['re_return']:.2f} vs {mean['bc_return']:.2f}",
               paper="RE 'noticeably' above BC and MM (Hopper/Walker, numbers n/a)",
               target="RE >= BC - 0.1 abs(J_E)", passed=bool(mean["re_return"] >= mean["bc_return"] - tol),
               note=f"MM {mean['mm_return']:.2f}, expert {mean['expert_return']:.2f}; {len(runs)} seed(s)")
    fig = bar_plot(out / "deep_returns.png", {k.replace("_return", ""): v for k, v in mean.items()},
                   "evaluation return", title="Noisy point mass (deep path)")
    report.figures.append(str(fig))


def run(quick: bool = False, out_dir: str | Path = "runs/repro-replay-estimation",
        seeds: list[int] | None = None) -> ReproReport:
    """Run the replay-estimation benchmark and return its report (plots saved into ``out_dir``)."""
    t0 = time.perf_counter()
    cfg = ReproConfig.quick() if quick else ReproConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_threads(1)
    seeds = list(seeds) if seeds is not None else list(range(max(cfg.estimator_seeds, cfg.gap_seeds)))
    seed_everything(seeds[0])
    report = ReproReport(name="replay-estimation",
                         title="Replay estimation (Swamy et al. 2022): estimator error and value gap",
                         command="rollwise repro replay-estimation" + (" --quick" if quick else ""))
    _estimator_section(report, cfg, seeds[: cfg.estimator_seeds], out)
    _bias_section(report, cfg, seeds, out)
    _gap_section(report, cfg, seeds, out)
    _split_section(report, cfg, seeds)
    _prefix_section(report, cfg, seeds[: cfg.estimator_seeds])
    _deep_section(report, cfg, seeds, out)
    seconds = time.perf_counter() - t0
    report.add("Repro wall-clock (s)", seconds, target="<= 900 (full)" if not quick else "",
               passed=bool(seconds <= 900) if not quick else None, note="shared 2-core CPU, 1 torch thread")
    report.notes += [
        "The paper's full text was unavailable: the 'paper' column gives its rates (BC H^2/N, MM H/sqrt(N), "
        "RE H^1.5/N) and our pilot implementation's numbers, marked 'pilot'.",
        "A-RE-2 with a single D1 draw: the averaged estimate's noise is set by that D1's probability q of "
        "leaving K (s.d. of the mass sqrt(q(1-q)/600), almost all from the D2 residual). The single-draw row "
        "passes or misses with the D1 draw (share of passing draws in its own row); the pooled row has the "
        "power to test the 1 +- 0.02 band.",
        "Tabular estimator: MIMIC-MD with simulator replay, stationary known set, M = 2000, disjoint halves, "
        "self-normalised (reconstructed; see docs/replay_estimation.md).",
    ]
    return report
