"""Rollout throughput and training-step time per phase, default model vs one about 10x larger.

    rollwise bench throughput [--steps 6] [--threads 2]

Writes benchmarks/results/throughput.{json,md}. This is the baseline later speed work is measured
against. Both models are measured in the same run, alternating, on the same prompts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import publish  # noqa: E402

SIZES = {
    "default": {"hidden_size": 128, "num_layers": 2, "num_heads": 4, "intermediate_size": 512},
    "10x": {"hidden_size": 256, "num_layers": 5, "num_heads": 4, "intermediate_size": 1024},
}


def build(size: str, steps: int, out: Path):
    from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, num_parameters, tiny_causal_lm
    from rollwise.rlvr.run_config import resolve_config
    from rollwise.rlvr.tasks import make_task
    from rollwise.rlvr.trainer import Trainer

    overrides = [f"model.tiny.{k}={v}" for k, v in SIZES[size].items()] + [
        f"train.steps={steps}", "train.prompts_per_step=64", "rollout.n=4", "algorithm.estimator=grpo",
        "rollout.max_new_tokens=8", "train.eval_every=0", "train.checkpoint_every=0", f"run.output_dir={out / size}",
    ]
    cfg = resolve_config(overrides=overrides)
    tok = char_tokenizer()
    model = tiny_causal_lm(tok, TinyModelConfig(**SIZES[size]))
    task = make_task(cfg.task.name, **cfg.task.params)
    return Trainer(cfg, model, tok, task), num_parameters(model)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rollwise bench throughput")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/bench-throughput")
    args = ap.parse_args(argv)

    from rollwise.rlvr.commands import _quiet_transformers
    from rollwise.runlog import set_threads

    _quiet_transformers()
    set_threads(args.threads)
    trainers = {s: build(s, args.steps, Path(args.out)) for s in SIZES}
    records: dict[str, list[dict]] = {s: [] for s in SIZES}
    for step in range(1, args.steps + 1):  # alternate the two models step by step
        for s, (tr, _) in trainers.items():
            records[s].append(tr.train_step(step))
    rows, payload = [], {}
    for s, recs in records.items():
        recs = recs[1:] or recs  # drop the first (warm-up) step
        med = {k: statistics.median(r[k] for r in recs) for k in recs[0] if k.startswith("time/")}
        tps = statistics.median(r["tokens_per_s"] for r in recs)
        payload[s] = {"params": trainers[s][1], "tokens_per_s": tps, **med, "steps_measured": len(recs)}
        rows.append({"model": s, "params": trainers[s][1], "rollout tokens/s": tps,
                     **{k[5:] + " (s)": v for k, v in med.items()}})
    from rollwise.report import markdown_table

    md = ["# Throughput: rollout tokens/s and step time per phase", "",
          f"Command: `rollwise bench throughput --steps {args.steps} --threads {args.threads}`", "",
          "Median over steps 2..N (step 1 is warm-up); 64 prompts x 4 rollouts of add3 per step, up to 8 new tokens,",
          "random-init models (so responses run to the length limit), GRPO, one PPO epoch.", "",
          markdown_table(rows), ""]
    if "default" in payload and "10x" in payload:
        ratio = payload["10x"]["time/step"] / payload["default"]["time/step"]
        md.append(f"Step time ratio 10x / default: {ratio:.2f} (parameters ratio "
                  f"{payload['10x']['params'] / payload['default']['params']:.1f}).")
        payload["step_time_ratio"] = ratio
    publish("throughput", payload, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
