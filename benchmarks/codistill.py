"""CoDistill-GRPO benchmark (our CPU transformer test, docs/codistill.md): a small and a large tiny transformer,
SFT-warmed to low / moderate accuracy, then five runs per seed from the same warm starts:

    grpo_small   GRPO on the small model (n = G = 8)
    grpo_large   GRPO on the large model on its own rollouts (n = G = 8)
    cd_a0        CoDistill, alpha = 0   (downsampling-only control: M = 16 -> G = 8)
    cd_a0.5      CoDistill, alpha = 0.5
    cd_a1        CoDistill, alpha = 1   (the paper's main setting; the acceptance rows use it)

    rollwise bench codistill [--quick] [--seeds 0,1,2] [--steps N]
    rollwise bench codistill --design testbed [--quick]   # two column-arithmetic bases (rollwise base build), four runs

The five runs advance in lock-step (step s of every run, in an order rotated each step), so the wall-clock
of GRPO-large and of CoDistill is measured side by side under the same load and compared as per-step ratios.

Task: ADD-3 (``a+b=``, one correct answer), so pass@1 is exact: mean_x pi(y*|x) over the held-out prompts
(``evaluate.exact_success_prob``), and greedy accuracy is exact too (teacher-forced argmax). Also reported:
the per-token KL(pi_small || pi_large) on small-model rollouts of the held-out prompts, and the large model's
generated tokens.

Wall-clock per step, three definitions (median over steps 2..S of the per-step ratio CoDistill / GRPO-large):
    step      the whole step: CoDistill = both models (small generation, reward, small log-probs, large
              scoring, downsampling, small update, large update); GRPO-large = its whole step. The paper's
              claim (about 18% less) is about this one.
    pipeline  the "update pipeline" of the large model (our acceptance item): CoDistill = the whole step without the small
              model's update; GRPO-large = the whole step.
    large     the large model's own compute: CoDistill = large scoring + large update; GRPO-large = large
              generation + large old log-probs + large update.
    lean      the whole step against a leaner GRPO-large that skips its old-log-prob pass (possible here because
              the in-process engine samples with the policy's own weights): GRPO-large's step minus that pass.
Writes benchmarks/results/codistill.{json,md} and codistill_*.png (``--is-mode ppo_clip``: codistill_ppo_clip.*;
``--quick``: ..._quick.*; ``--name N``: N.*).
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

from _common import (  # noqa: E402
    HF_PATH,
    RESULTS,
    bench_parser,
    provenances,
    publish,
    reuse_lines,
    reused_results,
    write_results,
)

RUNS = {"grpo_small": None, "grpo_large": None, "cd_a0": 0.0, "cd_a0.5": 0.5, "cd_a1": 1.0}
#: the benchmark designs (docs/codistill.md). ``add3`` (the default): v2's ADD-3 with SFT-to-band warm starts.
#: ``testbed``: two bases of the column-arithmetic testbed built by ``rollwise base build`` (small d=64 x 2 layers,
#: large d=128 x 4 layers), the testbed's lr for both models, four runs; ``--quick``: the CI bases. Registered
#: in docs/codistill.md before any run.
DESIGNS: dict[str, dict[str, Any]] = {
    "add3": {"runs": list(RUNS), "steps": 100, "quick_steps": 8, "saving": 0.10},
    "testbed": {"runs": ["grpo_small", "grpo_large", "cd_a0", "cd_a1"], "steps": 150, "quick_steps": 3,
                "small": "column-arith-small", "large": "column-arith", "lr": 3e-5, "max_new_tokens": 64,
                "saving": 0.18, "quick_prompts": 4, "quick_m": 4, "quick_g": 2},
}
#: time/<phase> keys summed for each wall-clock definition (see the module docstring)
GRPO_LARGE_MODEL = ("generate", "logprobs", "update", "sync")
CD_LARGE_MODEL = ("large_score", "large_update", "large_sync")
CD_SMALL_UPDATE = ("update", "sync")
TIMINGS = ("step_s", "pipeline_s", "large_s", "lean_s")
#: options of the add3 design only (its task, from-scratch models and warm-start bands)
ADD3_ONLY = {"max-operand", "n-train", "n-test", "small-d", "small-layers", "large-layers", "small-band", "large-band",
             "max-sft", "sft-lr", "scoring-profile"}


def rl_overrides(args: argparse.Namespace, seed: int) -> list[str]:
    """The RL settings both designs share: steps, batch, both learning rates, the large update's IS mode, no
    evaluation, checkpoints or report inside the runs, one thread, the seed's run folder."""
    return [f"train.steps={args.steps}", f"train.prompts_per_step={args.prompts}", f"train.lr={args.lr}",
            f"codistill.large_lr={args.large_lr}", f"codistill.large_is_mode={args.is_mode}", "train.eval_every=0",
            "train.checkpoint_every=0", f"train.seed={seed}", "run.report=false", "run.threads=1",
            f"run.output_dir={args.out}/seed{seed}"]


