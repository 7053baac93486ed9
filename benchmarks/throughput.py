"""Rollout throughput and training-step time per phase: the lean path against transformers', two model sizes.

    rollwise bench throughput [--steps 6] [--threads 2]

Paths: ``lean`` = ``rollout.engine=lean``, ``model.forward=compact``, ``train.reuse_logprobs=true`` (rollwise's
default); ``hf`` = ``rollout.engine=hf``, ``model.forward=hf``, ``train.reuse_logprobs=false`` (transformers'
``generate`` and forward, a separate old-log-prob pass: rollwise before the lean path). Models: the default size
and one about 10x larger. All four trainers run in the same process, alternating step by step on the same
prompts. Writes benchmarks/results/throughput.{json,md}.
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


PATHS = {
    "lean": ["rollout.engine=lean", "model.forward=compact", "train.reuse_logprobs=true"],
    "hf": ["rollout.engine=hf", "model.forward=hf", "train.reuse_logprobs=false"],
}


def build(size: str, path: str, steps: int, out: Path):
    from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, num_parameters, tiny_causal_lm
    from rollwise.rlvr.run_config import resolve_config
    from rollwise.rlvr.tasks import make_task
    from rollwise.rlvr.trainer import Trainer

    overrides = [f"model.tiny.{k}={v}" for k, v in SIZES[size].items()] + [
        f"train.steps={steps}", "train.prompts_per_step=64", "rollout.n=4", "algorithm.estimator=grpo",
        "rollout.max_new_tokens=8", "train.eval_every=0", "train.checkpoint_every=0",
        f"run.output_dir={out / size / path}", *PATHS[path],
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

    from rollwise.rlvr.policy import quiet_transformers
    from rollwise.runlog import set_threads

    quiet_transformers()
    set_threads(args.threads)
    cells = [(size, path) for size in SIZES for path in PATHS]
    trainers = {c: build(*c, args.steps, Path(args.out)) for c in cells}
    records: dict[tuple[str, str], list[dict]] = {c: [] for c in cells}
    for step in range(1, args.steps + 1):  # alternate the four trainers step by step
        for c, (tr, _) in trainers.items():
            records[c].append(tr.train_step(step))
    rows, payload = [], {}
    for (size, path), recs in records.items():
        recs = recs[1:] or recs  # drop the first (warm-up) step
        med = {k: statistics.median(r[k] for r in recs) for k in recs[0] if k.startswith("time/")}
        tps = statistics.median(r["tokens_per_s"] for r in recs)
        payload[f"{size}/{path}"] = {"params": trainers[size, path][1], "tokens_per_s": tps, **med,
                                     "steps_measured": len(recs)}
        rows.append({"model": size, "path": path, "params": trainers[size, path][1], "rollout tokens/s": round(tps),
                     **{k[5:] + " (ms)": round(1000 * v, 1) for k, v in med.items()}})
    from rollwise.report import markdown_table

    md = ["# Throughput: rollout tokens/s and step time per phase, lean path vs transformers'", "",
          f"Command: `rollwise bench throughput --steps {args.steps} --threads {args.threads}`", "",
          "Median over steps 2..N (step 1 is warm-up); 64 prompts x 4 rollouts of add3 per step, up to 8 new tokens,",
          "random-init models (so responses run to the length limit), GRPO, one PPO epoch. lean = lean sampler +",
          "compact forward + reused old log-probs; hf = transformers generate + forward + separate old-log-prob pass.",
          "", markdown_table(rows), ""]
    for size in SIZES:
        lean, hf = payload[f"{size}/lean"], payload[f"{size}/hf"]
        tok_ratio = lean["tokens_per_s"] / hf["tokens_per_s"]
        step_ratio = hf["time/step"] / lean["time/step"]
        payload[f"{size}/tokens_per_s_ratio"] = tok_ratio
        payload[f"{size}/step_speedup"] = step_ratio
        md.append(f"- {size}: rollout tokens/s lean / hf = **{tok_ratio:.2f}x**; step time hf / lean = "
                  f"**{step_ratio:.2f}x**.")
    md.append("")
    publish("throughput", payload, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
