"""Properties of the reasoning testbed, measured before any method is compared on it (docs/testbed.md).

    rollwise bench testbed-properties [--quick] [--testbeds column-arith,countdown-steps] [--checkpoints 100,300]

For each testbed's base model pi_0 (``rollwise base build``; its build time is reported):

- response lengths (tokens, EOS included), the truncated fraction and the mean reward of ``--group`` samples
  per prompt on ``--prompts`` training prompts; the fraction of mixed-reward groups (some but not all correct);
- V(x) on those prompts, exactly (column_arith: pi(trace|x), the one rewarded completion; countdown_steps:
  pi(C(x)|x) over the enumerated rewarded set): mean, spread (std, quantiles), share in [0.05, 0.95];
- stability: V_t on the same prompts after t steps of the testbed's reference RL run (the learning rate and
  batch the comparisons use, testbed_setup.TESTBEDS) and Pearson / Spearman corr(V_0, V_t);
- countdown: distinct correct answers per prompt, |C(x)| exactly and among 64 samples, and their
  probabilities (largest share of the correct mass, normalised entropy, answers holding >= 5% of it).

Targets (issue): corr(V_0, V_300) >= 0.9, mean response >= 30 tokens, >= 3 distinct correct answers for the
median Countdown prompt. Writes benchmarks/results/testbed_properties.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, publish  # noqa: E402
from testbed_setup import TestbedRL, load_base, rl_config, testbed  # noqa: E402

TARGETS = {"corr(V_0, V_300) >= 0.9": 0.9, "mean response >= 30 tokens": 30, "median distinct correct >= 3": 3}


def exact_values(policy, tokenizer, task, examples) -> tuple[np.ndarray, list[dict[str, float]] | None]:
    """Exact V(x) per example, and for multi-answer tasks the per-prompt conditional-entropy dicts."""
    from rollwise.rlvr.evaluate import exact_conditional_entropy, exact_success_prob

    prompts = [e.prompt for e in examples]
    if task.unique_answer:
        return exact_success_prob(policy, tokenizer, prompts, [e.target for e in examples],
                                  compact=True).double().numpy(), None
    ent = exact_conditional_entropy(policy, tokenizer, prompts, [task.correct_set(e) for e in examples],
                                    compact=True)
    return np.array([d["mass"] for d in ent]), ent


def spread(v: np.ndarray) -> dict[str, float]:
    q = np.quantile(v, [0.1, 0.25, 0.5, 0.75, 0.9])
    return {"mean": float(v.mean()), "std": float(v.std()), "q10": q[0], "q25": q[1], "median": q[2], "q75": q[3],
            "q90": q[4], "frac_in_[0.05,0.95]": float(np.mean((v >= 0.05) & (v <= 0.95)))}


def correlations(v0: np.ndarray, vt: np.ndarray) -> dict[str, float]:
    def ranks(x: np.ndarray) -> np.ndarray:  # ties are rare for continuous V
        return np.argsort(np.argsort(x)).astype(float)

    return {"pearson": float(np.corrcoef(v0, vt)[0, 1]), "spearman": float(np.corrcoef(ranks(v0), ranks(vt))[0, 1]),
            "mean_abs_change": float(np.mean(np.abs(vt - v0))), "mean_v": float(vt.mean())}


def rollout_stats(policy, tokenizer, task, cfg, examples, group: int, seed: int) -> dict[str, Any]:
    """Lengths, truncation, reward and mixed groups of ``group`` samples per example; distinct correct answers."""
    from rollwise.rlvr.evaluate import sample_and_score

    batch, rewards, _ = sample_and_score(policy, tokenizer, task, cfg, examples, group, seed)
    lengths = batch.response_lengths.double().numpy()
    ok = (rewards >= 1 - 1e-6).numpy().reshape(len(examples), group)
    comps = np.array(batch.completions, dtype=object).reshape(len(examples), group)
    hits = ok.sum(1)
    distinct = [len({c for c, y in zip(comps[i], ok[i]) if y}) for i in range(len(examples))]
    return {"samples_per_prompt": group, "mean_len": float(lengths.mean()), "median_len": float(np.median(lengths)),
            "p10_len": float(np.quantile(lengths, 0.1)), "p90_len": float(np.quantile(lengths, 0.9)),
            "max_len": float(lengths.max()), "truncated_frac": float(batch.truncated.float().mean()),
            "mean_reward": float(ok.mean()), "mixed_group_frac": float(np.mean((hits > 0) & (hits < group))),
            "all_correct_frac": float(np.mean(hits == group)), "none_correct_frac": float(np.mean(hits == 0)),
            "median_distinct_correct": float(np.median(distinct)), "mean_distinct_correct": float(np.mean(distinct)),
            "correct_len_mean": float(lengths.reshape(len(examples), group)[ok].mean()) if ok.any() else float("nan")}


def answer_distribution(task, examples, ent: list[dict[str, float]], policy, tokenizer) -> dict[str, Any]:
    """The size of C(x) and how the correct mass is spread over C(x): answers holding >= 5% of it, max share, H_norm."""
    from rollwise.rlvr.evaluate import exact_success_prob

    sizes, big = [], []
    for e in examples:
        c = task.correct_set(e)
        sizes.append(len(c))
        logp = exact_success_prob(policy, tokenizer, [e.prompt] * len(c), c, log=True, compact=True).double()
        share = (logp - logp.logsumexp(0)).exp()
        big.append(int((share >= 0.05).sum()))
    h = [d["h_norm"] for d in ent if not np.isnan(d["h_norm"])]
    return {"median_size_C(x)": float(np.median(sizes)), "mean_size_C(x)": float(np.mean(sizes)),
            "min_size_C(x)": int(min(sizes)), "median_answers_with_>=5%_of_correct_mass": float(np.median(big)),
            "mean_max_share": float(np.mean([d["max_share"] for d in ent])),
            "mean_h_norm": float(np.mean(h)) if h else float("nan")}


def stability_run(tb: TestbedRL, policy0, tokenizer, task, examples, checkpoints: list[int], seed: int,
                  v0: np.ndarray) -> dict[int, dict[str, float]]:
    """Train the reference RL run from pi_0 and measure corr(V_0, V_t) at each checkpoint; step seconds too."""
    from rollwise.rlvr.trainer import Trainer

    cfg = rl_config(tb, tb.preset, [f"train.seed={seed}", f"train.steps={max(checkpoints)}",
                                    f"run.output_dir=runs/bench-testbed/{tb.base}-s{seed}"])
    trainer = Trainer(cfg, copy.deepcopy(policy0), tokenizer, task)
    out: dict[int, dict[str, float]] = {}
    t0, rewards = time.perf_counter(), []
    for step in range(1, max(checkpoints) + 1):
        rewards.append(float(trainer.train_step(step)["reward"]))
        if step in checkpoints:
            vt, _ = exact_values(trainer.policy, tokenizer, task, examples)
            out[step] = {**correlations(v0, vt), "train_reward_last20": float(np.mean(rewards[-20:])),
                         "seconds": time.perf_counter() - t0}
            print(f"testbed-properties: {tb.base} step {step}: corr {out[step]['pearson']:.3f} "
                  f"({out[step]['seconds']:.0f} s)", flush=True)
    return out


def cached_measure(name: str, args) -> dict[str, Any]:
    """:func:`measure`, cached in ``runs/bench-testbed/`` under every setting that changes it (so testbeds can be
    measured by separate processes in parallel and collected by one final call)."""
    import json

    from rollwise.rlvr.base_models import get_spec

    tb = rl_setting(name, args)
    key = f"{name}-{get_spec(tb.base).key()}-lr{tb.lr:g}-b{tb.prompts}-p{args.prompts}-a{args.answer_prompts}-" \
          f"g{args.group}-c{'_'.join(map(str, args.checkpoints))}-s{args.seed}" + \
          (f"-t{args.threads}" if args.threads != 1 else "")  # results depend on the thread count in the last bits
    path = Path(args.cache) / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    row = measure(name, args)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row))
    return json.loads(path.read_text())  # the same types (string keys) as a cached row


def rl_setting(name: str, args) -> TestbedRL:
    """The testbed's registered RL setting, with ``--lr`` in place of its learning rate when given."""
    tb = testbed(name)
    return dataclasses.replace(tb, lr=args.lr) if args.lr else tb


