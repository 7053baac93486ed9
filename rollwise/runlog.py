"""Run logging shared by every part of rollwise: seeding, thread control, metrics JSONL, progress.

Every run writes ``metrics.jsonl`` (one JSON object per line, always on). Progress bars come from
``rich``; tensorboard is optional and only imported when asked for.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU) so that a run is reproducible on CPU."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count explicitly (default: ``ROLLWISE_THREADS`` or all cores).

    These machines are shared 2-core boxes; an explicit count keeps timings comparable.
    """
    import torch

    if n is None:
        n = int(os.environ.get("ROLLWISE_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them visible, not silently null
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return _jsonable(float(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class RunLog:
    """Appends one JSON object per call to ``<run_dir>/metrics.jsonl``.

    ``truncate_after`` lets a resumed run drop lines logged after its checkpoint step, so that the
    metrics file of a resumed run equals an uninterrupted one.
    """

    def __init__(self, run_dir: str | Path, filename: str = "metrics.jsonl", tensorboard: bool = False):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / filename
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional extra
            except ImportError as e:
                from rollwise.config import ConfigError

                raise ConfigError(f"run.tensorboard=true needs the tensorboard package ({e}); install it with "
                                  f"pip install 'rollwise[tensorboard]' or set run.tensorboard=false") from e
            self._tb = SummaryWriter(str(self.run_dir / "tb"))

    def truncate_after(self, step: int, key: str = "step") -> None:
        """Keep only records whose ``key`` is at most ``step`` (records without the key are kept)."""
        if not self.path.exists():
            return
        kept = [r for r in read_jsonl(self.path, torn_tail=True) if r.get(key, -math.inf) <= step]
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            for r in kept:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, self.path)

    def log(self, record: Mapping[str, Any]) -> None:
        rec = _jsonable(dict(record))
        with self.path.open("a") as f:
            f.write(json.dumps(rec, sort_keys=False) + "\n")
        if self._tb is not None and "step" in rec:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k != "step":
                    self._tb.add_scalar(k, v, rec["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_jsonl(path: str | Path, torn_tail: bool = False) -> list[dict[str, Any]]:
    """Read a JSONL file of objects; a malformed line raises ``DataError`` naming the file and line number.

    ``torn_tail=True`` drops a malformed *last* line instead: what a process killed while appending leaves.
    """
    from rollwise.errors import DataError

    out = []
    try:
        lines = Path(path).read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from e
    numbered = [(i, line.strip()) for i, line in enumerate(lines, start=1) if line.strip()]
    for j, (i, line) in enumerate(numbered):
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            if torn_tail and j == len(numbered) - 1:
                break
            msg = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            raise DataError(f"{path}:{i}: malformed JSON line ({msg})") from e
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{i}: expected a JSON object, got {type(rec).__name__}")
        out.append(rec)
    return out


class PhaseTimer:
    """Accumulates wall-clock seconds per named phase: ``with timer("generate"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def pop(self) -> dict[str, float]:
        out, self.seconds = self.seconds, {}
        return out


class _Bar:
    def __init__(self, prog: Any, task: Any) -> None:
        self._prog, self._task = prog, task

    def update(self, advance: int = 1, info: str = "") -> None:
        self._prog.update(self._task, advance=advance, info=info)


@contextmanager
def progress_bar(description: str, total: int, disable: bool | None = None) -> Iterator[_Bar]:
    """A ``rich`` progress bar with ETA and a free-text field for key metrics.

    ``bar.update(info="reward 0.41 acc 0.37")`` advances it. ``ROLLWISE_NO_PROGRESS=1`` disables it.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if disable is None:
        disable = os.environ.get("ROLLWISE_NO_PROGRESS") == "1"
    prog = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        disable=disable,
    )
    with prog:
        task = prog.add_task(description, total=total, info="")
        yield _Bar(prog, task)
