"""Crash-resume: kill -9 a checkpointing ``rollwise train`` again and again, resume it each time, and check
that the finished run equals an uninterrupted one.

    rollwise bench crash-resume [--kills 24] [--steps 24] [--seed 0] [--engine hf] [--out runs/bench-crash-resume]

One uninterrupted reference run, then a crash loop over a second run folder with the same config
(checkpoint every step): start ``rollwise train`` (``--resume`` once a checkpoint exists, else a fresh run
with ``--overwrite``), SIGKILL it, repeat ``--kills`` times, then let the last resume finish. Kill moments cycle
through three modes: uniform from the process's start (startup and warm start included), uniform over a
slice of training time once the process has started writing its metrics log, and the moment a
checkpoint write is seen in progress (the process's own n-th ``.tmp-step-*-<pid>`` folder appears, n = 1..3;
killed after a random 0-20 ms), so that some land inside the checkpoint write. A kill lets about 1/kills of
the training pass, so one run takes about ``--kills`` kills to finish; a run that finishes between kills is
compared with the reference and a fresh one started, so every run that finishes is compared. After every kill the newest checkpoint must be intact
(``checkpoint_problem``).
Pass: every kill left an intact checkpoint (or none yet), and every finished run's metrics (timings
excluded) equal the reference's and its final weights are bitwise equal. Writes
``benchmarks/results/crash_resume.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import publish  # noqa: E402

#: metrics that measure time, not training
VOLATILE = ("time/", "wall", "tokens_per_s")


def overrides(args: argparse.Namespace, run_dir: Path) -> list[str]:
    """A small, checkpoint-every-step job (tiny model, 2-digit add3, GRPO, cosine schedule)."""
    return [
        "model.tiny.hidden_size=32", "model.tiny.num_layers=1", "model.tiny.num_heads=2",
        "model.tiny.intermediate_size=64", "task.params.max_operand=49", "task.params.n_train=1024",
        "task.params.n_test=64", "sft.steps=40", "sft.batch_size=32", "sft.examples=2000", "rollout.n=4",
        "rollout.max_new_tokens=5", f"rollout.engine={args.engine}", "algorithm.estimator=grpo",
        f"train.steps={args.steps}", "train.prompts_per_step=8", "train.lr_schedule=cosine", "train.eval_every=4",
        "train.eval_prompts=64", "train.checkpoint_every=1", "train.keep_checkpoints=2", f"train.seed={args.seed}",
        "run.threads=1", "run.report=false", f"run.output_dir={run_dir}",
    ]


def command(args: argparse.Namespace, run_dir: Path, resume: bool) -> list[str]:
    sets = [x for o in overrides(args, run_dir) for x in ("--set", o)]
    return [sys.executable, "-m", "rollwise.cli", "train", "--resume" if resume else "--overwrite", *sets]


def stable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in records]


def same_weights(a: Path, b: Path) -> bool:
    """Bitwise equality of two checkpoints' model tensors."""
    from safetensors.torch import load_file

    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return x.keys() == y.keys() and all(bool((x[k] == y[k]).all()) for k in x)


def run_to_end(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("a") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd[:5])} ... exited {rc}; see {log}")
    return time.perf_counter() - t0


#: kill moments, cycled: any time after the start (startup, warm start, training), a random time once this
#: process trains, or while a checkpoint write is in progress
MODES = ("any", "training", "in-write")


def _wait_for(cond: Any, proc: subprocess.Popen, until: float, poll: float) -> bool:
    while proc.poll() is None and time.perf_counter() < until:
        if cond():
            return True
        time.sleep(poll)
    return False


def _writes(ckdir: Path, pid: int, seen: set[str]) -> int:
    """How many distinct checkpoint writes of process ``pid`` have been seen so far (``seen`` accumulates)."""
    seen.update(p.name for p in ckdir.glob(f".tmp-step-*-{pid}"))
    return len(seen)


