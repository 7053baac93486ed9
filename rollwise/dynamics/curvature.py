"""Louis' identity (Louis 1982, JRSS-B 44:226-233) on a parameter block: complete, missing and observed
information. The paper (arXiv 2604.25904) compares these curvatures; how they are estimated and compared here
is reconstructed (its method section was not available).

Per window, with theta fixed and everything in float64:

    I_com = E_w[-d2 l_c(theta; s)]                                     (complete)
    I_mis = Cov_w[d l_c(theta; s)] = sum_s w_s g_s g_s^T - g_bar g_bar^T (missing)
    I_obs = I_com - I_mis = -d2 l_W(theta)                              (observed; Louis)
    I_ITF = -d2 log p(x | s_hat, theta)                                 (ITF)

The default block is theta_B = (W[:, M-P:], h): M(P+1) numbers, small enough for exact Hessians
(torch.func). Informations add over windows, so aggregates are sums of traces.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from torch.func import hessian, jacfwd, vmap

from rollwise.dynamics.alrnn import ALRNNParams
from rollwise.dynamics.switching import itf_path, leaf_logliks


def block_vector(p: ALRNNParams) -> torch.Tensor:
    """theta_B = (W[:, M-P:] row-major, h): (M P + M,) float64."""
    return torch.cat([p.W[:, -p.n_pwl:].reshape(-1), p.h]).double()


def block_leaves(p: ALRNNParams, kappa: float, log_sigma: float
                 ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(theta_B, z0 (M,), x (W, N)) -> (l_c, emission part), both (R^W,), all other parameters fixed."""
    M, P = p.n_latent, p.n_pwl
    W_lin, A = p.W[:, :-P].double(), p.A.double()

    def leaves(theta: torch.Tensor, z0: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        W = torch.cat([W_lin, theta[: M * P].reshape(M, P)], dim=1)
        ll_c, ll_e = leaf_logliks(z0[None], x[None], A, W, theta[M * P:], kappa, log_sigma, P)
        return ll_c[0], ll_e[0]

    return leaves


@dataclass
class WindowInformation:
    """The four informations on the block (d, d) and per-window summaries."""

    I_com: torch.Tensor
    I_mis: torch.Tensor
    I_obs: torch.Tensor
    I_itf: torch.Tensor
    entropy: float
    louis_residual: float  # ||I_obs - (I_com - I_mis)|| / ||I_obs||
    itf_is_map: bool

    def summary(self) -> dict[str, float]:
        ev = {k: torch.linalg.eigvalsh(getattr(self, k)) for k in ("I_com", "I_mis", "I_obs", "I_itf")}
        tr = {k: float(torch.trace(getattr(self, k))) for k in ev}
        return {"entropy": self.entropy, "louis_residual": self.louis_residual,
                "tr_com": tr["I_com"], "tr_mis": tr["I_mis"], "tr_obs": tr["I_obs"], "tr_itf": tr["I_itf"],
                "lmax_obs": float(ev["I_obs"][-1]), "lmax_itf": float(ev["I_itf"][-1]),
                "lmax_com": float(ev["I_com"][-1]), "lmin_mis": float(ev["I_mis"][0]),
                "ratio": tr["I_itf"] / tr["I_obs"], "missing_fraction": tr["I_mis"] / tr["I_com"],
                "itf_is_map": float(self.itf_is_map)}


def window_information(p: ALRNNParams, z0: torch.Tensor, x: torch.Tensor, kappa: float, log_sigma: float,
                       chunk: int = 10) -> list[WindowInformation]:
    """The four informations of the module docstring for a batch of windows z0 (B, M), x (B, W, N), vectorised over windows
    (torch.func.vmap); p is converted to float64. Returns one :class:`WindowInformation` per window."""
    p = p.to(torch.float64)
    z0, x = z0.double(), x.double()
    leaves = block_leaves(p, kappa, log_sigma)
    theta = block_vector(p)
    with torch.no_grad():
        ll_c = torch.stack([leaves(theta, z0[i], x[i])[0] for i in range(len(z0))])  # (B, R^W)
        ev = torch.logsumexp(ll_c, -1, keepdim=True)
        w = (ll_c - ev).exp()
    itf = itf_path(z0, p.A, p.W, p.h, p.n_pwl, x.shape[1])
    itf_onehot = torch.nn.functional.one_hot(itf, w.shape[-1]).double()

    def objectives(th: torch.Tensor, z0_i: torch.Tensor, x_i: torch.Tensor, w_i: torch.Tensor,
                   onehot_i: torch.Tensor) -> torch.Tensor:
        lc, le = leaves(th, z0_i, x_i)
        return torch.stack([torch.logsumexp(lc, 0), (w_i * lc).sum(), (onehot_i * le).sum()])

    def scores(th: torch.Tensor, z0_i: torch.Tensor, x_i: torch.Tensor) -> torch.Tensor:
        return leaves(th, z0_i, x_i)[0]

    out = []
    for lo in range(0, len(z0), chunk):
        sl = slice(lo, lo + chunk)
        H = -vmap(hessian(objectives), in_dims=(None, 0, 0, 0, 0))(theta, z0[sl], x[sl], w[sl], itf_onehot[sl])
        G = vmap(jacfwd(scores), in_dims=(None, 0, 0))(theta, z0[sl], x[sl])  # (b, R^W, d) scores g_s
        for j in range(H.shape[0]):
            wj, Gj = w[lo + j], G[j]
            I_obs, I_com, I_itf = H[j, 0], H[j, 1], H[j, 2]
            g_bar = wj @ Gj
            I_mis = Gj.T @ (wj[:, None] * Gj) - torch.outer(g_bar, g_bar)  # eq. 2.4b
            resid = torch.linalg.norm(I_obs - (I_com - I_mis)) / torch.linalg.norm(I_obs)
            ent = float(-(wj * torch.where(wj > 0, wj.log(), torch.zeros_like(wj))).sum())
            out.append(WindowInformation(I_com, I_mis, I_obs, I_itf, ent, float(resid),
                                         bool(int(wj.argmax()) == int(itf[lo + j]))))
    return out


def aggregate(rows: list[dict[str, float]]) -> dict[str, float]:
    """Aggregates over windows (informations add): R = sum tr I_ITF / sum tr I_obs, phi, fractions, Spearman."""
    col = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    rho_h = spearmanr(col["entropy"], col["missing_fraction"]).statistic if len(rows) > 2 else math.nan
    rho_r = spearmanr(col["entropy"], col["ratio"]).statistic if len(rows) > 2 else math.nan
    return {
        "n_windows": len(rows),
        "ratio_itf_obs": float(col["tr_itf"].sum() / col["tr_obs"].sum()),
        "ratio_itf_com": float(col["tr_itf"].sum() / col["tr_com"].sum()),
        "missing_fraction": float(col["tr_mis"].sum() / col["tr_com"].sum()),
        "frac_itf_above_obs": float(np.mean(col["tr_itf"] > col["tr_obs"])),
        "frac_lmax_itf_above_obs": float(np.mean(col["lmax_itf"] > col["lmax_obs"])),
        "mean_entropy": float(col["entropy"].mean()),
        "max_louis_residual": float(col["louis_residual"].max()),
        "min_rel_lmin_mis": float(np.min(col["lmin_mis"] / col["lmax_com"])),
        "spearman_entropy_missing": float(rho_h),
        "spearman_entropy_ratio": float(rho_r),
        "frac_map_not_itf": float(1.0 - col["itf_is_map"].mean()),
    }
