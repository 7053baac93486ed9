"""Design "testbed" of ``rollwise bench quantized-rollout`` (docs/ais.md, "Benchmark design: reasoning testbed"):
low-precision rollouts and their corrections on the column-arithmetic testbed, whose written-out traces are
23-45 tokens long.

    rollwise bench quantized-rollout --design testbed            # 3 seeds x 9 arms + rollout speed
    rollwise bench quantized-rollout --design testbed --quick    # the CI base, 1 seed, a few steps

Every arm starts from the same base (``rollwise base build column-arith``; ``--quick``: ``column-arith-ci``) and
trains GRPO with the fp32 trainer; rollouts come from the fp32 policy (``fp32``) or from a fake-quantized copy
re-quantized after every step (int8 or int4, per output channel), uncorrected or with token-TIS, Seq-MIS or AIS.
Logged per step: the mismatch diagnostics (sequence ESS ratio, mean |log pi_old - log mu|, k3, AIS lambda and
its inputs S, R, V/P); per sampled sequence: |sum_t delta_t| and mean_t |delta_t| against the response length
(binned, first and second half of training). Accuracy is exact: V(x) = pi(trace | x) of the fp32 policy, on
held-out prompts every ``eval_every`` steps and on the whole test pool and a train subset at the end. The
rollout speed (fp32 vs int8 dynamic kernels) is timed on the base itself with its prompts in the same run.
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

from _common import RESULTS, nan_mean, provenances, publish, reuse_lines, reused_results  # noqa: E402
from testbed_setup import TestbedRL, load_base, rl_config, testbed  # noqa: E402

#: arm -> (rollout engine, engine params, correction, correction params); the fp32 arm samples through the same
#: ``generate`` path (``hf``) as the quantized engine, so quantization is the only difference
ARMS: dict[str, tuple[str, dict[str, Any], str, dict[str, Any]]] = {
    "fp32": ("hf", {}, "none", {}),
    "int8-none": ("quantized", {"fmt": "int8"}, "none", {}),
    "int8-ais": ("quantized", {"fmt": "int8"}, "ais", {}),
    "int4-none": ("quantized", {"fmt": "int4"}, "none", {}),
    "int4-tis": ("quantized", {"fmt": "int4"}, "tis", {"level": "token", "cap": 2.0}),
    "int4-mis": ("quantized", {"fmt": "int4"}, "mis", {"level": "sequence", "upper": 2.0}),
    "int4-ais": ("quantized", {"fmt": "int4"}, "ais", {}),
    # design amendment "testbed-seq" (docs/ais.md): AIS's severity read on the sequence log-ratio
    "int8-ais-seq": ("quantized", {"fmt": "int8"}, "ais", {"severity": "sequence"}),
    "int4-ais-seq": ("quantized", {"fmt": "int4"}, "ais", {"severity": "sequence"}),
}
#: the registered design (docs/ais.md); ``--quick`` swaps in the CI base and the quick sizes
DESIGN: dict[str, Any] = {"base": "column-arith", "steps": 80, "prompts": 16, "n": 8, "eval_every": 10,
                          "eval_prompts": 128, "final_prompts": 512, "speed_prompts": 16, "seeds": "0,1,2"}
QUICK: dict[str, Any] = {"base": "column-arith-ci", "steps": 4, "prompts": 4, "n": 4, "eval_every": 2,
                         "eval_prompts": 16, "final_prompts": 32, "speed_prompts": 4, "seeds": "0"}
#: response-length bins (tokens, EOS included) of the per-sequence mismatch
LENGTH_BIN = 4
#: per-step curves plotted (key -> label)
CURVES = {"mismatch/ess_ratio": "sequence ESS ratio", "mismatch/abs_log_ratio": "mean |log pi_old - log mu|",
          "mismatch/k3_kl": "k3 mismatch KL", "ais/lambda": "AIS lambda", "ais/severity_S": "AIS severity S",
          "ais/reliability_R": "AIS reliability R", "ais/variance_P": "AIS variance term P",
          "eval/exact_accuracy": "held-out exact V(x) (fp32 policy)", "entropy": "policy entropy"}
FINAL = "final/accuracy"
#: the options of ``rollwise bench quantized-rollout`` that this design reads (the others belong to design v2)
OPTIONS = ("quick", "seeds", "design", "steps", "prompts", "n", "arms", "threads", "speed_reps", "skip_speed",
           "skip_train", "out", "runs", "reuse")


def reuse_settings(payload: dict[str, Any]) -> dict[str, Any]:
    """The settings of a results file that ``--reuse`` requires to equal this run's (all but seeds and arms)."""
    return {**{k: v for k, v in payload["settings"].items() if k != "seeds"}, "base_key": payload["base_build"]["key"]}


