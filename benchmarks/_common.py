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


def reused_results(paths: str | None, here: dict[str, Any], settings_of, seeds_of, wanted: list[int]
                   ) -> dict[int, tuple[str, dict[str, Any]]]:
    """The seeds of ``wanted`` that earlier runs of the same benchmark already ran, to be taken over instead of
    rerun (seeds run one per process or machine, or a run stopped after some seeds), each file checked first.

    ``paths``: comma-separated ``.json`` files written by the same benchmark; ``here``: this run's settings that
    must match (every setting but the seeds); ``settings_of(payload)``: the same dict read from a file;
    ``seeds_of(payload)``: the seeds a file holds (as its keys are written). Returns seed -> ``(path, payload)``.
    Raises ``SystemExit`` naming the file and every setting that differs."""
    from rollwise.report import from_jsonable

    found: dict[int, tuple[str, dict[str, Any]]] = {}
    here = json.loads(json.dumps(here))  # compare as JSON reads them back (tuples as lists, int keys as str)
    for p in (x.strip() for x in (paths or "").split(",") if x.strip()):
        try:
            payload = from_jsonable(json.loads(Path(p).read_text()))
            theirs = settings_of(payload)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"--reuse {p}: not a results file of this benchmark ({type(e).__name__}: {e})") from e
        diff = sorted(k for k in here.keys() | theirs.keys() if here.get(k) != theirs.get(k))
        if diff:
            raise SystemExit(f"--reuse {p}: its settings differ from this run's: " + "; ".join(
                f"{k} = {theirs.get(k)!r} there, {here.get(k)!r} here" for k in diff))
        found.update({int(k): (p, payload) for k in seeds_of(payload) if int(k) in wanted})
    return found


def provenances(reused: dict[int, tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Where each reused seed came from: the file (relative to the checkout), its command and its date."""
    return {str(s): {"file": relative_paths(str(Path(path).resolve())), "command": payload.get("command"),
                     "date": payload.get("machine", {}).get("date")} for s, (path, payload) in sorted(reused.items())}


def reuse_lines(prov: dict[str, dict[str, Any]], what: str = "") -> list[str]:
    """Markdown lines saying which seeds (``what``: which part of them) were taken over from which earlier run
    (``provenances``; none when nothing was)."""
    lines = [f"- Seed {s}{f' ({what})' if what else ''} taken over from `{p['file']}` ("
             + (f"`{p['command']}`" if p["command"] else "its command is not in the file")
             + f", {p['date']}); its times are that run's." for s, p in prov.items()]
    return ["", *lines] if lines else []
