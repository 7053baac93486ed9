"""Why the large model falls under PPO-clip on the cross-model ratio (issue #6, docs/codistill.md "Results v3").

    rollwise bench codistill-is-diagnostic [--quick] [--seeds 0,1,2] [--steps 100]

A post-hoc diagnostic of a miss, not a pre-registered comparison. It starts from the ``codistill`` benchmark's
v2 warm starts (same seeds, so the same warm starts) and trains CoDistill (alpha = 1) with three large-model
updates, each on its own trajectory:

    truncated    our fallback (not in the paper): weight min(w, c) times A^ times grad log pi_theta (v2)
    ppo_clip     the paper's: PPO-clip on w = pi_theta / pi_phi_old (v3 Part 2)
    ppo_dual     ppo_clip with dual-clip c = 3 (Ye et al. 2020; verl's ``clip_ratio_c`` default), which caps the
                 weight of a negative-advantage token at 3

On every step, before the large model's update, it measures on the kept tokens (where the update's ratio equals
w, because the large model has not moved yet): the share of positive-advantage tokens with w > 1.2 (PPO-clip
gives them no gradient), the share of negative-advantage tokens with w > 1.2 (no clip applies, their weight is
w), and the gradient coefficient each update gives a token (d loss / d log pi_theta, up to the aggregation):
P = sum over A > 0 of the coefficient, N = sum over A < 0 of |coefficient|, reported as N / P. Also the large
model's held-out exact pass@1 at the end. Writes benchmarks/results/codistill_is_diagnostic.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, bench_parser, publish  # noqa: E402
from codistill import base_overrides, build_parser, evaluate_pair, make_trainer, warm_start  # noqa: E402

#: arm -> (codistill.large_is_mode, dual_clip_c of the large model's loss)
ARMS: dict[str, tuple[str, float | None]] = {"truncated": ("truncated", None), "ppo_clip": ("ppo_clip", None),
                                             "ppo_dual": ("ppo_clip", 3.0)}
CLIP = 0.2  # the benchmark's clip range (algorithm.loss.clip_low/high)


def coefficients(w, adv, mask, arm: str, c: float = 2.0):
    """Per-token gradient coefficient of the large model's loss w.r.t. log pi_theta at its first epoch, (B, T).

    Args: w (B, T) cross-model ratio pi_theta / pi_phi_old; adv (B, T) A^; mask (B, T) kept response tokens.
    ``truncated``: A min(w, c). ``ppo_clip`` (ratio = w): A w, zero where the clip binds (A > 0 and w > 1 + eps,
    or A < 0 and w < 1 - eps). ``ppo_dual``: as ppo_clip, and zero where the dual cap -3 A binds (A < 0, w > 3).
    """
    import torch

    if arm == "truncated":
        return adv * w.clamp(max=c) * mask
    clipped = ((adv > 0) & (w > 1 + CLIP)) | ((adv < 0) & (w < 1 - CLIP))
    if arm == "ppo_dual":
        clipped |= (adv < 0) & (w > ARMS[arm][1])
    return torch.where(clipped, torch.zeros_like(w), adv * w) * mask


def keep_last_batch(trainer) -> dict[str, Any]:
    """``{"batch": ...}``: after each step, the kept rollouts both models were updated on."""
    seen: dict[str, Any] = {}
    after_update = trainer.extra.after_update

    def capture(step, batch):
        seen["batch"] = batch
        return after_update(step, batch)

    trainer.extra.after_update = capture
    return seen


def step_diagnostics(trainer, batch, arm: str) -> dict[str, float]:
    """The shares and the N / P ratio on the large model's batch of the step that just ran (before its update)."""
    from rollwise.rlvr.codistill import LOG_RATIO_BOUND

    lb = trainer.extra.large_batch(batch)
    m = batch.response_mask.bool()
    w = (batch.extras["lp_large"] - batch.old_logprobs).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND).exp()
    adv = lb.advantages
    coef = coefficients(w, adv, batch.response_mask, arm, trainer.extra.cd.is_clip_c)
    pos, neg = m & (adv > 0), m & (adv < 0)
    p, n = float(coef[pos].sum()), float(-coef[neg].sum())
    hi = w > 1 + CLIP
    return {"pos_w_above": float(hi[pos].float().mean()) if pos.any() else math.nan,
            "neg_w_above": float(hi[neg].float().mean()) if neg.any() else math.nan,
            "n_over_p": n / p if p > 0 else math.nan, "w_max": float(w[m].max())}


