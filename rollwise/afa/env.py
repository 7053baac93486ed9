"""The acquisition environment: masked observations, legal actions, hard/soft budgets, the masked classifier.

State: selection mask ``s: (n, K)`` over groups; feature mask ``m = s @ G: (n, d)`` (groups are a
partition, so this equals the usual ``min(1, s G)`` and keeps gradients for relaxed ``s``).
Observation ``o = [x * m, m]: (n, 2d)``. Actions: acquire group k, or STOP (soft budgets only).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rollwise.afa.data import AFAData

NEG = 1e6  # logit penalty for illegal actions


@dataclass
class PredictorConfig:
    """Masked MLP classifier and its random-mask pretraining (AFABench's MaskingPretrainer, the authors' benchmark code)."""

    hidden: tuple[int, ...] = (128, 128)  # hidden widths of the MLP
    dropout: float = 0.1  # dropout after each hidden layer
    pretrain_epochs: int = 30  # epochs of random-mask pretraining (our pilot value)
    max_missing: float = 0.9  # per-minibatch missing probability ~ U(0, max_missing)
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 128  # minibatch size


class MaskedMLP(nn.Module):
    """MLP on ``[x * m, m]``: ``(n, 2d) -> (n, n_out)`` (used for predictor f_phi and policy pi_theta)."""

    def __init__(self, d: int, n_out: int, hidden: tuple[int, ...] = (128, 128), dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        width = 2 * d
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs)


class AcquisitionEnv:
    """Masks, observations, legality and deterministic (deployment) rollouts for one data set."""

    def __init__(self, data: AFAData):
        self.groups = data.groups  # (K, d)
        self.costs = data.costs  # (K,)
        self.K, self.d = data.groups.shape

    def mask(self, s: Tensor) -> Tensor:
        """Feature mask ``(n, d)`` from a (possibly relaxed) selection mask ``s: (n, K)``."""
        return s @ self.groups

    def observe(self, x: Tensor, s: Tensor) -> Tensor:
        """Observation ``o = [x * m, m]: (n, 2d)``."""
        m = self.mask(s)
        return torch.cat([x * m, m], dim=-1)

    def legal_logits(self, logits: Tensor, s_hard: Tensor, budget_left: Tensor | None = None) -> Tensor:
        """Push acquired groups (and groups costlier than ``budget_left: (n,)``) to -1e6.

        ``logits: (n, K)`` or ``(n, K + 1)`` (last entry = STOP, always legal).
        """
        illegal = s_hard.bool()
        if budget_left is not None:
            illegal = illegal | (self.costs[None, :] > budget_left[:, None] + 1e-9)
        pen = NEG * illegal.float()
        if logits.shape[-1] == self.K + 1:
            pen = torch.cat([pen, torch.zeros_like(pen[:, :1])], dim=-1)
        return logits - pen


@dataclass
class HardRollout:
    """Deterministic rollout of ``T`` steps. ``order: (n, T)`` group index per step (-1 = stopped),
    ``correct: (T + 1, n)`` prediction correct after t acquisitions, ``loss: (T + 1, n)`` cross-entropy,
    ``cost: (T + 1, n)`` cumulative cost, ``obs: (T + 1, n, 2d)`` observations, ``probs: (T + 1, n, C)``."""

    order: Tensor
    correct: Tensor
    loss: Tensor
    cost: Tensor
    obs: Tensor
    probs: Tensor

    @property
    def accuracy(self) -> Tensor:
        """Accuracy after t = 0..T acquisitions: ``(T + 1,)``."""
        return self.correct.float().mean(1)

    def auc(self, budgets: int | None = None) -> float:
        """Mean accuracy over budgets 1..B (normalised area under accuracy vs #acquisitions)."""
        b = budgets or (self.correct.shape[0] - 1)
        return float(self.accuracy[1:b + 1].mean())


@torch.no_grad()
def hard_rollout(env: AcquisitionEnv, choose, predictor: nn.Module, x: Tensor, y: Tensor, T: int,
                 budget: float | None = None) -> HardRollout:
    """Roll out ``T`` acquisitions with ``choose(obs, s_hard, t) -> (n, K[+1])`` scores (argmax of legal ones).

    With ``budget`` (cost units) groups that no longer fit are illegal; rows with nothing legal stop, and
    so do rows whose argmax is STOP (score column K, soft budgets); stopped rows keep their last mask.
    Returns per-step predictions of ``predictor`` (eval mode) on every visited observation.
    """
    was = predictor.training
    predictor.eval()
    n = x.shape[0]
    s = torch.zeros(n, env.K)
    spent = torch.zeros(n)
    alive = torch.ones(n, dtype=torch.bool)
    order = torch.full((n, T), -1, dtype=torch.long)
    obs_l, cost_l = [env.observe(x, s)], [spent.clone()]
    for t in range(T):
        left = None if budget is None else budget - spent
        scores = env.legal_logits(choose(obs_l[-1], s, t), s, left)
        a = scores.argmax(-1)
        ok = alive & (scores[:, :env.K].max(-1).values > -NEG / 2) & (a < env.K)  # a == K is STOP
        alive = ok
        a = a.clamp(max=env.K - 1)
        order[ok, t] = a[ok]
        s = s + F.one_hot(a, env.K).float() * ok[:, None].float()
        spent = spent + env.costs[a] * ok.float()
        obs_l.append(env.observe(x, s))
        cost_l.append(spent.clone())
    obs = torch.stack(obs_l)  # (T + 1, n, 2d)
    logits = predictor(obs.reshape(-1, obs.shape[-1])).reshape(T + 1, n, -1)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.repeat(T + 1), reduction="none")
    predictor.train(was)
    return HardRollout(order, logits.argmax(-1) == y[None, :], loss.reshape(T + 1, n), torch.stack(cost_l),
                       obs, logits.softmax(-1))


