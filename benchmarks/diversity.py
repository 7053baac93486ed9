"""Diversity among correct answers: GRPO vs UCPO (our CPU tests, docs/ucpo.md) on MakeN and on the tabular bandit.

    rollwise bench diversity [--quick] [--seeds 0,1,2] [--steps N] [--threads 1]

For each seed: one skewed SFT warm start on MakeN (the same for every method), then GRPO and UCPO-iq
(tau 0.2 and 0.5) trained for the same steps from it. On the held-out targets, with 64 samples per target at
temperature 1: unbiased pass@1/4/16/64, distinct-correct@64, the equation-level distinct ratio, and the exact
normalised entropy of the policy over the full correct set C(N) (every correct string scored). Curves over
training and the per-step H(q) of the training groups are plotted. The tabular bandit check
(``diversity_bandit.py``) runs first (seconds). Writes benchmarks/results/diversity.{json,md} and PNG plots next to them.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HF_PATH, RESULTS, nan_mean, provenances, publish, reuse_lines, reused_results  # noqa: E402
from diversity_bandit import bandit_table  # noqa: E402

#: the benchmark designs (docs/ucpo.md; superseded ones: docs/history/ucpo.md and git). ``make_n`` (the default):
#: MakeN with + - * and |C(N)| >= 8, N <= 60 (94 targets, 19 held out), the shared lexicographic Zipf ranking (so
#: the skew carries over to held-out targets), 700 SFT steps (training targets at moderate pass@1) and RL lr 1e-4
#: (training groups stay mixed, with distinct correct answers inside them, for about 150 of the 300 steps), chosen
#: from GRPO-only pilots on a separate seed before any UCPO run; the sequence-q variant (a flag, not the authors'
#: setting) is a secondary row.
COMMON = [
    "task.name=make_n", "task.params.sft_zipf=1.0", "model.tiny.num_heads=4", "sft.batch_size=128",
    "sft.lr=3e-3", "sft.examples=20000", "rollout.max_new_tokens=6", "rollout.n=8", "rollout.temperature=1.0",
    "rollout.top_p=1.0", "train.prompts_per_step=32", "train.eval_every=0", "train.checkpoint_every=0",
    "run.report=false", "algorithm.loss.dual_clip_c=3.0",
]
GRPO_AND_IQ: dict[str, list[str]] = {
    "GRPO": ["algorithm.estimator=grpo"],
    "UCPO tau=0.2": ["algorithm.estimator=ucpo", "algorithm.estimator_params.tau=0.2"],
    "UCPO tau=0.5": ["algorithm.estimator=ucpo", "algorithm.estimator_params.tau=0.5"],
}
DESIGNS: dict[str, dict[str, Any]] = {
    "make_n": {"setup": [*COMMON, *HF_PATH, "task.params.ops=+-*", "task.params.min_correct=8", "task.params.max_target=60",
                         "task.params.sft_rank=lex", "model.tiny.hidden_size=64", "model.tiny.num_layers=2",
                         "model.tiny.intermediate_size=256"],
               "steps": 300, "sft_steps": 700, "lr": 1e-4,
               "methods": {**GRPO_AND_IQ, "UCPO tau=0.5 seq-logp": [
                   "algorithm.estimator=ucpo", "algorithm.estimator_params.tau=0.5",
                   "algorithm.estimator_params.length_norm=false"]}},
    # testbed: Countdown with written steps (docs/ucpo.md "Benchmark design: reasoning testbed"), registered
    # before any method run: the countdown-steps base (rollwise base build), GRPO's batch (16 prompts x 8), the
    # testbed's lr, 200 steps, 32 held-out prompts x 64 samples; the authors' token-level q and the
    # sequence-level q (length_norm=false) as a second arm, since the token-level q flattens on long responses.
    "testbed": {"base": "countdown-steps", "setup": ["rollout.n=8", "algorithm.loss.dual_clip_c=3.0"],
                "steps": 200, "sft_steps": 0, "eval_prompts": 32,
                "methods": {**GRPO_AND_IQ, "UCPO tau=0.5 seq-logp": [
                    "algorithm.estimator=ucpo", "algorithm.estimator_params.tau=0.5",
                    "algorithm.estimator_params.length_norm=false"]}},
}
DEFAULT_DESIGN = "make_n"
SETUP: list[str] = DESIGNS[DEFAULT_DESIGN]["setup"]
METHODS: dict[str, list[str]] = DESIGNS[DEFAULT_DESIGN]["methods"]
PAPER = {"pass@64 (AIME24)": "+10 points (UCPO vs GRPO, up to)", "equation-level diversity": "+45% (up to)",
         "pass@1": "close to GRPO"}
FINAL_KEYS = ["pass@1", "pass@4", "pass@16", "pass@64", "distinct_correct@64", "h_norm", "equation_ratio",
              "exact_pass@1", "max_share"]


def make_trainer_class():
    """A Trainer that also records the correct-set diagnostics of every training batch (H(q), max q, |S|)."""
    from rollwise.rlvr.advantages import correct_set_diagnostics
    from rollwise.rlvr.trainer import Trainer

    class DiagnosedTrainer(Trainer):
        def compute_advantages(self, batch):
            batch, metrics = super().compute_advantages(batch)
            args = (batch.rewards, batch.old_logprobs, batch.response_mask, batch.group_ids)
            seq = correct_set_diagnostics(*args, length_norm=False)
            self.last_diag = {**correct_set_diagnostics(*args), "ucpo/Hq_norm_seq": seq["ucpo/Hq_norm"],
                              "ucpo/max_q_seq": seq["ucpo/max_q"]}
            return batch, metrics

    return DiagnosedTrainer


def run_seed(seed: int, steps: int, sft_steps: int, eval_every: int, out: Path, threads: int, lr: float,
             setup: list[str], methods: dict[str, list[str]], warm_only: bool = False, base: str | None = None,
             eval_prompts: int | None = None) -> dict[str, Any]:
    """Warm start once (or load the testbed ``base``), then train every method from a copy; returns curves and
    final metrics per method. ``eval_prompts`` caps the evaluated prompts of each split.

    With ``warm_only`` only the warm start is built and evaluated (the design screen: no method is trained)."""
    from functools import partial

    from rollwise.rlvr.evaluate import evaluate_diversity
    from rollwise.rlvr.policy import build_policy
    from rollwise.rlvr.run_config import resolve_config
    from rollwise.rlvr.tasks import make_task
    from rollwise.runlog import seed_everything

    # the diagnostics read the separate pass's old log-probs: train.reuse_logprobs=false in every design
    common = [*setup, "train.reuse_logprobs=false", f"sft.steps={sft_steps}", f"train.steps={steps}", f"train.seed={seed}",
              f"model.init_seed={seed}", f"run.threads={threads}", f"train.lr={lr}"]
    cfg = resolve_config(overrides=[*common, *methods["GRPO"], f"run.output_dir={out / f'seed{seed}-warm'}"])
    seed_everything(seed)
    t0 = time.perf_counter()
    if base is None:
        task = make_task(cfg.task.name, **cfg.task.params)
        warm, tok = build_policy(cfg, task)
        sft_s = time.perf_counter() - t0
        diversity = evaluate_diversity
    else:  # the testbed's base (one per design, shared by the seeds); its build time is the SFT time
        from testbed_setup import load_base, testbed

        warm, tok, task, build = load_base(testbed(base))
        sft_s = build["seconds"]["total"]
        diversity = partial(evaluate_diversity, max_prompts=eval_prompts, canonical=str)
    ev0 = diversity(warm, tok, task, cfg, n=64, seed=10_000 + seed)
    ev0_train = diversity(warm, tok, task, cfg, n=64, seed=20_000 + seed, split="train")
    result: dict[str, Any] = {"warm_start": ev0, "warm_start_train_targets": ev0_train, "sft_seconds": sft_s,
                              "methods": {}}
    print(f"seed {seed} warm start ({sft_s:.0f} s): held-out " + ", ".join(f"{k} {ev0[k]:.3f}" for k in FINAL_KEYS)
          + f"; train prompts pass@1 {ev0_train['pass@1']:.3f}, h_norm {ev0_train['h_norm']:.3f}", flush=True)
    if warm_only:
        return result
    trainer_cls = make_trainer_class()
    for name, over in methods.items():
        mcfg = resolve_config(overrides=[*common, *over, f"run.output_dir={out / f'seed{seed}-{_slug(name)}'}"])
        seed_everything(seed)
        trainer = trainer_cls(mcfg, copy.deepcopy(warm), tok, task)
        curve = [{"step": 0, **ev0}]
        train_log: list[dict[str, float]] = []
        t0 = time.perf_counter()
        for step in range(1, steps + 1):
            rec = trainer.train_step(step)
            train_log.append({"step": step, "reward": rec["reward"], **trainer.last_diag})
            if step % eval_every == 0 or step == steps:
                ev = diversity(trainer.policy, tok, task, mcfg, n=64, seed=10_000 + seed + step)
                curve.append({"step": step, **ev})
        seconds = time.perf_counter() - t0
        on_train = diversity(trainer.policy, tok, task, mcfg, n=64, seed=20_000 + seed, split="train")
        result["methods"][name] = {"final": curve[-1], "curve": curve, "train": train_log, "seconds": seconds,
                                   "final_train_targets": on_train}
        print(f"seed {seed} {name}: " + ", ".join(f"{k} {curve[-1][k]:.3f}" for k in FINAL_KEYS), flush=True)
    return result


def _slug(name: str) -> str:
    return name.lower().replace(" ", "-").replace("=", "")


def summarise(seeds: dict[int, dict[str, Any]], final: str = "final"
              ) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
    """Mean final metrics per method, and our acceptance rows (docs/ucpo.md) with per-seed sign
    counts.

    ``final`` picks the evaluation: ``"final"`` (held-out targets) or ``"final_train_targets"``."""
    methods = list(next(iter(seeds.values()))["methods"])
    means = {m: {k: nan_mean([s["methods"][m][final][k] for s in seeds.values()]) for k in FINAL_KEYS}
             for m in methods}
    for m in methods:
        for key, diag in (("mean_Hq_norm_train", "ucpo/Hq_norm"), ("mean_Hq_norm_seq_train", "ucpo/Hq_norm_seq")):
            means[m][key] = nan_mean([nan_mean([r[diag] for r in s["methods"][m]["train"]]) for s in seeds.values()])
    g = means["GRPO"]
    rows = []
    for m in methods[1:]:
        u = means[m]

        def seeds_ok(pred, m: str = m) -> str:
            ok = sum(bool(pred(s["methods"][m][final], s["methods"]["GRPO"][final])) for s in seeds.values())
            return f"{ok}/{len(seeds)}"

        checks = [
            ("pass@1 >= GRPO - 0.03", u["pass@1"] >= g["pass@1"] - 0.03,
             seeds_ok(lambda a, b: a["pass@1"] >= b["pass@1"] - 0.03)),
            ("distinct-correct@64 >= 1.2x GRPO", u["distinct_correct@64"] >= 1.2 * g["distinct_correct@64"],
             seeds_ok(lambda a, b: a["distinct_correct@64"] >= 1.2 * b["distinct_correct@64"])),
            ("exact H_norm >= GRPO + 0.05", u["h_norm"] >= g["h_norm"] + 0.05,
             seeds_ok(lambda a, b: a["h_norm"] >= b["h_norm"] + 0.05)),
            ("pass@64 >= GRPO", u["pass@64"] >= g["pass@64"], seeds_ok(lambda a, b: a["pass@64"] >= b["pass@64"])),
            ("pass@16 >= GRPO - 0.01", u["pass@16"] >= g["pass@16"] - 0.01,
             seeds_ok(lambda a, b: a["pass@16"] >= b["pass@16"] - 0.01)),
            ("train H(q)/log|S| above GRPO (mean over steps, per-token q)",
             u["mean_Hq_norm_train"] > g["mean_Hq_norm_train"], ""),
            ("train H(q)/log|S| above GRPO (mean over steps, sequence q)",
             u["mean_Hq_norm_seq_train"] > g["mean_Hq_norm_seq_train"], ""),
        ]
        rows += [{"method": m, "criterion": c, "passed": bool(p), "seeds": s} for c, p, s in checks]
    return means, rows


def plot_curves(seeds: dict[int, dict[str, Any]], out: Path, prefix: str) -> list[str]:
    from rollwise.report import line_plot

    methods = list(next(iter(seeds.values()))["methods"])
    figures = []
    for key, label in (("pass@1", "pass@1 (held-out)"), ("pass@64", "pass@64 (held-out)"),
                       ("distinct_correct@64", "distinct correct in 64 samples"), ("h_norm", "exact H(pi_C)/log|C|")):
        series = {}
        for m in methods:
            curves = [s["methods"][m]["curve"] for s in seeds.values()]
            xs = [r["step"] for r in curves[0]]
            series[m] = (xs, [nan_mean([c[i][key] for c in curves]) for i in range(len(xs))])
        name = f"{prefix}_{key.replace('@', '_at_')}.png"
        line_plot(out / name, series, "RL step", label, title=f"MakeN held-out: {label} (mean of {len(seeds)} seeds)")
        figures.append(name)
    series = {}
    for m in methods:
        logs = [s["methods"][m]["train"] for s in seeds.values()]
        xs = [r["step"] for r in logs[0]]
        ys = [nan_mean([lg[i]["ucpo/Hq_norm_seq"] for lg in logs]) for i in range(len(xs))]
        w = max(1, len(xs) // 20)  # moving average for readability
        series[m] = (xs[w - 1:], [statistics.fmean(ys[i - w + 1: i + 1]) for i in range(w - 1, len(ys))])
    line_plot(out / f"{prefix}_train_hq.png", series, "RL step", "H(q)/log|S| (sequence q), training groups",
              title="within-group conditional entropy of correct rollouts")
    figures.append(f"{prefix}_train_hq.png")
    return figures


def bandit_section(seeds: list[int]) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    table = bandit_table([None, 0.2, 0.5, 1.0], seeds)
    means = {m: {k: nan_mean(v) for k, v in row.items()} for m, row in table.items()}
    pilot = {"GRPO": (0.98, 0.05, 2.0), "UCPO tau=0.2": (0.98, 0.09, 2.7), "UCPO tau=0.5": (0.95, 0.24, 4.5),
             "UCPO tau=1": (0.87, 0.61, 8.8)}
    rows = [{"method": m, "accuracy": v["accuracy"], "H_norm": v["h_norm"], "distinct-64": v["distinct"],
             "our pilot (acc / H_norm / distinct)": " / ".join(f"{x:g}" for x in pilot[m])} for m, v in means.items()]
    g, u = means["GRPO"], means["UCPO tau=0.5"]
    checks = [f"UCPO tau=0.5 accuracy {u['accuracy']:.3f} >= 0.92: {u['accuracy'] >= 0.92}",
              f"H_norm {u['h_norm']:.3f} >= GRPO {g['h_norm']:.3f} + 0.1: {u['h_norm'] >= g['h_norm'] + 0.1}",
              f"distinct-64 {u['distinct']:.2f} >= 1.5 x GRPO {g['distinct']:.2f}: "
              f"{u['distinct'] >= 1.5 * g['distinct']}"]
    return {"per_seed": table, "means": means}, rows, checks


def warm_screen(seeds: list[int], sft_steps: int, setup: list[str], methods: dict[str, list[str]],
                args: argparse.Namespace) -> int:
    """The design screen: warm-start metrics on held-out and training targets only, appended (one JSON line per
    seed) to ``benchmarks/results/diversity_design_screen.jsonl``. No RL method is trained or compared."""
    import json

    out = Path(args.out) if args.out else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        t0 = time.perf_counter()
        r = run_seed(seed, 1, sft_steps, 1, Path(args.runs), args.threads, args.lr, setup, methods, warm_only=True)
        row = {"design": args.design, "set": args.set, "sft_steps": sft_steps, "seed": seed,
               "seconds": time.perf_counter() - t0, "sft_seconds": r["sft_seconds"], "held_out": r["warm_start"],
               "train_targets": r["warm_start_train_targets"]}
        with open(out / "diversity_design_screen.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


def reuse_settings(payload: dict[str, Any]) -> dict[str, Any]:
    """The settings of a results file that ``--reuse`` requires to equal this run's (all but the seeds)."""
    one = next(iter(payload["per_seed"].values()))
    return {"design": payload["design"], "steps": payload["steps"], "sft_steps": payload["sft_steps"],
            "setup": resolved(payload["setup"]), "lr": payload["lr"], "methods": sorted(one["methods"])}


