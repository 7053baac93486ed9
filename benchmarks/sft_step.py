"""The warm-start (SFT) step of the default job: transformers' forward against the compact forward.

    rollwise bench sft-step [--steps 40] [--threads 0] [--quick]

One optimizer step = sample a batch of the default job's warm-start pool (128 sequences of ADD-3 with operands below
100), teacher-forced log-probs of the completion and EOS, token-mean NLL, backward, Adam. Both forwards train
their own copy of the same freshly initialised model on the same batches; steps alternate between them (order
swapped every step) after a few warm-up steps. Reported: median seconds per step of each, split into forward,
backward and optimizer, and their ratio. ``sft.forward=compact`` skips the last layer's attention, output
projection and MLP on prompt positions (they carry no loss); the two forwards compute the same log-probs up to
rounding (tests/rlvr).
Writes benchmarks/results/sft_step[_quick].{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, publish  # noqa: E402

WARMUP = 5


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rollwise bench sft-step")
    ap.add_argument("--steps", type=int, default=40, help="timed steps of each forward")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores, the default job's)")
    ap.add_argument("--quick", action="store_true", help="CI smoke: 3 timed steps")
    ap.add_argument("--results", default=str(RESULTS))
    return ap


def timed_step(model, opt, batch, compact: bool) -> tuple[float, float, float]:
    """One warm-start step; seconds of forward (incl. loss), backward and optimizer."""
    from rollwise.rlvr.sft import sft_loss

    t0 = time.perf_counter()
    loss = sft_loss(model, *batch, compact=compact)
    t1 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    t2 = time.perf_counter()
    opt.step()
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    steps = 3 if args.quick else args.steps
    import torch

    from rollwise.rlvr.commands import DEFAULT_JOB
    from rollwise.rlvr.models import char_tokenizer, tiny_causal_lm
    from rollwise.rlvr.run_config import resolve_config
    from rollwise.rlvr.sft import sft_tensors
    from rollwise.rlvr.tasks import make_task
    from rollwise.runlog import set_threads

    threads = set_threads(args.threads or None)
    cfg = resolve_config(base=DEFAULT_JOB)
    task = make_task(cfg.task.name, **cfg.task.params)
    examples = task.sft_examples(cfg.sft.examples, seed=cfg.train.seed)
    tok = char_tokenizer()
    tensors = sft_tensors(tok, [e.prompt for e in examples], [e.target for e in examples])
    arms: dict[str, dict[str, Any]] = {}
    for name in ("hf", "compact"):
        model = tiny_causal_lm(tok, cfg.model.tiny, seed=cfg.model.init_seed).train()
        arms[name] = {"model": model, "opt": torch.optim.Adam(model.parameters(), lr=cfg.sft.lr), "times": []}
    gen = torch.Generator().manual_seed(0)
    for i in range(WARMUP + steps):
        idx = torch.randint(0, tensors[0].shape[0], (cfg.sft.batch_size,), generator=gen)
        batch = tuple(t[idx] for t in tensors)
        for name in (("hf", "compact") if i % 2 == 0 else ("compact", "hf")):
            arm = arms[name]
            t = timed_step(arm["model"], arm["opt"], batch, compact=name == "compact")
            if i >= WARMUP:
                arm["times"].append(t)
    rows, med = [], {}
    for name, arm in arms.items():
        fwd, bwd, opt = (statistics.median(x) for x in zip(*arm["times"]))
        med[name] = statistics.median(sum(t) for t in arm["times"])
        rows.append({"sft.forward": name, "median step (ms)": f"{1000 * med[name]:.1f}", "forward (ms)": f"{1000 * fwd:.1f}",
                     "backward (ms)": f"{1000 * bwd:.1f}", "optimizer (ms)": f"{1000 * opt:.1f}"})
    from rollwise.report import markdown_table

    ratio = med["hf"] / med["compact"]
    cmd = "rollwise bench sft-step" + (" --quick" if args.quick else f" --steps {args.steps}") + \
        (f" --threads {args.threads}" if args.threads else "")
    md = ["# The default job's warm-start step: transformers' forward vs the compact forward", "",
          f"Command: `{cmd}`; {threads} torch thread(s); batch {cfg.sft.batch_size} of the default job's warm-start "
          f"pool; median of {steps} alternated steps after {WARMUP} warm-up steps.", "", markdown_table(rows), "",
          f"**Step time hf / compact: {ratio:.2f}x.**", ""]
    payload = {"command": cmd, "threads": threads, "steps": steps, "batch_size": cfg.sft.batch_size,
               "median_step_s": med, "ratio_hf_over_compact": ratio,
               "times": {n: a["times"] for n, a in arms.items()}}
    publish("sft_step" + ("_quick" if args.quick else ""), payload, "\n".join(md), out_dir=Path(args.results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