def policy_chooser(policy: nn.Module):
    """Wrap a policy network as a deterministic ``choose`` function (eval mode, no dropout)."""

    def choose(obs: Tensor, s: Tensor, t: int) -> Tensor:
        was = policy.training
        policy.eval()
        out = policy(obs)
        policy.train(was)
        return out

    return choose


def random_group_mask(n: int, K: int, max_missing: float) -> Tensor:
    """Random selection masks ``(n, K)``: one missing probability p ~ U(0, max_missing) per call."""
    p = float(torch.rand(())) * max_missing
    return (torch.rand(n, K) >= p).float()


def pretrain_predictor(data: AFAData, cfg: PredictorConfig) -> MaskedMLP:
    """Train f_phi on random group masks (as AFABench), keeping the best validation-loss weights."""
    env = AcquisitionEnv(data)
    f = MaskedMLP(data.n_features, data.n_classes, cfg.hidden, cfg.dropout)
    opt = torch.optim.Adam(f.parameters(), lr=cfg.lr)
    x, y = data.x["train"], data.y["train"]
    xv, yv = data.x["val"], data.y["val"]
    val_masks = torch.stack([random_group_mask(xv.shape[0], env.K, cfg.max_missing) for _ in range(4)])
    best, best_state = float("inf"), copy.deepcopy(f.state_dict())
    for _ in range(cfg.pretrain_epochs):
        f.train()
        perm = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            s = random_group_mask(idx.shape[0], env.K, cfg.max_missing)
            loss = F.cross_entropy(f(env.observe(x[idx], s)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        f.eval()
        with torch.no_grad():
            vl = sum(float(F.cross_entropy(f(env.observe(xv, m)), yv)) for m in val_masks)
        if vl < best:
            best, best_state = vl, copy.deepcopy(f.state_dict())
    f.load_state_dict(best_state)
    f.eval()
    return f
