"""CoDistill-GRPO wall-clock per step with long responses, on the real trainers (issue #6; docs/codistill.md,
"Benchmark v3").

    rollwise bench codistill-long [--quick] [--seeds 0,1,2] [--steps 6] [--tokens 128,256] [--large-layers 4,2]

``decode_vs_score`` predicts, from timed phases, that CoDistill's step becomes cheaper than GRPO-large's once
decoding dominates (about 256 new tokens with the 4-layer large model of our first plan). This measures it with the
trainers themselves: ``Trainer.train_step`` of GRPO-large (G = 8 own rollouts per prompt) against
``Trainer.train_step`` with CoDistill's stages with alpha = 1 (M = 16 small-model rollouts, every one scored by the large model,
downsampled to G = 8, both updates), the benchmark ``codistill``'s configuration otherwise (16 prompts per step,
ADD-3 prompts, truncated IS, seq-mean-token-mean, 1 thread, one generate call per step).

Response length is fixed at T for every rollout: ``generation_config.min_new_tokens = T`` with
``max_new_tokens = T`` (each step's records are checked: mean and max response length equal T). The models are
random-init (seeded), so the responses carry no answer and every reward is 0; wall-clock does not depend on the
weights or the rewards, because every stage runs on every step whatever its inputs (no row is filtered).
This measures speed only; the accuracy criteria are measured by ``codistill``.

Per cell (large model layers x T) and seed, the two trainers run ``--steps`` steps in lock-step (order rotated
each step); step 1 is a warm-up and is not counted. Each reported ratio is the median over steps 2..S of the
per-step ratio CoDistill / GRPO-large, in the four definitions of ``codistill.step_timings`` (step, pipeline,
large, lean), then the mean over seeds. Writes benchmarks/results/codistill_long.{json,md}
(``--quick``: codistill_long_quick.*).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, bench_parser, publish  # noqa: E402
from codistill import TIMINGS, base_overrides, build_parser, make_trainer, step_timings  # noqa: E402

RUNS = ("grpo_large", "cd_a1")
#: phases shown per seed (ms; all of them are in the JSON)
PHASES = ("generate", "logprobs", "large_score", "update", "large_update", "step")
#: issue #6: CoDistill's step at least 10% cheaper than GRPO-large's
TARGET_SAVING = 0.10


def cell_trainers(args: argparse.Namespace, seed: int, layers: int, tokens: int) -> dict[str, Any]:
    """GRPO-large and CoDistill(alpha=1) trainers on the same random-init models, generating T tokens."""
    from rollwise.rlvr.models import char_tokenizer, tiny_causal_lm
    from rollwise.rlvr.run_config import resolve_config
    from rollwise.rlvr.tasks import make_task
    from rollwise.runlog import seed_everything

    seed_everything(seed)
    bench = build_parser().parse_args(["--prompts", str(args.prompts), "--steps", str(args.steps), "--out", args.out])
    overrides = [*base_overrides(bench, seed), f"rollout.max_new_tokens={tokens}",
                 f"codistill.large.tiny.num_layers={layers}"]
    cfg = resolve_config(algorithm="codistill", overrides=overrides)
    assert cfg.rollout.max_new_tokens == tokens and cfg.codistill.large.tiny.num_layers == layers
    task = make_task(cfg.task.name, **cfg.task.params)
    tok = char_tokenizer()
    small = tiny_causal_lm(tok, cfg.model.tiny, seed=seed)
    large = tiny_causal_lm(tok, cfg.codistill.large.tiny, seed=1000 + seed)
    for model in (small, large):
        model.generation_config.min_new_tokens = tokens  # no EOS before T tokens: fixed length
    return {name: make_trainer(name, cfg, small, large, tok, task) for name in RUNS}


def run_cell(args: argparse.Namespace, trainers: dict[str, Any], tokens: int) -> dict[str, Any]:
    """Lock-step steps of both trainers; per-definition medians (s) and paired ratios over steps 2..S."""
    recs: dict[str, list[dict[str, Any]]] = {name: [] for name in RUNS}
    for step in range(1, args.steps + 1):
        order = RUNS if step % 2 else RUNS[::-1]
        for name in order:
            rec = trainers[name].train_step(step)
            if rec["response_length"] != tokens or rec["response_length_max"] != tokens:
                raise RuntimeError(f"{name} step {step}: responses are not all {tokens} tokens long")
            recs[name].append(rec)
    timed = {name: [step_timings(name, r) for r in rs[1:]] for name, rs in recs.items()}
    out: dict[str, Any] = {}
    for key in TIMINGS:
        ratios = [c[key] / g[key] for c, g in zip(timed["cd_a1"], timed["grpo_large"])]
        out[key.replace("_s", "_ratio")] = statistics.median(ratios)
        for name in RUNS:
            out[f"{name}/{key}"] = statistics.median(t[key] for t in timed[name])
    out["phases_ms"] = {name: {k[5:]: 1000 * statistics.median(r.get(k, 0.0) for r in recs[name][1:])
                               for k in sorted({k for r in recs[name] for k in r if k.startswith("time/")})}
                        for name in RUNS}
    out["large_generated_tokens"] = sum(r.get("large/generated_tokens", 0) for r in recs["cd_a1"])
    out["large_scored_rows"] = statistics.median(r.get("large/scored_rows", 0) for r in recs["cd_a1"])
    return out


def predicted(layers: int, tokens: int) -> float | None:
    """The cost model's whole-step saving for this cell (``decode_vs_score_long.json``), if measured."""
    name = {2: "large_v2", 4: "large_spec"}.get(layers)
    path = RESULTS / "decode_vs_score_long.json"
    if name is None or not path.exists():
        return None
    cell = json.loads(path.read_text())["cost_model"].get(f"{name}/T={tokens}")
    return cell["step"]["saving_pct"] / 100 if cell else None


