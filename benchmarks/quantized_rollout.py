"""Benchmark: low-precision rollouts and their correction (docs/ais.md, issue #4).

Two parts, both written to ``benchmarks/results/quantized_rollout.{json,md}`` with PNG plots:

1. Rollout speed, full precision vs int8 dynamic quantization (``QuantizedEngine(fmt="int8_dynamic")``), for
   the default tiny model and a model about 10x larger, timed in the same process, the two sides alternated.
2. Training comparison: the trainer stays fp32; rollouts come from the fp32 policy (reference) or from a
   fake-quantized copy (re-quantized after every step) with no correction, token-TIS, Seq-MIS or AIS.
   Reported per arm and seed: final exact accuracy V(x) = pi(answer | x) of the fp32 policy on the training
   pool (and the test pool), ESS / mismatch / lambda / entropy curves, and our acceptance items (a)-(d) (docs/ais.md).

The design is ours (docs/ais.md; the paper's experiments are GPU-scale FP8 RL): task ``reverse`` with op sort, 16 letters over ``abcdefgh`` to write
in sorted order, rewarded only if the whole 17-token response (with EOS) is exact (vocabulary 99), a short warm
start that leaves the exact-match rate near 10-20%, int4 rollouts. The first design (add3, int3) is in
docs/history/ais.md; its results are ``results/quantized_rollout_v1.*`` and its code is in git.

Run: ``rollwise bench quantized-rollout [--quick]`` (see ``--help``). ``--design testbed``: the reasoning-testbed
design (``quantized_testbed.py``: the column-arith base, int8 and int4 arms, mismatch against response length).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, bench_parser, pearson, relative_paths  # noqa: E402

NAME = "quantized_rollout"

#: arm -> (rollout engine, engine params, correction, correction params)
ARMS: dict[str, tuple[str, dict[str, Any], str, dict[str, Any]]] = {
    "fp32": ("hf", {}, "none", {}),
    "quant-none": ("quantized", {}, "none", {}),
    "quant-tis": ("quantized", {}, "tis", {"level": "token", "cap": 2.0}),
    "quant-mis": ("quantized", {}, "mis", {"level": "sequence", "upper": 2.0}),
    "quant-ais": ("quantized", {}, "ais", {}),
}


#: the benchmark design (docs/ais.md; the first design is in docs/history/ais.md and git): sort 16 letters over an
#: 8-letter alphabet, exact match of the whole 17-token response (sparse: ~20% after the warm start on the pilot
#: seed), int4; chosen on pilot seed 9. These are the training flags' defaults; explicit flags still win.
DESIGN: dict[str, Any] = {"task": "reverse", "op": "sort", "length": 16, "alphabet": "abcdefgh", "sft_noise": 0.0,
                          "fmt": "int4", "steps": 100, "sft_steps": 175, "sft_lr": 3e-3, "prompts": 16, "n": 8,
                          "lr": 2e-4, "runs": "runs/bench-quantized-rollout-v2"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = bench_parser("rollwise bench quantized-rollout", quick="small settings (one seed, few steps) for a smoke run",
                     seeds_help="comma-separated training seeds", description=__doc__.split("\n")[0])
    p.add_argument("--fmt", default="int4", help="rollout format of the quantized arms (see engines/quantized.py)")
    p.add_argument("--activations", action="store_true", help="also fake-quantize Linear inputs (FP8 formats)")
    p.add_argument("--steps", type=int, default=60, help="RL steps per arm")
    p.add_argument("--sft-steps", type=int, default=80, help="supervised warm-start steps (shared by the arms)")
    p.add_argument("--sft-lr", type=float, default=3e-3, help="warm-start learning rate")
    p.add_argument("--prompts", type=int, default=16, help="prompts per RL step")
    p.add_argument("--n", type=int, default=8, help="rollouts per prompt (GRPO group)")
    p.add_argument("--lr", type=float, default=5e-4, help="RL learning rate")
    p.add_argument("--task", default="reverse", choices=["make_n", "add3", "reverse"], help="training task")
    p.add_argument("--max-operand", type=int, default=9, help="add3 operand range [0, max]")
    p.add_argument("--op", default="sort", choices=["reverse", "copy", "sort"], help="reverse task: transformation")
    p.add_argument("--length", type=int, default=16, help="reverse task: letters per string (response tokens)")
    p.add_argument("--alphabet", default="abcdefgh", help="reverse task: letters of the strings")
    p.add_argument("--sft-noise", type=float, default=0.0,
                   help="reverse task: per-letter noise of the warm-start targets (sets the starting accuracy)")
    p.add_argument("--eval-samples", type=int, default=32, help="samples per test prompt in the final fp32 eval")
    p.add_argument("--eval-every", type=int, default=10, help="steps between exact test evaluations")
    p.add_argument("--eval-prompts", type=int, default=128, help="held-out prompts per evaluation")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {', '.join(ARMS)}")
    p.add_argument("--ais-params", default="{}", help='JSON merged into the AIS arm\'s correction_params, e.g. '
                   '\'{"affordability": "flipped"}\' (ablations of the reconstructed choices)')
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    p.add_argument("--speed-reps", type=int, default=3, help="timed repetitions per side in the speed test")
    p.add_argument("--skip-speed", action="store_true", help="skip the rollout-speed part")
    p.add_argument("--skip-train", action="store_true", help="skip the training comparison")
    p.add_argument("--from-runs", action="store_true",
                   help="do not train: summarise the runs already in --runs (re-reads metrics and final checkpoints)")
    p.add_argument("--design", default="v2", choices=["v2", "testbed"],
                   help="v2: sort 16 letters (docs/ais.md, the default); testbed: the column-arithmetic testbed "
                        "base, int8 and int4 arms (benchmarks/quantized_testbed.py)")
    p.add_argument("--out", default=str(RESULTS), help="folder for the json/md/png results")
    p.add_argument("--runs", default="runs/bench-quantized-rollout-v2", help="folder for the training runs")
    p.add_argument("--reuse", default=None, metavar="FILE[,FILE]",
                   help="design testbed: results .json of earlier runs with the same settings; their seeds are taken "
                        "over, not retrained")
    p.set_defaults(**DESIGN)
    if "--quick" in argv:  # smaller defaults; explicit flags still win
        p.set_defaults(seeds="0", steps=30, speed_reps=2)
    args = p.parse_args(argv)
    #: the options given on the command line (design "testbed" takes its own defaults for the others)
    args.given = {a.lstrip("-").split("=")[0].replace("-", "_") for a in argv if a.startswith("--")}
    return args


def result_name(args: argparse.Namespace) -> str:
    """Stem of the result files: ``quantized_rollout``; ``_quick`` for --quick."""
    return NAME + ("_quick" if args.quick else "")


# ------------------------------------------------------------------------------------------ speed
def time_engines(engines: dict[str, Any], prompts: list[str], sampling: Any, reps: int
                 ) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Seconds and generated tokens of each engine's ``generate(prompts)`` per repetition, after one warm-up call
    each; the order of the engines is reversed every other repetition."""
    times: dict[str, list[float]] = {k: [] for k in engines}
    tokens: dict[str, list[int]] = {k: [] for k in engines}
    for e in engines.values():  # warm-up
        e.generate(prompts[:2], sampling, seed=0)
    for rep in range(reps):
        order = list(engines) if rep % 2 == 0 else list(engines)[::-1]  # alternate the sides
        for side in order:
            t0 = time.perf_counter()
            batch = engines[side].generate(prompts, sampling, seed=rep)
            times[side].append(time.perf_counter() - t0)
            tokens[side].append(int(batch.response_lengths.sum()))
    return times, tokens


