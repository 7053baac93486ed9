"""The probabilistic switching AL-RNN and its windowed evidence. The paper (arXiv 2604.25904) names this model
but its equations were not available: everything here is reconstructed.

The ReLU on/off pattern s_t in {0,1}^P becomes a latent regime with a recurrent logistic prior,

    p(s_{t,i} = 1 | z_{t-1}) = sigmoid(kappa z_{t-1,M-P+i})                          (regime prior)
    z_t = (diag(A) + W D(s_t)) z_{t-1} + h,    x_t ~ N(z_{t,1:N}, sigma_x^2 I)       (dynamics, emission)

and a window of W steps opens with a forced state z_{t0} = [x_{t0}; L x_{t0}]. Given a path s the
state is deterministic, so the window evidence is an exact finite sum over the 2^{PW} paths, computed by
expanding the path tree breadth-first:

    l_c(theta; s) = sum_t [log p(s_t | z_{t-1}) + log N(x_t; z_{t,1:N}, sigma_x^2 I)]      (complete data)
    l_W(theta) = logsumexp_s l_c(theta; s),   w_s = exp(l_c - l_W),   H_W = -sum_s w_s log w_s (evidence)

The ITF path s_hat is the one the deterministic AL-RNN takes from the forced start (gates
1[z_PWL > 0]); ITF's loss is the emission part of its leaf. Leaf index: the first step's regime is
the most significant digit in base R = 2^P; regime r has bits s_i = (r >> i) & 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

from rollwise.dynamics.alrnn import ALRNNParams, alrnn_step, initial_state, pwl_mask, regime


@dataclass(frozen=True)
class SwitchingConfig:
    """Switching augmentation and windows (reconstructed; defaults chosen by our pilot implementation)."""

    kappa: float = 5.0  # inverse temperature of the logistic regime prior (kappa -> inf: deterministic)
    window: int = 4  # W: emitted steps per window (2^{P W} paths)
    noise: float = 0.05  # observation noise added to the data windows (z-scored units)
    sigma_bounds: tuple[float, float] = (1e-3, 2.0)  # search interval when fitting sigma_x


def regime_table(n_pwl: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """All 2^P regimes as bits: (R, P) with S[r, i] = (r >> i) & 1."""
    r = torch.arange(2**n_pwl)[:, None]
    return ((r >> torch.arange(n_pwl)[None]) & 1).to(dtype)


def leaf_logliks(z0: torch.Tensor, x: torch.Tensor, A: torch.Tensor, W: torch.Tensor, h: torch.Tensor,
                 kappa: float, log_sigma: torch.Tensor | float, n_pwl: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Path-tree expansion of the complete-data log-likelihood l_c.

    z0 (B, M) forced window starts, x (B, W, N) the window's observations. Returns the complete-data
    log-likelihood l_c and its emission part, both (B, R^W) over leaves.
    """
    B, n_steps, n_obs = x.shape
    S = regime_table(n_pwl, z0.dtype)
    masks = pwl_mask(z0.shape[-1], S)  # (R, M)
    log_sigma = torch.as_tensor(log_sigma, dtype=z0.dtype)
    const = -n_obs * (log_sigma + 0.5 * math.log(2 * math.pi))
    z = z0[:, None, :]
    ll_c = z0.new_zeros(B, 1)
    ll_e = z0.new_zeros(B, 1)
    for t in range(n_steps):
        pre = kappa * z[..., -n_pwl:, None].transpose(-1, -2)  # (B, K, 1, P)
        log_prior = (S * F.logsigmoid(pre) + (1 - S) * F.logsigmoid(-pre)).sum(-1)  # (B, K, R)  eq. 2.1a
        zs = z[..., None, :]
        z_next = A * zs + torch.matmul(zs * masks, W.T) + h  # (B, K, R, M)  eq. 2.1b
        resid = x[:, t, None, None, :] - z_next[..., :n_obs]
        emis = const - 0.5 * (resid**2).sum(-1) * torch.exp(-2 * log_sigma)  # (B, K, R)
        ll_c = (ll_c[..., None] + log_prior + emis).reshape(B, -1)
        ll_e = (ll_e[..., None] + emis).reshape(B, -1)
        z = z_next.reshape(B, -1, z0.shape[-1])
    return ll_c, ll_e


