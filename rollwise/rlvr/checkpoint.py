"""Atomic checkpoints: Hugging Face model folder + trainer state, written to a temporary folder and
renamed into place, so a crash mid-write never leaves a half checkpoint behind.

Layout: ``<run>/checkpoints/step-000050/{model.safetensors, config.json, tokenizer*, trainer_state.pt}``
and ``<run>/checkpoints/latest`` (a text file with the folder name, replaced atomically).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rollwise.rlvr.models import save_policy

STATE_FILE = "trainer_state.pt"


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module, tokenizer: Any,
                    state: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoint ``step`` atomically and prune all but the ``keep`` newest."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_policy(model, tokenizer, tmp)
    torch.save({**state, "step": step, "rng": rng_state()}, tmp / STATE_FILE)
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_atomic(root / "latest", final.name)
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest"
    if pointer.exists():
        cand = root / pointer.read_text().strip()
        if (cand / STATE_FILE).exists():
            return cand
    done = sorted(p for p in root.glob("step-*") if (p / STATE_FILE).exists())
    return done[-1] if done else None


def load_trainer_state(ckpt: Path) -> dict[str, Any]:
    return torch.load(ckpt / STATE_FILE, weights_only=False)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    for p in path.iterdir():
        with open(p, "rb") as f:
            os.fsync(f.fileno())