def kill_once(cmd: list[str], run_dir: Path, log: Path, mode: str, wall: float, train_wall: float, kills: int,
              rng: random.Random) -> dict[str, Any]:
    """Start ``cmd``, SIGKILL it at a moment chosen by ``mode`` (``MODES``); describe what was left.

    ``wall`` is the reference run's wall time from start to end, ``train_wall`` its training part; a kill
    lets on average ``train_wall / kills`` of training pass, so the run needs about ``kills`` kills to finish.
    """
    from rollwise.rlvr.checkpoint import checkpoint_problem, latest_checkpoint

    ckdir, metrics = run_dir / "checkpoints", run_dir / "metrics.jsonl"
    with log.open("a") as f:
        t0, started = time.perf_counter(), time.time()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        seen_write, seen = False, set()
        slice_s = 2 * train_wall / kills  # training time a kill lets pass, on average half of it
        if mode == "any":
            _wait_for(lambda: False, proc, t0 + rng.uniform(0.0, wall - train_wall + slice_s), 0.01)
        elif mode == "training":  # this process has written its metrics log: it trains (or evaluates)
            if _wait_for(lambda: metrics.exists() and metrics.stat().st_mtime > started, proc, t0 + 3 * wall, 0.01):
                _wait_for(lambda: False, proc, time.perf_counter() + rng.uniform(0.0, slice_s), 0.01)
        else:
            # this process's own n-th checkpoint write (n = 1..3): its temporary folder's name ends with the
            # writer's pid (leftovers of earlier kills carry other pids until the new process removes them)
            nth = rng.randint(1, 3)
            seen_write = _wait_for(lambda: ckdir.is_dir() and _writes(ckdir, proc.pid, seen) >= nth, proc,
                                   t0 + 3 * wall, 0.001)
            time.sleep(rng.uniform(0.0, 0.02) if seen_write else 0.0)
        finished = proc.poll() is not None
        if not finished:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    tmp_left = ckdir.is_dir() and any(ckdir.glob(f".tmp-step-*-{proc.pid}"))  # killed inside its own write
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        latest = latest_checkpoint(run_dir)
    return {"mode": mode, "after_s": round(time.perf_counter() - t0, 3), "killed": not finished,
            "write_in_progress_seen": seen_write, "tmp_left_behind": tmp_left,
            "latest_step": int(latest.name.split("-")[1]) if latest else None,
            "latest_intact": latest is None or checkpoint_problem(latest) is None,
            "corrupt_skipped": len(caught)}


