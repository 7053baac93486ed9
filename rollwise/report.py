"""Plots and Markdown reports for runs, benchmarks and paper reproductions.

Shared by every subpackage: labs build a :class:`ReproReport` and call :meth:`ReproReport.write`;
RLVR runs are rendered by :func:`write_run_report` (see ``rollwise report RUN_DIR``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@dataclass
class Comparison:
    """One row of a paper-vs-ours table.

    ``passed`` is ``None`` when the row is informational (no acceptance target).
    """

    name: str
    ours: Any
    paper: Any = None
    target: str = ""
    passed: bool | None = None
    note: str = ""


@dataclass
class ReproReport:
    """The result of ``rollwise repro <name>``: a comparison table, extra tables, figures, notes."""

    name: str
    title: str
    command: str
    rows: list[Comparison] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None

    def add(self, name: str, ours: Any, paper: Any = None, target: str = "", passed: bool | None = None,
            note: str = "") -> Comparison:
        row = Comparison(name, ours, paper, target, passed, note)
        self.rows.append(row)
        return row

    @property
    def all_passed(self) -> bool:
        return all(r.passed is not False for r in self.rows)

    def to_markdown(self) -> str:
        lines = [f"# {self.title}", "", f"Reproduce: `{self.command}`", ""]
        if self.seconds is not None:
            lines += [f"Wall-clock: {self.seconds:.1f} s", ""]
        lines += [markdown_table([
            {"metric": r.name, "ours": fmt(r.ours), "paper": fmt(r.paper), "target": r.target,
             "met": {True: "yes", False: "**no**", None: ""}[r.passed], "note": r.note}
            for r in self.rows
        ]), ""]
        for title, table in self.tables.items():
            lines += [f"## {title}", "", markdown_table(table), ""]
        for fig in self.figures:
            lines += [f"![{Path(fig).stem}]({Path(fig).name})", ""]
        if self.notes:
            lines += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        return "\n".join(lines)

    def write(self, out_dir: str | Path) -> Path:
        """Write ``report.md`` and ``result.json`` into ``out_dir``; returns the Markdown path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        md = out / "report.md"
        md.write_text(self.to_markdown())
        payload = asdict(self)
        (out / "result.json").write_text(json.dumps(to_jsonable(payload), indent=2))
        return md

    def print(self) -> None:
        """Render the comparison table to the terminal with rich."""
        from rich.console import Console
        from rich.table import Table

        t = Table(title=self.title)
        for col in ("metric", "ours", "paper", "target", "met"):
            t.add_column(col)
        for r in self.rows:
            met = {True: "[green]yes", False: "[red]no", None: ""}[r.passed]
            t.add_row(r.name, fmt(r.ours), fmt(r.paper), r.target, met)
        Console().print(t)