def base_overrides(args: argparse.Namespace, seed: int) -> list[str]:
    return [
        "task.name=add3", f"task.params.max_operand={args.max_operand}", f"task.params.n_train={args.n_train}",
        f"task.params.n_test={args.n_test}", f"rollout.max_new_tokens={len(str(2 * args.max_operand)) + 2}",
        f"codistill.large.tiny.num_layers={args.large_layers}",
        f"model.tiny.hidden_size={args.small_d}", f"model.tiny.num_layers={args.small_layers}",
        f"model.tiny.intermediate_size={2 * args.small_d}",
        *rl_overrides(args, seed),
        *HF_PATH,  # the committed results were measured on transformers' path (and codistill-long needs its min_new_tokens)
    ]


def sft_to_band(model, tok, task, lo: float, max_steps: int, lr: float, seed: int, every: int = 20
                ) -> dict[str, float]:
    """Supervised warm start (the loop of ``rollwise.rlvr.sft``: Adam, batch 128, token NLL on 20000 examples
    outside the test pool) that stops at the first check, every ``every`` steps, where the held-out exact
    pass@1 reaches ``lo``. Only the warm start's own accuracy decides; no RL result is looked at."""
    import torch

    from rollwise.rlvr.evaluate import exact_success_prob
    from rollwise.rlvr.models import sequence_logprobs
    from rollwise.rlvr.sft import sft_tensors

    examples = task.sft_examples(20000, seed=seed)
    p_ids, p_mask, c_ids, loss_mask = sft_tensors(tok, [e.prompt for e in examples], [e.target for e in examples])
    ids, attn, t = torch.cat([p_ids, c_ids], dim=1), torch.cat([p_mask, loss_mask.long()], dim=1), c_ids.shape[1]
    test = task.examples("test")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    acc, step = 0.0, 0
    while step < max_steps and acc < lo:
        model.train()
        for _ in range(every):
            idx = torch.randint(0, ids.shape[0], (128,), generator=gen)
            logp, _ = sequence_logprobs(model, ids[idx], attn[idx], t)
            loss = -(logp * loss_mask[idx]).sum() / loss_mask[idx].sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        step += every
        model.eval()
        acc = float(exact_success_prob(model, tok, [e.prompt for e in test], [e.target for e in test]).mean())
    return {"sft_steps": step, "sft_pass1": acc}


def warm_start(args: argparse.Namespace, cfg, task, seed: int):
    """Small and large models from scratch, each SFT-warmed until it enters its band (our warm-start bands)."""
    from rollwise.rlvr.models import char_tokenizer, tiny_causal_lm

    tok = char_tokenizer()
    small = tiny_causal_lm(tok, cfg.model.tiny, seed=cfg.model.init_seed)
    large = tiny_causal_lm(tok, cfg.codistill.large.tiny, seed=cfg.codistill.large.init_seed)
    info = {f"small_{k}": v for k, v in sft_to_band(small, tok, task, args.small_band, args.max_sft, args.sft_lr,
                                                    seed).items()}
    info.update({f"large_{k}": v for k, v in sft_to_band(large, tok, task, args.large_band, args.max_sft,
                                                         args.sft_lr, seed).items()})
    return small, large, tok, info


def testbed_overrides(args: argparse.Namespace, seed: int, small_spec, large_spec) -> list[str]:
    """The ``testbed`` design's config: the small base's task and shape (``testbed_setup.spec_overrides``), the
    large base's shape (``codistill.large.*``, compact forward), the shared RL settings, M and G."""
    from testbed_setup import shape_overrides, spec_overrides

    return [*spec_overrides(small_spec, args.max_new_tokens), "codistill.large.forward=compact",
            *shape_overrides("codistill.large.tiny", large_spec.model), *rl_overrides(args, seed),
            f"codistill.m={args.m}", f"codistill.g={args.g}", f"rollout.n={args.m}"]


