"""Dynamical quantities of interest: the definitions of the lab's reference code (DurstewitzLab/ALRNN-DSR),
our own code.

- D_stsp: KL divergence between state-space occupation densities (binning for N <= 10, Gaussian
  mixture for larger N).
- D_H: Hellinger distance between smoothed power spectra, averaged over dimensions.
- max Lyapunov exponent of an AL-RNN from its analytic Jacobian (Benettin/QR with one vector).
- PE_n: n-step free-run prediction error.

Failure conventions: a generated series with NaN/inf (diverged free run) gets D_stsp = +inf and D_H = 1.
Both measures depend on the series lengths; our protocol fixes D_stsp at 100k vs 100k and D_H at 10k.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.special import logsumexp


def stsp_binning(true: np.ndarray, gen: np.ndarray, n_bins: int = 30, alpha: float = 1e-5,
                 margin: float = 0.1) -> float:
    """D_stsp = KL(p_true || p_gen) over an N-D grid (the reference code's definition).

    true (T1, N), gen (T2, N). The grid spans [min - margin*std, max + margin*std] of ``true`` per
    dimension with ``n_bins`` bins; points outside are dropped; Laplace smoothing
    p_k = (c_k + alpha) / (sum c + alpha n_bins^N).
    """
    if not np.all(np.isfinite(gen)):
        return math.inf
    lo = true.min(0) - margin * true.std(0)
    hi = true.max(0) + margin * true.std(0)
    p = _binned_density(true, lo, hi, n_bins, alpha)
    q = _binned_density(gen, lo, hi, n_bins, alpha)
    return float(np.sum(p * (np.log(p) - np.log(q))))


def _binned_density(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_bins: int, alpha: float) -> np.ndarray:
    idx = np.floor((x - lo) / (hi - lo) * n_bins).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < n_bins), axis=1)
    flat = np.ravel_multi_index(tuple(idx[inside].T), (n_bins,) * x.shape[1])
    counts = np.bincount(flat, minlength=n_bins ** x.shape[1]).astype(np.float64)
    return (counts + alpha) / (counts.sum() + alpha * counts.size)


def stsp_gmm(true: np.ndarray, gen: np.ndarray, scaling: float = 0.3, n_samples: int = 1000,
             max_points: int = 10_000, seed: int = 0) -> float:
    """D_stsp for high-dimensional series (the reference code's definition): Monte-Carlo KL between isotropic Gaussian
    mixtures centred on the first ``max_points`` points of each series (component std ``scaling``),
    with ``n_samples`` samples drawn from the true mixture (Hershey-Olsen)."""
    if not np.all(np.isfinite(gen)):
        return math.inf
    ct, cg = true[:max_points], gen[:max_points]
    rng = np.random.default_rng(seed)
    y = ct[rng.integers(0, len(ct), n_samples)] + scaling * rng.standard_normal((n_samples, ct.shape[1]))
    return float(np.mean(_mixture_logpdf(y, ct, scaling) - _mixture_logpdf(y, cg, scaling)))


def _mixture_logpdf(y: np.ndarray, centres: np.ndarray, scale: float, chunk: int = 256) -> np.ndarray:
    d = y.shape[1]
    out = np.empty(len(y))
    for i in range(0, len(y), chunk):
        sq = ((y[i:i + chunk, None, :] - centres[None]) ** 2).sum(-1)
        out[i:i + chunk] = logsumexp(-0.5 * sq / scale**2, axis=1)
    return out - math.log(len(centres)) - 0.5 * d * math.log(2 * math.pi * scale**2)


def state_space_divergence(true: np.ndarray, gen: np.ndarray, n_bins: int = 30) -> float:
    """D_stsp with the method the reference uses for this dimension: binning if N <= 10, else GMM."""
    return stsp_binning(true, gen, n_bins) if true.shape[1] <= 10 else stsp_gmm(true, gen)


def power_spectrum_distance(true: np.ndarray, gen: np.ndarray, smoothing: float = 20.0) -> float:
    """D_H (the reference code's definition): per dimension z-score, |rfft|^2, Gaussian smoothing (sigma = ``smoothing``
    frequency bins), normalise to sum 1, Hellinger sqrt(1 - sum sqrt(p q)); mean over dimensions.

    true, gen (T, N) with the same T. A non-finite ``gen`` gives 1 (the failure convention).
    """
    if true.shape != gen.shape:
        raise ValueError(f"D_H needs equal lengths (our protocol fixes 10k): got {true.shape} vs {gen.shape}")
    if not np.all(np.isfinite(gen)):
        return 1.0
    dists = []
    for k in range(true.shape[1]):
        p, q = _spectrum(true[:, k], smoothing), _spectrum(gen[:, k], smoothing)
        dists.append(math.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(p * q))))))
    return float(np.mean(dists))


def _spectrum(x: np.ndarray, smoothing: float) -> np.ndarray:
    sd = x.std()
    x = (x - x.mean()) / (sd if sd > 0 else 1.0)
    s = gaussian_filter1d(np.abs(np.fft.rfft(x)) ** 2, smoothing)
    return s / s.sum()


def max_lyapunov(p: dict[str, np.ndarray], x1: np.ndarray, n_pwl: int, n_steps: int = 20_000,
                 transient: int = 1000, seed: int = 0) -> float:
    """Largest Lyapunov exponent per step of an AL-RNN: mean log ||J_t v_t|| with
    J_t = diag(A) + W D(d_t) and v renormalised every step, after ``transient`` steps. NaN on divergence."""
    A, W, h, L = p["A"], p["W"], p["h"], p["L"]
    relu_from = A.shape[0] - n_pwl
    z = np.concatenate([x1, L @ x1])
    v = np.random.default_rng(seed).standard_normal(A.shape[0])
    v /= np.linalg.norm(v)
    total = 0.0
    for k in range(transient + n_steps):
        d = np.ones_like(z)
        d[relu_from:] = z[relu_from:] > 0
        v = A * v + W @ (d * v)
        z = A * z + W @ (z * d) + h
        if not np.abs(z).max() < 1e6:
            return math.nan
        norm = np.linalg.norm(v)
        if k >= transient:
            total += math.log(norm)
        v /= norm
    return total / n_steps


def prediction_error(p: dict[str, np.ndarray], x: np.ndarray, n_pwl: int, horizon: int = 20,
                     max_starts: int = 10_000) -> float:
    """PE_n (the reference code's definition): MSE of the ``horizon``-step free-run prediction from z = [x_t; L x_t], averaged
    over (up to ``max_starts``) starting points t of the series x (T, N)."""
    A, W, h, L = p["A"], p["W"], p["h"], p["L"]
    relu_from = A.shape[0] - n_pwl
    starts = x[: min(max_starts, len(x) - horizon)]
    z = np.concatenate([starts, starts @ L.T], axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(horizon):
            phi = z.copy()
            phi[:, relu_from:] = np.maximum(phi[:, relu_from:], 0.0)
            z = A * z + phi @ W.T + h
        err = np.mean((z[:, : x.shape[1]] - x[horizon: horizon + len(starts)]) ** 2)
    return float(err) if np.isfinite(err) else math.inf
