"""CoDistill-GRPO benchmark (specs/codistill.md 2.2, "Transformer test"): small and large tiny transformers,
SFT-warmed to low / moderate accuracy, then five runs per seed on the same warm starts:

    grpo_small   GRPO on the small model (n = G = 8)
    grpo_large   GRPO on the large model on its own rollouts (n = G = 8)
    cd_a0        CoDistill, alpha = 0   (downsampling-only control: M = 16 -> G = 8)
    cd_a0.5      CoDistill, alpha = 0.5
    cd_a1        CoDistill, alpha = 1

    rollwise bench codistill [--quick] [--seeds 0,1,2] [--steps N]

Reports held-out pass@1 (n samples per test target, temperature 1) of both models, the per-token
KL(pi_small || pi_large) on small-model rollouts of the test prompts, the large model's generated tokens after
the first epoch, and the median wall-clock per step of the large model's pipeline (CoDistill: small-model
generation + scoring + large-model update; GRPO-large: large-model generation + scoring + update).
Writes benchmarks/results/codistill.{json,md} and codistill_*.png.
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

from _common import RESULTS, write_results  # noqa: E402

RUNS = {"grpo_small": None, "grpo_large": None, "cd_a0": 0.0, "cd_a0.5": 0.5, "cd_a1": 1.0}
#: phases of the large model's pipeline (time/<phase> in the step records)
PIPE_CD = ("generate", "reward", "logprobs", "large_score", "advantage", "large_update", "large_sync")
PIPE_GRPO = ("generate", "reward", "logprobs", "advantage", "update", "sync")


def base_overrides(args: argparse.Namespace, seed: int) -> list[str]:
    return [
        "task.name=make_n", f"task.params.n_operands={args.operands}", f"task.params.ops={args.ops}",
        f"task.params.min_correct={args.min_correct}", f"rollout.max_new_tokens={2 * args.operands}",
        f"sft.steps={args.small_sft}", f"codistill.large_sft_steps={args.large_sft}", "sft.lr=3e-3",
        "sft.batch_size=128", "sft.examples=20000", f"train.steps={args.steps}",
        f"train.prompts_per_step={args.prompts}", f"train.lr={args.lr}", f"codistill.large_lr={args.large_lr}",
        f"codistill.large_is_mode={args.is_mode}", "train.eval_every=0", "train.checkpoint_every=0",
        f"train.seed={seed}", "run.report=false", "run.threads=1", f"run.output_dir={args.out}/seed{seed}",
    ]


def warm_start(cfg, task):
    from rollwise.rlvr.codistill import build_large_policy
    from rollwise.rlvr.commands import build_policy

    small, tok = build_policy(cfg, task)
    large, _ = build_large_policy(cfg, task)
    return small, large, tok


def evaluate_pair(small, large, tok, task, cfg, n: int, seed: int) -> dict[str, float]:
    """pass@1 of both models on the test targets, and the per-token KL(small || large) on small rollouts."""
    import torch

    from rollwise.rlvr.evaluate import evaluate_sampled, sample_and_score
    from rollwise.rlvr.models import sequence_logprobs

    out = {"small_pass1": evaluate_sampled(small, tok, task, cfg, n=n, ks=(1,), seed=seed)["eval/pass@1"],
           "large_pass1": evaluate_sampled(large, tok, task, cfg, n=n, ks=(1,), seed=seed)["eval/pass@1"]}
    batch, _, _ = sample_and_score(small, tok, task, cfg, task.examples("test"), 4, seed + 1)
    with torch.no_grad():
        ids, mask = batch.sequences()
        t = batch.response_ids.shape[1]
        lp_s = sequence_logprobs(small, ids, mask, t, cfg.rollout.temperature)[0]
        lp_l = sequence_logprobs(large, ids, mask, t, cfg.rollout.temperature)[0]
    m = batch.response_mask
    out["kl_small_large"] = float(((lp_s - lp_l) * m).sum() / m.sum())
    return out


def run_one(name: str, cfg, small, large, tok, task) -> tuple[Any, Any, list[dict[str, Any]]]:
    """Train one run from copies of the warm starts; returns the final small, large and the step records."""
    from rollwise.rlvr.codistill import CoDistillTrainer, large_config
    from rollwise.rlvr.trainer import Trainer

    small, large = copy.deepcopy(small), copy.deepcopy(large)
    if name == "grpo_small":
        c = copy.deepcopy(cfg)
        c.rollout.n = cfg.codistill.g
        tr = Trainer(c, small, tok, task)
    elif name == "grpo_large":
        c = large_config(cfg)
        tr = Trainer(c, large, tok, task)
    else:
        c = copy.deepcopy(cfg)
        c.codistill.alpha = RUNS[name]
        tr = CoDistillTrainer(c, small, tok, task, large)
    recs = [tr.train_step(step) for step in range(1, cfg.train.steps + 1)]
    return small, large, recs


def pipeline_seconds(name: str, rec: dict[str, Any]) -> float | None:
    if name == "grpo_small":
        return None
    phases = PIPE_GRPO if name == "grpo_large" else PIPE_CD
    return sum(rec.get(f"time/{p}", 0.0) for p in phases)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rollwise bench codistill")
    ap.add_argument("--quick", action="store_true", help="1 seed, few steps (a smoke run, not a measurement)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--steps", type=int, default=0, help="RL steps per run (0 = 40, quick 8)")
    ap.add_argument("--prompts", type=int, default=16, help="prompts per step")
    ap.add_argument("--operands", type=int, default=3, help="MakeN operands (spec suggests 4; 3 fits the CPU)")
    ap.add_argument("--min-correct", type=int, default=2, help="MakeN targets need |C(N)| >= this")
    ap.add_argument("--ops", default="+-*", help="MakeN operators")
    ap.add_argument("--small-sft", type=int, default=100, help="SFT steps of the small model")
    ap.add_argument("--large-sft", type=int, default=800, help="SFT steps of the large model")
    ap.add_argument("--lr", type=float, default=1e-3, help="small-model RL learning rate")
    ap.add_argument("--large-lr", type=float, default=3e-4, help="large-model RL learning rate")
    ap.add_argument("--is-mode", default="truncated", choices=["truncated", "ppo_clip"])
    ap.add_argument("--eval-n", type=int, default=32, help="samples per test target for pass@1")
    ap.add_argument("--out", default="runs/bench-codistill")
    ap.add_argument("--results", default=str(RESULTS), help="folder of codistill.{json,md,png}")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        seeds, args.steps = seeds[:1], args.steps or 8
    args.steps = args.steps or 40

    import torch

    from rollwise.rlvr.commands import _quiet_transformers
    from rollwise.rlvr.run_config import resolve_config
    from rollwise.rlvr.tasks import make_task
    from rollwise.runlog import seed_everything, set_threads

    _quiet_transformers()
    set_threads(1)
    torch.set_num_threads(1)
    per_seed: dict[int, dict[str, Any]] = {}
    curves: dict[str, list[list[float]]] = {}
    t_all = time.perf_counter()
    for seed in seeds:
        seed_everything(seed)
        cfg = resolve_config(algorithm="codistill", overrides=base_overrides(args, seed))
        task = make_task(cfg.task.name, **cfg.task.params)
        small0, large0, tok = warm_start(cfg, task)
        res: dict[str, Any] = {"warm": evaluate_pair(small0, large0, tok, task, cfg, args.eval_n, 10_000 + seed)}
        for name in RUNS:
            t0 = time.perf_counter()
            small, large, recs = run_one(name, cfg, small0, large0, tok, task)
            ev = evaluate_pair(small, large, tok, task, cfg, args.eval_n, 10_000 + seed)
            times = [pipeline_seconds(name, r) for r in recs[1:] or recs]
            ev["large_pipeline_s"] = statistics.median(times) if times[0] is not None else None
            ev["step_s"] = statistics.median(r["time/step"] for r in recs[1:] or recs)
            ev["large_generated_tokens"] = sum(r.get("large/generated_tokens", 0) for r in recs)
            ev["train_kl_first"] = recs[0].get("kl_small_large")
            ev["train_kl_last"] = recs[-1].get("kl_small_large")
            ev["seconds"] = time.perf_counter() - t0
            res[name] = ev
            if name.startswith("cd_"):
                curves.setdefault(name, []).append([r["kl_small_large"] for r in recs])
            print(f"seed {seed} {name}: {ev}", flush=True)
        per_seed[seed] = res
        report(args, list(per_seed), per_seed, curves, time.perf_counter() - t_all)  # partial results per seed
    return 0


def _mean(per_seed: dict[int, dict[str, Any]], run: str, key: str) -> float | None:
    vals = [r[run][key] for r in per_seed.values() if r[run].get(key) is not None]
    return statistics.fmean(vals) if vals else None


def report(args, seeds, per_seed, curves, seconds: float) -> int:
    from rollwise.report import bar_plot, fmt, line_plot, markdown_table

    out = Path(args.results)
    runs = ["warm", *RUNS]
    means = {r: {k: _mean(per_seed, r, k) for k in ("small_pass1", "large_pass1", "kl_small_large",
                                                    "large_pipeline_s", "large_generated_tokens")} for r in runs}
    small_cd = means["cd_a1"]["small_pass1"]
    checks = []

    def check(name, ours, target, passed, paper=""):
        checks.append({"criterion": name, "ours": fmt(ours), "target": target, "paper": paper,
                       "met": "yes" if passed else "NO"})

    check("small: CoDistill(a=1) - GRPO-small (pass@1)", small_cd - means["grpo_small"]["small_pass1"], ">= 0.03",
          small_cd - means["grpo_small"]["small_pass1"] >= 0.03, "Minerva +6.1 pts")
    check("small: CoDistill(a=1) - CoDistill(a=0)", small_cd - means["cd_a0"]["small_pass1"], ">= 0.01",
          small_cd - means["cd_a0"]["small_pass1"] >= 0.01)
    kl_down = [c[-1] < c[0] for c in curves.get("cd_a1", [])]
    check("small: train KL(small||large) goes down (a=1, seeds)", f"{sum(kl_down)}/{len(kl_down)}",
          "all seeds", all(kl_down) and bool(kl_down))
    ratio = means["cd_a1"]["large_pass1"] / max(means["grpo_large"]["large_pass1"], 1e-9)
    check("large: CoDistill(a=1) / GRPO-large (pass@1)", ratio, ">= 0.93", ratio >= 0.93, "53.73/57.90 = 0.93")
    gen = means["cd_a1"]["large_generated_tokens"]
    check("large: tokens generated by the large model (no hints)", gen, "0", gen == 0)
    saving = 1 - means["cd_a1"]["large_pipeline_s"] / means["grpo_large"]["large_pipeline_s"]
    check("large: wall-clock saving per step of its pipeline", saving, ">= 0.10", saving >= 0.10, "~0.18")

    rows = [{"run": r, **{k: fmt(v) for k, v in means[r].items()}} for r in runs]
    seed_rows = [{"seed": s, "run": r, **{k: fmt(v) for k, v in per_seed[s][r].items()}}
                 for s in seeds for r in runs]
    figs = []
    figs.append(bar_plot(out / "codistill_small_pass1.png", {r: means[r]["small_pass1"] for r in runs},
                         "pass@1", "small model, held-out pass@1 (mean over seeds)"))
    figs.append(bar_plot(out / "codistill_large_pass1.png", {r: means[r]["large_pass1"] for r in runs},
                         "pass@1", "large model, held-out pass@1 (mean over seeds)"))
    series = {}
    for name, cs in curves.items():
        n = min(len(c) for c in cs)
        series[name] = (list(range(1, n + 1)), [statistics.fmean(c[i] for c in cs) for i in range(n)])
    figs.append(line_plot(out / "codistill_kl.png", series, "RL step", "per-token KL(small || large)",
                          "KL between the models on training rollouts"))
    cmd = "rollwise bench codistill" + (" --quick" if args.quick else "") + f" --seeds {','.join(map(str, seeds))}"
    if args.steps not in (8, 40):
        cmd += f" --steps {args.steps}"
    md = [
        "# CoDistill-GRPO benchmark (specs/codistill.md 2.2)", "",
        f"Command: `{cmd}` ({seconds / 60:.1f} min on a 2-core CPU shared with other jobs: wall-clock numbers "
        "are inflated and noisy).", "",
        f"Task MakeN-{args.operands} (ops `{args.ops}`, |C(N)| >= {args.min_correct}), {args.prompts} prompts/step, {args.steps} RL steps, small model d=32 1 layer, "
        f"large d=128 4 layers; SFT {args.small_sft} / {args.large_sft} steps; M=16, G=8, large IS mode "
        f"`{args.is_mode}`; pass@1 from {args.eval_n} samples per held-out target at temperature 1.", "",
        "## Acceptance", "", markdown_table(checks), "", "## Means over seeds", "", markdown_table(rows), "",
        "## Per seed", "", markdown_table(seed_rows), "",
    ]
    payload = {"args": vars(args), "seeds": seeds, "means": means, "per_seed": per_seed, "checks": checks,
               "kl_curves": curves, "figures": [str(f) for f in figs]}
    path = write_results("codistill", payload, "\n".join(md) + "\n", out_dir=out)
    print("\n".join(md))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