def command(args) -> str:
    """The command line that regenerates this results file (non-default options only)."""
    default_testbeds = ["column-arith", "countdown-steps"]
    return ("rollwise bench testbed-properties" + (" --quick" if args.quick else "")
            + (f" --testbeds {','.join(args.testbeds)}" if not args.quick and args.testbeds != default_testbeds else "")
            + (f" --lr {args.lr:g}" if args.lr else "")
            + (f" --threads {args.threads}" if args.threads != 1 else "")
            + (f" --name {args.name}" if args.name not in ("testbed_properties", "testbed_properties_quick") else ""))


def measure(name: str, args) -> dict[str, Any]:
    tb = rl_setting(name, args)
    policy0, tokenizer, task, build = load_base(tb, args.root)
    examples = task.examples("train")[: args.prompts]
    cfg = rl_config(tb, tb.preset)
    t0 = time.perf_counter()
    v0, ent = exact_values(policy0, tokenizer, task, examples)
    row: dict[str, Any] = {"testbed": name, "task": task.name, "task_params": build["spec"]["task_params"],
                           "parameters": build["parameters"], "base_build_minutes": build["seconds"]["total"] / 60,
                           "base_key": build["key"], "rl": tb.__dict__, "prompts": len(examples)}
    row["V0"] = spread(v0)
    row["rollouts"] = rollout_stats(policy0, tokenizer, task, cfg, examples, args.group, seed=1)
    if ent is not None:
        row["answers"] = answer_distribution(task, examples[: args.answer_prompts], ent, policy0, tokenizer)
        row["distinct_correct@64"] = rollout_stats(policy0, tokenizer, task, cfg, examples[: args.answer_prompts],
                                                   64, seed=2)["median_distinct_correct"]
    if "digits" in examples[0].columns:  # difficulty structure: mean V by digits and by carries
        for key in ("digits", "carries"):
            vals = np.array([e.columns[key] for e in examples])
            row[f"V0_by_{key}"] = {int(k): float(v0[vals == k].mean()) for k in np.unique(vals)}
    row["measure_seconds"] = time.perf_counter() - t0
    if degenerate(row) and not args.force_stability:  # no reward, no update: corr(V_0, V_t) = 1 would be vacuous
        row["stability"] = {}
        row["stability_skipped"] = (f"pi_0 gives no reward signal (mixed groups {row['rollouts']['mixed_group_frac']:.3f}, "
                                    f"V_0 q90 {row['V0']['q90']:.2e}): RL would not move the policy")
    else:
        row["stability"] = stability_run(tb, policy0, tokenizer, task, examples, args.checkpoints, args.seed, v0)
    return row