def report(args: argparse.Namespace, seeds: list[int], cells: dict[str, dict[int, dict[str, Any]]],
           seconds: float) -> None:
    from rollwise.report import fmt, markdown_table

    name = args.name or ("codistill_long_quick" if args.quick else "codistill_long")
    rows, seed_rows = [], []
    for cell, per_seed in cells.items():
        layers, tokens = (int(x) for x in cell.split("/"))
        mean = {k: statistics.fmean(r[k] for r in per_seed.values())
                for k in next(iter(per_seed.values())) if k.endswith("_ratio") or "/" in k}
        n_ok = sum(1 - r["step_ratio"] >= TARGET_SAVING for r in per_seed.values())
        rows.append({"large layers": layers, "T": tokens,
                     "GRPO-large step (s)": fmt(mean["grpo_large/step_s"]), "CoDistill step (s)": fmt(mean["cd_a1/step_s"]),
                     **{f"saving, {k[:-6]}": f"{100 * (1 - mean[k]):+.1f}%" for k in mean if k.endswith("_ratio")},
                     "predicted whole-step saving": (f"{100 * p:+.1f}%" if (p := predicted(layers, tokens)) is not None
                                                     else "-"),
                     f"seeds with step saving >= {TARGET_SAVING:.0%}": f"{n_ok}/{len(per_seed)}"})
        for s, r in per_seed.items():
            for run in RUNS:
                seed_rows.append({"large layers": layers, "T": tokens, "seed": s, "run": run,
                                  "step ratio": fmt(r["step_ratio"]) if run == "cd_a1" else "",
                                  **{f"{ph} ms": f"{r['phases_ms'][run].get(ph, 0.0):.0f}" for ph in PHASES}})
    cmd = ("rollwise bench codistill-long" + (" --quick" if args.quick else "")
           + f" --seeds {','.join(map(str, seeds))} --steps {args.steps} --tokens {args.tokens}"
           f" --large-layers {args.large_layers}")
    md = ["# CoDistill-GRPO: wall-clock per step with long responses (real trainers)", "",
          f"Command: `{cmd}` ({seconds / 60:.1f} min on a 2-core CPU shared with other jobs, 1 torch thread). "
          f"{args.prompts} prompts per step, GRPO-large G=8 vs CoDistill alpha=1 M=16 -> G=8; every response "
          "exactly T tokens; random-init models (timing only, every reward 0); median over steps 2..S of the "
          "paired per-step ratio, mean over seeds. Saving = 1 - CoDistill / GRPO-large. Predicted: "
          "`decode_vs_score_long` cost model (whole step).", "",
          markdown_table(rows), "", "## Per seed: median phase times over steps 2..S (ms)", "",
          "generate = the generating model's decoding (GRPO-large: large, CoDistill: small); logprobs = its own "
          "old-log-prob pass; large_score = the large model's pass over the M rollouts; update / large_update = "
          "GRPO-large's update or the small model's / the large model's CoDistill update.", "",
          markdown_table(seed_rows), ""]
    payload = {"args": vars(args), "seeds": seeds, "cells": cells, "table": rows}
    publish(name, payload, "\n".join(md) + "\n", out_dir=Path(args.results))


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser("rollwise bench codistill-long", quick="1 seed, T=8, 2 layers, 3 steps (a smoke run)")
    ap.add_argument("--steps", type=int, default=6, help="steps per trainer and cell (the first is a warm-up)")
    ap.add_argument("--tokens", default="256,128", help="response lengths T")
    ap.add_argument("--large-layers", default="4,2", help="large model layers (d=128; 4 = our first plan, 2 = v2)")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--out", default="runs/bench-codistill-long")
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--name", default="", help="results file stem")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        seeds, args.steps, args.tokens, args.large_layers = seeds[:1], 3, "8", "2"
    if args.steps < 2:
        ap.error("--steps must be at least 2 (step 1 is a warm-up)")

    from rollwise.rlvr.policy import quiet_transformers
    from rollwise.runlog import set_threads

    quiet_transformers()
    set_threads(1)
    cells: dict[str, dict[int, dict[str, Any]]] = {}
    t0 = time.perf_counter()
    for layers in (int(x) for x in args.large_layers.split(",")):
        for tokens in (int(x) for x in args.tokens.split(",")):
            for seed in seeds:
                res = run_cell(args, cell_trainers(args, seed, layers, tokens), tokens)
                cells.setdefault(f"{layers}/{tokens}", {})[seed] = res
                print(f"layers {layers} T={tokens} seed {seed}: step saving {100 * (1 - res['step_ratio']):+.1f}% "
                      f"(GRPO {res['grpo_large/step_s']:.2f} s, CoDistill {res['cd_a1/step_s']:.2f} s)", flush=True)
            report(args, seeds, cells, time.perf_counter() - t0)  # partial results after each cell
    return 0


if __name__ == "__main__":
    sys.exit(main())
