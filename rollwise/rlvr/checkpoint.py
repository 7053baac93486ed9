"""Atomic checkpoints: Hugging Face model folder + trainer state, written to a temporary folder and
renamed into place, so a crash mid-write never leaves a half checkpoint behind.

Layout: ``<run>/checkpoints/step-000050/{model.safetensors, config.json, tokenizer*, trainer_state.pt,
run.json, manifest.json}`` and ``<run>/checkpoints/latest`` (a text file with the folder name, replaced
atomically). ``run.json`` stamps the checkpoint with its run's id; ``manifest.json`` holds every file's
size and SHA-256, so a damaged checkpoint is skipped (with a warning) in favour of the previous one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rollwise.errors import CheckpointError
from rollwise.rlvr.models import save_policy

STATE_FILE = "trainer_state.pt"
#: the run id a checkpoint belongs to, and its files' sizes and SHA-256 sums
RUN_FILE = "run.json"
MANIFEST = "manifest.json"


#: the marker of a run folder (``run_dir.py``): ``{"run_id": ...}``
MARKER = "run.json"


def read_run_id(run_dir: str | Path) -> str | None:
    """The id of the run that owns ``run_dir`` (None: no marker, e.g. a folder written by the Python API)."""
    try:
        return str(json.loads((Path(run_dir) / MARKER).read_text())["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module, tokenizer: Any,
                    state: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoint ``step`` atomically and prune this run's checkpoints to the ``keep`` newest.

    The checkpoint is stamped with the run id of ``run_dir`` (``run_dir.py``) and a manifest of its files'
    sizes and SHA-256 sums, so that pruning never touches another run's checkpoints and a corrupt one is
    recognised. A failed write (e.g. a full disk) removes its temporary folder and raises CheckpointError.
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}-{os.getpid()}"
    run_id = read_run_id(run_dir)
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        save_policy(model, tokenizer, tmp)
        torch.save({**state, "step": step, "rng": rng_state()}, tmp / STATE_FILE)
        (tmp / RUN_FILE).write_text(json.dumps({"run_id": run_id}))
        (tmp / MANIFEST).write_text(json.dumps(_manifest(tmp)))
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_atomic(root / "latest", final.name)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"could not write checkpoint {final}: {e.strerror or e}") from e
    _prune(root, final, run_id, keep)
    return final


def _step_of(path: Path) -> int:
    try:
        return int(path.name.removeprefix("step-"))
    except ValueError:
        return -1


def checkpoint_run_id(ckpt: Path) -> str | None:
    """The run id a checkpoint was stamped with (None: none, or written before run ids existed)."""
    try:
        return json.loads((ckpt / RUN_FILE).read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


def _prune(root: Path, current: Path, run_id: str | None, keep: int) -> None:
    """Delete this run's checkpoints older than ``current`` beyond the ``keep`` newest (by step number).

    Only checkpoints stamped with ``run_id`` and with a step below ``current``'s are candidates: another
    run's folders, and a newer-numbered folder left by an older run, are never deleted.
    """
    if keep <= 0:
        return
    ours = [p for p in root.glob("step-*") if p.is_dir() and p != current and _step_of(p) < _step_of(current)
            and checkpoint_run_id(p) == run_id]
    for old in sorted(ours, key=_step_of)[:max(len(ours) - (keep - 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)


def _manifest(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(folder.iterdir())
            if p.is_file() and p.name != MANIFEST}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why ``ckpt`` is not an intact checkpoint (missing state, a file whose size or SHA-256 differs from
    its manifest), or None when it is. Checkpoints without a manifest (older versions) are checked for
    their trainer state only."""
    if not (ckpt / STATE_FILE).is_file():
        return f"{STATE_FILE} is missing"
    try:
        manifest = json.loads((ckpt / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return f"{MANIFEST} is unreadable ({e})"
    for name, entry in manifest.items():
        p = ckpt / name
        if not p.is_file():
            return f"{name} is missing"
        if p.stat().st_size != entry["size"] or _sha256(p) != entry["sha256"]:
            return f"{name} is corrupt (size or checksum differs from the manifest)"
    return None


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest intact checkpoint of a run, or None.

    The ``latest`` pointer's checkpoint first, then the others from the newest step down; a checkpoint of
    another run (a different run id stamp) is skipped, and a corrupt one is skipped with a warning.
    """
    root = Path(run_dir) / "checkpoints"
    run_id = read_run_id(run_dir)
    cands = sorted((p for p in root.glob("step-*") if p.is_dir()), key=_step_of, reverse=True)
    pointer = root / "latest"
    try:
        named = root / pointer.read_text().strip()
    except (OSError, UnicodeDecodeError):
        named = None
    if named is not None and named in cands:
        cands.remove(named)
        cands.insert(0, named)
    for cand in cands:
        if run_id is not None and checkpoint_run_id(cand) not in (run_id, None):
            continue
        problem = checkpoint_problem(cand)
        if problem is None:
            return cand
        if (cand / STATE_FILE).exists() or (cand / MANIFEST).exists():  # complete once, damaged since
            warnings.warn(f"checkpoint {cand} is unusable ({problem}); falling back to an older one",
                          stacklevel=2)
    return None


def load_trainer_state(ckpt: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint; an unreadable one raises CheckpointError."""
    try:
        return torch.load(ckpt / STATE_FILE, weights_only=False)
    except FileNotFoundError as e:
        raise CheckpointError(f"{ckpt}: no {STATE_FILE}; not a rollwise checkpoint") from e
    except Exception as e:  # noqa: BLE001 - pickle/zip errors of a damaged file have many types
        raise CheckpointError(f"{ckpt / STATE_FILE} is corrupt ({type(e).__name__}: {e})") from e


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    for p in path.iterdir():
        with open(p, "rb") as f:
            os.fsync(f.fileno())