def testbed_start(args: argparse.Namespace, seed: int):
    """The ``testbed`` design's starting point: (config, small base, large base, tokenizer, task, info), both
    bases loaded from ``rollwise base build`` (built first when missing); the same bases for every seed."""
    import json

    from rollwise.config import ConfigError
    from rollwise.rlvr.base_models import base_dir, get_spec, load
    from rollwise.rlvr.run_config import resolve_config

    specs = {who: get_spec(name) for who, name in (("small", args.small_base), ("large", args.large_base))}
    if (specs["small"].task, specs["small"].task_params) != (specs["large"].task, specs["large"].task_params):
        raise ConfigError(f"codistill --design testbed: bases {args.small_base} and {args.large_base} are trained on "
                          "different tasks; both models must share the task")
    small, tok, task = load(args.small_base)
    large, _, _ = load(args.large_base)
    info: dict[str, Any] = {}
    for who, name in (("small", args.small_base), ("large", args.large_base)):
        build = json.loads((base_dir(name) / "build.json").read_text())
        info.update({f"{who}_sft_steps": specs[who].sft_steps, f"{who}_params": build["parameters"],
                     f"{who}_build_s": build["seconds"]["total"]})
    cfg = resolve_config(algorithm="codistill", overrides=testbed_overrides(args, seed, specs["small"], specs["large"]))
    return cfg, small.eval(), large.eval(), tok, task, info


def greedy_accuracy(model, tok, prompts: list[str], targets: list[str]) -> float:
    """Exact greedy accuracy for a unique-answer task: greedy decoding returns y* + EOS iff the argmax of the
    teacher-forced logits equals y*'s next token at every position (EOS included)."""
    import torch

    from rollwise.rlvr.models import encode_completions, encode_prompts, position_ids_from_mask

    p_ids, p_mask = encode_prompts(tok, prompts)
    c_ids, c_mask = encode_completions(tok, targets)
    ids, mask = torch.cat([p_ids, c_ids], 1), torch.cat([p_mask, c_mask.long()], 1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                       use_cache=False).logits[:, -c_ids.shape[1] - 1: -1]
    hit = (logits.argmax(-1) == c_ids) | (c_mask == 0)
    return float(hit.all(-1).float().mean())


def evaluate_pair(small, large, tok, task, cfg, seed: int) -> dict[str, float]:
    """Exact pass@1 and greedy accuracy of both models on the held-out prompts, and the per-token
    KL(small || large) on 4 small-model rollouts per held-out prompt."""
    import torch

    from rollwise.rlvr.evaluate import exact_success_prob, sample_and_score
    from rollwise.rlvr.models import sequence_logprobs

    test = task.examples("test")
    prompts, targets = [e.prompt for e in test], [e.target for e in test]
    out = {}
    for who, model in (("small", small), ("large", large)):
        out[f"{who}_pass1"] = float(exact_success_prob(model, tok, prompts, targets).mean())
        out[f"{who}_greedy"] = greedy_accuracy(model, tok, prompts, targets)
    batch, _, _ = sample_and_score(small, tok, task, cfg, test, 4, seed + 1)
    with torch.no_grad():
        ids, mask = batch.sequences()
        t = batch.response_ids.shape[1]
        lp_s = sequence_logprobs(small, ids, mask, t, cfg.rollout.temperature)[0]
        lp_l = sequence_logprobs(large, ids, mask, t, cfg.rollout.temperature)[0]
    m = batch.response_mask
    out["kl_small_large"] = float(((lp_s - lp_l) * m).sum() / m.sum())
    return out


def make_trainer(name: str, cfg, small, large, tok, task):
    """A trainer for one run on copies of the warm starts; ``.policy`` / ``.extra.large.policy`` are trained."""
    from rollwise.rlvr.codistill import codistill_trainer, large_config
    from rollwise.rlvr.trainer import Trainer

    small, large = copy.deepcopy(small), copy.deepcopy(large)
    if name == "grpo_small":
        c = copy.deepcopy(cfg)
        c.rollout.n = cfg.codistill.g
        c.algorithm.estimator, c.codistill.enabled = "grpo", False
        return Trainer(c, small, tok, task)
    if name == "grpo_large":
        return Trainer(large_config(cfg), large, tok, task)
    c = copy.deepcopy(cfg)
    c.codistill.alpha = RUNS[name]
    return codistill_trainer(c, small, tok, task, large)


