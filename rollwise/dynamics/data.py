"""Lorenz-63 data for the teacher-forcing vs marginal-likelihood lab.

Sampling step dt = 0.01, z-scoring and the 0.05 noise are measured on the lab's public data files; the
integrator (RK4 with sub-steps), the transient and the initial conditions are reconstructed. Arrays are cached on disk because
a pure-Python RK4 over 2 x 100k samples takes several seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class LorenzConfig:
    """Lorenz-63 series generation (defaults: as the lab's data files, see the module docstring)."""

    n_samples: int = 100_000  # samples per series (train and test each)
    dt: float = 0.01  # sampling step in time units (the lab's files)
    substeps: int = 10  # RK4 sub-steps per sample (reconstructed)
    transient: float = 20.0  # time units discarded before recording (reconstructed)
    sigma: float = 10.0  # Lorenz sigma
    rho: float = 28.0  # Lorenz rho
    beta: float = 8.0 / 3.0  # Lorenz beta
    obs_noise: float = 0.05  # std of additive Gaussian noise in z-scored units (the lab's files)
    seed: int = 1234  # RNG seed of the random initial conditions


@dataclass
class LorenzData:
    """Clean z-scored train/test series, shape (T, 3), and the train statistics used to z-score both."""

    train: np.ndarray
    test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    config: LorenzConfig


def integrate_lorenz(x0: tuple[float, float, float], n: int, cfg: LorenzConfig) -> np.ndarray:
    """RK4-integrate Lorenz-63 from ``x0``; returns (n, 3) samples every ``cfg.dt`` (after the transient).

    Plain Python floats: for a 3-dimensional sequential ODE this is several times faster than numpy.
    """
    s, r, b = cfg.sigma, cfg.rho, cfg.beta
    h = cfg.dt / cfg.substeps
    x, y, z = (float(v) for v in x0)
    n_skip = int(round(cfg.transient / cfg.dt))
    out = np.empty((n, 3))
    for k in range(n_skip + n):
        for _ in range(cfg.substeps):
            k1x, k1y, k1z = s * (y - x), x * (r - z) - y, x * y - b * z
            x2, y2, z2 = x + 0.5 * h * k1x, y + 0.5 * h * k1y, z + 0.5 * h * k1z
            k2x, k2y, k2z = s * (y2 - x2), x2 * (r - z2) - y2, x2 * y2 - b * z2
            x3, y3, z3 = x + 0.5 * h * k2x, y + 0.5 * h * k2y, z + 0.5 * h * k2z
            k3x, k3y, k3z = s * (y3 - x3), x3 * (r - z3) - y3, x3 * y3 - b * z3
            x4, y4, z4 = x + h * k3x, y + h * k3y, z + h * k3z
            k4x, k4y, k4z = s * (y4 - x4), x4 * (r - z4) - y4, x4 * y4 - b * z4
            x += h / 6.0 * (k1x + 2 * k2x + 2 * k3x + k4x)
            y += h / 6.0 * (k1y + 2 * k2y + 2 * k3y + k4y)
            z += h / 6.0 * (k1z + 2 * k2z + 2 * k3z + k4z)
        if k >= n_skip:
            out[k - n_skip] = (x, y, z)
    return out


def _cache_dir() -> Path:
    return Path(os.environ.get("ROLLWISE_CACHE", Path.home() / ".cache" / "rollwise")) / "dynamics"


def make_lorenz(cfg: LorenzConfig | None = None, cache: bool = True) -> LorenzData:
    """Train and test series from two random initial conditions, z-scored with the train statistics.

    Both series are returned clean; observation noise is added where the protocol asks for it
    (:func:`add_noise`). Cached under ``$ROLLWISE_CACHE/dynamics`` (default ``~/.cache/rollwise``).
    """
    cfg = cfg or LorenzConfig()
    key = f"lorenz63_n{cfg.n_samples}_dt{cfg.dt}_s{cfg.substeps}_tr{cfg.transient}_seed{cfg.seed}"
    key += f"_p{cfg.sigma}-{cfg.rho}-{cfg.beta:.6f}"
    path = _cache_dir() / f"{key}.npz"
    if cache and path.exists():
        raw = np.load(path)
        train_raw, test_raw = raw["train"], raw["test"]
    else:
        rng = np.random.default_rng(cfg.seed)
        ics = rng.normal(0.0, 1.0, size=(2, 3)) * np.array([8.0, 9.0, 8.0]) + np.array([0.0, 0.0, 24.0])
        train_raw = integrate_lorenz(tuple(ics[0]), cfg.n_samples, cfg)
        test_raw = integrate_lorenz(tuple(ics[1]), cfg.n_samples, cfg)
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, train=train_raw, test=test_raw)
            os.replace(tmp, path)
    mean, std = train_raw.mean(0), train_raw.std(0)
    return LorenzData((train_raw - mean) / std, (test_raw - mean) / std, mean, std, cfg)


def add_noise(x: np.ndarray, std: float, seed: int) -> np.ndarray:
    """``x`` plus i.i.d. N(0, std^2) noise from a fixed seed; shape preserved."""
    return x + np.random.default_rng(seed).normal(0.0, std, size=x.shape)
