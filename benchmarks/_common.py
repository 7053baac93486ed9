"""Shared plumbing of the benchmark scripts: results folder, JSON + Markdown writing."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
#: transformers' path (``hf`` engine and forward, a separate old-log-prob pass): the settings under which the
#: results committed before the fast path became the default were measured. The benchmarks whose committed
#: results came from it pin it, so that their commands still regenerate those numbers.
HF_PATH = ["rollout.engine=hf", "model.forward=hf", "codistill.large.forward=hf", "train.reuse_logprobs=false"]
#: the checkout: paths inside it are written relative to it, so no result names a machine's folders
ROOT = RESULTS.parent.parent


def nan_mean(xs: Iterable[float]) -> float:
    """Mean of the values that are not NaN; NaN when there are none."""
    kept = [x for x in xs if x == x]
    return statistics.fmean(kept) if kept else float("nan")


def bench_parser(prog: str, quick: str, seeds: str | None = "0,1,2", seeds_help: str = "comma-separated seeds",
                 description: str | None = None) -> argparse.ArgumentParser:
    """A benchmark's parser with the two options most benchmarks share: ``--quick`` (``quick`` says what the
    smoke run does) and ``--seeds`` (comma-separated; default ``seeds``)."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("--quick", action="store_true", help=quick)
    ap.add_argument("--seeds", default=seeds, help=seeds_help)
    return ap


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
    text = json.dumps(to_jsonable({**payload, "machine": machine()}), indent=2)
    (out / f"{name}.json").write_text(relative_paths(text))
    md = out / f"{name}.md"
    md.write_text(relative_paths(markdown))
    return md


def relative_paths(text: str) -> str:
    """``text`` with every path inside the checkout written relative to it."""
    return text.replace(f"{ROOT}/", "").replace(str(ROOT), ".")


def publish(name: str, payload: dict[str, Any], markdown: str, out_dir: Path | None = None) -> Path:
    """``write_results``, then print the Markdown and where it was written; returns the ``.md`` path."""
    path = write_results(name, payload, markdown, out_dir=out_dir)
    print(markdown.rstrip("\n"))
    print(f"written: {path}")
    return path


def pearson(x: list[float], y: list[float]) -> float:
    """Pearson correlation of two equal-length series; NaN with fewer than 3 points or a constant series."""
    import statistics

    if len(x) < 3:
        return float("nan")
    try:
        return statistics.correlation(x, y)
    except statistics.StatisticsError:  # a constant series
        return float("nan")
