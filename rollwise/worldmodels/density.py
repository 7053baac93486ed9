"""Density-matrix operations for the UWM-JEPA latent (the paper's recurrence and readout).

All functions take batched complex tensors ``(..., d, d)``; nothing here has learnable parameters.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def hermitian(params: Tensor, d: int) -> Tensor:
    """Bijective map from d² reals to a d×d Hermitian matrix [inferred parameterisation].

    params (..., d*d) real -> (..., d, d) complex. The upper triangle (with the diagonal) gives the real
    symmetric part, the strict lower triangle the imaginary antisymmetric part.
    """
    m = params.reshape(*params.shape[:-1], d, d)
    upper = torch.triu(m)
    re = upper + upper.transpose(-1, -2) - torch.diag_embed(torch.diagonal(m, dim1=-2, dim2=-1))
    lower = torch.tril(m, -1)
    im = lower - lower.transpose(-1, -2)
    return torch.complex(re, im)


def dagger(a: Tensor) -> Tensor:
    """Conjugate transpose of (..., d, d)."""
    return a.conj().transpose(-1, -2)


def conjugate(op: Tensor, rho: Tensor) -> Tensor:
    """op ρ op† for op, ρ: (..., d, d) (the unitary step ρ ← UρU†, paper eq. predictor)."""
    return op @ rho @ dagger(op)


def symmetrize(rho: Tensor) -> Tensor:
    """(ρ + ρ†)/2: removes round-off anti-Hermitian parts (the last step of the
    paper's recurrence)."""
    return 0.5 * (rho + dagger(rho))


def trace(rho: Tensor) -> Tensor:
    """Trace of (..., d, d) -> (...) complex."""
    return torch.diagonal(rho, dim1=-2, dim2=-1).sum(-1)


def maximally_mixed(batch: int, d: int, dtype: torch.dtype = torch.complex64) -> Tensor:
    """ρ_0 = I/d, the start of the paper's recurrence; shape (batch, d, d)."""
    return (torch.eye(d, dtype=dtype) / d).expand(batch, d, d).clone()


def measure(k_op: Tensor, rho: Tensor) -> Tensor:
    """Positive observation update ρ ← K ρ K† / tr(K ρ K†) (the paper's positive
    observation update). k_op, ρ: (B, d, d)."""
    out = conjugate(k_op, rho)
    return out / trace(out)[..., None, None]


def partial_trace_env(rho: Tensor, d_sys: int, d_env: int) -> Tensor:
    """ρ_S = Tr_E ρ on H_S ⊗ H_E (system index major). (..., d_sys*d_env, d_sys*d_env) -> (..., d_sys, d_sys)."""
    r = rho.reshape(*rho.shape[:-2], d_sys, d_env, d_sys, d_env)
    return torch.einsum("...iaja->...ij", r)


def hermitian_features(rho_s: Tensor) -> Tensor:
    """Real coordinates of a Hermitian d×d matrix: diagonal, √2·Re and √2·Im of the strict upper triangle.

    (..., d, d) complex -> (..., d²) real; the map is an isometry (Frobenius -> Euclidean).
    """
    d = rho_s.shape[-1]
    iu = torch.triu_indices(d, d, 1)
    diag = torch.diagonal(rho_s, dim1=-2, dim2=-1).real
    off = rho_s[..., iu[0], iu[1]]
    return torch.cat([diag, math.sqrt(2) * off.real, math.sqrt(2) * off.imag], -1)


def purity(rho: Tensor) -> Tensor:
    """tr ρ² (real), (..., d, d) -> (...)."""
    return torch.einsum("...ij,...ji->...", rho, rho).real


def eigenvalues(rho: Tensor) -> Tensor:
    """Ascending real spectrum of Hermitian (..., d, d) -> (..., d)."""
    return torch.linalg.eigvalsh(rho)


def entropy(rho: Tensor, eps: float = 1e-30) -> Tensor:
    """Von Neumann entropy S(ρ) = −Σ λ ln λ in nats, (..., d, d) -> (...)."""
    lam = eigenvalues(rho).clamp_min(eps)
    return -(lam * lam.log()).sum(-1)
