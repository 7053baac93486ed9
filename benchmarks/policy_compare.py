"""Policy optimisation on ADD-3: BASIS (n=1) against REINFORCE++, RLOO, GRPO and Dr.GRPO (our CPU protocol, docs/basis.md).

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

import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import basis_setup  # noqa: E402
from _common import RESULTS, bench_parser, provenances, publish, reuse_lines, reused_results  # noqa: E402
from basis_setup import Setting, config, initial_policy, task_defaults, testbed_setting  # noqa: E402

#: name -> (preset, extra overrides)
METHODS: dict[str, tuple[str, list[str]]] = {
    "REINFORCE++ (n=1)": ("reinforce_pp", []),
    "BASIS (n=1)": ("basis", []),
    "RLOO (n=4)": ("rloo", []),
    "GRPO (n=8)": ("grpo", []),
    "Dr.GRPO (n=8)": ("dr_grpo", []),
}
BASIS, RPP, GRPO = "BASIS (n=1)", "REINFORCE++ (n=1)", "GRPO (n=8)"
REQUIRED = (RPP, BASIS, GRPO)  # the targets compare these three


def chosen_methods(spec: str | None) -> list[str]:
    """Method names of ``--methods`` (comma-separated presets; None: all five). The three the targets name are
    always in (with ``--reference``, those not named come from the reference file)."""
    if spec is None:
        return list(METHODS)
    by_preset = {preset: name for name, (preset, _) in METHODS.items()}
    wanted = [p.strip() for p in spec.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in by_preset]
    if unknown:
        raise SystemExit(f"--methods: {', '.join(unknown)} not known; valid choices: {', '.join(by_preset)}")
    names = {by_preset[p] for p in wanted} | set(REQUIRED)
    return [n for n in METHODS if n in names]


def method_steps(name: str, args) -> int:
    """Steps of a method: single-rollout methods may run longer (``--n1-steps``) for the wall-clock target."""
    return max(args.n1_steps, args.steps) if METHODS[name][0] in ("basis", "reinforce_pp") else args.steps


def at_step(curve: dict[str, list[float]], step: int) -> float:
    """Evaluated accuracy at ``step`` (equal-step comparisons)."""
    return curve["acc"][curve["step"].index(step)]


def build_trainers(setting: Setting, seed: int, args, policy0, tokenizer, task, basis_state) -> dict[str, Any]:
    from rollwise.rlvr.trainer import Trainer

    out = {}
    for name in args.trained:
        preset, extra = METHODS[name]
        own = [f"algorithm.estimator_params.{kv}" for kv in args.basis_set or []] if name == BASIS else []
        cfg = config(setting, preset, [f"train.seed={seed}", f"train.steps={method_steps(name, args)}",
                                       f"train.prompts_per_step={args.prompts}", f"train.lr={args.lr}",
                                       f"run.output_dir=runs/bench-policy/{preset}-s{seed}", *extra,
                                       *(args.set or []), *own])
        tr = Trainer(cfg, copy.deepcopy(policy0), tokenizer, task)
        if name == BASIS:
            tr.estimator.load_state_dict(basis_state)
            tr.rollouts_generated += int(basis_state["offline"]["rollouts"])
        out[name] = tr
    return out


def offline_stage(setting: Setting, args, policy0, tokenizer, task) -> dict[str, Any]:
    """BASIS Stage O on pi_0, timed in this run; returns the estimator state (with ``offline`` cost)."""
    from rollwise.rlvr.trainer import Trainer

    own = [f"algorithm.estimator_params.{kv}" for kv in args.basis_set or []]
    cfg = config(setting, "basis", [f"train.prompts_per_step={args.prompts}", *(args.set or []), *own])
    tr = Trainer(cfg, copy.deepcopy(policy0), tokenizer, task)
    tr.estimator.prepare(tr)
    return tr.estimator.state_dict()


def run_seed(setting: Setting, seed: int, args, policy0, tokenizer, task, basis_state) -> dict[str, dict]:
    """Train the methods of ``args.trained`` (``method_steps`` each) in alternation; returns per-method curves."""
    trainers = build_trainers(setting, seed, args, policy0, tokenizer, task, basis_state)
    curves: dict[str, dict[str, list[float]]] = {}
    acc0 = next(iter(trainers.values())).evaluate()["eval/exact_accuracy"]
    for name, tr in trainers.items():
        offline_s = basis_state["offline"]["seconds"] if name == BASIS else 0.0
        curves[name] = {"step": [0], "wall": [offline_s], "rollouts": [tr.rollouts_generated], "acc": [acc0],
                        "step_time": []}
    order = list(trainers)
    for step in range(1, max(method_steps(n, args) for n in order) + 1):
        for name in order if step % 2 else order[::-1]:  # alternate the order to share contention fairly
            if step > method_steps(name, args):
                continue
            tr, c = trainers[name], curves[name]
            rec = tr.train_step(step)
            c["step_time"].append(rec["time/step"])
            if step % args.eval_every == 0 or step in (args.steps, method_steps(name, args)):
                c["step"].append(step)
                c["wall"].append(c["wall"][0] + sum(c["step_time"]))
                c["rollouts"].append(tr.rollouts_generated)
                c["acc"].append(tr.evaluate()["eval/exact_accuracy"])
        if step % args.eval_every == 0:
            print(f"policy: seed {seed} step {step}: " + ", ".join(
                f"{n.split(' ')[0]} {curves[n]['acc'][-1]:.3f}" for n in order if step <= method_steps(n, args)),
                flush=True)
    return curves


def time_to(curve: dict[str, list[float]], level: float) -> float | None:
    """First wall-clock (s) at which the evaluated accuracy reaches ``level``; None if never."""
    for w, a in zip(curve["wall"], curve["acc"]):
        if a >= level:
            return w
    return None


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser("rollwise bench policy", quick="1 seed, 30 steps, 32 prompts per step")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--prompts", type=int, default=64, help="prompts per step (B)")
    ap.add_argument("--n1-steps", type=int, default=0, help="steps of the single-rollout methods (REINFORCE++, "
                    "BASIS) when longer than --steps: for the wall-clock target; equal-step numbers use --steps")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sft-steps", type=int, default=Setting.sft_steps)
    ap.add_argument("--max-operand", type=int, default=Setting.max_operand)
    ap.add_argument("--task", default="add3", help="add3, or a reasoning testbed: column-arith (its base model "
                    "from rollwise base build; --max-operand/--sft-steps then do not apply)")
    ap.add_argument("--set", action="append", help="extra config override for every method")
    ap.add_argument("--basis-set", action="append", metavar="KEY=VALUE",
                    help="BASIS estimator parameter, e.g. offline_subset=0.25 (repeatable)")
    ap.add_argument("--methods", default=None, help="comma-separated subset of reinforce_pp,basis,rloo,grpo,dr_grpo "
                    "(default all; the first, second and fourth always run)")
    ap.add_argument("--name", default=None, help="results file name")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--reuse", default=None, metavar="FILE[,FILE]",
                    help="results .json of earlier runs with the same settings: their seeds are taken over, not rerun")
    ap.add_argument("--reference", default=None, metavar="FILE[,FILE]",
                    help="results .json of earlier runs whose methods not named by --methods are taken as they "
                         "are, per seed (settings equal but --n1-steps and --methods): e.g. BASIS run longer "
                         "against a recorded GRPO-8")
    args = ap.parse_args(argv)
    if args.reference and (args.methods is None or args.reuse):
        raise SystemExit("--reference needs --methods (what this run trains) and does not combine with --reuse")
    args.method_names = chosen_methods(args.methods)
    named = {m.strip() for m in (args.methods or "").split(",")}
    args.trained = [n for n in args.method_names if METHODS[n][0] in named] if args.reference else args.method_names
    task_defaults(args, "policy_compare")
    if args.quick:
        args.seeds, args.steps, args.prompts, args.eval_every = "0", 30, 32, 10

    from rollwise.rlvr.policy import quiet_transformers
    from rollwise.runlog import set_threads

    quiet_transformers()
    set_threads(args.threads)
    setting = testbed_setting(args.task, max_operand=args.max_operand, sft_steps=args.sft_steps)
    seeds = [int(s) for s in args.seeds.split(",")]
    t_start = time.perf_counter()
    policy0, tokenizer, task = initial_policy(setting)
    args.n_eval = min(len(task.examples("test")), config(setting, "basis").train.eval_prompts)
    reused = reused_results(args.reuse, reuse_settings(vars(args)), lambda p: reuse_settings(p["args"]),
                            lambda p: p["runs"], seeds)
    runs = {s: reused[s][1]["runs"][str(s)] for s in seeds if s in reused}
    refs = reference_runs(args, seeds)
    # the offline stage runs in this invocation only when a seed is trained here
    basis_state = offline_stage(setting, args, policy0, tokenizer, task) if len(runs) < len(seeds) else None
    offline = basis_state["offline"] if basis_state else next(iter(reused.values()))[1]["offline"]
    raw = Path("runs/bench-policy") / f"{args.name}-raw.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        if seed not in runs:
            runs[seed] = run_seed(setting, seed, args, policy0, tokenizer, task, basis_state)
            if seed in refs:
                runs[seed] = with_reference(runs[seed], refs[seed][1], seed, args)
            raw.write_text(json.dumps({str(k): v for k, v in runs.items()}))  # kept if a later seed fails
    seconds = time.perf_counter() - t_start
    payload, md = summarise({s: runs[s] for s in seeds}, seeds, args, setting, offline, seconds, reused, refs)
    plots(runs, Path(args.out), args.name, args.method_names, args.task)
    publish(args.name, payload, md, Path(args.out))
    return 0


#: arguments that do not change a seed's result (``--reuse`` ignores them when it compares settings)
NOT_SETTINGS = ("seeds", "name", "out", "reuse", "reference", "trained")
#: what may differ between a run and its ``--reference``: the methods run and the single-rollout methods' steps
PER_METHOD = ("methods", "method_names", "n1_steps")


def reuse_settings(run_args: dict[str, Any]) -> dict[str, Any]:
    """The settings of a run (its ``vars(args)``, or a results file's ``args``) that ``--reuse`` requires to equal."""
    return {k: v for k, v in run_args.items() if k not in NOT_SETTINGS}


def reference_runs(args, seeds: list[int]) -> dict[int, tuple[str, dict[str, Any]]]:
    """seed -> (file, payload) of ``--reference``: every seed of this run must be there, with every method this
    run takes from it."""
    if not args.reference:
        return {}
    def settings_of(a: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in reuse_settings(a).items() if k not in PER_METHOD}
    refs = reused_results(args.reference, settings_of(vars(args)), lambda p: settings_of(p["args"]),
                          lambda p: p["runs"], seeds)
    taken = [n for n in args.method_names if n not in args.trained]
    for seed in seeds:
        have = refs[seed][1]["runs"][str(seed)] if seed in refs else {}
        if missing := [n for n in taken if n not in have]:
            raise SystemExit(f"--reference: seed {seed} of {missing} is in none of {args.reference}")
    return refs


def with_reference(curves: dict[str, dict], payload: dict[str, Any], seed: int, args) -> dict[str, dict]:
    """This seed's curves with the methods it did not train taken from the reference file, in ``METHODS`` order;
    both runs must have evaluated the same pi_0 (checked)."""
    ref = payload["runs"][str(seed)]
    mine, theirs = next(iter(curves.values()))["acc"][0], next(iter(ref.values()))["acc"][0]
    if abs(theirs - mine) > 1e-6:
        raise SystemExit(f"--reference: pi_0's accuracy differs (seed {seed}: {theirs} there, {mine} here); the "
                         "runs did not start from the same policy")
    return {n: curves[n] if n in curves else ref[n] for n in args.method_names}


def summarise(runs, seeds, args, setting, offline, seconds, reused=None, refs=None) -> tuple[dict, str]:
    from rollwise.report import markdown_table

    prov = provenances(reused or {})
    ref_prov = provenances(refs or {})
    rows, per_seed, checks = [], [], []
    for name in args.method_names:
        finals = [at_step(runs[s][name], args.steps) for s in seeds]
        walls = [runs[s][name]["wall"][-1] for s in seeds]
        step_t = [statistics.median(runs[s][name]["step_time"]) for s in seeds]
        rows.append({"method": name, f"exact acc @{args.steps} (mean)": f"{np.mean(finals):.4f}",
                     "sd": f"{np.std(finals):.4f}", "gain over pi_0": f"{np.mean(finals) - runs[seeds[0]][name]['acc'][0]:.4f}",
                     "median step (s)": f"{np.mean(step_t):.3f}", "steps run": runs[seeds[0]][name]["step"][-1],
                     "acc at last step": f"{np.mean([runs[s][name]['acc'][-1] for s in seeds]):.4f}",
                     "wall total (s)": f"{np.mean(walls):.0f}",
                     "rollouts total": int(np.mean([runs[s][name]["rollouts"][-1] for s in seeds]))})
    for s in seeds:
        r = runs[s]
        acc0 = r[GRPO]["acc"][0]
        gain = at_step(r[GRPO], args.steps) - acc0
        target = acc0 + 0.9 * gain
        t_basis = time_to(r[BASIS], target) if gain > 0 else None
        t_grpo90 = time_to(r[GRPO], target) if gain > 0 else None
        grpo_wall = r[GRPO]["wall"][-1]
        step_ratio = statistics.median(r[BASIS]["step_time"]) / statistics.median(r[GRPO]["step_time"])
        b_eq, r_eq = at_step(r[BASIS], args.steps), at_step(r[RPP], args.steps)
        per_seed.append({"seed": s, "pi_0": f"{acc0:.4f}", **{n: f"{at_step(r[n], args.steps):.4f}" for n in args.method_names}})
        checks.append({
            "seed": s, "BASIS >= RPP (equal steps)": bool(b_eq >= r_eq), "BASIS - RPP": f"{b_eq - r_eq:+.4f}",
            "GRPO-8 gain": f"{gain:.4f}",
            "BASIS gain / GRPO-8 gain (equal steps)": f"{(b_eq - acc0) / gain:.3f}" if gain > 0 else "n/a",
            "BASIS time to 90% GRPO gain incl. offline (s)": "never" if t_basis is None else f"{t_basis:.0f}",
            "GRPO-8 time to 90% (s)": "never" if t_grpo90 is None else f"{t_grpo90:.0f}",
            "GRPO-8 total wall (s)": f"{grpo_wall:.0f}",
            "BASIS <= 0.5 x GRPO-8 wall": bool(t_basis is not None and t_basis <= 0.5 * grpo_wall),
            "per-step time BASIS/GRPO-8": f"{step_ratio:.3f}"})
    wins = sum(c["BASIS >= RPP (equal steps)"] for c in checks)
    fast = sum(c["BASIS <= 0.5 x GRPO-8 wall"] for c in checks)
    cmd = "rollwise bench policy" + (" --quick" if args.quick else "") + \
        (f" --task {args.task}" if args.task != "add3" else "") + \
        (f" --seeds {args.seeds}" if not args.quick and args.seeds != "0,1,2" else "") + \
        (f" --steps {args.steps}" if not args.quick and args.steps != 300 else "") + \
        (f" --prompts {args.prompts}" if not args.quick and args.prompts != 64 else "") + \
        (f" --n1-steps {args.n1_steps}" if args.n1_steps > args.steps else "") + \
        (f" --eval-every {args.eval_every}" if not args.quick and args.eval_every != 20 else "") + \
        (f" --lr {args.lr:g}" if args.lr != basis_setup.default_lr(args.task) else "") + \
        "".join(f" --set {s}" for s in args.set or []) + "".join(f" --basis-set {s}" for s in args.basis_set or []) + \
        (f" --methods {args.methods}" if args.methods else "") + \
        (f" --name {args.name}" if not args.name.startswith("policy_compare") else "") + \
        (f" --reference {args.reference}" if args.reference else "")
    others = ", ".join(m.split(" ")[0] for m in args.method_names if m != BASIS)
    md = [
        f"# Policy optimisation on {basis_setup.task_label(args.task)}: BASIS vs {others}", "",
        f"Command: `{cmd}` ({seconds / 60:.1f} min {'to merge the seeds below' if len(prov) == len(seeds) else 'in all'}"
        f" on a shared 2-core CPU, {args.threads} torch thread; "
        "wall-clock is inflated by other users' jobs and only comparable inside this run).", "",
        f"{basis_setup.task_line(args.task, setting)} "
        f"{args.steps} steps of {args.prompts} prompts (single-rollout methods: {max(args.n1_steps, args.steps)} "
        f"steps), AdamW lr {args.lr:g}, PPO-clip 0.2, one epoch, no KL; "
        f"seeds {args.seeds}. Accuracy = exact expected accuracy on {args.n_eval} held-out prompts.",
        f"BASIS offline stage (counted in its wall-clock and rollouts): {int(offline['rollouts'])} rollouts in "
        + ", ".join(f"{runs[s][BASIS]['wall'][0]:.0f}" for s in seeds) + " s (per seed, timed in the seed's run).",
        *reuse_lines(prov), *reuse_lines(ref_prov, ", ".join(n for n in args.method_names if n not in args.trained)),
        "",
        "## Summary (mean over seeds)", "", markdown_table(rows), "",
        "## Final accuracy per seed", "", markdown_table(per_seed), "",
        "## Targets", "",
        f"- BASIS accuracy >= REINFORCE++'s at step {args.steps} in at least 2 of 3 seeds: {wins} of {len(seeds)}.",
        f"- BASIS reaches 90% of GRPO-8's gain within half of GRPO-8's wall-clock (offline included): "
        f"{fast} of {len(seeds)} seeds.", "", markdown_table(checks), "",
        f"![accuracy vs steps]({args.name}_steps.png) ![accuracy vs wall-clock]({args.name}_wall.png) "
        f"![accuracy vs rollouts]({args.name}_rollouts.png)", ""]
    payload = {"command": cmd, "setting": setting.__dict__, "args": vars(args), "offline": offline,
               "runs": {str(s): runs[s] for s in seeds}, "summary": rows, "targets": checks,
               "basis_beats_rpp_seeds": wins, "basis_fast_seeds": fast, "seconds": seconds,
               "reused": prov, "reference": ref_prov}
    return payload, "\n".join(md)


def plots(runs, out: Path, name: str, methods: list[str], task: str) -> None:
    from rollwise.report import line_plot

    seeds = list(runs)
    for key, label in (("step", "training step"), ("wall", "wall-clock (s, shared CPU)"),
                       ("rollouts", "rollouts generated (BASIS offline included)")):
        series = {}
        for method in methods:
            xs = np.mean([runs[s][method][key] for s in seeds], axis=0)
            ys = np.mean([runs[s][method]["acc"] for s in seeds], axis=0)
            series[method] = (xs.tolist(), ys.tolist())
        line_plot(out / f"{name}_{'steps' if key == 'step' else key}.png", series, label,
                  "exact expected test accuracy",
                  title=f"{basis_setup.task_label(task)}, mean over {len(seeds)} seed(s)")


if __name__ == "__main__":
    sys.exit(main())