def degenerate(row: dict[str, Any]) -> bool:
    """True when pi_0 gives RL no signal: no mixed-reward group and V_0 below 0.01 at its 90th percentile."""
    return row["rollouts"]["mixed_group_frac"] == 0 and row["V0"]["q90"] < 0.01


def verdicts(rows: list[dict[str, Any]], last: int) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        corr = r["stability"][str(last)]["pearson"] if r["stability"] else None
        out.append({"testbed": r["testbed"], "mean V_0": f"{r['V0']['mean']:.3g}",
                    "mixed groups": f"{r['rollouts']['mixed_group_frac']:.3f}",
                    f"corr(V_0, V_{last})": "not run (degenerate base)" if corr is None else f"{corr:.3f}",
                    "corr >= 0.9": "n/a" if corr is None else bool(corr >= 0.9),
                    "mean response (tokens)": f"{r['rollouts']['mean_len']:.1f}",
                    ">= 30": bool(r["rollouts"]["mean_len"] >= 30),
                    "median distinct correct (64 samples)": r.get("distinct_correct@64", "n/a"),
                    ">= 3": bool(r["distinct_correct@64"] >= 3) if "distinct_correct@64" in r else "n/a"})
    return out


def to_markdown(rows: list[dict[str, Any]], args, seconds: float) -> str:
    from rollwise.report import markdown_table

    last = max(args.checkpoints)
    cmd = command(args)
    md = ["# Reasoning testbed: properties of the base models", "",
          f"Command: `{cmd}` ({seconds / 60:.1f} min of measuring on the shared 2-core CPU, summed over testbeds). V(x) exact on {args.prompts} "
          f"training prompts; {args.group} samples per prompt for lengths and groups; reference RL run seed "
          f"{args.seed}, checkpoints {', '.join(map(str, args.checkpoints))}.", "",
          "## Targets", "", markdown_table(verdicts(rows, last)), "", "## Per testbed", ""]
    for r in rows:
        tb = r["rl"]
        md += [f"### {r['testbed']} ({r['task']}, {r['parameters'] / 1e6:.2f}M parameters, base built in "
               f"{r['base_build_minutes']:.1f} min)", "",
               f"Reference RL run: {tb['preset']}, {tb['prompts']} prompts/step, lr {tb['lr']:g}, max "
               f"{tb['max_new_tokens']} new tokens.", "",
               markdown_table([{"quantity": k, "value": f"{v:.4g}" if isinstance(v, float) else v}
                               for k, v in {**{f"V0 {k}": v for k, v in r["V0"].items()}, **r["rollouts"]}.items()]),
               ""]
        if "answers" in r:
            md += [markdown_table([{"quantity": k, "value": f"{v:.4g}" if isinstance(v, float) else v}
                                   for k, v in {**r["answers"], "median distinct correct@64":
                                                r["distinct_correct@64"]}.items()]), ""]
        for key in ("digits", "carries"):
            if f"V0_by_{key}" in r:
                md += [f"Mean V_0 by {key}: " + ", ".join(f"{k}: {v:.3g}" for k, v in r[f"V0_by_{key}"].items()), ""]
        md += [markdown_table([{"step": s, **{k: f"{v:.3f}" for k, v in d.items()}}
                               for s, d in r["stability"].items()]) if r["stability"] else
               f"Stability run not made: {r['stability_skipped']}.", ""]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rollwise bench testbed-properties")
    ap.add_argument("--quick", action="store_true", help="the CI bases, 16 prompts, checkpoints 2,4")
    ap.add_argument("--testbeds", default=None, help="comma-separated (default column-arith,countdown-steps)")
    ap.add_argument("--prompts", type=int, default=256, help="training prompts whose V(x) is measured")
    ap.add_argument("--answer-prompts", type=int, default=64, help="countdown prompts for the answer distribution")
    ap.add_argument("--group", type=int, default=8, help="samples per prompt for lengths and mixed groups")
    ap.add_argument("--checkpoints", default="100,300", help="RL steps at which corr(V_0, V_t) is measured")
    ap.add_argument("--lr", type=float, default=None, help="learning rate of the stability run (default: the testbed's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--root", default="runs/base", help="base model cache")
    ap.add_argument("--name", default=None, help="results file name (default testbed_properties[_quick])")
    ap.add_argument("--cache", default="runs/bench-testbed", help="measured rows, reused by later calls")
    ap.add_argument("--force-stability", action="store_true", help="run the RL stability run even on a degenerate base")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:  # the CI bases are degenerate (30 SFT steps): the stability run is forced to test it
        args.force_stability = True
        args.testbeds = args.testbeds or "column-arith-ci,countdown-steps-ci"
        args.prompts, args.answer_prompts, args.group, args.checkpoints = 16, 4, 4, "2,4"
    args.testbeds = (args.testbeds or "column-arith,countdown-steps").split(",")
    args.checkpoints = [int(c) for c in args.checkpoints.split(",")]
    args.name = args.name or ("testbed_properties_quick" if args.quick else "testbed_properties")

    from rollwise.rlvr.policy import quiet_transformers
    from rollwise.runlog import set_threads

    quiet_transformers()
    set_threads(args.threads)
    rows = [cached_measure(name, args) for name in args.testbeds]  # from the cache: the time each row took
    seconds = sum(r["measure_seconds"] + max([d["seconds"] for d in r["stability"].values()], default=0.0)
                  for r in rows)
    payload = {"command": command(args),
               "targets": TARGETS, "rows": rows, "verdicts": verdicts(rows, max(args.checkpoints)), "seconds": seconds}
    publish(args.name, payload, to_markdown(rows, args, seconds), Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