def step_timings(name: str, rec: dict[str, Any]) -> dict[str, float]:
    """The three wall-clock definitions (seconds) of one step record (module docstring)."""
    def total(phases):
        return sum(rec.get(f"time/{p}", 0.0) for p in phases)

    step = rec["time/step"]
    if name == "grpo_large":
        return {"step_s": step, "pipeline_s": step, "large_s": total(GRPO_LARGE_MODEL),
                "lean_s": step - total(("logprobs",))}
    return {"step_s": step, "pipeline_s": step - total(CD_SMALL_UPDATE), "large_s": total(CD_LARGE_MODEL),
            "lean_s": step}


def run_seed(args: argparse.Namespace, seed: int) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Warm starts, then the five runs in lock-step; returns per-run results and the KL curves."""
    from rollwise.rlvr.run_config import resolve_config
    from rollwise.rlvr.tasks import make_task
    from rollwise.runlog import seed_everything

    seed_everything(seed)
    t0 = time.perf_counter()
    if args.design == "testbed":
        cfg, small0, large0, tok, task, info = testbed_start(args, seed)
    else:
        cfg = resolve_config(algorithm="codistill", overrides=base_overrides(args, seed))
        task = make_task(cfg.task.name, **cfg.task.params)
        small0, large0, tok, info = warm_start(args, cfg, task, seed)
    res: dict[str, Any] = {"warm": {**evaluate_pair(small0, large0, tok, task, cfg, 10_000 + seed), **info,
                                    "seconds": time.perf_counter() - t0}}
    names = args.run_names
    trainers = {name: make_trainer(name, cfg, small0, large0, tok, task) for name in names}
    recs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for step in range(1, args.steps + 1):
        k = step % len(names)
        for name in names[k:] + names[:k]:  # rotate who goes first
            recs[name].append(trainers[name].train_step(step))
    for name, tr in trainers.items():
        large = tr.extra.large.policy if name.startswith("cd_") else (tr.policy if name == "grpo_large" else large0)
        small = small0 if name == "grpo_large" else tr.policy
        ev = evaluate_pair(small, large, tok, task, cfg, 10_000 + seed)
        rs = recs[name]
        ev["large_generated_tokens"] = sum(r.get("large/generated_tokens", 0) for r in rs)
        ev["train_kl_first"], ev["train_kl_last"] = rs[0].get("kl_small_large"), rs[-1].get("kl_small_large")
        ev["train_seconds"] = sum(r["time/step"] for r in rs)
        if name != "grpo_small":
            for key in TIMINGS:
                ev[key] = statistics.median(step_timings(name, r)[key] for r in rs[1:] or rs)
                if name.startswith("cd_"):  # paired per-step ratio to GRPO-large (same step, same load)
                    ratios = [step_timings(name, a)[key] / step_timings("grpo_large", b)[key]
                              for a, b in zip(rs[1:] or rs, recs["grpo_large"][1:] or recs["grpo_large"])]
                    ev[key.replace("_s", "_ratio")] = statistics.median(ratios)
        res[name] = ev
        print(f"seed {seed} {name}: { {k: round(v, 4) for k, v in ev.items() if v is not None} }", flush=True)
    curves = {name: [r["kl_small_large"] for r in recs[name]] for name in names if name.startswith("cd_")}
    phases = {name: {k[5:]: statistics.median(r.get(k, 0.0) for r in recs[name][1:] or recs[name])
                     for k in sorted({k for r in recs[name] for k in r if k.startswith("time/") and r[k] > 0})}
              for name in names}
    res["phases"] = phases
    return res, curves


def scoring_profile(args: argparse.Namespace, seed: int, reps: int = 10) -> int:
    """``--scoring-profile``: at seed ``seed``'s warm starts, time the large model's teacher-forced pass over all
    rollouts against one pass per distinct rollout (``distinct_row_logprobs``), on CoDistill's M small-model
    rollouts and on GRPO-large's G large-model rollouts, alternating, ``reps`` times. Writes
    codistill_scoring.{json,md}."""
    import torch

    from rollwise.report import markdown_table
    from rollwise.rlvr.codistill import distinct_row_logprobs
    from rollwise.rlvr.evaluate import sample_and_score
    from rollwise.rlvr.models import sequence_logprobs
    from rollwise.rlvr.run_config import resolve_config
    from rollwise.rlvr.tasks import make_task
    from rollwise.runlog import seed_everything

    seed_everything(seed)
    cfg = resolve_config(algorithm="codistill", overrides=base_overrides(args, seed))
    task = make_task(cfg.task.name, **cfg.task.params)
    small, large, tok, info = warm_start(args, cfg, task, seed)
    pool = task.examples("train")
    times: dict[str, list[float]] = {}
    rows: dict[str, list[int]] = {}
    for rep in range(reps):
        pick = torch.randperm(len(pool), generator=torch.Generator().manual_seed(rep))[: args.prompts]
        prompts = [pool[i] for i in pick]
        for who, model, n in (("cd_small_rollouts", small, cfg.codistill.m),
                              ("grpo_large_rollouts", large, cfg.codistill.g)):
            batch, _, _ = sample_and_score(model, tok, task, cfg, prompts, n, 1000 + rep)
            ids, mask = batch.sequences()
            t = batch.response_ids.shape[1]
            with torch.no_grad():
                for how in ("all", "distinct") if rep % 2 else ("distinct", "all"):
                    t0 = time.perf_counter()
                    if how == "all":
                        sequence_logprobs(large, ids, mask, t)
                    else:
                        rows.setdefault(who, []).append(distinct_row_logprobs(large, ids, mask, t, 1.0)[1])
                    times.setdefault(f"{who}/{how}", []).append(time.perf_counter() - t0)
    table = [{"rollouts": who, "rows": n * args.prompts, "distinct rows (mean)": f"{statistics.fmean(rows[who]):.1f}",
              "ms, all rows": f"{1000 * statistics.median(times[f'{who}/all']):.1f}",
              "ms, distinct rows": f"{1000 * statistics.median(times[f'{who}/distinct']):.1f}"}
             for who, n in (("cd_small_rollouts", cfg.codistill.m), ("grpo_large_rollouts", cfg.codistill.g))]
    md = ["# CoDistill: large-model scoring, all rollouts vs distinct rollouts", "",
          f"Command: `rollwise bench codistill --scoring-profile --seeds {seed}`; warm starts {info}; "
          f"{args.prompts} training prompts per repetition, {reps} repetitions alternating the two ways; "
          "median times of the large model's no-grad teacher-forced pass (1 thread, shared CPU).", "",
          markdown_table(table), ""]
    write_results("codistill_scoring", {"info": info, "times": times, "rows": rows, "table": table},
                  "\n".join(md), out_dir=Path(args.results))
    print("\n".join(md))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options; its defaults are the v2 design (``codistill_long`` reuses them)."""
    ap = bench_parser("rollwise bench codistill", quick="1 seed, few steps (a smoke run, not a measurement)")
    ap.add_argument("--design", default="add3", choices=sorted(DESIGNS),
                    help="add3: v2's ADD-3 design (default); testbed: two column-arithmetic bases (docs/codistill.md)")
    rl = ap.add_argument_group("RL")
    rl.add_argument("--steps", type=int, default=0, help="RL steps per run (0 = the design's: add3 100, testbed 150; "
                    "quick 8 / 3)")
    rl.add_argument("--prompts", type=int, default=16, help="prompts per step")
    rl.add_argument("--lr", type=float, default=1e-3, help="small-model RL learning rate")
    rl.add_argument("--large-lr", type=float, default=3e-4, help="large-model RL learning rate")
    rl.add_argument("--is-mode", default="truncated", choices=["truncated", "ppo_clip"])
    task = ap.add_argument_group("task: ADD-3")
    task.add_argument("--max-operand", type=int, default=49, help="operands in [0, max_operand]")
    task.add_argument("--n-train", type=int, default=1500, help="RL training prompts")
    task.add_argument("--n-test", type=int, default=500, help="held-out prompts")
    models = ap.add_argument_group("models")
    models.add_argument("--small-d", type=int, default=32, help="small model width (2 heads, MLP 2x width)")
    models.add_argument("--small-layers", type=int, default=1, help="small model layers")
    models.add_argument("--large-layers", type=int, default=2, help="large model layers (d=128, 4 heads)")
    models.add_argument("--small-base", default="", help="testbed design: the small model's base (rollwise base "
                        "list; default column-arith-small, quick column-arith-small-ci)")
    models.add_argument("--large-base", default="", help="testbed design: the large model's base (default "
                        "column-arith, quick column-arith-ci)")
    warm = ap.add_argument_group("warm starts: each SFT stops at the first check where held-out pass@1 >= its band")
    warm.add_argument("--small-band", type=float, default=0.08, help="the small model's band")
    warm.add_argument("--large-band", type=float, default=0.45, help="the large model's band")
    warm.add_argument("--max-sft", type=int, default=2000, help="SFT step limit per model")
    warm.add_argument("--sft-lr", type=float, default=2e-3, help="SFT learning rate (both models)")
    out = ap.add_argument_group("output")
    out.add_argument("--scoring-profile", action="store_true",
                     help="only time the large model's scoring of all vs distinct rollouts (first seed's warm starts)")
    out.add_argument("--out", default="runs/bench-codistill")
    out.add_argument("--results", default=str(RESULTS), help="folder of the results files")
    out.add_argument("--name", default="",
                     help="results file stem (default codistill[_<is-mode> unless truncated][_quick])")
    out.add_argument("--reuse", default=None, metavar="FILE[,FILE]",
                     help="results .json of earlier runs with the same settings: their seeds are taken over, not rerun")
    return ap


