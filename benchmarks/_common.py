"""Shared plumbing of the benchmark scripts: results folder, JSON + Markdown writing."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    import os

    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def write_results(name: str, payload: dict[str, Any], markdown: str, out_dir: Path | None = None) -> Path:
    """Write ``<name>.json`` and ``<name>.md`` into ``benchmarks/results`` (or ``out_dir``)."""
    from rollwise.report import to_jsonable

    out = out_dir or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(to_jsonable({**payload, "machine": machine()}), indent=2))
    md = out / f"{name}.md"
    md.write_text(markdown)
    return md


def publish(name: str, payload: dict[str, Any], markdown: str, out_dir: Path | None = None) -> Path:
    """``write_results``, then print the Markdown and where it was written; returns the ``.md`` path."""
    path = write_results(name, payload, markdown, out_dir=out_dir)
    print(markdown.rstrip("\n"))
    print(f"written: {path}")
    return path