def resolved(setup: list[str]) -> dict[str, Any]:
    """The run configuration that a setup's overrides resolve to (two spellings of one setup compare equal)."""
    import dataclasses

    from rollwise.rlvr.run_config import resolve_config

    return dataclasses.asdict(resolve_config(overrides=setup))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rollwise bench diversity")
    ap.add_argument("--quick", action="store_true", help="1 seed, 40 RL steps, short warm start")
    ap.add_argument("--design", default=DEFAULT_DESIGN, choices=sorted(DESIGNS), help="benchmark design (docs/ucpo.md)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config override on top of the design (design screen only)")
    ap.add_argument("--warm-only", action="store_true",
                    help="only build and evaluate the warm starts (the design screen; trains no method)")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; quick: 0)")
    ap.add_argument("--methods", default=None,
                    help="comma-separated subset of the design's methods (GRPO always runs; e.g. GRPO for a pilot)")
    ap.add_argument("--steps", type=int, default=None, help="RL steps per method (default: the design's; quick 40)")
    ap.add_argument("--sft-steps", type=int, default=None,
                    help="warm-start steps (default: the design's; quick 150)")
    ap.add_argument("--lr", type=float, default=None, help="RL learning rate (AdamW; default: the design's, else 3e-4)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="folder for json/md/plots (default benchmarks/results)")
    ap.add_argument("--runs", default="runs/bench-diversity", help="scratch folder of the training runs")
    ap.add_argument("--reuse", default=None, metavar="FILE[,FILE]",
                    help="results .json of earlier runs with the same settings: their seeds are taken over, not rerun")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else ([0] if args.quick else [0, 1, 2])
    design = DESIGNS[args.design]
    lr_given = args.lr is not None
    args.lr = args.lr if lr_given else design.get("lr", 3e-4)
    setup, methods = [*design["setup"], *args.set], design["methods"]
    base = design.get("base")
    if base is not None:  # a testbed base: its task, model and lr come from testbed_setup; --quick uses the CI base
        from testbed_setup import base_overrides, testbed

        base = f"{base}-ci" if args.quick else base
        tb = testbed(base)
        setup = [*base_overrides(tb), f"train.prompts_per_step={tb.prompts}", *setup]
        args.lr = args.lr if lr_given else tb.lr
    if args.methods:
        wanted = {"GRPO", *(m.strip() for m in args.methods.split(","))}
        unknown = sorted(wanted - set(methods))
        if unknown:
            ap.error(f"--methods: unknown {unknown}; valid choices: {', '.join(methods)}")
        methods = {m: o for m, o in methods.items() if m in wanted}
    steps = args.steps or (40 if args.quick else design["steps"])
    sft_steps = args.sft_steps or (150 if args.quick else design["sft_steps"])
    eval_every = max(1, steps // (4 if args.quick else 8))
    out = Path(args.out) if args.out else RESULTS
    name = "diversity" + ("" if args.design == DEFAULT_DESIGN else f"_{args.design}") + ("_quick" if args.quick else "")

    from rollwise.report import markdown_table
    from rollwise.rlvr.policy import quiet_transformers
    from rollwise.runlog import set_threads

    quiet_transformers()
    set_threads(args.threads)
    t_all = time.perf_counter()
    if args.warm_only:
        return warm_screen(seeds, sft_steps, setup, methods, args)
    bandit, bandit_rows, bandit_checks = bandit_section([0, 1, 2])
    eval_prompts = (4 if args.quick else design.get("eval_prompts")) if base else None
    here = {"design": args.design, "steps": steps, "sft_steps": sft_steps, "setup": resolved(setup), "lr": args.lr,
            "methods": sorted(methods)}
    reused = reused_results(args.reuse, here, reuse_settings, lambda p: p["per_seed"], seeds)
    prov = provenances(reused)
    per_seed = {s: reused[s][1]["per_seed"][str(s)] if s in reused else
                run_seed(s, steps, sft_steps, eval_every, Path(args.runs), args.threads, args.lr, setup, methods,
                         base=base, eval_prompts=eval_prompts) for s in seeds}
    means, acceptance = summarise(per_seed)
    means_tr, acceptance_tr = summarise(per_seed, "final_train_targets")
    figures = plot_curves(per_seed, out, name)
    wall = time.perf_counter() - t_all
    command = "rollwise bench diversity" + (" --quick" if args.quick else "") + \
        (f" --design {args.design}" if args.design != DEFAULT_DESIGN else "") + "".join(f" --set {x}" for x in args.set) + \
        (f" --seeds {args.seeds}" if args.seeds else "") + (f" --methods '{args.methods}'" if args.methods else "") + (f" --steps {args.steps}" if args.steps else "") + \
        (f" --sft-steps {args.sft_steps}" if args.sft_steps else "") + (f" --lr {args.lr:g}" if lr_given else "")
    warm = {k: nan_mean([s["warm_start"][k] for s in per_seed.values()]) for k in FINAL_KEYS}
    table = [{"method": "warm start (SFT)", **warm}] + [{"method": m, **v} for m, v in means.items()]
    warm_tr = {k: nan_mean([s["warm_start_train_targets"][k] for s in per_seed.values()]) for k in FINAL_KEYS}
    table_tr = [{"method": "warm start (SFT)", **warm_tr}] + [{"method": m, **v} for m, v in means_tr.items()]
    md = [
        "# Diversity among correct answers: GRPO vs UCPO", "",
        f"Command: `{command}`  ", f"Seeds {seeds}; {steps} RL steps per method; warm start {sft_steps} SFT steps; "
        f"RL lr {args.lr:g}; wall {wall / 60:.1f} min on a shared 2-core CPU (contended by other jobs, so times are "
        "inflated several-fold).", *reuse_lines(prov), "",
        "## Tabular bandit (K=60, C=15, G=8, 16 groups/step, lr 0.1, 600 steps, seeds 0-2)", "",
        markdown_table(bandit_rows), "", *[f"- {c}" for c in bandit_checks], "",
        ("## MakeN (3 operands, digits 1-9; held-out targets; 64 samples per target, "
         "temperature 1)" if base is None else f"## Countdown with written steps, design {args.design} (base {base}; "
         f"{eval_prompts} held-out and {eval_prompts} training prompts; 64 samples per prompt, temperature 1; "
         "equation_ratio = distinct / correct samples)"), "",
        "Setup: " + ", ".join(f"`{s}`" for s in setup), "",
        "Final metrics, mean over seeds (h_norm = exact H(pi_C)/log|C| over the enumerated correct set; "
        "exact_pass@1 = mean pi(C|x); equation_ratio = distinct canonical forms / correct samples; "
        "mean_Hq_norm_train = mean over steps of H(q)/log|S| in training groups with |S| >= 2, q from per-token mean "
        "log-probs as in the authors' logs; mean_Hq_norm_seq_train the same with sequence log-probs):", "",
        markdown_table(table), "", "### Acceptance (our targets, docs/ucpo.md; seeds = seeds where the comparison holds)", "",
        markdown_table(acceptance), "",
        "### Secondary: the same metrics on the training targets (in-distribution), final step", "",
        markdown_table(table_tr), "", markdown_table(acceptance_tr), "", "### Paper (not comparable in scale: 1.5B/7B models, AIME24 etc.)", "",
        markdown_table([{"claim": k, "paper": v} for k, v in PAPER.items()]), "",
        "Plots: " + ", ".join(f"![{f}]({f})" for f in figures), "",
    ]
    payload = {"command": command, "seeds": seeds, "steps": steps, "sft_steps": sft_steps, "design": args.design,
               "setup": setup,
               "lr": args.lr, "bandit": bandit, "means": means, "warm_start": warm, "acceptance": acceptance,
               "means_train_targets": means_tr, "warm_start_train_targets": warm_tr,
               "acceptance_train_targets": acceptance_tr,
               "per_seed": {str(k): v for k, v in per_seed.items()}, "wall_seconds": wall, "figures": figures,
               "reused": prov}
    publish(name, payload, "\n".join(md) + "\n", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
