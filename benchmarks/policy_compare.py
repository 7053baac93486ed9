"""Policy optimisation on ADD-3: BASIS (n=1) against REINFORCE++, RLOO, GRPO and Dr.GRPO (specs/basis.md 5.4).

    rollwise bench policy [--quick] [--seeds 0,1,2] [--steps 300] [--prompts 64]

Every method starts from the same pi_0 and trains with the same prompts per step; the methods run
step by step in alternation (the machine is shared, so wall-clock is only compared inside one run).
Exact expected test accuracy (mean V(x) over the held-out pool) is measured every ``--eval-every`` steps
and is not counted in the wall-clock. BASIS's offline stage (M rollouts per training prompt from pi_0)
is run once per invocation, timed, and its rollouts and seconds are added to BASIS's totals in every seed.

Writes benchmarks/results/policy_compare.{json,md} and PNG plots of accuracy against steps,
wall-clock and rollouts generated.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, write_results  # noqa: E402
from basis_setup import Setting, config, initial_policy  # noqa: E402

#: name -> (preset, extra overrides)
METHODS: dict[str, tuple[str, list[str]]] = {
    "REINFORCE++ (n=1)": ("reinforce_pp", []),
    "BASIS (n=1)": ("basis", []),
    "RLOO (n=4)": ("rloo", []),
    "GRPO (n=8)": ("grpo", []),
    "Dr.GRPO (n=8)": ("dr_grpo", []),
}
BASIS, RPP, GRPO = "BASIS (n=1)", "REINFORCE++ (n=1)", "GRPO (n=8)"


def build_trainers(setting: Setting, seed: int, args, policy0, tokenizer, task, basis_state) -> dict[str, Any]:
    from rollwise.rlvr.trainer import Trainer

    out = {}
    for name, (preset, extra) in METHODS.items():
        cfg = config(setting, preset, [f"train.seed={seed}", f"train.steps={args.steps}",
                                       f"train.prompts_per_step={args.prompts}", f"train.lr={args.lr}",
                                       f"run.output_dir=runs/bench-policy/{preset}-s{seed}", *extra,
                                       *(args.set or [])])
        tr = Trainer(cfg, copy.deepcopy(policy0), tokenizer, task)
        if name == BASIS:
            tr.estimator.load_state_dict(basis_state)
            tr.rollouts_generated += int(basis_state["offline"]["rollouts"])
        out[name] = tr
    return out


def offline_stage(setting: Setting, args, policy0, tokenizer, task) -> dict[str, Any]:
    """BASIS Stage O on pi_0, timed in this run; returns the estimator state (with ``offline`` cost)."""
    from rollwise.rlvr.trainer import Trainer

    cfg = config(setting, "basis", [f"train.prompts_per_step={args.prompts}", *(args.set or [])])
    tr = Trainer(cfg, copy.deepcopy(policy0), tokenizer, task)
    tr.estimator.prepare(tr)
    return tr.estimator.state_dict()


def run_seed(setting: Setting, seed: int, args, policy0, tokenizer, task, basis_state) -> dict[str, dict]:
    """Train every method for ``args.steps`` steps in alternation; returns per-method curves."""
    trainers = build_trainers(setting, seed, args, policy0, tokenizer, task, basis_state)
    curves: dict[str, dict[str, list[float]]] = {}
    acc0 = trainers[RPP].evaluate()["eval/exact_accuracy"]
    for name, tr in trainers.items():
        offline_s = basis_state["offline"]["seconds"] if name == BASIS else 0.0
        curves[name] = {"step": [0], "wall": [offline_s], "rollouts": [tr.rollouts_generated], "acc": [acc0],
                        "step_time": []}
    order = list(trainers)
    for step in range(1, args.steps + 1):
        for name in order if step % 2 else order[::-1]:  # alternate the order to share contention fairly
            tr, c = trainers[name], curves[name]
            rec = tr.train_step(step)
            c["step_time"].append(rec["time/step"])
            if step % args.eval_every == 0 or step == args.steps:
                c["step"].append(step)
                c["wall"].append(c["wall"][0] + sum(c["step_time"]))
                c["rollouts"].append(tr.rollouts_generated)
                c["acc"].append(tr.evaluate()["eval/exact_accuracy"])
        if step % args.eval_every == 0:
            print(f"policy: seed {seed} step {step}: " + ", ".join(
                f"{n.split(' ')[0]} {curves[n]['acc'][-1]:.3f}" for n in order), flush=True)
    return curves


def time_to(curve: dict[str, list[float]], level: float) -> float | None:
    """First wall-clock (s) at which the evaluated accuracy reaches ``level``; None if never."""
    for w, a in zip(curve["wall"], curve["acc"]):
        if a >= level:
            return w
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rollwise bench policy")
    ap.add_argument("--quick", action="store_true", help="1 seed, 30 steps, 32 prompts per step")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--prompts", type=int, default=64, help="prompts per step (B)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sft-steps", type=int, default=Setting.sft_steps)
    ap.add_argument("--max-operand", type=int, default=Setting.max_operand)
    ap.add_argument("--set", action="append", help="extra config override for every method")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.prompts, args.eval_every = "0", 30, 32, 10

    from rollwise.rlvr.commands import _quiet_transformers
    from rollwise.runlog import set_threads

    _quiet_transformers()
    set_threads(args.threads)
    setting = Setting(max_operand=args.max_operand, sft_steps=args.sft_steps)
    seeds = [int(s) for s in args.seeds.split(",")]
    t_start = time.perf_counter()
    policy0, tokenizer, task = initial_policy(setting)
    basis_state = offline_stage(setting, args, policy0, tokenizer, task)
    runs = {seed: run_seed(setting, seed, args, policy0, tokenizer, task, basis_state) for seed in seeds}
    seconds = time.perf_counter() - t_start
    payload, md = summarise(runs, seeds, args, setting, basis_state["offline"], seconds)
    plots(runs, Path(args.out))
    path = write_results("policy_compare", payload, md, Path(args.out))
    print(md)
    print(f"written: {path}")
    return 0


def summarise(runs, seeds, args, setting, offline, seconds) -> tuple[dict, str]:
    from rollwise.report import markdown_table

    rows, per_seed, checks = [], [], []
    for name in METHODS:
        finals = [runs[s][name]["acc"][-1] for s in seeds]
        walls = [runs[s][name]["wall"][-1] for s in seeds]
        step_t = [statistics.median(runs[s][name]["step_time"]) for s in seeds]
        rows.append({"method": name, "final exact acc (mean)": f"{np.mean(finals):.4f}",
                     "sd": f"{np.std(finals):.4f}", "gain over pi_0": f"{np.mean(finals) - runs[seeds[0]][name]['acc'][0]:.4f}",
                     "median step (s)": f"{np.mean(step_t):.3f}", "wall total (s)": f"{np.mean(walls):.0f}",
                     "rollouts total": int(np.mean([runs[s][name]["rollouts"][-1] for s in seeds]))})
    for s in seeds:
        r = runs[s]
        acc0 = r[GRPO]["acc"][0]
        gain = r[GRPO]["acc"][-1] - acc0
        target = acc0 + 0.9 * gain
        t_basis = time_to(r[BASIS], target) if gain > 0 else None
        t_grpo90 = time_to(r[GRPO], target) if gain > 0 else None
        grpo_wall = r[GRPO]["wall"][-1]
        step_ratio = statistics.median(r[BASIS]["step_time"]) / statistics.median(r[GRPO]["step_time"])
        per_seed.append({"seed": s, "pi_0": f"{acc0:.4f}", **{n: f"{r[n]['acc'][-1]:.4f}" for n in METHODS}})
        checks.append({
            "seed": s, "BASIS >= RPP (final)": bool(r[BASIS]["acc"][-1] >= r[RPP]["acc"][-1]),
            "BASIS - RPP": f"{r[BASIS]['acc'][-1] - r[RPP]['acc'][-1]:+.4f}",
            "GRPO-8 gain": f"{gain:.4f}",
            "BASIS gain / GRPO-8 gain (equal steps)": f"{(r[BASIS]['acc'][-1] - acc0) / gain:.3f}" if gain > 0 else "n/a",
            "BASIS time to 90% GRPO gain incl. offline (s)": "never" if t_basis is None else f"{t_basis:.0f}",
            "GRPO-8 time to 90% (s)": "never" if t_grpo90 is None else f"{t_grpo90:.0f}",
            "GRPO-8 total wall (s)": f"{grpo_wall:.0f}",
            "BASIS <= 0.5 x GRPO-8 wall": bool(t_basis is not None and t_basis <= 0.5 * grpo_wall),
            "per-step time BASIS/GRPO-8": f"{step_ratio:.3f}"})
    wins = sum(c["BASIS >= RPP (final)"] for c in checks)
    fast = sum(c["BASIS <= 0.5 x GRPO-8 wall"] for c in checks)
    cmd = "rollwise bench policy" + (" --quick" if args.quick else "") + \
        (f" --seeds {args.seeds}" if not args.quick and args.seeds != "0,1,2" else "") + \
        (f" --steps {args.steps}" if not args.quick and args.steps != 300 else "") + \
        (f" --lr {args.lr:g}" if args.lr != 1e-4 else "") + \
        "".join(f" --set {s}" for s in args.set or [])
    md = [
        "# Policy optimisation on ADD-3: BASIS vs REINFORCE++, RLOO, GRPO, Dr.GRPO", "",
        f"Command: `{cmd}` ({seconds / 60:.1f} min in all on a shared 2-core CPU, {args.threads} torch thread; "
        "wall-clock is inflated by other users' jobs and only comparable inside this run).", "",
        f"ADD-3 operands in [0, {setting.max_operand}], pi_0 = tiny model after {setting.sft_steps} SFT steps; "
        f"{args.steps} steps of {args.prompts} prompts, AdamW lr {args.lr:g}, PPO-clip 0.2, one epoch, no KL; "
        f"seeds {args.seeds}. Accuracy = exact expected accuracy on {setting.n_test} held-out prompts.",
        f"BASIS offline stage (counted in its wall-clock and rollouts): {int(offline['rollouts'])} rollouts in "
        f"{offline['seconds']:.0f} s.", "",
        "## Summary (mean over seeds)", "", markdown_table(rows), "",
        "## Final accuracy per seed", "", markdown_table(per_seed), "",
        "## Targets", "",
        f"- BASIS final accuracy >= REINFORCE++'s in at least 2 of 3 seeds: {wins} of {len(seeds)}.",
        f"- BASIS reaches 90% of GRPO-8's gain within half of GRPO-8's wall-clock (offline included): "
        f"{fast} of {len(seeds)} seeds.", "", markdown_table(checks), "",
        "![accuracy vs steps](policy_compare_steps.png) ![accuracy vs wall-clock](policy_compare_wall.png) "
        "![accuracy vs rollouts](policy_compare_rollouts.png)", ""]
    payload = {"command": cmd, "setting": setting.__dict__, "args": vars(args), "offline": offline,
               "runs": {str(s): runs[s] for s in seeds}, "summary": rows, "targets": checks,
               "basis_beats_rpp_seeds": wins, "basis_fast_seeds": fast, "seconds": seconds}
    return payload, "\n".join(md)


def plots(runs, out: Path) -> None:
    from rollwise.report import line_plot

    seeds = list(runs)
    for key, label in (("step", "training step"), ("wall", "wall-clock (s, shared CPU)"),
                       ("rollouts", "rollouts generated (BASIS offline included)")):
        series = {}
        for name in METHODS:
            xs = np.mean([runs[s][name][key] for s in seeds], axis=0)
            ys = np.mean([runs[s][name]["acc"] for s in seeds], axis=0)
            series[name] = (xs.tolist(), ys.tolist())
        line_plot(out / f"policy_compare_{'steps' if key == 'step' else key}.png", series, label,
                  "exact expected test accuracy", title=f"ADD-3, mean over {len(seeds)} seed(s)")


if __name__ == "__main__":
    sys.exit(main())
