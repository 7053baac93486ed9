"""Plots specific to the dynamics lab: attractor projections and a per-window scatter.

Generic line and bar plots come from :mod:`rollwise.report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from rollwise.report import plt, save_figure  # Agg backend already selected there


def attractor_plot(path: str | Path, data: np.ndarray, runs: Mapping[str, np.ndarray | None],
                   dims: tuple[int, int] = (0, 2)) -> Path:
    """x-z projections: the data next to each model's free run (T, N); a diverged run is shown as such."""
    panels = {"data (test)": data, **runs}
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), dpi=110, sharex=True, sharey=True)
    for ax, (name, x) in zip(np.atleast_1d(axes), panels.items()):
        ok = x is not None and np.all(np.isfinite(x))
        if x is not None:
            good = x[np.all(np.isfinite(x), axis=1)]
            ax.plot(good[:, dims[0]], good[:, dims[1]], linewidth=0.3)
        ax.set_title(name + ("" if ok else " (diverged)"), fontsize=9)
        ax.set_xlabel(f"x{dims[0] + 1}")
    np.atleast_1d(axes)[0].set_ylabel(f"x{dims[1] + 1}")
    lim = 1.3 * np.abs(data).max()
    np.atleast_1d(axes)[0].set_xlim(-lim, lim)
    np.atleast_1d(axes)[0].set_ylim(-lim, lim)
    return save_figure(fig, path)


def scatter_plot(path: str | Path, x: Sequence[float], y: Sequence[float], xlabel: str, ylabel: str,
                 title: str = "", hline: float | None = None) -> Path:
    """A plain scatter plot saved as PNG (optional horizontal reference line)."""
    fig, ax = plt.subplots(figsize=(5.0, 3.8), dpi=110)
    ax.scatter(list(x), list(y), s=12)
    if hline is not None:
        ax.axhline(hline, color="grey", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
