"""``rollwise repro explors``: learning curves of EXPLORS and its baselines on Chain and Room (+ LineK).

Full mode (our CPU benchmark): Chain 6000 episodes x 3 seeds and Room 10 000 episodes x 2 seeds for
all six methods, plus a short LineK run (the paper's 50 001 neural episodes do not fit a CPU budget).
``--quick`` (CI): Chain, 6000 episodes, one seed, five methods (no LIRPG′, no Room/LineK).
Runs are independent and seeded, so they are spread over worker processes without changing any number.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rollwise.report import ReproReport, bar_plot, line_plot
from rollwise.shaping.config import LABELS, ExplorsConfig
from rollwise.shaping.training import Curve, run_method

#: Numbers of our pilot re-implementation (the paper gives only qualitative curves); used in the "paper" column.
PILOT = {
    ("chain", "orig"): "0.0 (8/8 seeds fail)", ("chain", "explob"): "<=0.14 (8/8 fail)",
    ("chain", "selfrs"): "13.2 in 1/8 seeds, else ~0", ("chain", "explors"): "13.0-14.0 (8/8)",
    ("room", "orig"): "0.0", ("room", "explob"): "<=0.06", ("room", "selfrs"): "<=0.03",
    ("room", "explors"): "14.8-15.4",
}
#: LineK budget of the full repro (the code runs 50 001 episodes; the learned term is off until 5001).
LINEK_EPISODES = 12_000
PAPER_CLAIM = "EXPLORS speeds up learning; the other methods are slower or stall (no exact curves)"


@dataclass(frozen=True)
class Experiment:
    """One block of the benchmark: an environment, its episode budget, seeds and methods."""

    env: str
    episodes: int
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    neural: bool = False
    learned_off_episodes: int | None = None  # override of the LineK warm-up (None: the code's 5001)

    def config(self) -> ExplorsConfig:
        if not self.neural:
            return ExplorsConfig(episodes=self.episodes)
        cfg = ExplorsConfig.neural(episodes=self.episodes)
        if self.learned_off_episodes is not None:
            cfg = cfg.replace(learned_off_episodes=self.learned_off_episodes)
        return cfg


def experiments(quick: bool, seeds: list[int] | None) -> list[Experiment]:
    """The fixed benchmark (our seed lists; ``seeds`` overrides them for every block)."""
    if quick:
        return [Experiment("chain", 6000, tuple(seeds or (0,)), ("orig", "explob", "selfrs", "explors", "sors"))]
    all_methods = ("orig", "explob", "selfrs", "explors", "sors", "lirpg")
    return [
        Experiment("chain", 6000, tuple(seeds or (0, 1, 2)), all_methods),
        Experiment("room", 10_000, tuple(seeds or (0, 1)), all_methods),
        Experiment("linek", LINEK_EPISODES, tuple(seeds or (0,))[:1], ("orig", "explob", "explors"), neural=True),
    ]


def _run(job: tuple[str, str, ExplorsConfig, int]) -> Curve:
    import torch

    torch.set_num_threads(1)
    env, method, config, seed = job
    return run_method(env, method, config, seed)


def run_all(exps: list[Experiment], workers: int) -> dict[tuple[str, str], list[Curve]]:
    """Every (env, method, seed) run, in a process pool when ``workers`` > 1; grouped by (env, method)."""
    jobs = [(e.env, m, e.config(), s) for e in exps for m in e.methods for s in e.seeds]
    jobs.sort(key=lambda j: j[1] == "lirpg" or j[0] == "linek", reverse=True)  # longest first
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            curves = list(pool.map(_run, jobs))
    else:
        curves = [_run(j) for j in jobs]
    out: dict[tuple[str, str], list[Curve]] = {(e.env, m): [] for e in exps for m in e.methods}
    for c in curves:
        out[(c.env, c.method)].append(c)
    for v in out.values():
        v.sort(key=lambda c: c.seed)
    return out


def crossing(curve: Curve, level: float = 5.0) -> int | None:
    """First evaluated episode with a return of at least ``level``."""
    return next((ep for ep, r in zip(curve.episodes, curve.returns) if r >= level), None)


def plot_curves(path: Path, env: str, results: dict[tuple[str, str], list[Curve]]) -> Path:
    """Mean ± standard error over seeds of the evaluation return, one line per method."""
    series, bands = {}, {}
    for (e, method), curves in results.items():
        if e != env:
            continue
        r = np.array([c.returns for c in curves])
        mean = r.mean(0)
        se = r.std(0, ddof=1) / np.sqrt(len(r)) if len(r) > 1 else np.zeros_like(mean)
        x = curves[0].episodes
        series[LABELS[method]] = (x, mean)
        bands[LABELS[method]] = (x, mean - se, mean + se)
    n = len(next(c for (e, _), c in results.items() if e == env))
    return line_plot(path, series, "training episode", "mean discounted extrinsic return",
                     title=f"{env}: evaluation return (mean ± s.e., {n} seed(s))", bands=bands)


def run(quick: bool = False, out_dir: str | Path = "runs/repro-explors", seeds: list[int] | None = None) -> ReproReport:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exps = experiments(quick, seeds)
    workers = int(os.environ.get("ROLLWISE_WORKERS", "1" if quick else str(min(2, os.cpu_count() or 1))))
    results = run_all(exps, workers)
    (out / "curves.json").write_text(json.dumps(
        [{"env": c.env, "method": c.method, "seed": c.seed, "episodes": c.episodes, "returns": c.returns,
          "successes": c.successes, "seconds": c.seconds} for cs in results.values() for c in cs]))
    report = ReproReport(name="explors", title="EXPLORS: exploration-guided reward shaping (Devidze et al., 2022)",
                         command="rollwise repro explors" + (" --quick" if quick else ""))
    add_acceptance(report, results, quick)
    report.tables["Final return per method (mean of the last 5 evaluations)"] = final_table(results, exps)
    report.tables["Paper (qualitative) vs ours"] = qualitative_table(results, exps)
    for e in exps:
        report.figures.append(str(plot_curves(out / f"curves_{e.env}.png", e.env, results)))
    chain = {LABELS[m]: float(np.mean([c.final() for c in cs])) for (env, m), cs in results.items() if env == "chain"}
    report.figures.append(str(bar_plot(out / "final_chain.png", chain, "final return (seed mean)",
                                       title="Chain, 6000 episodes")))
    report.notes += notes(exps, workers)
    return report


def add_acceptance(report: ReproReport, results: dict[tuple[str, str], list[Curve]], quick: bool) -> None:
    """Acceptance rows A-EX-1..3 (docs/explors.md; A-EX-4 is the unit-test suite ``tests/shaping``)."""
    ex = [c.final() for c in results[("chain", "explors")]]
    orig = [c.final() for c in results[("chain", "orig")]]
    n = len(ex)
    report.add(f"A-EX-1 Chain EXPLORS final, min over {n} seed(s)", min(ex), paper=PILOT[("chain", "explors")],
               target=">= 8 in every seed", passed=min(ex) >= 8,
               note=("quick: 1 seed; " if quick else "") + "per seed: " + ", ".join(f"{v:.2f}" for v in ex))
    report.add(f"A-EX-1 Chain Orig final, max over {n} seed(s)", max(orig), paper=PILOT[("chain", "orig")],
               target="<= 0.5 in every seed", passed=max(orig) <= 0.5,
               note="per seed: " + ", ".join(f"{v:.2f}" for v in orig))
    best_other = max(np.mean([c.final() for c in results[("chain", m)]]) for m in ("explob", "selfrs"))
    gap = float(np.mean(ex) - best_other)
    report.add("A-EX-2 Chain EXPLORS mean - max(ExploB, SelfRS) mean", gap, paper="~13 (pilot)",
               target=">= 3", passed=gap >= 3)
    if ("room", "explors") in results:
        rex = [c.final() for c in results[("room", "explors")]]
        rorig = [c.final() for c in results[("room", "orig")]]
        report.add(f"A-EX-3 Room EXPLORS final, min over {len(rex)} seeds", min(rex), paper=PILOT[("room", "explors")],
                   target=">= 8 in every seed", passed=min(rex) >= 8,
                   note="per seed: " + ", ".join(f"{v:.2f}" for v in rex))
        report.add(f"A-EX-3 Room Orig final, max over {len(rorig)} seeds", max(rorig), paper=PILOT[("room", "orig")],
                   target="<= 0.5 in every seed", passed=max(rorig) <= 0.5,
                   note="per seed: " + ", ".join(f"{v:.2f}" for v in rorig))
    if ("linek", "explors") in results:
        methods = ("explors", "explob", "orig")
        lk = {m: results[("linek", m)][0] for m in methods}
        report.add("LineK final return (EXPLORS / ExploB / Orig)",
                   " / ".join(f"{lk[m].final():.2f}" for m in methods),
                   paper="EXPLORS fastest (curves only, 50k episodes)", passed=None,
                   note=f"1 seed, {LINEK_EPISODES} episodes; not an acceptance item; first eval >= 5: "
                        + " / ".join(str(crossing(lk[m]) or "-") for m in methods))


def final_table(results: dict[tuple[str, str], list[Curve]], exps: list[Experiment]) -> list[dict]:
    rows = []
    for e in exps:
        for m in e.methods:
            cs = results[(e.env, m)]
            finals = [c.final() for c in cs]
            cross = [crossing(c) for c in cs]
            rows.append({"env": e.env, "episodes": e.episodes, "method": LABELS[m],
                         "final per seed": ", ".join(f"{v:.2f}" for v in finals),
                         "mean": float(np.mean(finals)),
                         "first eval >= 5 (episode)": ", ".join("-" if x is None else str(x) for x in cross),
                         "train eps with return > 0": ", ".join(str(c.successes) for c in cs),
                         "pilot (ours)": PILOT.get((e.env, m), ""),
                         "s per run": float(np.mean([c.seconds for c in cs]))})
    return rows


def qualitative_table(results: dict[tuple[str, str], list[Curve]], exps: list[Experiment]) -> list[dict]:
    rows = []
    for e in exps:
        means = {m: float(np.mean([c.final() for c in results[(e.env, m)]])) for m in e.methods}
        best = max(means, key=lambda m: means[m])
        others = max(v for m, v in means.items() if m != "explors")
        rows.append({"env": e.env, "paper": PAPER_CLAIM, "ours: best method": LABELS[best],
                     "ours: EXPLORS mean": means["explors"], "ours: best other mean": others,
                     "agrees": means["explors"] > others + 1.0})
    return rows


def notes(exps: list[Experiment], workers: int) -> list[str]:
    out = [
        "Metric: mean discounted extrinsic return of 5 evaluation rollouts every 100 episodes; final = mean "
        "of the last 5 evaluations. Max return: Chain ~14.9, Room ~16.5.",
        "The paper's full text was unavailable; its results are qualitative. The 'paper' column quotes the "
        "numbers of our pilot re-implementation, not the paper's.",
        "Room uses (6, 5) for down-from-goal, our benchmark's choice (the authors' code sends it to cell 42).",
        f"Runs were spread over {workers} worker process(es); each run is seeded on its own, so numbers do not "
        "depend on the worker count.",
    ]
    for e in exps:
        if e.neural:
            off = e.config().learned_off_episodes
            out.append(f"LineK: {e.episodes} episodes, seed {e.seeds[0]}, learned term off for the first {off} "
                       "episodes as in the code (which runs 50 001 episodes x 10 seeds). One seed and a quarter of "
                       "the budget: a curve, not a reproduction.")
    return out
