"""A run folder belongs to one run.

``claim_run_dir`` runs before any work (before the SFT warm start). A fresh run refuses a folder that
already holds files, whoever wrote them, unless the user passes ``--overwrite``, which then removes only
the files rollwise itself writes (``ROLLWISE_FILES``) and leaves every other file untouched. The claim
writes ``run.json`` with a new run id; every checkpoint is stamped with it, and pruning only ever deletes
checkpoints carrying the current id. ``--resume`` needs a checkpoint and fails before any work without
one. Both remove the ``.tmp-*`` leftovers of a checkpoint write that was interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from rollwise.errors import RunDirError
from rollwise.rlvr.checkpoint import MARKER, latest_checkpoint, read_run_id

#: what rollwise writes into a run folder (files and folders); ``--overwrite`` removes only these
ROLLWISE_FILES = ("run.json", "run.json.tmp", "metrics.jsonl", "metrics.tmp", "config.toml", "report.md", "checkpoints",
                  "warm_start", "warm_start_large", "large", "sft", "tb")
#: the plots ``rollwise report`` writes into ``plots/`` (other files there are the user's)
ROLLWISE_PLOTS = ("reward_vs_step.png", "reward_vs_wall.png", "kl_entropy.png", "phase_times.png")


def clean_leftovers(run_dir: str | Path) -> list[Path]:
    """Remove the ``.tmp-*`` folders and ``*.tmp`` files an interrupted checkpoint write left behind."""
    root = Path(run_dir) / "checkpoints"
    removed = [p for p in root.glob(".tmp-*")] + [p for p in root.glob("*.tmp") if p.is_file()]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return removed


def _listing(run_dir: Path, limit: int = 4) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in run_dir.iterdir())
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def clear_rollwise_files(run_dir: Path) -> None:
    """Delete what rollwise wrote in ``run_dir`` (``ROLLWISE_FILES``, its plots); nothing else."""
    for name in ROLLWISE_FILES:
        p = run_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    plots = run_dir / "plots"
    for name in ROLLWISE_PLOTS:
        (plots / name).unlink(missing_ok=True)
    if plots.is_dir() and not any(plots.iterdir()):
        plots.rmdir()


def claim_run_dir(run_dir: str | Path, *, resume: bool = False, overwrite: bool = False) -> str:
    """Make ``run_dir`` this run's folder before any work; returns the run id.

    Fresh run: the folder must be missing or empty, or ``overwrite`` must be set (rollwise's own files
    are then removed, the user's kept). Resume: the folder must hold a checkpoint.

    Raises:
        RunDirError: the folder holds files (fresh run without ``overwrite``), is a file, or has no
            checkpoint to resume from.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run.output_dir={str(run_dir)!r} is a file, not a folder; choose another run.output_dir")
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other: resume keeps the run's files, overwrite "
                          "removes them")
    if resume:
        if not run_dir.is_dir():
            raise RunDirError(f"--resume: no run folder {str(run_dir)!r}; start a fresh run without --resume")
        clean_leftovers(run_dir)
        if latest_checkpoint(run_dir) is None:
            raise RunDirError(f"--resume: no complete checkpoint in {str(run_dir / 'checkpoints')!r}; start a "
                              f"fresh run (with --overwrite to replace this run's files)")
        run_id = read_run_id(run_dir)
        if run_id is None:  # a folder from before run ids: adopt it
            run_id = _write_marker(run_dir)
        return run_id
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunDirError(f"run folder {str(run_dir)!r} is not empty ({_listing(run_dir)}); pass --resume to "
                              f"continue its run, --overwrite to replace rollwise's files in it (other files are "
                              f"kept), or set run.output_dir to a new folder")
        clear_rollwise_files(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return _write_marker(run_dir)


def _write_marker(run_dir: Path) -> str:
    run_id = uuid.uuid4().hex
    tmp = run_dir / (MARKER + ".tmp")
    tmp.write_text(json.dumps({"run_id": run_id}) + "\n")
    os.replace(tmp, run_dir / MARKER)  # a kill mid-write never leaves a torn marker
    return run_id