def rollout_speed(threads: int, reps: int, quick: bool) -> list[dict[str, Any]]:
    """Seconds per rollout batch, fp32 vs int8 dynamic, for the default model and one ~10x larger."""
    from rollwise.rlvr.engines import SamplingConfig
    from rollwise.rlvr.engines.hf import HFEngine
    from rollwise.rlvr.engines.quantized import QuantizedEngine
    from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, num_parameters, tiny_causal_lm
    from rollwise.runlog import set_threads

    set_threads(threads)
    tok = char_tokenizer()
    sampling = SamplingConfig(n=8, max_new_tokens=16)
    prompts = [f"{i % 100}+{(7 * i) % 100}=" for i in range(8 if quick else 32)]
    models = {"default": TinyModelConfig(),
              "10x": TinyModelConfig(hidden_size=384, num_layers=3, num_heads=6, intermediate_size=1152)}
    base_params = None
    rows = []
    for name, cfg in models.items():
        policy = tiny_causal_lm(tok, cfg, seed=0).eval()
        n_params = num_parameters(policy)
        base_params = base_params or n_params
        engines = {"fp32": HFEngine(policy, tok), "int8": QuantizedEngine(policy, tok, fmt="int8_dynamic")}
        times, _ = time_engines(engines, prompts, sampling, reps)
        fp, q = statistics.median(times["fp32"]), statistics.median(times["int8"])
        rows.append({"model": name, "params": n_params, "size_vs_default": n_params / base_params,
                     "rollouts": len(prompts) * sampling.n, "tokens_max": sampling.max_new_tokens,
                     "fp32_s": fp, "int8_s": q, "speedup": fp / q, "threads": threads, "reps": reps})
        print(f"speed {name}: {n_params / 1e6:.2f}M params, fp32 {fp:.2f}s int8 {q:.2f}s -> {fp / q:.2f}x",
              file=sys.stderr)
    return rows


