"""Soft budgets: when to STOP, with acquisition cost weighted by lambda (an open problem in our
reconstruction: the abstract does not say how NM-PPG learns to stop).

Two ways to learn stopping:

* ``relaxed`` (our first reconstruction): STOP is action K+1 of the policy, trained end to end through the
  straight-through rollout (``NMPPGConfig(stop="relaxed")``). The pilot found it never stops for small
  lambda and collapses to zero acquisitions for larger lambda. A likely cause: after a (hard) STOP the
  mask is frozen, so the straight-through gradient of "continue" is evaluated on the frozen state, which
  looks like paying lambda c for nothing; the gradient is biased towards stopping.
* ``survival head`` (our remedy: train the hard-budget policy first and add STOP afterwards, with a
  separate stop head fed with predictor confidence): freeze the trained hard-budget policy, roll
  it out, and train a stop head q_psi(o_t, confidence_t, t/T) on the *exact* expected objective over the
  stopping time: J = E_i sum_t alpha_t q_t (CE_t + lambda C_t), alpha_{t+1} = alpha_t (1 - q_t), q_T = 1.
  Because the rollout continues past the stop decision, "continue" is scored on the real continuation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rollwise.afa.env import HardRollout


@dataclass
class StopHeadConfig:
    """Survival stop head (our remedy for relaxed STOP)."""

    hidden: int = 64  # hidden width of the stop MLP
    steps: int = 300  # Adam steps
    batch_size: int = 256  # rows per step (each row brings its T + 1 stopping candidates)
    lr: float = 3e-3  # Adam learning rate
    confidence_input: bool = True  # feed predictor max-probability and entropy besides the observation
    threshold: float = 0.5  # deployment: stop at the first t with q_t > threshold


def stop_features(roll: HardRollout, confidence_input: bool = True) -> Tensor:
    """Inputs of the stop head, ``(T + 1, n, 2d + 1 [+ 2])``: observation, t/T [, max prob, entropy]."""
    T1, n = roll.loss.shape
    t = (torch.arange(T1, dtype=torch.float32) / (T1 - 1))[:, None, None].expand(T1, n, 1)
    parts = [roll.obs, t]
    if confidence_input:
        p = roll.probs.clamp_min(1e-12)
        parts += [p.max(-1, keepdim=True).values, -(p * p.log()).sum(-1, keepdim=True)]
    return torch.cat(parts, dim=-1)


def survival_objective(q: Tensor, loss: Tensor, cost: Tensor, cost_weight: float) -> Tensor:
    """Exact expected soft-budget objective over the stopping time (the relaxed-STOP loss of
    :func:`~rollwise.afa.nm_ppg.relaxed_rollout` with a fixed acquisition path).

    ``q: (T + 1, n)`` stop probabilities (the last row is forced to 1), ``loss, cost: (T + 1, n)`` CE and
    cumulative cost after t acquisitions. Returns mean_i sum_t alpha_t q_t (loss_t + lambda cost_t).
    """
    q = torch.cat([q[:-1], torch.ones_like(q[-1:])], dim=0)
    alive = torch.cumprod(torch.cat([torch.ones_like(q[:1]), 1.0 - q[:-1]], dim=0), dim=0)
    return (alive * q * (loss + cost_weight * cost)).sum(0).mean()


def train_stop_head(roll: HardRollout, cost_weight: float, cfg: StopHeadConfig) -> nn.Module:
    """Fit q_psi on a (training-split) rollout of the frozen hard-budget policy."""
    feats = stop_features(roll, cfg.confidence_input)
    head = nn.Sequential(nn.Linear(feats.shape[-1], cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1))
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    n = feats.shape[1]
    for _ in range(cfg.steps):
        idx = torch.randint(0, n, (min(cfg.batch_size, n),))
        q = torch.sigmoid(head(feats[:, idx]).squeeze(-1))
        loss = survival_objective(q, roll.loss[:, idx], roll.cost[:, idx], cost_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    return head


@dataclass
class StopOutcome:
    """Per-row result of a soft-budget episode: ``stop_step, cost: (n,)``, ``correct: (n,)`` bool."""

    stop_step: Tensor
    cost: Tensor
    correct: Tensor

    def summary(self) -> dict[str, float]:
        """Mean cost, accuracy, cost std and whether stopping is instance-adaptive.

        Adaptive: at least two stopping times are each used by >= 10% of the rows.
        """
        counts = torch.bincount(self.stop_step)
        shares = counts.float() / counts.sum()
        return {"mean_cost": float(self.cost.mean()), "accuracy": float(self.correct.float().mean()),
                "cost_std": float(self.cost.std(unbiased=False)),
                "zero_cost_share": float((self.stop_step == 0).float().mean()),
                "adaptive": float(int((shares >= 0.10).sum() >= 2))}


@torch.no_grad()
def apply_stop_head(head: nn.Module, roll: HardRollout, cfg: StopHeadConfig) -> StopOutcome:
    """Stop each row at the first t with q_t > threshold (or at the horizon)."""
    q = torch.sigmoid(head(stop_features(roll, cfg.confidence_input)).squeeze(-1))  # (T + 1, n)
    stop = q > cfg.threshold
    stop[-1] = True
    t_stop = stop.float().argmax(0)
    rows = torch.arange(t_stop.shape[0])
    return StopOutcome(t_stop, roll.cost[t_stop, rows], roll.correct[t_stop, rows])


def relaxed_stop_outcome(roll: HardRollout) -> StopOutcome:
    """Outcome of a rollout whose policy emits STOP itself (order == -1 after stopping)."""
    acquired = (roll.order >= 0).sum(1)
    return StopOutcome(acquired, roll.cost[-1], roll.correct[-1])
