"""rollwise against TRL's GRPOTrainer on the same GRPO job: seconds per step, completions/s, accuracy gain.

    rollwise bench vs-trl [--size default|10x] [--runs 3] [--steps 100] [--threads 2] [--quick]

One tiny Qwen2 (default: hidden 128, 4 layers, 4 heads, 2 KV heads, intermediate 384, tied embeddings,
character tokenizer; ``--size 10x``: about 5M parameters) is warm-started once by SFT on ADD-3 with operands
0..999, saved with ``save_pretrained`` (cached under ``--out`` by a key of every warm-start setting), and then
trained from that folder by TRL 1.16's ``GRPOTrainer`` and by ``rollwise train`` with the same settings:

    16 prompts x 8 samples per step, temperature 1, top-p 1, top-k off, at most 6 new tokens, fp32,
    AdamW lr 1e-4 constant (no warm-up, no decay), no KL (beta 0), grad clip 1.0, one update per batch,
    token-mean loss, group-normalised advantages, torch threads ``--threads``.

TRL defaults overridden, each stated: ``bf16=False`` (default on), ``use_cpu=True``,
``activation_checkpointing=False`` (gradient checkpointing, default on), ``learning_rate=1e-4`` (default 1e-6),
``lr_scheduler_type="constant"`` (default linear), ``per_device_train_batch_size=128`` with
``num_generations=8`` (16 prompts), ``max_completion_length=6``, ``save_strategy="no"``, ``report_to=[]``,
``disable_tqdm=True``. TRL defaults kept and named: ``beta=0.0``, ``loss_type="dapo"`` (token mean over the
batch, one process), ``scale_rewards="group"``, ``num_iterations=1``, ``epsilon=0.2``, ``top_k=0``,
``max_grad_norm=1.0``, ``weight_decay=0``. rollwise: its defaults for the engine and forward (``rollout.engine``,
``model.forward``, ``train.reuse_logprobs``), ``algorithm.estimator=grpo``, ``agg_mode=token-mean``.

TRL and rollwise runs alternate (``--runs`` each, seeds 0..runs-1, the order swapped every run). Step time is the
median over steps 4..N of one step (sampling, reward, forward/backward, optimizer step): TRL's from a callback
(``on_step_begin`` to ``on_step_end``), rollwise's ``time/step``. Accuracy: the exact expected accuracy V(x)
(one teacher-forced pass, ``evaluate.exact_success_prob``, transformers' forward for both) on the same 512
held-out prompts, before and after. The floor: one forward+backward and one no-grad forward over a batch of a
step's token shape (128 rows, prompt + 6 tokens), through transformers' forward and the compact forward.
Writes benchmarks/results/vs_trl[_10x][_quick].{json,md}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, publish  # noqa: E402

SIZES: dict[str, dict[str, int]] = {
    "default": {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 384},
    "10x": {"hidden_size": 256, "num_layers": 6, "num_heads": 8, "num_kv_heads": 4, "intermediate_size": 768},
}
TASK = {"max_operand": 999, "n_train": 4096, "n_test": 512}
PROMPTS, SAMPLES, MAX_NEW, LR = 16, 8, 6, 1e-4
FIRST_TIMED = 4  # steps 1..3 are warm-up


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rollwise bench vs-trl")
    ap.add_argument("--size", choices=sorted(SIZES), default="default")
    ap.add_argument("--runs", type=int, default=3, help="runs of each trainer (seeds 0..runs-1)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sft-steps", type=int, default=0, help="warm-start SFT steps (0 = the size's default)")
    ap.add_argument("--eval-prompts", type=int, default=512)
    ap.add_argument("--warm-target", type=float, default=0.45, help="SFT until this held-out exact accuracy")
    ap.add_argument("--warm-only", action="store_true", help="build (or find) the warm start and stop")
    ap.add_argument("--quick", action="store_true", help="CI smoke: 1 run each, 6 steps, tiny warm start")
    ap.add_argument("--out", default="runs/bench-vs-trl")
    ap.add_argument("--results", default=str(RESULTS), help="folder of the JSON and Markdown results")
    return ap


# ------------------------------------------------------------------------------------------ warm start
def warm_start(size: str, sft_steps: int, out: Path, target: float) -> tuple[Path, dict[str, Any]]:
    """The SFT-warmed model folder for ``size`` (built once, cached by a key of every setting).

    SFT stops at the first check (every 250 steps) where the held-out exact accuracy reaches ``target``, or after
    ``sft_steps``; only the warm start's own accuracy decides.
    """
    from rollwise.rlvr.models import (
        TinyModelConfig,
        char_tokenizer,
        num_parameters,
        save_policy,
        tiny_causal_lm,
    )
    from rollwise.rlvr.sft import AccuracyTarget, supervised_warm_start
    from rollwise.rlvr.tasks import make_task

    settings = {"size": SIZES[size], "task": TASK, "sft_steps": sft_steps, "lr": 2e-3, "batch": 128,
                "examples": 50000, "seed": 0, "target": target, "check_every": 250, "version": 2}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    folder = out / f"warm-{size}-{key}"
    meta = folder / "warm_start.json"
    if meta.exists():
        return folder, json.loads(meta.read_text())
    tok = char_tokenizer()
    tiny = TinyModelConfig(**SIZES[size])
    model = tiny_causal_lm(tok, tiny, seed=0)
    task = make_task("add3", **TASK)
    ex = task.sft_examples(settings["examples"], seed=0)
    test = task.examples("test")
    reached = AccuracyTarget(model, tok, [e.prompt for e in test], [e.target for e in test], target)
    t0 = time.perf_counter()
    losses = supervised_warm_start(model, tok, [e.prompt for e in ex], [e.target for e in ex], steps=sft_steps,
                                   batch_size=settings["batch"], lr=settings["lr"], seed=0, compact=True,
                                   stop=reached, check_every=settings["check_every"])
    seconds = time.perf_counter() - t0
    acc = reached.accuracy()
    save_policy(model, tok, folder, tiny=tiny)
    info = {"settings": settings, "params": num_parameters(model), "exact_accuracy": acc, "sft_seconds": seconds,
            "sft_steps_run": len(losses), "checks": reached.history}
    meta.write_text(json.dumps(info, indent=2))
    return folder, info


def exact_accuracy(model: Any, tok: Any, n: int) -> float:
    """Mean V(x) over the first ``n`` held-out ADD-3 prompts (transformers' forward: the same for both sides)."""
    from rollwise.rlvr.evaluate import exact_success_prob
    from rollwise.rlvr.tasks import make_task

    test = make_task("add3", **TASK).examples("test")[:n]
    return float(exact_success_prob(model, tok, [e.prompt for e in test], [e.target for e in test]).mean())


# ------------------------------------------------------------------------------------------ the two trainers
def run_trl(folder: Path, seed: int, steps: int, eval_prompts: int, out: Path, threads: int) -> dict[str, Any]:
    """One TRL GRPOTrainer run from ``folder``; per-step seconds and accuracy after it."""
    from transformers import TrainerCallback
    from trl import GRPOConfig

    from rollwise.rlvr.integrations.trl import grpo_trainer
    from rollwise.rlvr.models import load_policy
    from rollwise.rlvr.tasks import make_task
    from rollwise.runlog import set_threads

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._t = 0.0

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            self.seconds.append(time.perf_counter() - self._t)

    model, tok = load_policy(folder)
    set_threads(threads)
    args = GRPOConfig(
        output_dir=str(out / f"trl-{seed}"), max_steps=steps, per_device_train_batch_size=PROMPTS * SAMPLES,
        num_generations=SAMPLES, max_completion_length=MAX_NEW, temperature=1.0, top_p=1.0, top_k=0,
        learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, beta=0.0, loss_type="dapo",
        scale_rewards="group", num_iterations=1, epsilon=0.2, max_grad_norm=1.0, weight_decay=0.0, bf16=False,
        use_cpu=True, activation_checkpointing=False, use_vllm=False, seed=seed, logging_steps=1,
        save_strategy="no", report_to=[], disable_tqdm=True)
    clock = StepClock()
    trainer = grpo_trainer(make_task("add3", **TASK), model, tok, args, callbacks=[clock])
    t0 = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t0
    after = exact_accuracy(trainer.model, tok, eval_prompts)
    return {"step_seconds": clock.seconds, "wall_seconds": total, "acc_after": after}


def run_rollwise(folder: Path, seed: int, steps: int, eval_prompts: int, out: Path, threads: int) -> dict[str, Any]:
    """One ``rollwise train`` run from ``folder`` with the same settings (in process)."""
    from rollwise.rlvr.checkpoint import latest_checkpoint
    from rollwise.rlvr.job import run_training
    from rollwise.rlvr.models import load_policy
    from rollwise.rlvr.run_config import resolve_config

    run_dir = out / f"rollwise-{seed}"
    cfg = resolve_config(overrides=[
        f"model.name_or_path={folder}", "task.name=add3", *[f"task.params.{k}={v}" for k, v in TASK.items()],
        "algorithm.estimator=grpo", "algorithm.loss.agg_mode=token-mean", "algorithm.loss.kl_coef=0",
        f"rollout.n={SAMPLES}", "rollout.temperature=1.0", "rollout.top_p=1.0", f"rollout.max_new_tokens={MAX_NEW}",
        f"train.prompts_per_step={PROMPTS}", f"train.steps={steps}", f"train.lr={LR}", "train.lr_schedule=constant",
        "train.warmup_steps=0", "train.max_grad_norm=1.0", "train.weight_decay=0", "train.ppo_epochs=1",
        "train.mini_batches=1", f"train.seed={seed}", "train.eval_every=0", f"train.eval_prompts={eval_prompts}",
        "train.checkpoint_every=0", "sft.enabled=false", f"run.output_dir={run_dir}", f"run.threads={threads}",
        "run.report=false"])
    t0 = time.perf_counter()
    run_training(cfg, overwrite=True)
    total = time.perf_counter() - t0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    records = [r for r in records if r.get("step", 0) >= 1]
    final, tok = load_policy(latest_checkpoint(run_dir))
    after = exact_accuracy(final, tok, eval_prompts)
    phases = {k: [r[k] for r in records] for k in records[0] if k.startswith("time/")}
    return {"step_seconds": [r["time/step"] for r in records], "phases": phases, "wall_seconds": total,
            "acc_after": after, "config": {"engine": cfg.rollout.engine, "forward": cfg.model.forward,
                       "reuse_logprobs": cfg.train.reuse_logprobs}}


# ------------------------------------------------------------------------------------------ floor
def floor(folder: Path, reps: int = 10) -> dict[str, float]:
    """Median seconds of one forward+backward and one no-grad forward over a step-shaped batch."""
    import torch

    from rollwise.rlvr.engines.base import SamplingConfig
    from rollwise.rlvr.engines.lean import LeanEngine
    from rollwise.rlvr.models import load_policy, response_logprobs
    from rollwise.rlvr.tasks import make_task

    model, tok = load_policy(folder)
    prompts = [e.prompt for e in make_task("add3", **TASK).examples("train")[:PROMPTS]]
    b = LeanEngine(model, tok).generate(prompts, SamplingConfig(n=SAMPLES, max_new_tokens=MAX_NEW), seed=0)
    full = torch.ones_like(b.response_mask)  # every row at the full response width: the padded shape

    def timed(fn) -> float:  # noqa: ANN001
        out = []
        for _ in range(reps + 2):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return statistics.median(out[2:])

    def fwd_bwd(compact: bool) -> None:
        lp, ent = response_logprobs(model, b.prompt_ids, b.prompt_mask, b.response_ids, full, with_entropy=True,
                                    compact=compact)
        (lp.sum() + ent.sum()).backward()

    def fwd(compact: bool) -> None:
        with torch.no_grad():
            response_logprobs(model, b.prompt_ids, b.prompt_mask, b.response_ids, full, compact=compact)

    model.train()
    shape = [b.size, b.prompt_ids.shape[1] + b.response_ids.shape[1]]
    return {"shape": shape, "hf_fwd_bwd": timed(lambda: fwd_bwd(False)), "hf_fwd": timed(lambda: fwd(False)),
            "compact_fwd_bwd": timed(lambda: fwd_bwd(True)), "compact_fwd": timed(lambda: fwd(True))}


# ------------------------------------------------------------------------------------------ report
def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    med = [statistics.median(r["step_seconds"][FIRST_TIMED - 1:]) for r in runs]
    gains = [r["acc_after"] - r["acc_before"] for r in runs]
    out = {"median_step_s": statistics.median(med), "per_run_median_step_s": med,
           "completions_per_s": PROMPTS * SAMPLES / statistics.median(med), "acc_gain": gains,
           "acc_gain_mean": statistics.fmean(gains), "acc_before": runs[0]["acc_before"]}
    if "phases" in runs[0]:
        out["phases_s"] = {k[5:]: statistics.fmean(statistics.median(r["phases"][k][FIRST_TIMED - 1:]) for r in runs)
                           for k in runs[0]["phases"] if k != "time/step"}
    return out


def markdown(args: argparse.Namespace, warm: dict[str, Any], trl: dict, rw: dict, fl: dict, name: str) -> str:
    from rollwise.report import markdown_table

    ratio = rw["median_step_s"] / trl["median_step_s"]
    rows = [{"trainer": k, "median s/step": f"{v['median_step_s']:.4f}",
             "per-run medians": ", ".join(f"{x:.4f}" for x in v["per_run_median_step_s"]),
             "completions/s": f"{v['completions_per_s']:.0f}",
             "accuracy gain (points)": ", ".join(f"{100 * g:+.1f}" for g in v["acc_gain"])}
            for k, v in (("TRL GRPOTrainer", trl), ("rollwise", rw))]
    cmd = f"rollwise bench vs-trl --size {args.size} --runs {args.runs} --steps {args.steps} --threads {args.threads}" \
        + (f" --sft-steps {args.sft_steps}" if args.sft_steps else "")
    lines = [f"# rollwise vs TRL on the same GRPO job ({args.size} size)", "", f"Command: `{cmd}`", "",
             f"Model: {warm['params']:,} parameters, warm start {warm['sft_steps_run']} SFT steps, exact "
             f"accuracy {warm['exact_accuracy']:.3f} before RL. {PROMPTS} prompts x {SAMPLES} samples, <= {MAX_NEW} "
             f"new tokens, {args.steps} steps, {args.threads} threads; runs alternate. Step = sampling, reward, "
             f"forward/backward, optimizer step; median of steps {FIRST_TIMED}..{args.steps}.", "",
             markdown_table(rows), "",
             f"**rollwise / TRL median step time: {ratio:.2f}** (target <= 0.75 at the default size).", "",
             "rollwise phases (mean over runs of the per-run median, ms): "
             + ", ".join(f"{k} {1000 * v:.1f}" for k, v in rw["phases_s"].items()), "",
             f"Floor, same run (batch {fl['shape'][0]} x {fl['shape'][1]} tokens, ms): transformers forward+backward "
             f"{1000 * fl['hf_fwd_bwd']:.1f}, no-grad forward {1000 * fl['hf_fwd']:.1f}; compact forward+backward "
             f"{1000 * fl['compact_fwd_bwd']:.1f}, no-grad {1000 * fl['compact_fwd']:.1f}.", "",
             f"rollwise settings: engine {rw['config']['engine']}, forward {rw['config']['forward']}, "
             f"reuse_logprobs {rw['config']['reuse_logprobs']}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.runs, args.steps, args.eval_prompts = 1, 5, 32
    sft_steps = args.sft_steps or (20 if args.quick else 8000)

    import transformers

    from rollwise.runlog import set_threads

    transformers.utils.logging.set_verbosity_error()
    set_threads(args.threads)
    out = Path(args.out)
    folder, warm = warm_start(args.size, sft_steps, out, target=args.warm_target)
    if args.warm_only:
        print(json.dumps(warm, indent=2))
        return 0
    from rollwise.rlvr.models import load_policy

    before = exact_accuracy(*load_policy(folder), args.eval_prompts)  # the warm start: the same for every run
    results: dict[str, list[dict[str, Any]]] = {"trl": [], "rollwise": []}
    for seed in range(args.runs):
        order = ("trl", "rollwise") if seed % 2 == 0 else ("rollwise", "trl")
        for side in order:
            fn = run_trl if side == "trl" else run_rollwise
            results[side].append({"acc_before": before,
                                  **fn(folder, seed, args.steps, args.eval_prompts, out, args.threads)})
            set_threads(args.threads)  # a trainer may change the thread count; both sides run with the same
    fl = floor(folder)
    trl, rw = summarise(results["trl"]), summarise(results["rollwise"])
    rw["config"] = results["rollwise"][0]["config"]
    name = "vs_trl" + ("" if args.size == "default" else f"_{args.size}") + ("_quick" if args.quick else "")
    payload = {"args": {k: v for k, v in vars(args).items() if k not in ("out", "results")}, "warm_start": warm, "trl": trl,
               "rollwise": rw, "ratio": rw["median_step_s"] / trl["median_step_s"], "floor_s": fl,
               "raw": {side: [{k: v for k, v in r.items() if k != "config"} for r in runs]
                       for side, runs in results.items()}}
    publish(name, payload, markdown(args, warm, trl, rw, fl, name), out_dir=Path(args.results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