def run_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    from rollwise.rlvr.run_config import resolve_config
    from rollwise.rlvr.tasks import make_task
    from rollwise.runlog import seed_everything

    seed_everything(seed)
    bench = build_parser().parse_args(["--steps", str(args.steps), "--out", args.out])
    cfg = resolve_config(algorithm="codistill", overrides=base_overrides(bench, seed))
    task = make_task(cfg.task.name, **cfg.task.params)
    small0, large0, tok, info = warm_start(bench, cfg, task, seed)
    res: dict[str, Any] = {"warm": {**evaluate_pair(small0, large0, tok, task, cfg, 10_000 + seed), **info}}
    trainers = {}
    for arm, (mode, dual) in ARMS.items():
        c = copy.deepcopy(cfg)
        c.codistill.large_is_mode = mode
        tr = make_trainer("cd_a1", c, small0, large0, tok, task)
        tr.extra.large.loss_cfg = dataclasses.replace(tr.extra.large.loss_cfg, dual_clip_c=dual)
        trainers[arm] = tr
    last = {arm: keep_last_batch(tr) for arm, tr in trainers.items()}
    diags: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
    for step in range(1, args.steps + 1):
        for arm, tr in trainers.items():
            tr.train_step(step)
            diags[arm].append(step_diagnostics(tr, last[arm]["batch"], arm))
    for arm, tr in trainers.items():
        ev = evaluate_pair(tr.policy, tr.extra.large.policy, tok, task, cfg, 10_000 + seed)
        ds = diags[arm]
        summary = {k: statistics.fmean(d[k] for d in ds if not math.isnan(d[k])) for k in ds[0] if k != "w_max"}
        res[arm] = {"large_pass1": ev["large_pass1"], "large_greedy": ev["large_greedy"],
                    "small_pass1": ev["small_pass1"], "w_max": max(d["w_max"] for d in ds), **summary}
        print(f"seed {seed} {arm}: { {k: round(v, 4) for k, v in res[arm].items()} }", flush=True)
    return res


def report(args: argparse.Namespace, per_seed: dict[int, dict[str, Any]], seconds: float) -> None:
    from rollwise.report import fmt, markdown_table

    keys = ("large_pass1", "large_greedy", "small_pass1", "pos_w_above", "neg_w_above", "n_over_p", "w_max")
    rows = [{"arm": "warm start", "large_pass1": fmt(statistics.fmean(r["warm"]["large_pass1"]
                                                                      for r in per_seed.values()))}]
    rows += [{"arm": arm, **{k: fmt(statistics.fmean(r[arm][k] for r in per_seed.values())) for k in keys}}
             for arm in ARMS]
    seed_rows = [{"seed": s, "arm": arm, **{k: fmt(r[arm][k]) for k in keys}} for s, r in per_seed.items()
                 for arm in ARMS]
    cmd = f"rollwise bench codistill-is-diagnostic --seeds {','.join(map(str, per_seed))} --steps {args.steps}"
    md = ["# CoDistill: the large model's update under PPO-clip on the cross-model ratio (diagnostic)", "",
          f"Command: `{cmd}` ({seconds / 60:.1f} min, 1 thread). Post hoc, not pre-registered. The `codistill` "
          "benchmark's v2 warm starts and settings, CoDistill alpha = 1, three large-model updates (module "
          "docstring). Per-step measures are means over steps, on the kept tokens before the large update: "
          "pos_w_above = share of A > 0 tokens with w > 1.2 (no gradient under PPO-clip), neg_w_above = share of "
          "A < 0 tokens with w > 1.2 (weight w, no clip), n_over_p = push-down over push-up gradient mass, "
          "w_max = largest w seen. Means over seeds.", "",
          markdown_table(rows), "", "## Per seed", "", markdown_table(seed_rows), ""]
    name = "codistill_is_diagnostic_quick" if args.quick else "codistill_is_diagnostic"
    publish(name, {"args": vars(args), "per_seed": per_seed}, "\n".join(md) + "\n",
                         out_dir=Path(args.results))


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser("rollwise bench codistill-is-diagnostic", quick="1 seed, 4 steps (a smoke run)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--out", default="runs/bench-codistill-is")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        seeds, args.steps = seeds[:1], 4

    from rollwise.rlvr.policy import quiet_transformers
    from rollwise.runlog import set_threads

    quiet_transformers()
    set_threads(1)
    per_seed: dict[int, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for seed in seeds:
        per_seed[seed] = run_seed(args, seed)
        report(args, per_seed, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
