"""The default job (``rollwise train``) now against the job as it was before the fast path: wall-clock and accuracy.

    rollwise bench default-job [--runs 2] [--quick]

Each run is a whole ``rollwise train`` (warm start, RL, evaluations, checkpoints, report) in a fresh process, into
a fresh folder. Four arms:

- ``now``: the built-in default job as it is (all cores, the fast path, its 3-layer model and accuracy-target
  warm start, 200 RL steps with 8 rollouts per prompt);
- ``previous``: the default job before 2026-12-08 (``commands.PREVIOUS_DEFAULT_JOB``: 2 layers, a fixed 800-step
  warm start, 100 RL steps with 4 rollouts) on the fast path and all cores;
- ``previous-hf``: the same job on transformers' path (``rollout.engine=hf``, ``model.forward=hf``,
  ``train.reuse_logprobs=false``: ``generate``, transformers' forward and a separate old-log-prob pass, which is
  rollwise before the fast path bit for bit; ``scripts/check_bitwise.py`` checks that), all cores;
- ``before``: the same on one thread, which is the default job as it was before this work, bit for bit.

So ``before -> now`` is the whole change, ``previous -> now`` what the job's new settings add,
``previous-hf -> previous`` what the code path adds and ``before -> previous-hf`` what the cores add.

The arms alternate (``--runs`` each, order reversed every run). Reported: wall-clock of the whole command, the
exact test accuracy after the warm start and after RL (from ``metrics.jsonl``), and ratios of median wall-clocks.
Writes benchmarks/results/default_job[_quick].{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, publish  # noqa: E402

from rollwise.rlvr.commands import PREVIOUS_DEFAULT_JOB  # noqa: E402

HF = ["rollout.engine=hf", "model.forward=hf", "sft.forward=hf", "train.reuse_logprobs=false"]
PATHS = {"now": [], "previous": PREVIOUS_DEFAULT_JOB, "previous-hf": [*PREVIOUS_DEFAULT_JOB, *HF],
         "before": [*PREVIOUS_DEFAULT_JOB, *HF, "run.threads=1"]}
#: (label, slower arm, faster arm) of the reported speed-ups
RATIOS = (("whole job, before (previous job, transformers' path, 1 thread) -> now", "before", "now"),
          ("the job's new settings alone (previous -> now, both on the fast path, all cores)", "previous", "now"),
          ("code path alone (previous job, all cores)", "previous-hf", "previous"),
          ("cores alone (previous job, transformers' path)", "before", "previous-hf"))
QUICK = ["train.steps=4", "sft.steps=40", "train.eval_every=2", "train.eval_prompts=64", "run.report=false"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rollwise bench default-job")
    ap.add_argument("--runs", type=int, default=2, help="runs of each path")
    ap.add_argument("--quick", action="store_true", help="CI smoke: 1 run each of a 4-step job")
    ap.add_argument("--out", default="runs/bench-default-job")
    ap.add_argument("--results", default=str(RESULTS))
    return ap


def run_job(path: str, index: int, out: Path, quick: bool) -> dict[str, Any]:
    """``rollwise train`` (the default job) in a fresh process; wall-clock and the evaluations it logged."""
    run_dir = out / f"{path}-{index}"
    cmd = [sys.executable, "-m", "rollwise.cli", "train", "--overwrite", "--set", f"run.output_dir={run_dir}"]
    for override in PATHS[path] + (QUICK if quick else []):
        cmd += ["--set", override]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - t0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals = [(r["step"], r["eval/exact_accuracy"]) for r in records if "eval/exact_accuracy" in r]
    steps = [r for r in records if r.get("step", 0) >= 1]
    return {"wall_s": wall, "acc_warm": evals[0][1], "acc_final": evals[-1][1], "evals": evals,
            "rl_step_median_s": statistics.median(r["time/step"] for r in steps)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.runs = 1
    out = Path(args.out)
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in PATHS}
    for i in range(args.runs):
        for path in (list(PATHS)[::-1] if i % 2 == 0 else list(PATHS)):
            runs[path].append(run_job(path, i, out, args.quick))
    med = {p: statistics.median(r["wall_s"] for r in rs) for p, rs in runs.items()}
    step = {p: statistics.median(r["rl_step_median_s"] for r in rs) for p, rs in runs.items()}
    speedups = {label: med[slow] / med[fast] for label, slow, fast in RATIOS}
    speedup = speedups[RATIOS[0][0]]
    from rollwise.report import markdown_table

    rows = [{"path": p, "wall (s), per run": ", ".join(f"{r['wall_s']:.1f}" for r in rs),
             "median wall (s)": f"{med[p]:.1f}", "median RL step (ms)": f"{1000 * step[p]:.1f}",
             "exact accuracy warm -> final": ", ".join(f"{r['acc_warm']:.3f} -> {r['acc_final']:.3f}" for r in rs)}
            for p, rs in runs.items()]
    cmd = "rollwise bench default-job" + (" --quick" if args.quick else f" --runs {args.runs}")
    md = ["# The default job: now against before", "", f"Command: `{cmd}`", "",
          "Each run is a whole `rollwise train` in a fresh process; arms alternate. now = the built-in default job. "
          f"previous = the default job before 2026-12-08 (`{' '.join(PREVIOUS_DEFAULT_JOB)}`) on the fast path; "
          "previous-hf = the same on transformers' path (`rollout.engine=hf model.forward=hf sft.forward=hf "
          "train.reuse_logprobs=false`, rollwise before the fast path, bit for bit); before = previous-hf on one "
          "thread (`run.threads=1`), the default job as it was before this work. The other arms use all cores.", "",
          markdown_table(rows), "", "Speed-ups (ratios of median wall-clock):", "",
          *[f"- {label}: **{v:.2f}x**" for label, v in speedups.items()], ""]
    name = "default_job" + ("_quick" if args.quick else "")
    payload = {"args": {"runs": args.runs, "quick": args.quick}, "runs": runs, "median_wall_s": med,
               "median_rl_step_s": step, "speedup": speedup, "speedups": speedups,
               "cpus": os.cpu_count()}
    publish(name, payload, "\n".join(md), out_dir=Path(args.results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