#: arguments that do not change a seed's result (``--reuse`` ignores them when it compares settings)
NOT_SETTINGS = ("seeds", "out", "results", "name", "reuse", "scoring_profile")


def reuse_settings(run_args: dict[str, Any]) -> dict[str, Any]:
    """The settings of a run (its ``vars(args)``, or a results file's ``args``) that ``--reuse`` requires to equal."""
    return {k: v for k, v in run_args.items() if k not in NOT_SETTINGS}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    design = DESIGNS[args.design]
    if args.quick:
        seeds, args.steps = seeds[:1], args.steps or design["quick_steps"]
    args.steps = args.steps or design["steps"]
    args.run_names, args.saving = design["runs"], design["saving"]
    args.m, args.g, args.max_new_tokens = 16, 8, design.get("max_new_tokens", 0)
    given = {a.lstrip("-").split("=")[0] for a in (argv if argv is not None else sys.argv[1:]) if a.startswith("--")}
    foreign = sorted(given & (ADD3_ONLY if args.design == "testbed" else {"small-base", "large-base"}))
    if foreign:
        print(f"rollwise bench codistill --design {args.design}: --{', --'.join(foreign)} belong(s) to the other "
              "design", file=sys.stderr)
        return 2
    if args.design == "testbed":  # the bases' task and the testbed's lr unless given; --quick: the CI bases
        ci = "-ci" if args.quick else ""
        args.small_base = args.small_base or design["small"] + ci
        args.large_base = args.large_base or design["large"] + ci
        args.lr = args.lr if "lr" in given else design["lr"]
        args.large_lr = args.large_lr if "large-lr" in given else design["lr"]
        if args.quick:
            args.prompts = args.prompts if "prompts" in given else design["quick_prompts"]
            args.m, args.g = design["quick_m"], design["quick_g"]
        if args.out == "runs/bench-codistill":
            args.out = "runs/bench-codistill-testbed" + ("-quick" if args.quick else "")

    from rollwise.rlvr.policy import quiet_transformers
    from rollwise.runlog import set_threads

    quiet_transformers()
    set_threads(1)
    if args.scoring_profile:
        return scoring_profile(args, seeds[0])
    per_seed: dict[int, dict[str, Any]] = {}
    curves: dict[str, list[list[float]]] = {}
    t_all = time.perf_counter()
    reused = reused_results(args.reuse, reuse_settings(vars(args)), lambda p: reuse_settings(p["args"]),
                            lambda p: p["per_seed"], seeds)
    for seed in seeds:
        if seed in reused:
            payload = reused[seed][1]
            per_seed[seed] = payload["per_seed"][str(seed)]
            i = [int(x) for x in payload["seeds"]].index(seed)
            kl = {name: c[i] for name, c in payload["kl_curves"].items()}
        else:
            per_seed[seed], kl = run_seed(args, seed)
        for name, c in kl.items():
            curves.setdefault(name, []).append(c)
        report(args, list(per_seed), per_seed, curves, time.perf_counter() - t_all, reused)  # partial results per seed
    return 0


