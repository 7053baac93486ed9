"""Vector-latent JEPA baselines: the parameter-matched LSTM-JEPA and a GRU variant (the paper's main
baseline; its layout is not published).

Layout of LSTM-JEPA recovered exactly from the released parameter counts (h = 12: encoder 1298,
projection 1612, predictor head 1612, predictor 1740, total 6262; checked by our pilot implementation):
- encoder: Embedding(17→8) for tokens, Embedding(5→2) for actions, a 1-layer RNN over [emb(o_τ), emb(a)];
- projection g: Linear(h→64) → GELU → Linear(64→h) (its EMA copy is the target projection);
- predictor head q (BYOL-style): Linear(h→64) → GELU → Linear(64→h);
- predictor (applied K times): Linear(h+2→64) → GELU → Linear(64→h) on [z, emb(a_k)] — the same
  "action head" idea as UWM's H0 + a·H1, with action embedding dimension 2.
Loss (reconstructed): ‖q(g(ẑ_{t+K})) − sg g_ξ(z⁺_{t+K})‖². The action fed with o_τ is the one that led to it,
a_{τ−1} (a = 0 at τ = 0) (reconstructed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rollwise.worldmodels.env import N_ACTIONS, NO_ACTION


@dataclass
class RecurrentConfig:
    """Vector-latent JEPA; defaults are the paper's h = 12 LSTM-JEPA-CF (6,262 parameters)."""

    cell: str = "lstm"  # "lstm" (the matched baseline) or "gru" (vector-latent variant)
    hidden: int = 12  # latent size h (released)
    embed_obs: int = 8  # token embedding (released)
    embed_act: int = 2  # action embedding (the action head) (released)
    proj_hidden: int = 64  # width of g, q and the predictor MLP [data: predictor_hidden=64]
    vocab_size: int = 17  # 16 position tokens + MASK (released)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, n_out))


class RecurrentJepa(nn.Module):
    """LSTM/GRU encoder, MLP action-conditioned predictor, projection g and predictor head q."""

    def __init__(self, cfg: RecurrentConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or RecurrentConfig()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}.get(cfg.cell)
        if rnn is None:
            raise ValueError(f"RecurrentConfig.cell={cfg.cell!r}; valid: 'lstm', 'gru'")
        self.embed_obs = nn.Embedding(cfg.vocab_size, cfg.embed_obs)
        self.embed_act = nn.Embedding(N_ACTIONS, cfg.embed_act)
        self.rnn = rnn(cfg.embed_obs + cfg.embed_act, cfg.hidden, batch_first=True)
        self.proj = _mlp(cfg.hidden, cfg.proj_hidden, cfg.hidden)
        self.pred_head = _mlp(cfg.hidden, cfg.proj_hidden, cfg.hidden)
        self.predictor = _mlp(cfg.hidden + cfg.embed_act, cfg.proj_hidden, cfg.hidden)

    def encode(self, tokens: Tensor, actions: Tensor) -> Tensor:
        """tokens (B, T), actions (B, T−1) -> final hidden state z (B, h)."""
        prev = torch.cat([torch.full_like(actions[:, :1], NO_ACTION), actions], 1)  # a_{τ−1}
        x = torch.cat([self.embed_obs(tokens), self.embed_act(prev)], -1)
        out, _ = self.rnn(x)
        return out[:, -1]

    def rollout(self, z: Tensor, actions: Tensor) -> Tensor:
        """ẑ ← P([ẑ, emb(a_k)]) for each of the k actions: z (B, h), actions (B, k) -> (B, h)."""
        for k in range(actions.shape[1]):
            z = self.predictor(torch.cat([z, self.embed_act(actions[:, k])], -1))
        return z

    def features(self, z: Tensor) -> Tensor:
        return z

    def probe_features(self, z: Tensor) -> Tensor:
        return z

    def online_head(self, z: Tensor) -> Tensor:
        """q(g(ẑ)): (B, h)."""
        return self.pred_head(self.proj(z))

    def target_head(self, z: Tensor) -> Tensor:
        """g_ξ(z⁺), called on the EMA copy: (B, h)."""
        return self.proj(z)

    def parameter_groups(self) -> dict[str, int]:
        def count(*mods: nn.Module) -> int:
            return sum(p.numel() for m in mods for p in m.parameters())

        n = {"encoder": count(self.embed_obs, self.embed_act, self.rnn), "projection_online": count(self.proj),
             "predictor_head": count(self.pred_head), "predictor": count(self.predictor)}
        # the action embedding is shared by encoder and predictor; count it once (as the paper does)
        n["total"] = sum(p.numel() for p in self.parameters())
        return n
