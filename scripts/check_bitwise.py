"""Record, or check against a recorded reference, every metric of a set of short CPU training runs.

Used to show that a refactor of the RLVR step changes no number: run it once on the code before the change
(``--record``), then after it (``--check``). Every run goes through the CLI (``rollwise train``, under
``torchrun`` with two gloo ranks for the data-parallel ones) with transformers' path pinned (``hf`` engine and forward, a separate old-log-prob pass); each
record keeps every logged metric except the timing ones, and a hash of the final checkpoint's tensors
(both models' for CoDistill). Equality is exact (floats compared bit for bit); metrics that did not exist when
the reference was recorded are listed, not compared.

The quick paper reproductions (``rollwise repro NAME --quick`` at each experiment's own seeds, one torch
thread) are runs named ``repro-NAME``: each record keeps every number in the files the repro writes
(``result.json``, its other JSON and JSON Lines files, and a hash of the tensors in its ``.pt`` files) by its
position, and the text leaves apart. Recording runs each repro twice and stores the positions whose values
differ between the two (the timings) as ``volatile``: those are not compared. Text that differs (notes,
row names) is listed, not counted as a difference; plots and ``report.md`` are renderings of the same numbers
and are not read.

    python scripts/check_bitwise.py --record scripts/bitwise_reference.json
    python scripts/check_bitwise.py --check scripts/bitwise_reference.json [--only default,ddp]
    python scripts/check_bitwise.py --record scripts/bitwise_reference.json --only repros

``--record`` into an existing file replaces only the runs it ran; ``--check`` runs every run the reference
holds (``--only`` narrows either; ``training`` and ``repros`` name the two groups).
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
sys.path.insert(0, str(ROOT))
from rollwise.rlvr.commands import PREVIOUS_DEFAULT_JOB  # noqa: E402

VOLATILE = ("time/", "wall", "tokens_per_s")
PIN = ["rollout.engine=hf", "model.forward=hf", "sft.forward=hf", "codistill.large.forward=hf", "train.reuse_logprobs=false",
       "run.threads=1", "run.report=false"]
#: the small model and task of tests/rlvr (rlvr_small_config.SMALL), with a short warm start
SMALL = ["model.tiny.hidden_size=64", "model.tiny.num_layers=2", "model.tiny.num_heads=4",
         "model.tiny.intermediate_size=128", "task.params.max_operand=49", "task.params.n_train=1024",
         "task.params.n_test=128", "sft.steps=120", "sft.batch_size=64", "sft.lr=3e-3", "sft.examples=4000",
         "rollout.max_new_tokens=5", "train.prompts_per_step=16", "train.eval_prompts=64"]
#: name -> (ranks, preset or None, overrides, resume: run to half the steps, then --resume to the end)
RUNS: dict[str, tuple[int, str | None, list[str], bool]] = {
    # the default job as it was before 2026-12-08, shortened (pinned before the job's settings changed)
    "default": (1, None, [*PREVIOUS_DEFAULT_JOB, "train.steps=6", "sft.steps=60", "train.eval_every=3",
                          "train.checkpoint_every=3", "train.eval_prompts=128"], False),
    "default-resumed": (1, None, [*PREVIOUS_DEFAULT_JOB, "train.steps=6", "sft.steps=60", "train.eval_every=3",
                                  "train.checkpoint_every=3", "train.eval_prompts=128"], True),
    # the built-in default job as it is, shortened (its warm start stops at sft.steps=60, before any accuracy check)
    "default-now": (1, None, ["train.steps=6", "sft.steps=60", "train.eval_every=3", "train.checkpoint_every=3",
                              "train.eval_prompts=128"], True),
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


#: ``rollwise repro`` experiments, run with ``--quick`` as ``repro-NAME``
REPROS = ("explors", "nm-ppg", "replay-estimation", "tf-bayes", "uwm-jepa")
GROUPS = {"training": list(RUNS), "repros": [f"repro-{n}" for n in REPROS]}


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


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "ROLLWISE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def _leaves(x: object, path: str, out_dir: Path, numbers: dict, text: dict) -> None:
    """Every leaf of a JSON value by its position (``path[0].key``): strings into ``text`` (with the output
    folder written as ``<out>``), everything else, JSON-encoded, into ``numbers``."""
    if isinstance(x, dict):
        for k, v in x.items():
            _leaves(v, f"{path}.{k}", out_dir, numbers, text)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            _leaves(v, f"{path}[{i}]", out_dir, numbers, text)
    elif isinstance(x, str):
        text[path] = x.replace(str(out_dir), "<out>")
    else:
        numbers[path] = json.dumps(x)


def _tensors_digest(x: object, h: hashlib._Hash) -> None:
    """Feed every tensor and scalar of a loaded ``.pt`` object into ``h``, in key order."""
    import torch

    if isinstance(x, dict):
        for k in sorted(x, key=str):
            h.update(str(k).encode())
            _tensors_digest(x[k], h)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _tensors_digest(v, h)
    elif isinstance(x, torch.Tensor):
        h.update(f"{x.dtype}{tuple(x.shape)}".encode())
        h.update(x.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    else:
        h.update(repr(x).encode())


def run_repro(name: str, tmp: Path) -> dict:
    """``rollwise repro NAME --quick``: every number and text leaf of its JSON outputs, its tensors' hashes."""
    import torch

    out = tmp / f"repro-{name}"
    proc = subprocess.run([sys.executable, "-m", "rollwise.cli", "repro", name, "--quick", "--out", str(out)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"repro {name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    numbers: dict[str, str] = {}
    text: dict[str, str] = {}
    tensors: dict[str, str] = {}
    for f in sorted(out.iterdir()):
        if f.suffix == ".json":
            data = json.loads(f.read_text())
            if f.name == "result.json":
                data.pop("seconds", None)
            _leaves(data, f.name, out, numbers, text)
        elif f.suffix == ".jsonl":
            _leaves([json.loads(line) for line in f.read_text().splitlines()], f.name, out, numbers, text)
        elif f.suffix == ".pt":
            h = hashlib.sha256()
            _tensors_digest(torch.load(f, weights_only=False), h)
            tensors[f.name] = h.hexdigest()
    return {"numbers": numbers, "text": text, "tensors": tensors}


def record_repro(name: str, tmp: Path) -> dict:
    """:func:`run_repro` twice; positions whose values differ between the two (timings) become ``volatile``."""
    first, second = run_repro(name, tmp / "a"), run_repro(name, tmp / "b")
    volatile = sorted(k for kind in ("numbers", "text", "tensors") for k in first[kind]
                      if first[kind][k] != second[kind].get(k))
    for kind in ("numbers", "text", "tensors"):
        first[kind] = {k: v for k, v in first[kind].items() if k not in volatile}
    return {**first, "volatile": volatile}


def compare_repro(got: dict, want: dict) -> tuple[list[str], list[str], int]:
    """(differences, text differences, positions compared) of a repro against its reference record."""
    skip = set(want["volatile"])
    problems: list[str] = []
    for kind in ("numbers", "tensors"):
        problems += [f"{k}: {got[kind].get(k, '<missing>')} != {v}" for k, v in want[kind].items()
                     if got[kind].get(k) != v]
    problems += [f"{k}: new position" for kind in ("numbers", "tensors") for k in got[kind]
                 if k not in want[kind] and k not in skip]
    text = [f"{k}: {got['text'].get(k, '<missing>')!r} (was {v!r})" for k, v in want["text"].items()
            if got["text"].get(k) != v]
    return problems, text, len(want["numbers"]) + len(want["tensors"])


def run_one(name: str, tmp: Path) -> dict:
    ranks, preset, overrides, resume = RUNS[name]
    out = tmp / name
    env = _env()
    steps = [int(o.split("=")[1]) for o in overrides if o.startswith("train.steps=")][-1]  # the last one counts
    legs = [(overrides + [f"train.steps={steps // 2}"], False), (overrides, True)] if resume else [(overrides, False)]
    for leg, res in legs:
        proc = subprocess.run(_command(ranks, preset, leg, out, res), cwd=ROOT, env=env, capture_output=True,
                              text=True)
        if proc.returncode:
            raise RuntimeError(f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    records = [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in records]
    return {"metrics": records, "tensors": _tensor_hash(out)}


def _names(only: str, default: list[str]) -> list[str]:
    names = [m for n in only.split(",") if n for m in GROUPS.get(n, [n])] or default
    valid = [*RUNS, *GROUPS["repros"], *GROUPS]
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise SystemExit(f"--only: unknown run(s) {', '.join(unknown)}; valid choices: {', '.join(valid)}")
    return names


def _check_training(got: dict, want: dict) -> tuple[list[str], set[str]]:
    """(differences, metrics that did not exist when ``want`` was recorded) of one training run."""
    problems, added = [], set()
    if got["tensors"] != want["tensors"]:
        problems.append("final tensors differ")
    if len(got["metrics"]) != len(want["metrics"]):
        problems.append(f"{len(got['metrics'])} records != {len(want['metrics'])}")
    for a, b in zip(got["metrics"], want["metrics"]):
        added |= set(a) - set(b)
        problems += [f"step {b.get('step')} {k}: {a.get(k, '<missing>')!r} != {b[k]!r}"
                     for k in sorted(b) if k not in a or json.dumps(a[k]) != json.dumps(b[k])]
    return problems, added


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", help="write the results of the runs to this JSON file (other runs in it are kept)")
    mode.add_argument("--check", help="compare the runs with this JSON file")
    ap.add_argument("--only", default="", help="comma-separated run names or groups (training, repros); "
                    "default: every run (--record), every run in the reference (--check)")
    args = ap.parse_args()
    reference = json.loads(Path(args.record or args.check).read_text()) if Path(args.record or args.check).exists() \
        else {}
    names = _names(args.only, [*RUNS, *GROUPS["repros"]] if args.record else list(reference))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if name.startswith("repro-"):
                run = record_repro if args.record else run_repro
                results[name] = run(name.removeprefix("repro-"), Path(tmp))
                print(f"{name}: {len(results[name]['numbers'])} numbers, {len(results[name]['text'])} texts, "
                      f"{len(results[name]['tensors'])} tensor files", flush=True)
            else:
                results[name] = run_one(name, Path(tmp))
                print(f"{name}: {len(results[name]['metrics'])} records, tensors {results[name]['tensors'][:12]}",
                      flush=True)
    if args.record:
        reference.update(results)
        Path(args.record).write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")
        return 0
    bad = 0
    for name, got in results.items():
        want = reference[name]
        if name.startswith("repro-"):
            problems, text, n = compare_repro(got, want)
            what = (f"{n} numbers and tensor files; {len(want['volatile'])} timing positions not compared"
                    + (f"; {len(text)} texts changed" if text else ""))
            extra = [f"  text {t}" for t in text[:40]]
        else:
            problems, added = _check_training(got, want)
            what = (f"{len(want['metrics'])} records: every recorded metric and the final tensors"
                    + (f"; new metrics: {', '.join(sorted(added))}" if added else ""))
            extra = []
        bad += bool(problems)
        print(f"{name}: {'DIFFERS' if problems else 'identical'} ({what})")
        for line in [f"  {p}" for p in problems[:40]] + extra:
            print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
