"""rollwise's BASIS inside TRL's GRPOTrainer: TRL + BASIS (n=1) against TRL + GRPO (n=8) on ADD-3.

    rollwise bench trl-methods [--quick] [--seeds 0,1,2] [--steps 150] [--rollouts-per-step 64]

Both arms are ``RollwiseGRPOTrainer`` runs (trl 1.16.0) from the same pi_0 (the BASIS benchmarks' warm start,
``basis_setup.py``), with the same number of completions per step: BASIS 64 prompts x 1, GRPO 8 prompts x 8, so
the two arms generate the same rollouts per step; BASIS's offline stage (M = 16 rollouts of each of the
``--train-prompts`` prompts from pi_0, TRL's own sampler) runs inside ``train()`` and is counted in its
rollouts and wall-clock. Every other setting is TRL's default except those listed in the results (fp32,
no activation checkpointing, lr, completion length). Exact expected test accuracy (mean V(x) over the
held-out prompts, ``evaluate.exact_success_prob``) is measured every ``--eval-every`` steps by a callback
whose time is excluded from the wall-clock. The arms run one after the other, their order alternating
from seed to seed (the machine is shared).

Writes benchmarks/results/trl_methods.{json,md} (``--quick``: trl_methods_quick).
"""

from __future__ import annotations

import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, bench_parser, publish  # noqa: E402
from basis_setup import Setting, initial_policy  # noqa: E402

#: arm -> (estimator, completions per prompt)
ARMS: dict[str, tuple[str, int]] = {"TRL + BASIS (n=1)": ("basis", 1), "TRL + GRPO (n=8)": ("grpo", 8)}


