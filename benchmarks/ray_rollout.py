"""Rollout tokens/s of the HF engine in process vs the Ray engine with 2 workers, on the ~10x model.

    python benchmarks/ray_rollout.py [--reps 5] [--prompts 64] [--n 4]

Writes benchmarks/results/ray_rollout.{json,md}. Both engines sample the same chunks with the same seeds
(``batch_size = rollouts / workers``), so they generate the same tokens: the comparison is of equal work.
Arms (alternated, repetition by repetition): ``hf`` with 1 torch thread, ``hf`` with 2 threads, ``ray`` with
2 actors x 1 thread. Also timed: ``sync_weights`` (one ``ray.put`` + every actor loading it) and start-up.
The machine has 2 cores shared with other jobs: read the ratios measured in the same run, not the absolutes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import publish  # noqa: E402

#: the ~10x model of benchmarks/throughput.py
SIZE_10X = {"hidden_size": 256, "num_layers": 5, "num_heads": 4, "intermediate_size": 1024}


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks/ray_rollout.py")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)

    import ray
    import torch

    from rollwise.report import markdown_table
    from rollwise.rlvr.engines.base import SamplingConfig
    from rollwise.rlvr.engines.hf import HFEngine
    from rollwise.rlvr.engines.ray import RayEngine
    from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, num_parameters, tiny_causal_lm
    from rollwise.rlvr.policy import quiet_transformers
    from rollwise.rlvr.tasks import make_task

    quiet_transformers()
    tok = char_tokenizer()
    model = tiny_causal_lm(tok, TinyModelConfig(**SIZE_10X)).eval()
    prompts = [e.prompt for e in make_task("add3").examples("train")[: args.prompts]]
    sampling = SamplingConfig(n=args.n, max_new_tokens=args.max_new_tokens)
    chunk = -(-args.prompts * args.n // args.workers)
    ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    ray_engine, t_start = _timed(lambda: RayEngine(model, tok, num_workers=args.workers, batch_size=chunk))
    hf = HFEngine(model, tok, batch_size=chunk)

    def hf_threads(k):
        def run(seed):
            torch.set_num_threads(k)
            return hf.generate(prompts, sampling, seed)
        return run

    arms = {"hf (1 thread)": hf_threads(1), "hf (2 threads)": hf_threads(2),
            f"ray ({args.workers} workers x 1 thread)": lambda seed: ray_engine.generate(prompts, sampling, seed)}
    tps: dict[str, list[float]] = {a: [] for a in arms}
    same = True
    for rep in range(args.reps + 1):  # rep 0 is warm-up
        batches = {}
        for arm, run in arms.items():
            batch, dt = _timed(lambda run=run, seed=1000 + rep: run(seed))
            batches[arm] = batch
            if rep:
                tps[arm].append(float(batch.response_mask.sum()) / dt)
        ids = [b.response_ids for b in batches.values()]
        same &= all(torch.equal(ids[0], x) for x in ids[1:])
    torch.set_num_threads(1)
    sync_s = [_timed(lambda: ray_engine.sync_weights(model))[1] for _ in range(args.reps)]
    ray_engine.close()
    ray.shutdown()

    med = {a: statistics.median(v) for a, v in tps.items()}
    base = med["hf (1 thread)"]
    rows = [{"engine": a, "rollout tokens/s (median)": m, "min": min(tps[a]), "max": max(tps[a]),
             "ratio to hf (1 thread)": m / base} for a, m in med.items()]
    payload = {"params": num_parameters(model), "rollouts": args.prompts * args.n, "chunk": chunk,
               "tokens_per_s": med, "samples": tps, "same_tokens_all_arms": same,
               "sync_weights_s_median": statistics.median(sync_s), "ray_engine_start_s": t_start}
    cmd = (f"python benchmarks/ray_rollout.py --reps {args.reps} --prompts {args.prompts} --n {args.n} "
           f"--max-new-tokens {args.max_new_tokens} --workers {args.workers}")
    md = ["# Ray rollout engine: tokens/s vs the in-process HF engine", "", f"Command: `{cmd}`", "",
          f"Model: the ~10x tiny Qwen2 ({num_parameters(model)} parameters, random init, so responses run to the",
          f"length limit); {args.prompts} add3 prompts x {args.n} rollouts, up to {args.max_new_tokens} new tokens,",
          f"chunks of {chunk} rollouts. Median over {args.reps} repetitions after one warm-up, arms alternated.",
          "The machine has 2 cores shared with other jobs: compare the ratios, not the absolutes.", "",
          markdown_table(rows), "",
          f"All arms generated the same tokens: {same}. `sync_weights` (one put, {args.workers} actors load): "
          f"median {statistics.median(sync_s) * 1000:.1f} ms. Engine start-up (Ray actors up and loaded): "
          f"{t_start:.1f} s.", ""]
    publish("ray_rollout", payload, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