def reused_seed(payload: dict[str, Any], seed: int, arms: list[str]
                ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, dict[int, list[float]]]]]:
    """One seed's per-arm records and per-length mismatch table from a results file, for the ``arms`` the file
    holds (the others are trained by this run). Files written before the per-seed table was stored hold one seed
    only, whose table is the pooled one (its bins are re-binned as they are, since each bin's lower edge maps to
    itself)."""
    arms = [a for a in arms if str(seed) in payload["records"].get(a, {})]
    records = {a: payload["records"][a][str(seed)] for a in arms}
    if "by_length_per_seed" in payload:
        return records, {a: {ph: {int(n): v for n, v in t.items()} for ph, t in payload["by_length_per_seed"][a][str(seed)].items()}
                         for a in arms}
    if len(next(iter(payload["records"].values()))) != 1:
        raise SystemExit("--reuse: a file of several seeds without its per-seed length table")
    table: dict[str, dict[str, dict[int, list[float]]]] = {a: {} for a in arms}
    for r in payload["by_length"]:
        if r["arm"] in table:
            c = r["sequences"]
            table[r["arm"]].setdefault(r["half"], {})[r["length_lo"]] = [c, r["abs_seq_log_ratio"] * c,
                                                                        r["mean_abs_token_delta"] * c]
    return records, table


def trained_lines(trained_here: dict[str, list[int]], prov: dict[str, Any]) -> list[str]:
    """Where a seed was taken over, the arms this run trained for it anyway (the file lacked them)."""
    mixed = {arm: [s for s in seeds if str(s) in prov] for arm, seeds in trained_here.items()}
    return [f"- Trained in this run, not taken over: {arm} (seed(s) {', '.join(map(str, seeds))}); its times are this "
            "run's." for arm, seeds in mixed.items() if seeds]


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The design's settings, with ``--quick`` sizes and explicit flags applied."""
    out = {**(QUICK if args.quick else DESIGN)}
    for key in ("steps", "prompts", "n", "seeds"):
        if key in args.given:
            out[key] = getattr(args, key)
    return out


def arm_config(tb: TestbedRL, arm: str, s: dict[str, Any], seed: int, threads: int, run_dir: Path):
    """The resolved config of one arm: the testbed's base and lr, GRPO with the design's batch, the arm's engine
    and correction; old log-probs from a separate pass so the correction sees pi_old before the update."""
    engine, engine_params, corr, corr_params = ARMS[arm]
    return rl_config(tb, "grpo", [
        f"rollout.engine={engine}", f"train.prompts_per_step={s['prompts']}", f"rollout.n={s['n']}",
        f"train.steps={s['steps']}", f"train.seed={seed}", f"run.threads={threads}", f"run.output_dir={run_dir}",
        "train.reuse_logprobs=false", f"algorithm.correction={corr}",
    ] + [f"rollout.engine_params.{k}={v}" for k, v in engine_params.items()]
      + [f"algorithm.correction_params.{k}={v}" for k, v in corr_params.items()])


def accumulate(table: dict[int, list[float]], key: int, count: float, seq: float, tok: float) -> None:
    """Add ``count`` sequences with summed |log-ratio| ``seq`` and summed mean |delta| ``tok`` to ``table[key]``
    (a ``[count, sum seq, sum tok]`` row, created at zero)."""
    row = table.setdefault(key, [0, 0.0, 0.0])
    row[0], row[1], row[2] = row[0] + count, row[1] + seq, row[2] + tok