def accuracy_callback(model, tokenizer, test, every: int, record: dict[str, list[float]]):
    """A TrainerCallback recording exact test accuracy every ``every`` steps (its time is kept apart)."""
    from transformers import TrainerCallback

    from rollwise.rlvr.evaluate import exact_success_prob

    prompts, targets = [e.prompt for e in test], [e.target for e in test]

    def measure(step: int) -> None:
        t = time.perf_counter()
        record["step"].append(step)
        record["acc"].append(float(exact_success_prob(model, tokenizer, prompts, targets).mean()))
        record["wall"].append(t - record["t0"][0] - record["eval_s"][0])
        record["eval_s"][0] += time.perf_counter() - t

    class Accuracy(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % every == 0 or state.global_step == state.max_steps:
                measure(state.global_step)

    return Accuracy(), measure


def run_arm(arm: str, seed: int, args, policy0, tokenizer, task) -> dict[str, Any]:
    from rollwise.rlvr.integrations.trl import reward_funcs, task_dataset
    from rollwise.rlvr.integrations.trl_trainer import RollwiseGRPOConfig, RollwiseGRPOTrainer

    estimator, n = ARMS[arm]
    per_step = args.rollouts_per_step
    model = copy.deepcopy(policy0)
    train = task_dataset(task, "train").select(range(args.train_prompts))
    test = task.examples("test")[: args.test_prompts]
    record: dict[str, list[float]] = {"step": [], "acc": [], "wall": [], "t0": [0.0], "eval_s": [0.0]}
    callback, measure = accuracy_callback(model, tokenizer, test, args.eval_every, record)
    with tempfile.TemporaryDirectory() as out:
        cfg = RollwiseGRPOConfig(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=per_step, num_generations=n,
            max_completion_length=Setting.max_new_tokens, learning_rate=args.lr, bf16=False,
            activation_checkpointing=False, use_vllm=False, report_to=[], logging_steps=10, save_strategy="no",
            seed=seed, use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
        params = {"offline_rollouts": args.offline_rollouts} if estimator == "basis" else {}
        trainer = RollwiseGRPOTrainer(model=model, reward_funcs=reward_funcs(task, tokenizer, model), args=cfg,
                                      train_dataset=train, processing_class=tokenizer, callbacks=[callback],
                                      estimator=estimator, estimator_params=params)
        measure(0)  # pi_0, before any rollout
        record["t0"][0] = time.perf_counter()
        record["eval_s"][0] = 0.0
        trainer.train()
    offline = getattr(trainer.rollwise_estimator, "offline", {"rollouts": 0, "seconds": 0.0})
    rollouts = [s * per_step + (offline["rollouts"] if s else 0) for s in record["step"]]
    logs = [h for h in trainer.state.log_history if "reward" in h]
    return {"step": record["step"], "acc": record["acc"], "wall": [0.0, *record["wall"][1:]], "rollouts": rollouts,
            "offline_rollouts": offline["rollouts"], "offline_seconds": offline["seconds"],
            "train_reward": [h["reward"] for h in logs], "wall_total": record["wall"][-1]}


def summarise(runs: dict[int, dict[str, Any]], seeds: list[int], args, seconds: float) -> tuple[dict, str]:
    def mean(values):
        return statistics.fmean(values)

    rows = []
    for arm, (_, n) in ARMS.items():
        res = [runs[s][arm] for s in seeds]
        rows.append({"arm": arm, "pi0": mean([r["acc"][0] for r in res]), "final": mean([r["acc"][-1] for r in res]),
                     "final_per_seed": [r["acc"][-1] for r in res], "rollouts": res[0]["rollouts"][-1],
                     "offline_rollouts": res[0]["offline_rollouts"],
                     "offline_seconds": mean([r["offline_seconds"] for r in res]),
                     "wall": mean([r["wall_total"] for r in res]), "prompts_per_step": args.rollouts_per_step // n})
    md = ["# TRL + BASIS (n=1) vs TRL + GRPO (n=8) on ADD-3 (`rollwise bench trl-methods`)", "",
          f"RollwiseGRPOTrainer (trl 1.16.0), {args.steps} steps x {args.rollouts_per_step} completions, "
          f"seeds {','.join(map(str, seeds))}; lr {args.lr}, fp32, TRL's default loss (`dapo`), beta 0, "
          f"temperature 1, max_completion_length {Setting.max_new_tokens}; train pool {args.train_prompts} prompts, "
          f"exact test accuracy on {args.test_prompts} held-out prompts; 1 torch thread, shared 2-core CPU.", "",
          "| arm | prompts/step | pi_0 acc | final acc (mean) | per seed | rollouts (incl. offline) | "
          "offline s | wall s (mean) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['arm']} | {r['prompts_per_step']} | {r['pi0']:.3f} | {r['final']:.3f} | "
                  f"{', '.join(f'{a:.3f}' for a in r['final_per_seed'])} | {r['rollouts']:,} | "
                  f"{r['offline_seconds']:.1f} | {r['wall']:.1f} |")
    md += ["", "Accuracy against rollouts and wall-clock (mean over seeds):", "",
           "| step | " + " | ".join(f"{a} acc / rollouts / wall s" for a in ARMS) + " |",
           "|---|" + "---|" * len(ARMS)]
    steps = runs[seeds[0]][next(iter(ARMS))]["step"]
    for i, step in enumerate(steps):
        cells = []
        for arm in ARMS:
            res = [runs[s][arm] for s in seeds]
            cells.append(f"{mean([r['acc'][i] for r in res]):.3f} / {res[0]['rollouts'][i]:,} / "
                         f"{mean([r['wall'][i] for r in res]):.1f}")
        md.append(f"| {step} | " + " | ".join(cells) + " |")
    md += ["", f"Total benchmark time {seconds:.0f} s (pi_0 from the cache of `basis_setup.py` or built there)."]
    payload = {"args": {k: v for k, v in vars(args).items() if k != "out"}, "summary": rows,
               "runs": {str(s): runs[s] for s in seeds}, "seconds": seconds}
    return payload, "\n".join(md) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser("rollwise bench trl-methods", quick="1 seed, 20 steps, 256 train prompts")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--rollouts-per-step", type=int, default=64, help="completions per step in both arms")
    ap.add_argument("--train-prompts", type=int, default=512, help="train pool (BASIS rolls each out offline)")
    ap.add_argument("--test-prompts", type=int, default=512)
    ap.add_argument("--offline-rollouts", type=int, default=16, help="BASIS's M")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default=None, help="results file name")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    args.name = args.name or ("trl_methods_quick" if args.quick else "trl_methods")
    if args.quick:
        args.seeds, args.steps, args.train_prompts, args.eval_every = "0", 20, 256, 10
    if args.rollouts_per_step % ARMS["TRL + GRPO (n=8)"][1]:
        ap.error("--rollouts-per-step must be a multiple of 8 (GRPO's group size)")
    if args.train_prompts < args.rollouts_per_step:
        ap.error("--train-prompts must be at least --rollouts-per-step (BASIS's prompts per step)")

    from rollwise.rlvr.policy import quiet_transformers
    from rollwise.runlog import set_threads

    quiet_transformers()
    set_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    t_start = time.perf_counter()
    policy0, tokenizer, task = initial_policy(Setting())
    runs: dict[int, dict[str, Any]] = {}
    for i, seed in enumerate(seeds):
        order = list(ARMS) if i % 2 == 0 else list(reversed(ARMS))
        runs[seed] = {arm: run_arm(arm, seed, args, policy0, tokenizer, task) for arm in order}
        print(f"seed {seed}: " + ", ".join(f"{a} {runs[seed][a]['acc'][-1]:.3f} ({runs[seed][a]['wall_total']:.0f} s)"
                                           for a in ARMS), flush=True)
    payload, md = summarise(runs, seeds, args, time.perf_counter() - t_start)
    publish(args.name, payload, md, out_dir=Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