def _mean(per_seed: dict[int, dict[str, Any]], run: str, key: str) -> float | None:
    vals = [r[run][key] for r in per_seed.values() if r[run].get(key) is not None]
    return statistics.fmean(vals) if vals else None


def _ends(curve: list[float]) -> tuple[float, float]:
    """Means of the first and the last 10% (at least one) of a per-step curve."""
    k = max(1, len(curve) // 10)
    return statistics.fmean(curve[:k]), statistics.fmean(curve[-k:])


def _wins(per_seed: dict[int, dict[str, Any]], a: str, b: str, key: str, margin: float = 0.0) -> str:
    """How many seeds have run a's ``key`` above run b's by more than ``margin``."""
    n = sum(r[a][key] - r[b][key] > margin for r in per_seed.values())
    return f"{n}/{len(per_seed)}"


def setting_line(args) -> str:
    """The report's description of the design's task, models and RL settings."""
    if args.design == "testbed":
        return (f"Design testbed: column arithmetic with written-out columns (responses 23-45 tokens); small base "
                f"`{args.small_base}`, large base `{args.large_base}` (`rollwise base build`; the same bases for every "
                f"seed); {args.prompts} prompts/step, {args.steps} RL steps, lr {args.lr:g} (small) / "
                f"{args.large_lr:g} (large), M={args.m}, G={args.g}, large IS mode `{args.is_mode}`. pass@1 = exact "
                "V(x) = pi(trace | x) on the held-out pool and greedy accuracy is exact too (one rewarded trace per "
                "prompt). `seeds` counts the seeds where the comparison holds.")
    return (f"Task ADD-3 (operands 0..{args.max_operand}, {args.n_train} train / {args.n_test} held-out prompts), "
            f"{args.prompts} prompts/step, {args.steps} RL steps; small model d={args.small_d} {args.small_layers} "
            f"layer(s), large d=128 {args.large_layers} layers; each SFT (lr {args.sft_lr}) stops at the first check "
            f"(every 20 steps) where held-out pass@1 >= {args.small_band} (small) / {args.large_band} (large) "
            f"(our planned bands 0.05-0.15 / 0.40-0.60); RL lr {args.lr} / {args.large_lr}; M=16, G=8, large IS mode "
            f"`{args.is_mode}`. pass@1 and greedy accuracy are exact (ADD-3 has one correct answer). `seeds` counts "
            "the seeds where the comparison holds.")


def report(args, seeds, per_seed, curves, seconds: float, reused: dict | None = None) -> int:
    from rollwise.report import bar_plot, fmt, line_plot, markdown_table

    prov = provenances({s: r for s, r in (reused or {}).items() if s in seeds})  # the seeds reported so far
    out = Path(args.results)
    # one naming rule: the script, then the variant (a non-default large-model update), then _quick
    name = args.name or ("codistill" + ("" if args.design == "add3" else f"_{args.design}")
                         + ("" if args.is_mode == "truncated" else f"_{args.is_mode}") + ("_quick" if args.quick else ""))
    runs = ["warm", *args.run_names]
    keys = ("small_pass1", "small_greedy", "large_pass1", "large_greedy", "kl_small_large", "small_sft_steps",
            "large_sft_steps", *TIMINGS,
            "step_ratio", "pipeline_ratio", "large_ratio", "lean_ratio", "large_generated_tokens")
    means = {r: {k: _mean(per_seed, r, k) for k in keys} for r in runs}
    cd, checks = means["cd_a1"], []

    def check(crit, ours, target, passed, seeds_ok="", paper=""):
        checks.append({"criterion": crit, "ours": fmt(ours), "seeds": seeds_ok, "target": target,
                       "paper": paper, "met": "yes" if passed else "NO"})

    if args.design == "testbed":  # the design's precondition, on the starting bases (no RL result involved)
        w = means["warm"]
        n = sum(r["warm"]["large_pass1"] >= 2 * r["warm"]["small_pass1"] for r in per_seed.values())
        check("precondition: large base pass@1 >= 2x small base pass@1", w["large_pass1"] / max(w["small_pass1"], 1e-9),
              ">= 2", w["large_pass1"] >= 2 * w["small_pass1"], f"{n}/{len(per_seed)}")
    for metric in ("pass1", "greedy"):
        key = f"small_{metric}"
        d = cd[key] - means["grpo_small"][key]
        check(f"small {metric}: CoDistill(a=1) - GRPO-small", d, ">= 0.03", d >= 0.03,
              _wins(per_seed, "cd_a1", "grpo_small", key), "Minerva +6.1 pts (greedy)")
        d = cd[key] - means["cd_a0"][key]
        check(f"small {metric}: CoDistill(a=1) - CoDistill(a=0)", d, ">= 0.01", d >= 0.01,
              _wins(per_seed, "cd_a1", "cd_a0", key))
    kl_down = [_ends(c)[1] < _ends(c)[0] for c in curves.get("cd_a1", [])]
    check("small: train KL(small||large), mean of last vs first 10% of steps, goes down (a=1)",
          f"{sum(kl_down)}/{len(kl_down)} seeds", "all seeds", all(kl_down) and bool(kl_down))
    for metric in ("pass1", "greedy"):
        key = f"large_{metric}"
        ratio = cd[key] / max(means["grpo_large"][key], 1e-9)
        n = sum(r["cd_a1"][key] >= 0.93 * r["grpo_large"][key] for r in per_seed.values())
        check(f"large {metric}: CoDistill(a=1) / GRPO-large", ratio, ">= 0.93", ratio >= 0.93,
              f"{n}/{len(per_seed)}", "53.73/57.90 = 0.93 (0.99 continued)")
    gen = cd["large_generated_tokens"]
    check("large: tokens generated by the large model (no hints)", gen, "0", gen == 0)
    for key, what in (("step_ratio", "whole step (both models) vs GRPO-large step"),
                      ("pipeline_ratio", "update pipeline (all but the small update)"),
                      ("large_ratio", "large-model compute only"),
                      ("lean_ratio", "whole step vs GRPO-large without its old-log-prob pass")):
        saving = 1 - cd[key]
        n = sum(r["cd_a1"][key] <= 1 - args.saving for r in per_seed.values())
        check(f"wall-clock saving per step, {what}", saving, f">= {args.saving:.2f}", saving >= args.saving,
              f"{n}/{len(per_seed)}", "~0.18 (whole step)")

    rows = [{"run": r, **{k: fmt(v) for k, v in means[r].items()}} for r in runs]
    seed_rows = [{"seed": s, "run": r, **{k: fmt(v) for k, v in per_seed[s][r].items()}}
                 for s in seeds for r in runs]
    phase_rows = [{"seed": s, "run": r, **{k: f"{1000 * v:.1f}" for k, v in per_seed[s]["phases"][r].items()}}
                  for s in seeds for r in ("grpo_large", "cd_a0", "cd_a1")]
    figs = [bar_plot(out / f"{name}_small_pass1.png", {r: means[r]["small_pass1"] for r in runs}, "pass@1",
                     "small model, held-out exact pass@1 (mean over seeds)"),
            bar_plot(out / f"{name}_large_pass1.png", {r: means[r]["large_pass1"] for r in runs}, "pass@1",
                     "large model, held-out exact pass@1 (mean over seeds)")]
    series = {}
    for run, cs in curves.items():
        n = min(len(c) for c in cs)
        series[run] = (list(range(1, n + 1)), [statistics.fmean(c[i] for c in cs) for i in range(n)])
    figs.append(line_plot(out / f"{name}_kl.png", series, "RL step", "per-token KL(small || large)",
                          "KL between the models on training rollouts"))
    cmd = "rollwise bench codistill" + (" --quick" if args.quick else "") + \
        (f" --design {args.design}" if args.design != "add3" else "") + f" --seeds {','.join(map(str, seeds))}"
    cmd += "".join(f" --{k.replace('_', '-')} {v}" for k, v in (("is_mode", args.is_mode), ("name", args.name))
                   if v and v != "truncated")
    md = [
        "# CoDistill-GRPO benchmark (our CPU transformer test, docs/codistill.md)", "",
        f"Command: `{cmd}` ({seconds / 60:.1f} min on a 2-core CPU shared with other jobs, 1 torch thread: "
        "absolute wall-clock numbers are inflated and noisy; the ratios are paired per step).",
        *reuse_lines(prov), "",
        setting_line(args), "",
        "## Acceptance", "", markdown_table(checks), "", "## Means over seeds", "", markdown_table(rows), "",
        "## Per seed", "", markdown_table(seed_rows), "",
        "## Median phase times per step (ms)", "", markdown_table(phase_rows), "",
    ]
    payload = {"command": cmd, "args": vars(args), "seeds": seeds, "means": means, "per_seed": per_seed, "checks": checks,
               "kl_curves": curves, "figures": [str(f) for f in figs],
               "reused": prov}
    publish(name, payload, "\n".join(md) + "\n", out_dir=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
