"""UWM-JEPA: a density-matrix world model with an action-conditioned unitary predictor
(Radha & Goktas 2026, arXiv 2605.25313).

The latent is a joint density matrix ρ on H_S ⊗ H_E (d_sys = 8, d_env = 2, D = 16). The encoder is a
quantum filter started at ρ_0 = I/D: for τ = 0..t it applies the positive observation update
ρ ← (K(o_τ)⊗I) ρ (K(o_τ)⊗I)† / tr(·) and then, for τ < t, the time step ρ ← U(a_τ) ρ U(a_τ)†.
The predictor is the same unitary family, U(a) = exp(−i(H0 + a·H1)) (Δt absorbed into H), so a blind
rollout is the filter with the observation updates switched off. Everything downstream reads the reduced
state ρ_S = Tr_E ρ through centred Hermitian coordinates and a small projection head g_φ.

Known (paper): the latent, the recurrence, U(a), the partial-trace readout, g_φ, EMA target encoder.
Reconstructed: K(o) = exp(G_o) with one 8×8 Hermitian G per token, the Hermitian
parameterisation, g_φ = MLP(64 → 64 → 8), the initial scales, the feature centring.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rollwise.worldmodels import density
from rollwise.worldmodels.env import ACTION_VALUES


@dataclass
class UWMConfig:
    """UWM-JEPA architecture; defaults give 6,216 trainable parameters (our
    reconstruction; the LSTM baseline has 6,262)."""

    d_sys: int = 8  # system dimension (paper)
    d_env: int = 2  # environment dimension (paper)
    n_tokens: int = 16  # visible position tokens; token n_tokens is MASK (K = I) (released)
    proj_hidden: int = 64  # g_φ hidden width (reconstructed)
    proj_out: int = 8  # g_φ output dimension (reconstructed)
    h_init_std: float = 0.05  # std of the raw H0/H1 parameters (U(a) starts near I) (reconstructed)
    g_init_std: float = 0.1  # std of the raw measurement generators G_o (our pilot)
    measurement_bound: float | None = 1.0  # cap the 64 raw reals of G_o at this L2 norm (so ‖G_o‖_F ≤ √2·bound); None = no cap (our pilot)
    feature_scale: float = 8.0  # readout d_sys·(ρ_S − I/d_sys): the states are nearly maximally mixed (reconstructed)
    dtype: torch.dtype = torch.complex64  # complex128 for invariant tests

    @property
    def d(self) -> int:
        return self.d_sys * self.d_env


class UWMJepa(nn.Module):
    """Encoder, unitary predictor and projection head of UWM-JEPA (the EMA target is a copy, see training)."""

    def __init__(self, cfg: UWMConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or UWMConfig()
        d, ds = cfg.d, cfg.d_sys
        self.h0 = nn.Parameter(cfg.h_init_std * torch.randn(d * d))
        self.h1 = nn.Parameter(cfg.h_init_std * torch.randn(d * d))
        self.g_obs = nn.Parameter(cfg.g_init_std * torch.randn(cfg.n_tokens, ds * ds))
        self.proj = nn.Sequential(nn.Linear(ds * ds, cfg.proj_hidden), nn.GELU(),
                                  nn.Linear(cfg.proj_hidden, cfg.proj_out))
        self.register_buffer("action_values", torch.tensor(ACTION_VALUES, dtype=torch.float64), persistent=False)

    # ----- operators -------------------------------------------------------------------------------
    def hamiltonians(self) -> tuple[Tensor, Tensor]:
        """H0, H1: (D, D) Hermitian, in ``cfg.dtype``."""
        d = self.cfg.d
        return (density.hermitian(self.h0, d).to(self.cfg.dtype), density.hermitian(self.h1, d).to(self.cfg.dtype))

    def unitaries(self) -> Tensor:
        """U(a) = exp(−i(H0 + a·H1)) for the five action symbols (paper eq. action-unitary): (5, D, D)."""
        h0, h1 = self.hamiltonians()
        a = self.action_values.to(h0.real.dtype)[:, None, None]
        return torch.linalg.matrix_exp(-1j * (h0 + a * h1))

    def measurement_operators(self) -> Tensor:
        """K(o) ⊗ I_E for every token, MASK last (identity): (n_tokens + 1, D, D); K(o) = exp(G_o) > 0."""
        cfg = self.cfg
        g = self.g_obs
        if cfg.measurement_bound is not None:
            g = g * (cfg.measurement_bound / g.norm(dim=-1, keepdim=True).clamp_min(cfg.measurement_bound))
        k_sys = torch.linalg.matrix_exp(density.hermitian(g, cfg.d_sys).to(cfg.dtype))
        k_sys = torch.cat([k_sys, torch.eye(cfg.d_sys, dtype=cfg.dtype)[None]], 0)
        eye_env = torch.eye(cfg.d_env, dtype=cfg.dtype)
        return torch.einsum("nij,ab->niajb", k_sys, eye_env).reshape(-1, cfg.d, cfg.d)

    # ----- encoder / predictor ------------------------------------------------------------------------
    def encode(self, tokens: Tensor, actions: Tensor) -> Tensor:
        """Quantum filter over a window: tokens (B, T) int64, actions (B, T−1) int64 -> ρ_T−1 (B, D, D).

        Each step applies M = U(a_τ)·(K(o_τ)⊗I) in one conjugation and renormalises; tr(MρM†) equals
        tr(KρK†) because U is unitary, so this is the paper's observation update followed by the time step.
        """
        b, t_len = tokens.shape
        k_ops = self.measurement_operators()
        u_ops = self.unitaries()
        step_ops = u_ops[:, None] @ k_ops[None]  # (A, V, D, D)
        rho = density.maximally_mixed(b, self.cfg.d, self.cfg.dtype)
        for tau in range(t_len):
            op = k_ops[tokens[:, tau]] if tau == t_len - 1 else step_ops[actions[:, tau], tokens[:, tau]]
            rho = density.symmetrize(density.measure(op, rho))
        return rho

    def rollout(self, rho: Tensor, actions: Tensor) -> Tensor:
        """Blind prediction ρ̂_{t+k} = U(a_{t+k−1})···U(a_t) ρ U(a_t)†···: ρ (B, D, D), actions (B, k)."""
        u_ops = self.unitaries()
        for k in range(actions.shape[1]):
            rho = density.symmetrize(density.conjugate(u_ops[actions[:, k]], rho))
        return rho

    # ----- readout ------------------------------------------------------------------------------------
    def reduced(self, rho: Tensor) -> Tensor:
        """ρ_S = Tr_E ρ: (B, D, D) -> (B, d_sys, d_sys)."""
        return density.partial_trace_env(rho, self.cfg.d_sys, self.cfg.d_env)

    def features(self, rho: Tensor) -> Tensor:
        """Centred coordinates of d_sys·(ρ_S − I/d_sys): (B, D, D) -> (B, d_sys²) float32."""
        rs = self.reduced(rho)
        eye = torch.eye(self.cfg.d_sys, dtype=rs.dtype) / self.cfg.d_sys
        return self.cfg.feature_scale * density.hermitian_features(rs - eye).float()

    def probe_features(self, rho: Tensor) -> Tensor:
        """The 63 (= d_sys² − 1) probe features: the centred diagonal sums to zero, so drop its last entry."""
        f = self.features(rho)
        keep = [i for i in range(f.shape[-1]) if i != self.cfg.d_sys - 1]
        return f[:, keep]

    def online_head(self, rho: Tensor) -> Tensor:
        """ĥ = g_φ(Tr_E ρ̂) (paper eq. jepa-loss): (B, proj_out)."""
        return self.proj(self.features(rho))

    def target_head(self, rho: Tensor) -> Tensor:
        """h⁺ = g_ξ(Tr_E ρ⁺), called on the EMA copy: (B, proj_out)."""
        return self.proj(self.features(rho))

    def action_ratio(self) -> dict[str, float]:
        """‖H1‖/‖H0‖ and the relative commutator ‖[H0,H1]‖/(‖H0‖‖H1‖) (Frobenius norms; as the paper reports them)."""
        with torch.no_grad():
            h0, h1 = self.hamiltonians()
            n0, n1 = torch.linalg.norm(h0), torch.linalg.norm(h1)
            comm = torch.linalg.norm(h0 @ h1 - h1 @ h0)
            return {"h0_norm": float(n0), "h1_norm": float(n1), "h1_over_h0": float(n1 / n0),
                    "rel_commutator": float(comm / (n0 * n1))}

    def parameter_groups(self) -> dict[str, int]:
        """Trainable parameter counts per part (for the parameter-matching check)."""
        n = {"unitary_predictor": self.h0.numel() + self.h1.numel(), "measurement": self.g_obs.numel(),
             "projection": sum(p.numel() for p in self.proj.parameters())}
        n["total"] = sum(n.values())
        return n