def make_trainer_class():
    """A Trainer that also accumulates the per-sequence mismatch by response length (``self.by_length``:
    phase -> length -> [count, sum |sum_t delta_t|, sum mean_t |delta_t|])."""
    from rollwise.rlvr.trainer import Trainer

    class LengthTrainer(Trainer):
        phase = "first"

        def compute_advantages(self, batch):
            import torch

            mask = batch.response_mask.bool()
            # (B, T): log pi_old - log mu on response tokens; a sequence with a non-finite engine log-prob is left
            # out here (the corrections mask it and count it in mismatch/nonfinite_seq_frac)
            delta = torch.where(mask, batch.old_logprobs - batch.rollout_logprobs, 0.0)
            finite = torch.isfinite(delta).all(-1)
            lengths = mask.sum(-1)
            seq = delta.sum(-1).abs()  # |log of the sequence ratio|
            tok = delta.abs().sum(-1) / lengths.clamp_min(1)
            table = self.by_length.setdefault(self.phase, {})
            keep = finite.nonzero().squeeze(-1)
            for n, a, b in zip(lengths[keep].tolist(), seq[keep].tolist(), tok[keep].tolist(), strict=True):
                accumulate(table, n, 1, a, b)
            return super().compute_advantages(batch)

    return LengthTrainer


def exact_v(policy, tokenizer, examples, compact: bool = True) -> float:
    """Mean exact V(x) = pi(trace + EOS | x) over ``examples`` (column_arith's reward is the canonical trace)."""
    from rollwise.rlvr.evaluate import exact_success_prob

    return float(exact_success_prob(policy, tokenizer, [e.prompt for e in examples], [e.target for e in examples],
                                    compact=compact).mean())


def train_arm(tb: TestbedRL, arm: str, s: dict[str, Any], seed: int, base, tok, task, threads: int, runs: Path
              ) -> tuple[list[dict[str, Any]], dict[str, dict[int, list[float]]]]:
    """One arm from a copy of the base: per-step records (with held-out exact V every ``eval_every`` steps and
    the final exact V on the test pool and a train subset) and the per-sequence mismatch by length."""
    from rollwise.runlog import seed_everything

    cfg = arm_config(tb, arm, s, seed, threads, runs / f"seed{seed}" / arm)
    seed_everything(seed)
    trainer = make_trainer_class()(cfg, copy.deepcopy(base), tok, task)
    trainer.by_length = {}
    test, train = task.examples("test"), task.examples("train")
    records = [{"step": 0, "eval/exact_accuracy": exact_v(trainer.policy, tok, test[: s["eval_prompts"]])}]
    t0 = time.perf_counter()
    for step in range(1, s["steps"] + 1):
        trainer.phase = "first" if step <= s["steps"] // 2 else "second"
        rec = trainer.train_step(step)
        if step % s["eval_every"] == 0 or step == s["steps"]:
            rec["eval/exact_accuracy"] = exact_v(trainer.policy, tok, test[: s["eval_prompts"]])
        records.append(rec)
    final = {"final/test_exact": exact_v(trainer.policy, tok, test[: s["final_prompts"]]),
             "final/train_exact": exact_v(trainer.policy, tok, train[: s["final_prompts"]])}
    records.append({"step": s["steps"], FINAL: final["final/test_exact"], **final})
    print(f"train seed {seed} {arm}: {time.perf_counter() - t0:.0f}s, held-out exact V "
          f"{records[0]['eval/exact_accuracy']:.3f} -> {final['final/test_exact']:.3f}", file=sys.stderr, flush=True)
    return records, trainer.by_length


def rollout_speed(base, tok, task, s: dict[str, Any], max_new: int, threads: int, reps: int
                  ) -> list[dict[str, Any]]:
    """Seconds per rollout batch (the design's prompts x n, temperature 1, the testbed's length limit): fp32
    ``HFEngine`` vs ``QuantizedEngine(int8_dynamic)`` (real int8 kernels) and the fake int4 engine (fp32 compute,
    for reference), on the trained base and on a random-init model of the same shape scaled ~10x."""
    from quantized_rollout import time_engines

    from rollwise.rlvr.engines import SamplingConfig
    from rollwise.rlvr.engines.hf import HFEngine
    from rollwise.rlvr.engines.quantized import QuantizedEngine
    from rollwise.rlvr.models import TinyModelConfig, num_parameters, tiny_causal_lm
    from rollwise.runlog import set_threads

    set_threads(threads)
    sampling = SamplingConfig(n=s["n"], max_new_tokens=max_new, temperature=1.0, top_p=1.0)
    prompts = [e.prompt for e in task.examples("test")[: s["speed_prompts"]]]
    big = TinyModelConfig(hidden_size=384, num_layers=4, num_heads=6, intermediate_size=1152, max_positions=128,
                          arch="qwen2")
    rows = []
    for name, policy in (("base", base), ("~10x, random init", tiny_causal_lm(tok, big, seed=0).eval())):
        engines = {"fp32": HFEngine(policy, tok), "int8_dynamic": QuantizedEngine(policy, tok, fmt="int8_dynamic"),
                   "int4 (fake)": QuantizedEngine(policy, tok, fmt="int4")}
        times, tokens = time_engines(engines, prompts, sampling, reps)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"model": name, "params": num_parameters(policy), "rollouts": len(prompts) * s["n"],
                     "mean_tokens": {k: statistics.fmean(v) / (len(prompts) * s["n"]) for k, v in tokens.items()},
                     **{f"{k}_s": v for k, v in med.items()},
                     "speedup_int8": med["fp32"] / med["int8_dynamic"], "speedup_int4_fake": med["fp32"] / med["int4 (fake)"],
                     "threads": threads, "reps": reps})
        print(f"speed {name}: fp32 {med['fp32']:.2f}s int8 {med['int8_dynamic']:.2f}s -> "
              f"{rows[-1]['speedup_int8']:.2f}x", file=sys.stderr, flush=True)
    return rows