# ------------------------------------------------------------------------------------------ training
def add3_params(max_operand: int) -> dict[str, int]:
    """add3 pools sized to the operand range: 3/4 of the (a, b) pairs for training, the rest (<= 512) for test."""
    space = (max_operand + 1) ** 2
    n_train = min(4096, (3 * space) // 4)
    return {"max_operand": max_operand, "n_train": n_train, "n_test": min(512, space - n_train)}


def task_config(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """The task's parameters and the rollout length limit (max_new_tokens) for it."""
    if args.task == "add3":
        return add3_params(args.max_operand), 6
    if args.task == "reverse":
        return {"op": args.op, "length": args.length, "alphabet": args.alphabet, "sft_noise": args.sft_noise}, \
            args.length + 4
    return {}, 6


def base_config(args: argparse.Namespace, seed: int, run_dir: Path) -> dict[str, Any]:
    params, max_new = task_config(args)
    return {
        "task": {"name": args.task, "params": params},
        "model": {"forward": "hf"},  # the committed results were measured on transformers' path
        "sft": {"steps": args.sft_steps, "batch_size": 128, "lr": args.sft_lr},
        "rollout": {"n": args.n, "max_new_tokens": max_new, "temperature": 1.0},
        "algorithm": {"estimator": "grpo"},
        "train": {"steps": args.steps, "prompts_per_step": args.prompts, "lr": args.lr, "seed": seed,
                  "eval_every": args.eval_every, "eval_prompts": args.eval_prompts, "checkpoint_every": 0,
                  "keep_checkpoints": 1, "reuse_logprobs": False},
        "run": {"output_dir": str(run_dir), "threads": args.threads, "report": False},
    }


def warm_start(args: argparse.Namespace, seed: int, runs: Path) -> Path:
    """SFT once per seed; every arm of that seed starts from the saved model."""
    from rollwise.rlvr.policy import build_policy, quiet_transformers
    from rollwise.rlvr.run_config import resolve_config
    from rollwise.rlvr.tasks import make_task
    from rollwise.runlog import seed_everything, set_threads

    warm = runs / f"seed{seed}" / "warm_start"
    if (warm / "config.json").exists():
        return warm
    cfg = resolve_config(base=base_config(args, seed, runs / f"seed{seed}" / "sft"))
    quiet_transformers()
    set_threads(args.threads)
    seed_everything(seed)
    build_policy(cfg, make_task(cfg.task.name, **cfg.task.params), warm)
    return warm


def train_arm(args: argparse.Namespace, arm: str, seed: int, warm: Path, runs: Path) -> list[dict[str, Any]]:
    """One training run; returns its metrics records."""
    from rollwise.rlvr.job import run_training
    from rollwise.rlvr.run_config import resolve_config
    from rollwise.runlog import read_jsonl

    engine, engine_params, corr, corr_params = ARMS[arm]
    run_dir = runs / f"seed{seed}" / arm
    data = base_config(args, seed, run_dir)
    data["model"] = {"name_or_path": str(warm)}
    data["sft"]["enabled"] = False
    data["rollout"].update(engine=engine, engine_params={**engine_params, **(
        {"fmt": args.fmt, "activations": args.activations} if engine == "quantized" else {})})
    corr_params = {**corr_params, **(json.loads(args.ais_params) if corr == "ais" else {})}
    data["algorithm"].update(correction=corr, correction_params=corr_params)
    t0 = time.perf_counter()
    cfg = resolve_config(base=data)
    if not args.from_runs:
        run_training(cfg, overwrite=True)  # the benchmark owns its run folders
    records = read_jsonl(run_dir / "metrics.jsonl")
    records.append({"step": args.steps, **final_fp32_eval(cfg, run_dir, args.eval_samples)})
    print(f"train seed {seed} {arm}: {time.perf_counter() - t0:.0f}s, final fp32 accuracy "
          f"{_final(records, FINAL):.3f}", file=sys.stderr)
    return records


FINAL = "final/accuracy"


def final_fp32_eval(cfg: Any, run_dir: Path, n: int) -> dict[str, float]:
    """Accuracy of the final trainer (fp32) policy: exact V(x) = pi(answer | x) averaged over the training
    pool (what RL sharpens) and the test pool for unique-answer tasks; sampled pass@1 (``n`` samples per test
    prompt, fp32 rollouts) otherwise."""
    from rollwise.rlvr.checkpoint import latest_checkpoint
    from rollwise.rlvr.evaluate import evaluate_sampled, exact_success_prob
    from rollwise.rlvr.models import load_policy
    from rollwise.rlvr.tasks import make_task

    policy, tokenizer = load_policy(latest_checkpoint(run_dir))
    task = make_task(cfg.task.name, **cfg.task.params)
    if task.unique_answer:
        out = {}
        for split in ("train", "test"):
            ex = task.examples(split)
            v = exact_success_prob(policy, tokenizer, [e.prompt for e in ex], [e.target or e.answer for e in ex],
                                   temperature=cfg.rollout.temperature)
            out[f"final/{split}_exact"] = float(v.mean())
        out[FINAL] = out["final/train_exact"]
        return out
    fp32 = copy.deepcopy(cfg)
    fp32.rollout.engine, fp32.rollout.engine_params = "hf", {}
    res = evaluate_sampled(policy, tokenizer, task, fp32, n=n, ks=[1])
    return {FINAL: res["eval/pass@1"], "final/mean_reward": res["eval/mean_reward"]}


def _final(records: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in records if isinstance(r.get(key), (int, float))]
    return float(vals[-1]) if vals else float("nan")


def _curve(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [float(p[1]) for p in pts]


def _smooth(y: list[float], k: int = 5) -> list[float]:
    return [statistics.fmean(y[max(0, i - k + 1): i + 1]) for i in range(len(y))]


def _mean_curve(runs: list[list[dict[str, Any]]], key: str, smooth: int = 1) -> tuple[list[float], list[float]]:
    curves = [_curve(r, key) for r in runs]
    curves = [c for c in curves if c[0]]
    if not curves:
        return [], []
    n = min(len(c[0]) for c in curves)
    y = [statistics.fmean(c[1][i] for c in curves) for i in range(n)]
    return curves[0][0][:n], _smooth(y, smooth) if smooth > 1 else y


CURVES = {
    "eval/exact_accuracy": ("exact test accuracy (fp32 policy)", 1),
    "eval/accuracy": ("test accuracy (rollout engine, 1 sample)", 1),
    "accuracy": ("training-batch accuracy (engine samples)", 5),
    "mismatch/ess_ratio": ("sequence ESS ratio", 5),
    "mismatch/abs_log_ratio": ("mean |log pi_old - log mu|", 5),
    "mismatch/k3_kl": ("k3 mismatch KL", 5),
    "ais/lambda": ("AIS lambda", 5),
    "entropy": ("policy entropy", 5),
}


def _first_last(records: list[dict[str, Any]], key: str, k: int = 10) -> tuple[float, float]:
    """Mean of ``key`` over the first and the last ``k`` logged steps (NaN when never logged)."""
    y = _curve(records, key)[1]
    return (statistics.fmean(y[:k]), statistics.fmean(y[-k:])) if y else (float("nan"), float("nan"))


def _corr(records: list[dict[str, Any]], a: str, b: str) -> float:
    """Pearson correlation over training steps of two logged metrics (5-step running means)."""
    pa, pb = dict(zip(*_curve(records, a), strict=True)), dict(zip(*_curve(records, b), strict=True))
    steps = sorted(set(pa) & set(pb))
    if len(steps) < 3:
        return float("nan")
    return pearson(_smooth([pa[s] for s in steps]), _smooth([pb[s] for s in steps]))


def summarise(all_runs: dict[str, dict[int, list[dict[str, Any]]]], out: Path, stem: str = NAME
              ) -> tuple[list[dict], list[str]]:
    from rollwise.report import line_plot

    rows = []
    for arm, by_seed in all_runs.items():
        finals = {s: _final(r, FINAL) for s, r in by_seed.items()}
        early = {s: statistics.fmean(_curve(r, "mismatch/ess_ratio")[1][:10] or [float("nan")])
                 for s, r in by_seed.items()}
        late = {s: statistics.fmean(_curve(r, "mismatch/ess_ratio")[1][-10:] or [float("nan")])
                for s, r in by_seed.items()}
        rows.append({
            "arm": arm, **{f"acc_seed{s}": v for s, v in finals.items()},
            "acc_mean": statistics.fmean(finals.values()),
            "test_acc_mean": statistics.fmean(_final(r, "final/test_exact") for r in by_seed.values()),
            "batch_acc_first10": statistics.fmean(statistics.fmean(_curve(r, "accuracy")[1][:10])
                                                  for r in by_seed.values()),
            "batch_acc_last10": statistics.fmean(statistics.fmean(_curve(r, "accuracy")[1][-10:])
                                                 for r in by_seed.values()),
            "ess_first10": statistics.fmean(early.values()), "ess_last10": statistics.fmean(late.values()),
            "abs_delta_last10": statistics.fmean(
                statistics.fmean(_curve(r, "mismatch/abs_log_ratio")[1][-10:] or [float("nan")])
                for r in by_seed.values()),
            "lambda_last10": statistics.fmean(
                statistics.fmean(_curve(r, "ais/lambda")[1][-10:] or [float("nan")]) for r in by_seed.values()),
            "s_per_step": statistics.fmean(statistics.fmean(_curve(r, "time/step")[1]) for r in by_seed.values()),
        })
        rows[-1]["acc_std"] = statistics.stdev(finals.values()) if len(finals) > 1 else float("nan")
    figures = []
    for key, (label, smooth) in CURVES.items():
        series = {arm: _mean_curve(list(by_seed.values()), key, smooth) for arm, by_seed in all_runs.items()}
        series = {k: v for k, v in series.items() if v[0]}
        if series:
            name = f"{stem}_{key.replace('/', '_')}.png"
            line_plot(out / name, series, "RL step", label, title=f"{label} (mean over seeds)")
            figures.append(name)
    per_seed = {f"{arm} s{s}": _curve(r, "mismatch/ess_ratio") for arm in ("quant-none", "quant-ais")
                for s, r in all_runs.get(arm, {}).items()}
    per_seed = {k: (x, _smooth(y, 3)) for k, (x, y) in per_seed.items() if x}
    if per_seed:
        name = f"{stem}_ess_per_seed.png"
        line_plot(out / name, per_seed, "RL step", "sequence ESS ratio (3-step mean)",
                  title="ESS per seed: uncorrected vs AIS")
        figures.append(name)
    return rows, figures


def per_seed(all_runs: dict[str, dict[int, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """One row per (arm, seed): final accuracy, first/last-10-step means of ESS, mean |delta|, entropy and AIS
    lambda, the minimum ESS, the largest grad norm, and the correlations of acceptance item (b) over steps."""
    rows = []
    for arm, by_seed in all_runs.items():
        for s, r in by_seed.items():
            row: dict[str, Any] = {"arm": arm, "seed": s, "acc": _final(r, FINAL), "test_acc": _final(r, "final/test_exact")}
            for key, short in (("mismatch/ess_ratio", "ess"), ("mismatch/abs_log_ratio", "abs_delta"),
                               ("entropy", "entropy"), ("ais/lambda", "lambda"), ("accuracy", "batch_acc")):
                row[f"{short}_first10"], row[f"{short}_last10"] = _first_last(r, key)
            ess = _curve(r, "mismatch/ess_ratio")[1]
            row["ess_min"] = min(ess) if ess else float("nan")
            gn = _curve(r, "grad_norm")[1]
            row["grad_norm_max"] = max(gn) if gn else float("nan")
            row["corr_delta_entropy"] = _corr(r, "mismatch/abs_log_ratio", "entropy")
            row["corr_ess_entropy"] = _corr(r, "mismatch/ess_ratio", "entropy")
            rows.append(row)
    return rows


def spec_checks(rows: list[dict], seed_rows: list[dict]) -> list[dict[str, Any]]:
    """Spec 5.4's acceptance items (a)-(d), measured (report, don't gate)."""
    out: list[dict[str, Any]] = []
    by_arm = {r["arm"]: r for r in rows}
    ref = [r for r in seed_rows if r["arm"] == "fp32"]
    if ref:
        gap = max(max(r["abs_delta_first10"], r["abs_delta_last10"]) for r in ref)
        out.append({"target": "(a) reference arm's gap metrics stay at 0",
                    "measured": f"mean |delta| <= {gap:.1e}, ESS >= {min(r['ess_min'] for r in ref):.6f}",
                    "met": gap < 1e-4})
    quant = [r for r in seed_rows if r["arm"].startswith("quant-")]
    if quant:
        cd = statistics.fmean(r["corr_delta_entropy"] for r in quant)
        ce = statistics.fmean(r["corr_ess_entropy"] for r in quant)
        out.append({"target": "(b) in quantized arms, mean |delta| and ESS decay correlate with entropy decrease",
                    "measured": f"corr(|delta|, entropy) {cd:+.2f}, corr(ESS, entropy) {ce:+.2f} (mean over arms x "
                                "seeds, 5-step means over steps; expected < 0 and > 0)",
                    "met": cd < 0 and ce > 0})
    if {"fp32", "quant-ais", "quant-none"} <= set(by_arm):
        a, f, u = by_arm["quant-ais"], by_arm["fp32"], by_arm["quant-none"]
        out.append({"target": "(c) AIS final accuracy within one seed-std of fp32, and >= uncorrected",
                    "measured": f"AIS {a['acc_mean']:.3f}, fp32 {f['acc_mean']:.3f} (std {f['acc_std']:.3f}), "
                                f"uncorrected {u['acc_mean']:.3f}",
                    "met": abs(a["acc_mean"] - f["acc_mean"]) <= f["acc_std"] and a["acc_mean"] >= u["acc_mean"]})
    lam = [r for r in seed_rows if r["arm"] == "quant-ais"]
    if lam:
        first = statistics.fmean(r["lambda_first10"] for r in lam)
        last = statistics.fmean(r["lambda_last10"] for r in lam)
        rising = sum(r["lambda_last10"] > r["lambda_first10"] for r in lam)
        out.append({"target": "(d) AIS lambda rises over training",
                    "measured": f"first 10 steps {first:.3f} -> last 10 {last:.3f}; rises in {rising} of {len(lam)} seeds",
                    "met": last > first})
    return out


def targets(speed: list[dict], rows: list[dict], seeds: list[int]) -> list[dict[str, Any]]:
    """The issue's three targets, each with what was measured and whether it was met."""
    out = []
    big = next((r for r in speed if r["model"] == "10x"), None)
    if big:
        out.append({"target": "int8 rollout speedup >= 1.5x on the ~10x model", "measured": f"{big['speedup']:.2f}x",
                    "met": big["speedup"] >= 1.5})
    by_arm = {r["arm"]: r for r in rows}
    if {"fp32", "quant-ais", "quant-tis"} <= set(by_arm):
        within = sum(abs(by_arm["quant-ais"][f"acc_seed{s}"] - by_arm["fp32"][f"acc_seed{s}"]) <= 0.01
                     or by_arm["quant-ais"][f"acc_seed{s}"] >= by_arm["fp32"][f"acc_seed{s}"] for s in seeds)
        need = 2 if len(seeds) >= 3 else len(seeds)
        out.append({"target": "AIS final accuracy within 1 point of fp32 in 2 of 3 seeds",
                    "measured": f"{within} of {len(seeds)} seeds", "met": within >= need})
        out.append({"target": "AIS no worse than TIS (mean final accuracy)",
                    "measured": f"AIS {by_arm['quant-ais']['acc_mean']:.3f} vs TIS {by_arm['quant-tis']['acc_mean']:.3f}",
                    "met": by_arm["quant-ais"]["acc_mean"] >= by_arm["quant-tis"]["acc_mean"]})
    if {"fp32", "quant-none"} <= set(by_arm):
        a, ref = by_arm["quant-none"], by_arm["fp32"]
        degraded_acc = a["acc_mean"] < ref["acc_mean"] - 0.01
        falling_ess = a["ess_last10"] < a["ess_first10"] - 0.01
        out.append({"target": "uncorrected quantized run degrades (lower accuracy or falling ESS)",
                    "measured": f"acc {a['acc_mean']:.3f} vs fp32 {ref['acc_mean']:.3f}; ESS "
                                f"{a['ess_first10']:.3f} -> {a['ess_last10']:.3f}",
                    "met": degraded_acc or falling_ess})
    return out


def write(out: Path, payload: dict[str, Any], stem: str = NAME) -> None:
    from rollwise.report import markdown_table

    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(relative_paths(json.dumps(payload, indent=2, default=str)))
    lines = ["# Quantized rollouts and their correction", "", f"Command: `{payload['command']}`", "",
             f"Wall-clock {payload['seconds']:.0f} s on a shared 2-core CPU ({payload['settings']['threads']} torch "
             "thread(s)); timings are inflated by other jobs, ratios are measured in the same process.", ""]
    if payload["settings"].get("from_runs"):
        lines += ["Training runs were made earlier by the same command without `--from-runs` (same settings); this "
                  "summary re-reads their metrics and final checkpoints. The speed part was measured now.", ""]
    if payload["targets"]:
        lines += ["## Targets", "", markdown_table(payload["targets"]), ""]
    if payload["speed"]:
        lines += ["## Rollout speed (fp32 vs int8 dynamic)", "", markdown_table(payload["speed"]), ""]
    if payload.get("spec_checks"):
        lines += ["## Spec 5.4 acceptance (report, don't gate)", "", markdown_table(payload["spec_checks"]), ""]
    if payload["training"]:
        task = payload["settings"]["task"]
        lines += [f"## Training comparison ({task}, GRPO, fp32 trainer, {payload['settings']['fmt']} rollouts)", "",
                  markdown_table(payload["training"]), ""]
    if payload.get("per_seed"):
        lines += ["## Per arm and seed", "", markdown_table(payload["per_seed"]), ""]
    lines += ["## Settings", "", "```", json.dumps(payload["settings"], indent=1), "```", ""]
    lines += [f"![{Path(f).stem}]({f})" for f in payload["figures"]]
    (out / f"{stem}.md").write_text(relative_paths("\n".join(lines) + "\n"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.design == "testbed":
        from quantized_testbed import run

        return run(args, argv)
    out, runs = Path(args.out), Path(args.runs)
    t0 = time.perf_counter()
    speed = [] if args.skip_speed else rollout_speed(args.threads, args.speed_reps, args.quick)
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = args.arms.split(",")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        print(f"unknown arm(s) {unknown}; valid: {', '.join(ARMS)}", file=sys.stderr)
        return 2
    all_runs: dict[str, dict[int, list[dict[str, Any]]]] = {a: {} for a in arms}
    rows, figures, seed_rows = [], [], []
    stem = result_name(args)
    if not args.skip_train:
        for seed in seeds:
            warm = runs / f"seed{seed}" / "warm_start" if args.from_runs else warm_start(args, seed, runs)
            for arm in arms:
                all_runs[arm][seed] = train_arm(args, arm, seed, warm, runs)
        rows, figures = summarise(all_runs, out, stem)
        seed_rows = per_seed(all_runs)
    payload = {
        "command": "rollwise bench quantized-rollout " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seconds": time.perf_counter() - t0, "settings": {k: v for k, v in vars(args).items() if k != "given"}, "speed": speed, "training": rows,
        "targets": targets(speed, rows, seeds) if (speed or rows) else [], "figures": figures,
        "spec_checks": spec_checks(rows, seed_rows) if rows else [], "per_seed": seed_rows,
        "curves": {arm: {s: {k: _curve(r, k) for k in CURVES} for s, r in by_seed.items()}
                   for arm, by_seed in all_runs.items()},
    }
    write(out, payload, stem)
    print(f"wrote {out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
