"""The almost-linear RNN (AL-RNN; Brenner, Hemmer, Monfared, Durstewitz, NeurIPS 2024, arXiv 2410.14240) with
an identity read-out. Definitions follow the lab's reference code (DurstewitzLab/ALRNN-DSR; GPL, so read for
the definitions only, no code taken).

    z_t = A * z_{t-1} + W Phi(z_{t-1}) + h,   Phi(z) = (z_1..z_{M-P}, relu(z_{M-P+1})..relu(z_M))   (step)
    x_hat_t = z_{t,1:N},   z_1 = [x_1 ; L x_1]                                               (read-out, start)

The pure functions below broadcast over leading dimensions: ``z`` is (..., M); ``A`` and ``h`` are
(M,) or broadcastable to ``z`` (e.g. (E, 1, M) for an ensemble); ``W`` is (M, M) or (E, M, M).
:class:`ALRNN` stores an ensemble of E independent models (E = 1 for one model) so that several seeds
train in one batched pass; :class:`ALRNNParams` is one model's values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rollwise.shapes import Dim


@dataclass(frozen=True)
class ALRNNConfig:
    """AL-RNN shape (defaults: the lab's Lorenz-63 model M = 20, P = 2, from its reference code)."""

    n_latent: int = 20  # M: latent units
    n_pwl: int = 2  # P: ReLU units (the last P latent units)
    n_obs: int = 3  # N: observed units (identity read-out = the first N latent units)

    def __post_init__(self) -> None:
        if not (0 < self.n_pwl <= self.n_latent and 0 < self.n_obs <= self.n_latent):
            raise ValueError(f"need 0 < P <= M and 0 < N <= M, got M={self.n_latent}, P={self.n_pwl}, "
                             f"N={self.n_obs}")


def pwl_mask(n_latent: int, gates: torch.Tensor) -> torch.Tensor:
    """D(s) as a vector: (..., P) gates -> (..., M) = [1_{M-P}, s]."""
    ones = torch.ones(*gates.shape[:-1], n_latent - gates.shape[-1], dtype=gates.dtype, device=gates.device)
    return torch.cat([ones, gates], dim=-1)


def regime(z: torch.Tensor, n_pwl: int) -> torch.Tensor:
    """Deterministic regime bits d = 1[z_PWL > 0]: (..., M) -> (..., P) in z's dtype."""
    return (z[..., -n_pwl:] > 0).to(z.dtype)


def alrnn_step(z: torch.Tensor, A: torch.Tensor, W: torch.Tensor, h: torch.Tensor, n_pwl: int) -> torch.Tensor:
    """The step equation above: (..., M) -> (..., M)."""
    phi = torch.cat([z[..., :-n_pwl], torch.relu(z[..., -n_pwl:])], dim=-1)
    return A * z + torch.matmul(phi, W.transpose(-1, -2)) + h


def gated_step(z: torch.Tensor, gates: torch.Tensor, A: torch.Tensor, W: torch.Tensor, h: torch.Tensor
               ) -> torch.Tensor:
    """Linear step of one subregion: z' = (diag(A) + W D(s)) z + h; z (..., M), gates (..., P)."""
    zd = z * pwl_mask(z.shape[-1], gates)
    return A * z + torch.matmul(zd, W.transpose(-1, -2)) + h


def jacobian(z: torch.Tensor, A: torch.Tensor, W: torch.Tensor, n_pwl: int) -> torch.Tensor:
    """Analytic Jacobian dz'/dz = diag(A) + W D(d(z)) (as the reference code): z (..., M) -> (..., M, M)."""
    d = pwl_mask(z.shape[-1], regime(z, n_pwl))
    return torch.diag_embed(A.expand_as(z)) + W * d.unsqueeze(-2)


def initial_state(x1: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """The start state of the read-out: z_1 = [x_1 ; L x_1]; x1 (..., N), L (M-N, N) or (E, M-N, N) -> (..., M)."""
    hidden = torch.matmul(x1, L.transpose(-1, -2))
    return torch.cat([x1, hidden], dim=-1)


@dataclass
class ALRNNParams:
    """One AL-RNN's values: A (M,), W (M, M), h (M,), L (M-N, N); P ReLU units, N observed units."""

    A: torch.Tensor
    W: torch.Tensor
    h: torch.Tensor
    L: torch.Tensor
    n_pwl: int

    n_latent = Dim("A", 0)  # M
    n_obs = Dim("L", 1)  # N

    def to(self, dtype: torch.dtype) -> ALRNNParams:
        return ALRNNParams(*(t.detach().clone().to(dtype) for t in (self.A, self.W, self.h, self.L)), self.n_pwl)

    def numpy(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k).detach().double().numpy() for k in ("A", "W", "h", "L")}

    def state_dict(self) -> dict[str, object]:
        return {"A": self.A, "W": self.W, "h": self.h, "L": self.L, "n_pwl": self.n_pwl}


def init_params(cfg: ALRNNConfig, generator: torch.Generator) -> ALRNNParams:
    """The reference code's initialisation: A = diag(K)/lambda_max(K), K = R^T R / M + I; W ~ N(0, 0.01^2); h = 0;
    L Glorot-uniform."""
    M, N = cfg.n_latent, cfg.n_obs
    R = torch.randn(M, M, generator=generator, dtype=torch.float64)
    K = R.T @ R / M + torch.eye(M, dtype=torch.float64)
    A = torch.diagonal(K) / torch.linalg.eigvalsh(K).max()
    W = 0.01 * torch.randn(M, M, generator=generator, dtype=torch.float64)
    bound = (6.0 / (N + M - N)) ** 0.5
    L = (torch.rand(M - N, N, generator=generator, dtype=torch.float64) * 2 - 1) * bound
    return ALRNNParams(A.float(), W.float(), torch.zeros(M), L.float(), cfg.n_pwl)


class ALRNN(nn.Module):
    """An ensemble of E AL-RNNs trained together (independent parameters, one batched pass).

    Parameters: A (E, M), W (E, M, M), h (E, M), L (E, M-N, N).
    """

    def __init__(self, members: list[ALRNNParams]):
        super().__init__()
        self.n_pwl = members[0].n_pwl
        self.n_obs = members[0].n_obs
        for name in ("A", "W", "h", "L"):
            setattr(self, name, nn.Parameter(torch.stack([getattr(p, name).detach().clone() for p in members])))

    @property
    def n_members(self) -> int:
        return self.A.shape[0]

    def member(self, i: int) -> ALRNNParams:
        return ALRNNParams(self.A[i].detach().clone(), self.W[i].detach().clone(), self.h[i].detach().clone(),
                           self.L[i].detach().clone(), self.n_pwl)

    def step(self, z: torch.Tensor) -> torch.Tensor:
        """z (E, B, M) -> (E, B, M)."""
        return alrnn_step(z, self.A.unsqueeze(1), self.W, self.h.unsqueeze(1), self.n_pwl)

    def init_state(self, x1: torch.Tensor) -> torch.Tensor:
        """x1 (E, B, N) -> z_1 (E, B, M)."""
        return initial_state(x1, self.L)


def force(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Identity forcing: replace the first N units of z (..., M) by the data x (..., N).

    Built with ``cat``, so no gradient reaches the replaced values z[..., :N] [REF custom pullback]."""
    return torch.cat([x, z[..., x.shape[-1]:]], dim=-1)


def itf_rollout(model: ALRNN, x: torch.Tensor, tau: int, return_states: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Identity teacher forcing (as the lab's reference code): x (E, B, T, N) -> predictions x_hat_{2..T} (E, B, T-1, N).

    Predictions are read before forcing. At 0-based times k = tau, 2 tau, ... the N read-out units are
    replaced by the data. ``tau <= 0`` means no forcing (free run from z_1). With ``return_states`` also
    returns the (possibly forced) states z~_{1..T} (E, B, T, M).
    """
    n = model.n_obs
    z = model.init_state(x[:, :, 0])
    preds, states = [], [z]
    for k in range(1, x.shape[2]):
        z = model.step(z)
        preds.append(z[..., :n])
        if tau > 0 and k % tau == 0:
            z = force(z, x[:, :, k])
        states.append(z)
    out = torch.stack(preds, dim=2)
    return (out, torch.stack(states, dim=2)) if return_states else out


def itf_loss(model: ALRNN, x: torch.Tensor, tau: int) -> torch.Tensor:
    """Per-member ITF MSE (as the lab's reference code): x (E, B, T, N) -> (E,), mean over batch, time and dims."""
    return ((itf_rollout(model, x, tau) - x[:, :, 1:]) ** 2).mean(dim=(1, 2, 3))


def free_run(p: dict[str, np.ndarray], x1: np.ndarray, n_steps: int, transient: int = 0, n_pwl: int = 2,
             bound: float = 100.0) -> np.ndarray:
    """Deterministic free run in float64 numpy from z_1 = [x1; L x1].

    x1 (N,) -> observations (n_steps, N) after ``transient`` discarded steps. A run whose state becomes
    non-finite or exceeds ``bound`` in absolute value is a failure: it stops and the rest is NaN.
    """
    A, W, h, L = p["A"], p["W"], p["h"], p["L"]
    n = L.shape[1]
    z = np.concatenate([x1, L @ x1])
    out = np.full((n_steps, n), np.nan)
    relu_from = A.shape[0] - n_pwl
    W_lin, W_pwl = W[:, :relu_from], W[:, relu_from:]
    for k in range(transient + n_steps):
        z = A * z + W_lin @ z[:relu_from] + W_pwl @ np.maximum(z[relu_from:], 0.0) + h
        if k >= transient:
            out[k - transient] = z[:n]
        if not np.abs(z).max() < bound:  # catches NaN too
            break
    return out