def _last_step(run_dir: Path) -> int | None:
    from rollwise.rlvr.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run_dir)
    return int(latest.name.split("-")[1]) if latest else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rollwise bench crash-resume")
    ap.add_argument("--kills", type=int, default=24, help="SIGKILLs before the last resume runs to the end")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0, help="training seed; the kill times use seed + 1000")
    ap.add_argument("--engine", default="hf", help="rollout.engine of both runs")
    ap.add_argument("--out", default="runs/bench-crash-resume")
    ap.add_argument("--results", default=None, help="folder for the JSON/Markdown (default benchmarks/results)")
    args = ap.parse_args(argv)

    from rollwise.rlvr.checkpoint import latest_checkpoint
    from rollwise.runlog import read_jsonl

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ref_dir, crash_dir, log = out / "reference", out / "crashed", out / "train.log"
    window = run_to_end(command(args, ref_dir, resume=False), log)
    train_wall = float(read_jsonl(ref_dir / "metrics.jsonl")[-1]["wall"])
    rng = random.Random(args.seed + 1000)
    kills: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []  # every crashed run that reached its last step, compared with the reference

    def compare(first_kill: int) -> None:
        ref, got = (stable(read_jsonl(d / "metrics.jsonl")) for d in (ref_dir, crash_dir))
        runs.append({"kills": sum(k["killed"] for k in kills[first_kill:]), "records": len(got),
                     "metrics_equal": ref == got,
                     "weights_bitwise_equal": same_weights(latest_checkpoint(ref_dir), latest_checkpoint(crash_dir))})
        print(f"run {len(runs)} finished: {runs[-1]}", file=sys.stderr)

    first = 0  # the first kill of the current run
    while sum(k["killed"] for k in kills) < args.kills:
        resume = _last_step(crash_dir) is not None
        if not resume:
            first = len(kills)
        mode = MODES[len(kills) % len(MODES)]
        kills.append({"resume": resume, **kill_once(command(args, crash_dir, resume), crash_dir, log, mode, window,
                                                    train_wall, args.kills, rng)})
        print(f"kill {len(kills)}: {kills[-1]}", file=sys.stderr)
        if _last_step(crash_dir) == args.steps:  # finished between kills: compare it, then start afresh
            compare(first)
            shutil.rmtree(crash_dir)
        if len(kills) > 4 * args.kills:
            raise RuntimeError("the crash loop makes no progress (every run finished before its kill)")
    if _last_step(crash_dir) is not None or crash_dir.exists():
        run_to_end(command(args, crash_dir, resume=_last_step(crash_dir) is not None), log)
        compare(first)
    killed = [k for k in kills if k["killed"]]
    result = {
        "kills": len(killed),
        "kills_with_write_in_progress": sum(k["tmp_left_behind"] for k in killed),
        "kills_before_first_checkpoint": sum(k["latest_step"] is None for k in killed),
        "kills_by_mode": {m: sum(k["killed"] and k["mode"] == m for k in kills) for m in MODES},
        "every_kill_left_an_intact_checkpoint": all(k["latest_intact"] for k in killed),
        "runs_compared": len(runs), "kills_in_compared_runs": sum(r["kills"] for r in runs),
        "every_run_metrics_equal": bool(runs) and all(r["metrics_equal"] for r in runs),
        "every_run_weights_bitwise_equal": bool(runs) and all(r["weights_bitwise_equal"] for r in runs),
        "reference_wall_s": round(window, 1), "reference_training_wall_s": round(train_wall, 1),
        "steps": args.steps, "engine": args.engine, "seed": args.seed, "runs": runs, "kill_log": kills,
    }
    result["passed"] = result["every_kill_left_an_intact_checkpoint"] and result["every_run_metrics_equal"] \
        and result["every_run_weights_bitwise_equal"]
    cmd = (f"rollwise bench crash-resume --kills {args.kills} --steps {args.steps} --seed {args.seed} "
           f"--engine {args.engine}")
    records = runs[-1]["records"] if runs else 0
    md = "\n".join([
        "# Crash-resume: kill -9 loop over a checkpointing run", "",
        f"`{cmd}` (1 torch thread). {args.steps}-step GRPO runs (tiny model, add3, checkpoint every step) were "
        f"killed with SIGKILL {result['kills']} times in all ({result['kills_by_mode']['any']} at a random time "
        f"from the start, {result['kills_by_mode']['training']} at a random time in training, "
        f"{result['kills_by_mode']['in-write']} aimed at a checkpoint write) and resumed after each kill. "
        f"{result['kills_with_write_in_progress']} kills left the process's own checkpoint write half done (its "
        f"`.tmp-step-*-<pid>` folder); {result['kills_before_first_checkpoint']} came before a first checkpoint "
        f"(fresh restart). {result['runs_compared']} runs reached their last step ({result['kills_in_compared_runs']} "
        f"kills between them) and each was compared with the uninterrupted run.", "",
        "| check | result |", "|---|---|",
        f"| every kill left an intact newest checkpoint (or none yet) | {result['every_kill_left_an_intact_checkpoint']} |",
        f"| every finished run's metrics equal the uninterrupted run's ({records} records, timings excluded) | "
        f"{result['every_run_metrics_equal']} |",
        f"| every finished run's final weights bitwise equal | {result['every_run_weights_bitwise_equal']} |",
        f"| **passed** | **{result['passed']}** |", "",
    ])
    publish("crash_resume", result, md + "\n", out_dir=Path(args.results) if args.results else None)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
