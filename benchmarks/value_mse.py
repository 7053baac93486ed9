"""Value-estimation MSE of BASIS and its baselines on ADD-3 with the exact V(x) (our CPU protocol,
docs/basis.md; the paper reports the MSE ratio, its protocol is not available).

    rollwise bench value-mse [--quick] [--seeds 0] [--batches 100] [--checkpoints 100,300]

At pi_0 and at the checkpoints of a REINFORCE++ run (BASIS is scored on a trajectory it did not steer),
R random batches of B prompts are drawn from the training pool; every estimator gives a baseline b(x_i)
and MSE = mean_i (b(x_i) - V(x_i))^2 with V the exact success probability of the checkpoint.

- Single-rollout estimators (REINFORCE++ batch mean, leave-one-out mean, BASIS variants) see REAL
  rollouts of the checkpoint policy, one per prompt.
- BASIS's calibration state at a checkpoint is the one it reaches when it shadows the REINFORCE++ run
  (fed every training batch, never steering it); it then keeps updating over the R scored batches.
- Group means (k = 2, 4, 8, 16) and RLOO (k = 4, the leave-one-out mean of the other 3) draw their k
  rewards as Bernoulli(V(x)): for ADD-3 (one correct completion, ancestral sampling) that is exactly the
  law of k fresh rollouts, without generating 16 x R x B sequences.

Writes benchmarks/results/value_mse.{json,md} and value_mse.png. Offline cost of the prior is reported.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, bench_parser, publish  # noqa: E402
from basis_setup import (  # noqa: E402
    CACHE,
    PRIOR_KEYS,
    Setting,
    cache_key,
    config,
    default_lr,
    initial_policy,
    task_defaults,
    task_label,
    task_line,
    testbed_setting,
)

#: BASIS variants scored (name -> estimator parameters); "probe25" rebuilds the prior from 25% + a probe
VARIANTS: dict[str, dict[str, Any]] = {
    "prior only (calib=none)": {"calib": "none"},
    "BASIS shift": {"calib": "shift"},
    "BASIS logit-affine K=8": {},
    "BASIS LOO": {"folds": 0},
    "BASIS stronger temporal ridge (lambda 20, 100)": {"lambda_a": 20.0, "lambda_b": 100.0},
    "BASIS K=2": {"folds": 2},
    "BASIS no EB shrink": {"eb_shrink": False},
    "BASIS + kernel (pi0 features)": {"kernel": "rbf"},
    "BASIS + kernel (policy features)": {"kernel": "rbf", "features": "policy"},
    "BASIS + kernel (policy features, h = 0.3 median)": {"kernel": "rbf", "features": "policy",
                                                          "bandwidth_scale": 0.3},
    "BASIS + kernel (pi0 features, h = 0.3 median, kappa 0.5)": {"kernel": "rbf", "bandwidth_scale": 0.3,
                                                                 "kappa": 0.5},
    "BASIS 25% offline + probe": {"offline_subset": 0.25},
}
MAIN = "BASIS logit-affine K=8"
RPP = "REINFORCE++ batch mean"
ORACLE = "oracle logit-affine fit on the whole pool (not an estimator: uses V)"
ORACLE_BINS = "oracle: any function of l_0 (40 quantile bins, uses V)"
ORACLE_KERNEL = "oracle: logit-affine + kernel regression of its residual on pi_0 features (2-fold, uses V)"


def binned_oracle(l0: np.ndarray, v: np.ndarray, bins: int = 40) -> np.ndarray:
    """Mean of V within quantile bins of l_0: about the best any calibration map of l_0 can do."""
    edges = np.quantile(l0, np.linspace(0, 1, bins + 1))
    b = np.clip(np.searchsorted(edges, l0, side="right") - 1, 0, bins - 1)
    means = np.array([v[b == k].mean() if np.any(b == k) else v.mean() for k in range(bins)])
    return means[b]


def kernel_oracle(base: np.ndarray, v: np.ndarray, features, seed: int) -> np.ndarray:
    """``base`` plus a Nadaraya-Watson fit of the residual V - base on features, cross-fitted over 2 halves."""
    import torch

    from rollwise.rlvr.advantages.basis import nadaraya_watson_probe

    rng = np.random.default_rng([seed, 13])
    half = rng.permutation(len(v)) < len(v) // 2
    out = base.copy()
    resid = torch.as_tensor(v - base)
    for fit in (half, ~half):
        fi, pi = torch.as_tensor(np.flatnonzero(fit)), torch.as_tensor(np.flatnonzero(~fit))
        pred, _ = nadaraya_watson_probe(features[fi], resid[fi], features[pi], scales=(0.02, 0.05, 0.1, 0.2, 0.5))
        out[~fit] = base[~fit] + pred.numpy()
    return out


def offline_prior(setting: Setting, policy, tokenizer, task) -> dict[str, Any]:
    """Stage O once (cached): the default BASIS estimator's state after ``prepare`` on pi_0, plus features."""
    import torch

    cfg = config(setting, "basis")
    path = CACHE / f"prior-{cache_key(cfg, PRIOR_KEYS)}.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    from rollwise.rlvr.models import encode_prompts, prompt_features
    from rollwise.rlvr.trainer import Trainer

    trainer = Trainer(cfg, copy_of(policy), tokenizer, task)
    trainer.estimator.prepare(trainer)
    prompts = [e.prompt for e in trainer.train_pool]
    ids, mask = encode_prompts(tokenizer, prompts)
    out = {"state": trainer.estimator.state_dict(), "features": prompt_features(trainer.policy, ids, mask)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return out


def copy_of(policy):
    import copy

    return copy.deepcopy(policy)


def make_variants(prior: dict[str, Any]) -> dict[str, Any]:
    """One fresh BASIS estimator per variant, its prior table built from the cached offline counts."""
    import torch

    from rollwise.rlvr.advantages import make_estimator
    from rollwise.rlvr.advantages.basis import eb_prior

    state, feats = prior["state"], prior["features"]
    prompts = state["prompts"]
    counts, index = state["counts"], state["counts_index"]
    full = torch.zeros(len(prompts), dtype=torch.float64)
    full[index] = counts
    out = {}
    for name, params in VARIANTS.items():
        est = make_estimator("basis", **params)
        if est.params.offline_subset < 1:
            rng = np.random.default_rng([est.params.seed, 7])
            sub = torch.as_tensor(np.sort(rng.choice(len(prompts), round(0.25 * len(prompts)), replace=False)))
            p0 = est.prior_from_counts(full[sub], sub, feats)
        else:
            p0 = eb_prior(full, est.params.offline_rollouts, est.params.eb_shrink)
        est.set_prior(prompts, p0, feats)
        out[name] = est
    return out


def shadow_run(setting: Setting, seed: int, checkpoints: list[int], prior: dict[str, Any], policy, tokenizer,
               task, lr: float = 1e-4) -> dict[int, Path]:
    """Train REINFORCE++ from pi_0, feeding every batch to the BASIS variants; cache policy + states."""
    import torch

    from rollwise.rlvr.models import prompt_features, save_policy
    from rollwise.rlvr.trainer import Trainer

    cfg = config(setting, "reinforce_pp", [f"train.seed={seed}", f"train.steps={max(checkpoints)}", f"train.lr={lr}"])
    # pi_0 (built with the setting's seed) and every setting of the REINFORCE++ run
    root = CACHE / f"rpp-{cache_key(cfg, ('model', 'task', 'sft', 'rollout', 'algorithm', 'train'))}"
    cfg.run.output_dir = str(root)
    paths = {c: root / f"step-{c:04d}" for c in checkpoints}
    if all((p / "shadow.pt").exists() for p in paths.values()):
        states = torch.load(paths[checkpoints[0]] / "shadow.pt", weights_only=False)
        if set(states) == set(VARIANTS):
            return paths
    trainer = Trainer(cfg, copy_of(policy), tokenizer, task)
    shadows = make_variants(prior)
    t0 = time.perf_counter()
    for step in range(1, max(checkpoints) + 1):
        batch, _ = trainer.compute_advantages(trainer.rollout(step)[0])
        batch.prompt_features = prompt_features(trainer.policy, batch.prompt_ids, batch.prompt_mask)
        trainer.update(batch, step)
        trainer.timer.pop()
        for est in shadows.values():
            est.baselines(batch.prompts, batch.rewards, est.batch_features(batch) if est.params.kernel != "off"
                          else None)
        if step in paths:
            save_policy(trainer.policy, tokenizer, paths[step], tiny=cfg.model.tiny)
            torch.save({k: e.state_dict() for k, e in shadows.items()}, paths[step] / "shadow.pt")
            print(f"value-mse: REINFORCE++ seed {seed} step {step} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return paths


def score_checkpoint(policy, tokenizer, task, setting: Setting, shadows: dict[str, Any], batches: int,
                     batch_size: int, seed: int) -> dict[str, list[float]]:
    """Per-batch MSE of every estimator at one checkpoint; ``shadows`` are updated in place."""
    import torch

    from rollwise.rlvr.advantages.basis import fit_calibration
    from rollwise.rlvr.engines import SamplingConfig, make_engine
    from rollwise.rlvr.evaluate import exact_success_prob
    from rollwise.rlvr.models import encode_prompts, prompt_features
    from rollwise.rlvr.rewards import RewardRunner
    from rollwise.rlvr.tasks import collate_columns

    pool = task.examples("train")
    v_all = exact_success_prob(policy, tokenizer, [e.prompt for e in pool], [e.target for e in pool]).double().numpy()
    ids, mask = encode_prompts(tokenizer, [e.prompt for e in pool])
    policy_feats = prompt_features(policy, ids, mask)
    l0 = next(iter(shadows.values())).l0  # the default prior table (same prompts in every variant)
    one = torch.ones(1, len(pool), dtype=torch.float64)
    ab = fit_calibration(l0, torch.as_tensor(v_all), one, torch.tensor([0.0, 1.0]), (1e-6, 1e-6), iters=50)[0]
    oracle = torch.sigmoid(ab[0] + ab[1] * l0).numpy()
    oracles = {ORACLE: oracle, ORACLE_BINS: binned_oracle(l0.numpy(), v_all),
               ORACLE_KERNEL: kernel_oracle(oracle, v_all, next(iter(shadows.values())).features, seed)}
    rng = np.random.default_rng([seed, 11])
    idx = np.stack([rng.choice(len(pool), batch_size, replace=False) for _ in range(batches)])
    flat = [pool[i] for i in idx.ravel()]
    engine = make_engine("hf", policy, tokenizer, batch_size=1024)
    gen = engine.generate([e.prompt for e in flat], SamplingConfig(n=1, max_new_tokens=setting.max_new_tokens),
                          int(rng.integers(0, 2**62)))
    rewards, _ = RewardRunner(task.reward_funcs())(gen.prompts, gen.completions, gen.truncated.tolist(),
                                                   collate_columns(flat))
    r_all = rewards.double().numpy().reshape(batches, batch_size)
    len_all = gen.response_lengths.double().numpy().reshape(batches, batch_size)
    mse: dict[str, list[float]] = {}

    def add(name: str, b: np.ndarray, v: np.ndarray) -> None:
        mse.setdefault(name, []).append(float(np.mean((b - v) ** 2)))

    for t in range(batches):
        v, r, ln = v_all[idx[t]], r_all[t], len_all[t]
        prompts = [pool[i].prompt for i in idx[t]]
        add("zero", np.zeros_like(v), v)
        add("raw reward (b = r_i)", r, v)
        add(RPP, np.full_like(v, r.mean()), v)
        add("REINFORCE++ token-weighted mean", np.full_like(v, (ln * r).sum() / ln.sum()), v)
        add("leave-one-out batch mean", (r.sum() - r) / (len(r) - 1), v)
        for name, pred in oracles.items():
            add(name, pred[idx[t]], v)
        for name, est in shadows.items():
            table = policy_feats if est.params.features == "policy" else est.features
            feats = table[torch.as_tensor(idx[t])] if est.params.kernel != "off" else None
            add(name, est.baselines(prompts, torch.as_tensor(r), feats).numpy(), v)
        for k in (2, 4, 8, 16):
            add(f"group mean k={k}", rng.binomial(k, v) / k, v)
        add("RLOO k=4 (mean of the other 3)", rng.binomial(3, v) / 3, v)
    mse["exact E[group-8 MSE] = mean V(1-V)/8"] = [float(np.mean(v_all[idx[t]] * (1 - v_all[idx[t]])) / 8)
                                                   for t in range(batches)]
    mse["_mean V"] = [float(v_all.mean())]
    return mse


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser("rollwise bench value-mse", quick="checkpoints 10,30 and 20 batches", seeds="0",
                      seeds_help="comma-separated seeds of the REINFORCE++ runs")
    ap.add_argument("--batches", type=int, default=100, help="R random batches per checkpoint")
    ap.add_argument("--batch-size", type=int, default=64, help="B prompts per batch")
    ap.add_argument("--checkpoints", default="100,300", help="REINFORCE++ steps scored besides pi_0")
    ap.add_argument("--lr", type=float, default=None, help="learning rate of the REINFORCE++ run (our plan: 1e-4)")
    ap.add_argument("--name", default=None, help="results file name (value_mse.{json,md,png})")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sft-steps", type=int, default=Setting.sft_steps)
    ap.add_argument("--max-operand", type=int, default=Setting.max_operand)
    ap.add_argument("--task", default="add3", help="add3, or a reasoning testbed: column-arith (its base model "
                    "from rollwise base build; --max-operand/--sft-steps then do not apply)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    task_defaults(args, "value_mse")
    if args.quick:
        args.checkpoints, args.batches = "10,30", min(args.batches, 20)

    import torch

    from rollwise.rlvr.models import load_policy
    from rollwise.rlvr.policy import quiet_transformers
    from rollwise.runlog import set_threads

    quiet_transformers()
    set_threads(args.threads)
    setting = testbed_setting(args.task, max_operand=args.max_operand, sft_steps=args.sft_steps)
    checkpoints = [int(c) for c in args.checkpoints.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    t_start = time.perf_counter()
    policy0, tokenizer, task = initial_policy(setting)
    prior = offline_prior(setting, policy0, tokenizer, task)
    offline = prior["state"]["offline"]
    results: dict[int, dict[str, list[float]]] = {}
    mean_v: dict[int, list[float]] = {}
    for seed in seeds:
        paths = shadow_run(setting, seed, checkpoints, prior, policy0, tokenizer, task, args.lr)
        for c in [0, *checkpoints]:
            shadows = make_variants(prior)
            if c == 0:
                policy = policy0
            else:
                policy, _ = load_policy(paths[c])
                states = torch.load(paths[c] / "shadow.pt", weights_only=False)
                for name, est in shadows.items():
                    est.load_state_dict(states[name])
            mse = score_checkpoint(policy, tokenizer, task, setting, shadows, args.batches, args.batch_size,
                                   seed * 1000 + c)
            mean_v.setdefault(c, []).extend(mse.pop("_mean V"))
            for name, vals in mse.items():
                results.setdefault(c, {}).setdefault(name, []).extend(vals)
            print(f"value-mse: seed {seed} checkpoint {c}: RPP {np.mean(mse[RPP]):.4f} BASIS "
                  f"{np.mean(mse[MAIN]):.4f} group8 {np.mean(mse['group mean k=8']):.4f}", flush=True)
    seconds = time.perf_counter() - t_start
    payload, md = summarise(results, mean_v, checkpoints, seeds, args, setting, offline, seconds)
    out = Path(args.out)
    from rollwise.report import line_plot

    names = [RPP, "leave-one-out batch mean", "prior only (calib=none)", MAIN, "BASIS + kernel (pi0 features)",
             "group mean k=4", "group mean k=8", "group mean k=16"]
    xs = [0, *checkpoints]
    line_plot(out / f"{args.name}.png", {n: (xs, [float(np.mean(results[c][n])) for c in xs]) for n in names},
              "REINFORCE++ training step of the checkpoint", "MSE vs exact V(x)",
              title=f"Value-estimation MSE on {task_label(args.task)} (B={args.batch_size})", logy=True)
    publish(args.name, payload, md, out)
    return 0


def summarise(results, mean_v, checkpoints, seeds, args, setting, offline, seconds) -> tuple[dict, str]:
    from rollwise.report import markdown_table

    xs = [0, *checkpoints]
    table, payload_rows = [], {}
    for name in results[0]:
        row: dict[str, Any] = {"estimator": name}
        for c in xs:
            vals = results[c][name]
            m, se = float(np.mean(vals)), float(statistics.stdev(vals) / len(vals) ** 0.5) if len(vals) > 1 else 0.0
            row[f"MSE @{c}"] = f"{m:.4f} ± {se:.4f}"
            row[f"/RPP @{c}"] = f"{m / np.mean(results[c][RPP]):.3f}"
            payload_rows.setdefault(name, {})[c] = {"mse": m, "se": se,
                                                    "ratio_to_rpp": m / float(np.mean(results[c][RPP]))}
        table.append(row)
    checks = []
    for c in xs:
        basis, rpp = np.mean(results[c][MAIN]), np.mean(results[c][RPP])
        g8, g4 = np.mean(results[c]["group mean k=8"]), np.mean(results[c]["group mean k=4"])
        checks.append({"checkpoint": c, "mean V": f"{np.mean(mean_v[c]):.3f}",
                       "BASIS/RPP": f"{basis / rpp:.3f}", "<= 0.31 (issue)": bool(basis / rpp <= 0.31),
                       "<= 0.5 (our gate M2)": bool(basis / rpp <= 0.5), "BASIS < group-4": bool(basis < g4),
                       "BASIS < group-8": bool(basis < g8), "BASIS/group-8": f"{basis / g8:.3f}"})
    cmd = "rollwise bench value-mse" + (" --quick" if args.quick else "") + \
        (f" --task {args.task}" if args.task != "add3" else "") + \
        (f" --seeds {args.seeds}" if args.seeds != "0" else "") + (f" --lr {args.lr:g}" if args.lr != default_lr(args.task) else "") + \
        (f" --checkpoints {args.checkpoints}" if not args.quick and args.checkpoints != "100,300" else "") + \
        (f" --name {args.name}" if not args.name.startswith("value_mse") else "")
    md = [
        f"# Value-estimation MSE on {task_label(args.task)} (exact V(x))", "",
        f"Command: `{cmd}` ({seconds / 60:.1f} min on a shared 2-core CPU, {args.threads} torch thread).", "",
        f"{task_line(args.task, setting)} Checkpoints: pi_0 and REINFORCE++ (B=64, lr {args.lr:g}, n=1) after "
        f"{', '.join(map(str, checkpoints))} steps; seeds {args.seeds}; {args.batches} batches of "
        f"{args.batch_size} prompts per checkpoint and seed. MSE ± standard error over batches.",
        f"BASIS offline stage: {int(offline['rollouts'])} rollouts of pi_0 ({int(offline['prompts'])} prompts x 16) "
        f"in {offline['seconds']:.0f} s.", "",
        "## Targets (paper: BASIS/REINFORCE++ = 0.31, BASIS below group-mean-8)", "",
        markdown_table(checks), "", "## All estimators", "", markdown_table(table), "",
        "Notes: REINFORCE++ = the batch mean of the single-rollout rewards (the implicit baseline of global "
        "whitening, sequence-weighted); the token-weighted reading and the raw reward are logged too. "
        "Group means and RLOO draw Bernoulli(V) rewards, the exact law of fresh rollouts when one completion is "
        "rewarded (ADD-3; column_arith's trace check). "
        f"![value MSE]({args.name}.png)", ""]
    payload = {"command": cmd, "setting": setting.__dict__, "checkpoints": xs, "seeds": seeds,
               "batches": args.batches, "batch_size": args.batch_size, "offline": offline,
               "mean_v": {c: float(np.mean(v)) for c, v in mean_v.items()}, "mse": payload_rows,
               "targets": checks, "seconds": seconds}
    return payload, "\n".join(md)


if __name__ == "__main__":
    sys.exit(main())