def itf_path(z0: torch.Tensor, A: torch.Tensor, W: torch.Tensor, h: torch.Tensor, n_pwl: int, window: int
             ) -> torch.Tensor:
    """Leaf index of the ITF path s_hat (deterministic gates from the forced start): z0 (B, M) -> (B,)."""
    weights = 2 ** torch.arange(n_pwl)
    idx = torch.zeros(z0.shape[0], dtype=torch.long)
    z = z0
    for _ in range(window):
        r = (regime(z, n_pwl).long() * weights).sum(-1)
        idx = idx * 2**n_pwl + r
        z = alrnn_step(z, A, W, h, n_pwl)
    return idx


@dataclass
class WindowPosterior:
    """Evidence l_W (B,), path posterior w (B, R^W), entropy H_W (B,), ITF and MAP leaves (B,)."""

    evidence: torch.Tensor
    posterior: torch.Tensor
    entropy: torch.Tensor
    itf_leaf: torch.Tensor
    map_leaf: torch.Tensor


def window_posterior(p: ALRNNParams, z0: torch.Tensor, x: torch.Tensor, kappa: float,
                     log_sigma: torch.Tensor | float) -> WindowPosterior:
    """The evidence l_W, path weights w_s and H_W for a batch of windows: z0 (B, M), x (B, W, N)."""
    ll_c, _ = leaf_logliks(z0, x, p.A, p.W, p.h, kappa, log_sigma, p.n_pwl)
    ev = torch.logsumexp(ll_c, dim=-1)
    logw = ll_c - ev[:, None]
    w = logw.exp()
    ent = -(w * torch.where(w > 0, logw, torch.zeros_like(logw))).sum(-1)
    return WindowPosterior(ev, w, ent, itf_path(z0, p.A, p.W, p.h, p.n_pwl, x.shape[1]), ll_c.argmax(-1))


def make_windows(series: torch.Tensor, starts: torch.Tensor, window: int, L: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows opening with a forced state: series (T, N), starts (B,) -> z0 (B, M), x (B, W, N)."""
    x = series[starts[:, None] + torch.arange(1, window + 1)]
    return initial_state(series[starts], L), x


def noisy_windows(series: np.ndarray, n: int, window: int, noise: float, seed: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` fixed random windows of ``series`` with fixed observation noise: -> (noisy series, starts)."""
    rng = np.random.default_rng(seed)
    noisy = torch.as_tensor(series + rng.normal(0.0, noise, size=series.shape), dtype=torch.float64)
    starts = torch.as_tensor(rng.integers(0, len(series) - window - 1, size=n))
    return noisy, starts


def mean_evidence(p: ALRNNParams, noisy: torch.Tensor, starts: torch.Tensor, window: int, kappa: float,
                  log_sigma: float | torch.Tensor) -> tuple[float, float]:
    """Mean evidence per step (nats, l_W / W averaged over windows) and mean path entropy."""
    with torch.no_grad():
        z0, x = make_windows(noisy, starts, window, p.L)
        post = window_posterior(p, z0, x, kappa, log_sigma)
    return float(post.evidence.mean()) / window, float(post.entropy.mean())


def fit_log_sigma(p: ALRNNParams, noisy: torch.Tensor, starts: torch.Tensor, cfg: SwitchingConfig) -> float:
    """Spec 2.5 step 2: log sigma_x maximising the mean window evidence with theta frozen."""
    lo, hi = (math.log(b) for b in cfg.sigma_bounds)
    res = minimize_scalar(lambda s: -mean_evidence(p, noisy, starts, cfg.window, cfg.kappa, s)[0],
                          bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    return float(res.x)
