"""Record, or check against a recorded reference, every metric of a set of short CPU training runs.

Used to show that a refactor of the RLVR step changes no number: run it once on the code before the change
(``--record``), then after it (``--check``). Every run goes through the CLI (``rollwise train``, under
``torchrun`` with two gloo ranks for the data-parallel ones) with transformers' path pinned (``hf`` engine and forward, a separate old-log-prob pass); each
record keeps every logged metric except the timing ones, and a hash of the final checkpoint's tensors
(both models' for CoDistill). Equality is exact (floats compared bit for bit); metrics that did not exist when
the reference was recorded are listed, not compared.

    python scripts/check_bitwise.py --record scripts/bitwise_reference.json
    python scripts/check_bitwise.py --check scripts/bitwise_reference.json [--only default,ddp]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOLATILE = ("time/", "wall", "tokens_per_s")
PIN = ["rollout.engine=hf", "model.forward=hf", "codistill.large.forward=hf", "train.reuse_logprobs=false", "run.threads=1", "run.report=false"]
#: the small model and task of tests/rlvr (rlvr_small_config.SMALL), with a short warm start
SMALL = ["model.tiny.hidden_size=64", "model.tiny.num_layers=2", "model.tiny.num_heads=4",
         "model.tiny.intermediate_size=128", "task.params.max_operand=49", "task.params.n_train=1024",
         "task.params.n_test=128", "sft.steps=120", "sft.batch_size=64", "sft.lr=3e-3", "sft.examples=4000",
         "rollout.max_new_tokens=5", "train.prompts_per_step=16", "train.eval_prompts=64"]
#: name -> (ranks, preset or None, overrides, resume: run to half the steps, then --resume to the end)
RUNS: dict[str, tuple[int, str | None, list[str], bool]] = {
    # the built-in default job, shortened
    "default": (1, None, ["train.steps=6", "sft.steps=60", "train.eval_every=3", "train.checkpoint_every=3",
                          "train.eval_prompts=128"], False),
    "default-resumed": (1, None, ["train.steps=6", "sft.steps=60", "train.eval_every=3",
                                  "train.checkpoint_every=3", "train.eval_prompts=128"], True),
    # every update path: epochs, mini- and micro-batches, a KL term (reference model), a correction, schedule
    "ppo-kl-tis": (1, None, [*SMALL, "train.steps=4", "algorithm.estimator=reinforce_pp", "rollout.n=2",
                             "train.ppo_epochs=2", "train.mini_batches=2", "train.micro_batch_size=6",
                             "algorithm.loss.kl_coef=0.05", "algorithm.correction=tis",
                             "train.lr_schedule=cosine", "train.warmup_steps=2", "train.eval_every=2"], False),
    "basis": (1, "basis", [*SMALL, "train.steps=3", "algorithm.estimator_params.offline_rollouts=2",
                           "algorithm.estimator_params.folds=4"], False),
    "codistill": (1, "codistill", [*SMALL, "train.steps=4", "train.prompts_per_step=8", "codistill.m=4",
                                   "codistill.g=2", "codistill.large_sft_steps=60", "train.eval_every=2",
                                   "train.checkpoint_every=2"], False),
    "codistill-hints-ppoclip": (1, "codistill", [*SMALL, "train.steps=3", "train.prompts_per_step=8",
                                                 "codistill.m=4", "codistill.g=2", "codistill.large_sft_steps=60",
                                                 "codistill.hint_tokens=2", "codistill.large_is_mode=ppo_clip",
                                                 "codistill.alpha=0"], True),
    "ddp": (2, None, [*SMALL, "train.steps=3", "algorithm.estimator=grpo", "rollout.n=4", "train.mini_batches=2",
                      "train.micro_batch_size=4", "algorithm.loss.kl_coef=0.05", "train.checkpoint_every=2"],
            True),
    "fsdp2": (2, None, [*SMALL, "train.steps=3", "algorithm.estimator=grpo", "rollout.n=4",
                        "train.mini_batches=2", "train.micro_batch_size=4", "algorithm.loss.kl_coef=0.05",
                        "train.parallel=fsdp2", "train.checkpoint_every=2"], True),
    "codistill-ddp": (2, "codistill", [*SMALL, "train.steps=3", "train.prompts_per_step=8", "codistill.m=4",
                                       "codistill.g=2", "codistill.large_sft_steps=60"], False),
}


def _command(ranks: int, preset: str | None, overrides: list[str], out: Path, resume: bool) -> list[str]:
    if ranks == 1:
        cmd = [sys.executable, "-m", "rollwise.cli", "train"]
    else:
        torchrun = Path(sys.executable).with_name("torchrun")
        cmd = [str(torchrun), "--standalone", f"--nproc_per_node={ranks}", "-m", "rollwise.cli", "train"]
    if preset:
        cmd += ["--algorithm", preset]
    for o in [*PIN, *overrides, f"run.output_dir={out}"]:
        cmd += ["--set", o]
    return cmd + (["--resume"] if resume else [])


def _tensor_hash(run_dir: Path) -> str:
    """sha256 over the final checkpoint's tensors (and the large model's, under CoDistill), in name order."""
    import torch
    from safetensors.torch import load_file

    ckpt = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    tensors = dict(load_file(ckpt / "model.safetensors"))
    state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
    tensors.update({f"large.{k}": v for k, v in state.get("large", {}).get("weights", {}).items()})
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def run_one(name: str, tmp: Path) -> dict:
    ranks, preset, overrides, resume = RUNS[name]
    out = tmp / name
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ROLLWISE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    steps = next(int(o.split("=")[1]) for o in overrides if o.startswith("train.steps="))
    legs = [(overrides + [f"train.steps={steps // 2}"], False), (overrides, True)] if resume else [(overrides, False)]
    for leg, res in legs:
        proc = subprocess.run(_command(ranks, preset, leg, out, res), cwd=ROOT, env=env, capture_output=True,
                              text=True)
        if proc.returncode:
            raise RuntimeError(f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    records = [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in records]
    return {"metrics": records, "tensors": _tensor_hash(out)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", help="write the results of every run to this JSON file")
    mode.add_argument("--check", help="compare every run with this JSON file")
    ap.add_argument("--only", default="", help="comma-separated run names (default: all)")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(RUNS)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            results[name] = run_one(name, Path(tmp))
            print(f"{name}: {len(results[name]['metrics'])} records, tensors {results[name]['tensors'][:12]}",
                  flush=True)
    if args.record:
        Path(args.record).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        return 0
    reference = json.loads(Path(args.check).read_text())
    bad = 0
    for name, got in results.items():
        want, problems, added = reference[name], [], set()
        if got["tensors"] != want["tensors"]:
            problems.append("final tensors differ")
        if len(got["metrics"]) != len(want["metrics"]):
            problems.append(f"{len(got['metrics'])} records != {len(want['metrics'])}")
        for a, b in zip(got["metrics"], want["metrics"]):
            added |= set(a) - set(b)
            problems += [f"step {b.get('step')} {k}: {a.get(k, '<missing>')!r} != {b[k]!r}"
                         for k in sorted(b) if k not in a or json.dumps(a[k]) != json.dumps(b[k])]
        bad += bool(problems)
        status = "DIFFERS" if problems else "identical"
        print(f"{name}: {status} ({len(want['metrics'])} records: every recorded metric and the final tensors)"
              + (f"; new metrics: {', '.join(sorted(added))}" if added else ""))
        for p in problems[:40]:
            print(f"  {p}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