def length_table(by_length: dict[str, dict[str, dict[int, list[float]]]]) -> list[dict[str, Any]]:
    """Per arm and phase, the per-sequence mismatch in response-length bins of ``LENGTH_BIN`` tokens, pooled over
    seeds: mean |sum_t delta_t| (the sequence log-ratio) and mean of mean_t |delta_t|."""
    rows = []
    for arm, phases in by_length.items():
        for phase, table in phases.items():
            bins: dict[int, list[float]] = {}
            for n, (c, a, b) in table.items():
                accumulate(bins, (n - 1) // LENGTH_BIN * LENGTH_BIN + 1, c, a, b)
            for lo, (c, a, b) in sorted(bins.items()):
                rows.append({"arm": arm, "half": phase, "length": f"{lo}-{lo + LENGTH_BIN - 1}", "length_lo": lo,
                             "sequences": int(c), "abs_seq_log_ratio": a / c, "mean_abs_token_delta": b / c})
    return rows


def _final(records: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in records if isinstance(r.get(key), (int, float))]
    return float(vals[-1]) if vals else float("nan")


def _series(records: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in records if isinstance(r.get(key), (int, float))]


def arm_rows(runs: dict[str, dict[int, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """One row per arm: final exact V per seed and mean, and the first/last-10-step means of the diagnostics."""
    rows = []
    for arm, by_seed in runs.items():
        acc = {s: _final(r, FINAL) for s, r in by_seed.items()}
        row: dict[str, Any] = {"arm": arm, **{f"acc_seed{s}": v for s, v in acc.items()},
                               "acc_mean": nan_mean(acc.values()),
                               "acc_std": statistics.stdev(acc.values()) if len(acc) > 1 else float("nan"),
                               "train_acc_mean": nan_mean(_final(r, "final/train_exact") for r in by_seed.values())}
        for key, short in (("mismatch/ess_ratio", "ess"), ("mismatch/abs_log_ratio", "abs_delta"),
                           ("ais/lambda", "lambda"), ("entropy", "entropy")):
            ys = [_series(r, key) for r in by_seed.values()]
            row[f"{short}_first10"] = nan_mean(nan_mean(y[:10]) for y in ys if y)
            row[f"{short}_last10"] = nan_mean(nan_mean(y[-10:]) for y in ys if y)
        row["s_per_step"] = nan_mean(nan_mean(_series(r, "time/step")) for r in by_seed.values())
        rows.append(row)
    return rows


def acceptance(rows: list[dict[str, Any]], runs: dict[str, dict[int, list[dict[str, Any]]]],
               speed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's acceptance items (docs/ais.md, design "testbed"), measured."""
    by = {r["arm"]: r for r in rows}
    out: list[dict[str, Any]] = []
    seeds = sorted(next(iter(runs.values())))
    ref = by.get("fp32")
    for fmt in ("int4", "int8"):
        for variant, label in (("ais", "AIS"), ("ais-seq", "AIS (sequence severity)")):
            arm = f"{fmt}-{variant}"
            if (ais := by.get(arm)) is None:
                continue
            if ref:
                gap = ais["acc_mean"] - ref["acc_mean"]
                ok = sum(_final(runs[arm][s], FINAL) >= _final(runs["fp32"][s], FINAL) - 0.01 for s in seeds)
                out.append({"target": f"{fmt} {label} final exact V within 1 point of fp32 (or above)",
                            "measured": f"{ais['acc_mean']:.4f} vs fp32 {ref['acc_mean']:.4f} ({100 * gap:+.2f} "
                                        f"points; {ok}/{len(seeds)} seeds)", "met": gap >= -0.01})
            for other in ("tis", "mis"):
                if o := by.get(f"{fmt}-{other}"):
                    out.append({"target": f"{fmt} {label} at or above {other.upper()}",
                                "measured": f"{ais['acc_mean']:.4f} vs {other.upper()} {o['acc_mean']:.4f}",
                                "met": ais["acc_mean"] >= o["acc_mean"]})
        none = by.get(f"{fmt}-none")
        if none and ref:
            out.append({"target": f"{fmt} uncorrected falls behind fp32 (by > 1 point)",
                        "measured": f"{none['acc_mean']:.4f} vs {ref['acc_mean']:.4f}; mean |delta| first/last 10 "
                                    f"steps {none['abs_delta_first10']:.4f} / {none['abs_delta_last10']:.4f}; ESS "
                                    f"{none['ess_first10']:.3f} / {none['ess_last10']:.3f}",
                        "met": none["acc_mean"] < ref["acc_mean"] - 0.01})
    if ref:
        out.append({"target": "fp32 reference: mismatch stays at kernel noise (mean |delta| < 1e-4)",
                    "measured": f"{max(ref['abs_delta_first10'], ref['abs_delta_last10']):.1e}",
                    "met": max(ref["abs_delta_first10"], ref["abs_delta_last10"]) < 1e-4})
    for row in speed:
        out.append({"target": f"int8 rollout speedup, {row['model']} (measured, no threshold in the issue)",
                    "measured": f"{row['speedup_int8']:.2f}x (fp32 {row['fp32_s']:.2f} s, int8 "
                                f"{row['int8_dynamic_s']:.2f} s, {row['rollouts']} rollouts)", "met": "-"})
    return out


def figures(runs, lengths: list[dict[str, Any]], out: Path, stem: str) -> list[str]:
    from rollwise.report import line_plot

    names = []
    for key, label in CURVES.items():
        series = {}
        for arm, by_seed in runs.items():
            curves = [[(r["step"], r[key]) for r in recs if isinstance(r.get(key), (int, float))]
                      for recs in by_seed.values()]
            curves = [c for c in curves if c]
            if curves:
                n = min(len(c) for c in curves)
                series[arm] = ([c[0] for c in curves[0][:n]], [nan_mean(c[i][1] for c in curves) for i in range(n)])
        if series:
            name = f"{stem}_{key.replace('/', '_')}.png"
            line_plot(out / name, series, "RL step", label, title=f"{label} (mean over seeds)")
            names.append(name)
    for half in ("first", "second"):
        series = {}
        for arm in runs:
            pts = [r for r in lengths if r["arm"] == arm and r["half"] == half]
            if pts and arm != "fp32":
                series[arm] = ([p["length_lo"] + (LENGTH_BIN - 1) / 2 for p in pts], [p["abs_seq_log_ratio"] for p in pts])
        if series:
            name = f"{stem}_mismatch_by_length_{half}.png"
            line_plot(out / name, series, "response length (tokens)", "mean |log pi_old(y) - log mu(y)|",
                      title=f"per-sequence mismatch vs length ({half} half of training)")
            names.append(name)
    return names


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """``rollwise bench quantized-rollout --design testbed [--quick]``."""
    from rollwise.report import markdown_table
    from rollwise.rlvr.policy import quiet_transformers
    from rollwise.runlog import set_threads

    foreign = sorted(args.given - set(OPTIONS))
    if foreign:
        print(f"rollwise bench quantized-rollout --design testbed: --{', --'.join(foreign).replace('_', '-')} "
              f"belong(s) to design v2; valid here: --{', --'.join(OPTIONS).replace('_', '-')}", file=sys.stderr)
        return 2
    s = settings(args)
    arms = [a.strip() for a in args.arms.split(",")] if "arms" in args.given else list(ARMS)
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        print(f"unknown arm(s) {unknown}; valid for --design testbed: {', '.join(ARMS)}", file=sys.stderr)
        return 2
    quiet_transformers()
    set_threads(args.threads)
    tb = testbed(s["base"])
    t0 = time.perf_counter()
    base, tok, task, build = load_base(tb)
    base.eval()
    speed = [] if args.skip_speed else rollout_speed(base, tok, task, s, tb.max_new_tokens, args.threads,
                                                      args.speed_reps)
    runs_dir = Path(args.runs if "runs" in args.given else f"runs/bench-quantized-testbed{'-quick' if args.quick else ''}")
    seeds = [int(x) for x in str(s["seeds"]).split(",")]
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {a: {} for a in arms}
    by_len: dict[str, dict[str, dict[int, list[float]]]] = {a: {} for a in arms}
    per_seed_len: dict[str, dict[int, dict[str, dict[int, list[float]]]]] = {a: {} for a in arms}
    here = {**{k: v for k, v in s.items() if k != "seeds"}, "base_key": build["key"]}
    reused = reused_results(args.reuse, here, reuse_settings, lambda p: next(iter(p["records"].values())), seeds)
    prov = provenances(reused)
    trained_here: dict[str, list[int]] = {}  # arm -> seeds trained by this run (the rest came from --reuse)
    if not args.skip_train:
        for seed in seeds:
            old = reused_seed(reused[seed][1], seed, arms) if seed in reused else None
            for arm in arms:
                if old and arm in old[0]:
                    runs[arm][seed], table = old[0][arm], old[1][arm]
                else:
                    runs[arm][seed], table = train_arm(tb, arm, s, seed, base, tok, task, args.threads, runs_dir)
                    trained_here.setdefault(arm, []).append(seed)
                per_seed_len[arm][seed] = table
                for phase, rows in table.items():  # pool the seeds
                    pooled = by_len[arm].setdefault(phase, {})
                    for n, (c, a, b) in rows.items():
                        accumulate(pooled, n, c, a, b)
    rows = arm_rows(runs) if not args.skip_train else []
    lengths = length_table(by_len)
    out = Path(args.out) if "out" in args.given else RESULTS
    stem = "quantized_rollout_testbed" + ("_quick" if args.quick else "")
    out.mkdir(parents=True, exist_ok=True)
    figs = figures(runs, lengths, out, stem) if rows else []
    checks = acceptance(rows, runs, speed) if rows else []
    command = "rollwise bench quantized-rollout " + " ".join(argv)
    wall = time.perf_counter() - t0
    md = ["# Quantized rollouts and their correction on the reasoning testbed (design testbed, docs/ais.md)", "",
          f"Command: `{command}`; wall {wall / 60:.1f} min on a shared 2-core CPU, {args.threads} torch thread(s).",
          "", f"Base `{s['base']}` ({build['parameters']} parameters, held-out exact V {build['held_out_mean_v']:.3f} "
          f"in build.json); GRPO {s['prompts']} prompts x {s['n']}, lr {tb.lr:g}, {s['steps']} steps, seeds "
          f"{seeds}; accuracy = exact V(x) = pi(trace | x) of the fp32 policy on {s['final_prompts']} held-out "
          "prompts (train_acc_mean: the same on training prompts).", *reuse_lines(prov),
          *trained_lines(trained_here, prov), ""]
    if checks:
        md += ["## Acceptance", "", markdown_table(checks), ""]
    if speed:
        md += ["## Rollout speed (same run; median of alternated repetitions)", "",
               markdown_table([{k: v for k, v in r.items() if k != "mean_tokens"} for r in speed]), ""]
    if rows:
        md += ["## Arms (means over seeds; first/last 10 steps)", "", markdown_table(rows), ""]
    if lengths:
        md += ["## Per-sequence mismatch by response length (pooled over seeds)", "", markdown_table(lengths), ""]
    md += [f"![{f}]({f})" for f in figs]
    payload = {"command": command, "design": "testbed", "settings": s, "threads": args.threads,
               "base_build": {k: build[k] for k in ("name", "key", "parameters", "held_out_mean_v")},
               "wall_seconds": wall, "speed": speed, "arms": rows, "acceptance": checks, "by_length": lengths,
               "figures": figs, "records": {a: {str(k): v for k, v in r.items()} for a, r in runs.items()},
               "by_length_per_seed": per_seed_len, "reused": prov, "trained_here": trained_here}
    publish(stem, payload, "\n".join(md) + "\n", out)
    return 0