def to_jsonable(x: Any) -> Any:
    """``x`` with every value JSON can hold: tensors and numpy values as numbers or lists, non-finite floats
    as strings, mappings with string keys."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item):
        try:
            return to_jsonable(x.item())
        except (ValueError, RuntimeError):
            return to_jsonable(x.tolist())
    return x


def from_jsonable(x: Any) -> Any:
    """The inverse of ``to_jsonable`` for non-finite floats: ``"nan"``, ``"inf"`` and ``"-inf"`` read back as floats."""
    if isinstance(x, str) and x in ("nan", "inf", "-inf"):
        return float(x)
    if isinstance(x, dict):
        return {k: from_jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [from_jsonable(v) for v in x]
    return x


def fmt(x: Any, digits: int = 3) -> str:
    """Format a number (or anything) for a table cell."""
    if x is None:
        return ""
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if x != 0 and (abs(x) < 10 ** (-digits) or abs(x) >= 1e6):
            return f"{x:.{digits}e}"
        return f"{x:.{digits}f}"
    return str(x)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A GitHub Markdown table from a list of dicts (columns: union of keys, first-seen order)."""
    if not rows:
        return "_(empty)_"
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    head = "| " + " | ".join(cols) + " |"
    sep = "| " + " | ".join("---" for _ in cols) + " |"
    body = ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out, save as PNG (creating the folder) and close a matplotlib figure; returns the path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def line_plot(
    path: str | Path,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str = "",
    bands: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]] | None = None,
    logx: bool = False,
    logy: bool = False,
    colors: Mapping[str, str] | None = None,
) -> Path:
    """Save a PNG line plot. ``series[name] = (x, y)``; ``bands[name] = (x, lo, hi)`` shades a range;
    ``colors[name]`` fixes a series' (and its band's) colour so a method keeps it across plots."""
    colors = colors or {}
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for name, (x, y) in series.items():
        ax.plot(list(x), list(y), label=name, linewidth=1.6, color=colors.get(name))
    for name, (x, lo, hi) in (bands or {}).items():
        ax.fill_between(list(x), list(lo), list(hi), alpha=0.2, label=None, color=colors.get(name))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def bar_plot(path: str | Path, values: Mapping[str, float], ylabel: str, title: str = "",
             errors: Mapping[str, float] | None = None) -> Path:
    """Save a PNG bar chart of named values (optional symmetric error bars)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    names = list(values)
    ax.bar(names, [values[n] for n in names],
           yerr=[(errors or {}).get(n, 0.0) for n in names] if errors else None, capsize=3)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)


def _series(records: list[dict[str, Any]], key: str, x: str = "step") -> tuple[list[float], list[float]]:
    pts = [(r[x], r[key]) for r in records if isinstance(r.get(key), (int, float)) and x in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def write_run_report(run_dir: str | Path) -> Path:
    """Render ``<run_dir>/metrics.jsonl`` as ``report.md`` with PNG plots; returns the report path.

    Plots: reward and accuracy against step and wall-clock, evaluation accuracy, KL and entropy, and
    time per phase.
    """
    from rollwise.runlog import read_jsonl

    run = Path(run_dir)
    records = read_jsonl(run / "metrics.jsonl")
    if not records:
        from rollwise.errors import DataError

        raise DataError(f"{run / 'metrics.jsonl'} has no records")
    figs = run / "plots"
    eval_key = next((k for k in ("eval/exact_accuracy", "eval/accuracy") if any(k in r for r in records)), None)
    made: list[Path] = []
    for x, xlabel in (("step", "step"), ("wall", "wall-clock (s)")):
        series = {"train reward": _series(records, "reward", x), "train accuracy": _series(records, "accuracy", x)}
        if eval_key:
            series[eval_key] = _series(records, eval_key, x)
        made.append(line_plot(figs / f"reward_vs_{x}.png", series, xlabel, "reward / accuracy",
                              title=f"reward and accuracy against {xlabel}"))
    other = {k: _series(records, k) for k in ("kl_ref", "approx_kl", "entropy", "mismatch/k3_kl")
             if any(k in r for r in records)}
    if other:
        made.append(line_plot(figs / "kl_entropy.png", other, "step", "value", title="KL and entropy"))
    phases = sorted({k for r in records for k in r if k.startswith("time/") and k != "time/step"})
    if phases:
        made.append(line_plot(figs / "phase_times.png", {p[5:]: _series(records, p) for p in phases}, "step",
                              "seconds", title="time per phase"))
    steps = [r for r in records if r.get("step", 0) > 0]
    first_eval = next((r[eval_key] for r in records if eval_key and eval_key in r), None)
    last_eval = next((r[eval_key] for r in reversed(records) if eval_key and eval_key in r), None)
    summary = {
        "steps": steps[-1]["step"] if steps else 0,
        "wall-clock (s)": steps[-1].get("wall") if steps else None,
        "rollouts generated": steps[-1].get("rollouts_total") if steps else None,
        f"{eval_key} at start": first_eval, f"{eval_key} at end": last_eval,
        "final train reward": steps[-1].get("reward") if steps else None,
        "reward failures (total)": sum(r.get("reward/failures", 0) for r in steps),
        "mean truncated fraction": (sum(r.get("truncated_frac", 0) for r in steps) / len(steps)) if steps else None,
    }
    phase_tot = {p[5:]: sum(r.get(p, 0.0) for r in steps) for p in phases}
    lines = [f"# Run report: {run}", "", markdown_table([{"quantity": k, "value": v} for k, v in summary.items()]),
             "", "## Time per phase (s, total)", "", markdown_table([phase_tot]), ""]
    lines += [f"![{p.stem}](plots/{p.name})" for p in made]
    if (run / "config.toml").exists():
        lines += ["", "## Config", "", "```toml", (run / "config.toml").read_text().rstrip(), "```"]
    md = run / "report.md"
    md.write_text("\n".join(lines) + "\n")
    return md
