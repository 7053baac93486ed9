"""Baselines of the NM-PPG comparison : random order, a static MI order, GDFS, REINFORCE.

All share f_phi's architecture and pretraining; GDFS and REINFORCE use the same policy network, horizon
and training schedule as NM-PPG, so the comparison isolates the objective and the gradient estimator.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rollwise.afa.data import AFAData
from rollwise.afa.env import AcquisitionEnv, MaskedMLP
from rollwise.afa.nm_ppg import NMPPGConfig, TrainedPolicy, entropy, gumbel_like, validation_score
from rollwise.afa.schedule import fit


def random_chooser(seed: int):
    """Uniformly random order per row: i.i.d. U(0,1) scores, argmax over legal groups ``(n, K)``."""
    g = torch.Generator().manual_seed(seed)

    def choose(obs: Tensor, s: Tensor, t: int) -> Tensor:
        return torch.rand(s.shape, generator=g)

    return choose


def mutual_info_order(data: AFAData, seed: int) -> Tensor:
    """Static global ranking scores ``(K,)``: summed ``mutual_info_classif`` of each group's features."""
    from sklearn.feature_selection import mutual_info_classif

    mi = mutual_info_classif(data.x["train"].numpy(), data.y["train"].numpy(), random_state=seed)
    return data.groups @ torch.tensor(np.asarray(mi), dtype=torch.float32)


def static_chooser(scores: Tensor):
    """The same ranking ``scores: (K,)`` for every row."""

    def choose(obs: Tensor, s: Tensor, t: int) -> Tensor:
        return scores[None, :].expand(s.shape[0], -1)

    return choose


def gdfs_loss(env: AcquisitionEnv, policy: nn.Module, predictor: nn.Module, x: Tensor, y: Tensor, tau: float,
              cfg: NMPPGConfig) -> Tensor:
    """GDFS objective (Covert, Qiu, Lu, Lee, ICML 2023, arXiv 2301.00557): J = (1/T) sum_t CE(f(x * max(m_t, y~_t)), y).

    y~_t ~ Concrete(l_t / gamma, tau) on the hard, detached past s_t; then s_{t+1} = s_t OR onehot(argmax l_t).
    """
    n = x.shape[0]
    s = torch.zeros(n, env.K)
    losses = []
    for _ in range(cfg.horizon):
        logits = env.legal_logits(policy(env.observe(x, s)), s)
        y_soft = torch.softmax((logits / cfg.gamma + gumbel_like(logits)) / tau, dim=-1)
        s_soft = torch.maximum(s, y_soft)
        losses.append(F.cross_entropy(predictor(env.observe(x, s_soft)), y))
        s = torch.maximum(s, F.one_hot(logits.argmax(-1), env.K).float()).detach()
    return torch.stack(losses).mean()


def reinforce_terms(env: AcquisitionEnv, policy: nn.Module, predictor: nn.Module, x: Tensor, y: Tensor,
                    cfg: NMPPGConfig) -> tuple[Tensor, Tensor]:
    """Score-function (REINFORCE) surrogate, the variance baseline. Returns (policy surrogate, predictor loss), both scalars.

    a_t ~ pi(.|o_t); R = -CE(f(o_T), y); grad = mean_i sum_t grad log pi(a_t|o_t) (R_i - mean R)
    + beta grad sum_t H; predictor trained on the visited terminal masks.
    """
    n = x.shape[0]
    s = torch.zeros(n, env.K)
    logp = torch.zeros(n)
    ent = torch.zeros(n)
    for _ in range(cfg.horizon):
        logits = env.legal_logits(policy(env.observe(x, s)), s)
        dist = torch.distributions.Categorical(logits=logits)
        a = dist.sample()
        logp = logp + dist.log_prob(a)
        ent = ent + entropy(logits)
        s = s + F.one_hot(a, env.K).float()
    terminal = F.cross_entropy(predictor(env.observe(x, s)), y, reduction="none")
    ret = -terminal.detach()
    surrogate = -(logp * (ret - ret.mean())).mean() - cfg.entropy * ent.mean()
    return surrogate, terminal.mean()


def train_gdfs(data: AFAData, predictor: nn.Module, cfg: NMPPGConfig) -> TrainedPolicy:
    """GDFS with the NM-PPG schedule; policy and a predictor copy trained jointly."""
    env = AcquisitionEnv(data)
    f = copy.deepcopy(predictor)
    pol = MaskedMLP(data.n_features, data.n_groups, cfg.hidden, cfg.dropout)
    hist = fit([pol, f], lambda xb, yb, tau: gdfs_loss(env, pol, f, xb, yb, tau, cfg),
               lambda: validation_score(env, pol, f, data, cfg), data.x["train"], data.y["train"], cfg.schedule)
    return TrainedPolicy("gdfs", pol, f, hist)


def train_reinforce(data: AFAData, predictor: nn.Module, cfg: NMPPGConfig) -> TrainedPolicy:
    """REINFORCE with a batch-mean baseline: same networks, horizon, epochs and selection as NM-PPG."""
    env = AcquisitionEnv(data)
    f = copy.deepcopy(predictor)
    pol = MaskedMLP(data.n_features, data.n_groups, cfg.hidden, cfg.dropout)

    def loss_fn(xb: Tensor, yb: Tensor, tau: float) -> Tensor:
        surrogate, pred_loss = reinforce_terms(env, pol, f, xb, yb, cfg)
        return surrogate + pred_loss

    hist = fit([pol, f], loss_fn, lambda: validation_score(env, pol, f, data, cfg),
               data.x["train"], data.y["train"], cfg.schedule)
    return TrainedPolicy("reinforce", pol, f, hist)
