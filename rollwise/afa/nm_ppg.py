"""NM-PPG: non-myopic active feature acquisition with pathwise policy gradients (arXiv 2605.05511).

Only the abstract is public: it names the idea (a relaxed whole-trajectory rollout with pathwise gradients,
entropy regularisation, staged temperature sharpening), and the design below is our reconstruction of it:
a straight-through Gumbel-softmax rollout of the whole acquisition trajectory with soft mask accumulation,
so that the terminal prediction loss sends pathwise gradients to every earlier decision, plus entropy
regularisation and staged temperature sharpening. ``myopic=True`` detaches the carried state and charges
a one-step loss per step (GDFS-like credit), the ablation of non-myopia.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rollwise.afa.data import AFAData
from rollwise.afa.env import AcquisitionEnv, MaskedMLP, hard_rollout, policy_chooser
from rollwise.afa.schedule import ScheduleConfig, fit


@dataclass
class NMPPGConfig:
    """NM-PPG settings (all reconstructed unless noted; defaults are our pilot's settings)."""

    horizon: int = 8  # T: acquisitions per training rollout (= largest evaluated budget)
    entropy: float = 0.01  # beta, weight of the policy-entropy bonus in the loss L
    terminal_weight: float = 1.0  # w: 1 = purely terminal loss; < 1 adds the anytime mean of step losses
    rollout: Literal["st", "soft"] = "st"  # "st": straight-through (hard forward); "soft": relaxed forward
    myopic: bool = False  # detach carried state, charge one-step loss per step (GDFS-like ablation)
    gamma: float = 1.0  # Concrete logit scale: logits / gamma before sampling (AFABench uses 0.2)
    hidden: tuple[int, ...] = (128, 128)  # policy MLP widths
    dropout: float = 0.1  # policy dropout
    stop: Literal["none", "relaxed"] = "none"  # "relaxed": STOP as action K+1 with soft survival alpha_t
    cost_weight: float = 0.0  # lambda, weight of acquisition cost (soft budgets, stop="relaxed")
    stop_bias_init: float = 0.0  # initial bias of the STOP logit (stop="relaxed")
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)  # optimiser and temperature stages


@dataclass
class RelaxedRollout:
    """One relaxed rollout. ``loss``: scalar objective L (:func:`relaxed_rollout`); ``terminal``: ``(n,)`` CE at the horizon;
    ``first_logits``: ``(n, K[+1])`` step-0 policy logits (for credit tests); ``masks``: list of
    ``(n, K)`` selection masks s_1..s_T; ``cost``: ``(n,)`` relaxed cost; ``alive``: ``(n,)`` final alpha."""

    loss: Tensor
    terminal: Tensor
    first_logits: Tensor
    masks: list[Tensor]
    cost: Tensor
    alive: Tensor


def gumbel_like(t: Tensor) -> Tensor:
    """Standard Gumbel noise g = -log(-log u), u ~ U(0, 1), shaped like ``t``."""
    u = torch.rand_like(t).clamp(1e-10, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def straight_through_sample(logits: Tensor, tau: float, hard: bool = True) -> tuple[Tensor, Tensor]:
    """Gumbel-softmax sample (Jang et al. 2017). ``logits: (n, A)`` -> (y, y_hard), both ``(n, A)``.

    y_soft = softmax((l + g) / tau); y_hard = onehot(argmax y_soft); with ``hard`` the straight-through
    value y = y_hard + y_soft - stopgrad(y_soft) (forward discrete, backward soft).
    """
    y_soft = torch.softmax((logits + gumbel_like(logits)) / tau, dim=-1)
    y_hard = F.one_hot(y_soft.argmax(-1), logits.shape[-1]).to(y_soft.dtype)
    y = y_hard + (y_soft - y_soft.detach()) if hard else y_soft  # brackets: forward exactly y_hard
    return y, y_hard


def entropy(logits: Tensor) -> Tensor:
    """Entropy of softmax(logits) per row: ``(n, A) -> (n,)`` (masked entries contribute 0)."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def relaxed_rollout(env: AcquisitionEnv, policy: nn.Module, predictor: nn.Module, x: Tensor, y: Tensor,
                    tau: float, cfg: NMPPGConfig) -> RelaxedRollout:
    """Relaxed rollout of ``cfg.horizon`` steps on a batch ``x: (n, d)``, ``y: (n,)``.

    Soft mask accumulation (probabilistic OR): s_{t+1} = s_t + alpha_t (1 - s_t) * y_t^acq;
    alpha_{t+1} = alpha_t (1 - y_t^stop). Hard budget (stop="none"): alpha = 1 and
    L = w CE(f(o_T)) + (1 - w) mean_t CE(f(o_t)); relaxed STOP: L = sum_t alpha_t y_t^stop CE(f(o_t))
    + alpha_T CE(f(o_T)) + lambda sum_t alpha_t c . y_t^acq. Always minus beta sum_t alpha_t H(pi(.|o_t)).
    """
    n, K, T = x.shape[0], env.K, cfg.horizon
    with_stop = cfg.stop == "relaxed"
    s = torch.zeros(n, K)
    s_hard = torch.zeros(n, K)
    alive = torch.ones(n)
    pred = torch.zeros(n)
    cost = torch.zeros(n)
    ent = torch.zeros(n)
    step_losses, masks = [], []
    first_logits = None
    for t in range(T):
        s_in = s.detach() if cfg.myopic else s
        obs = env.observe(x, s_in)
        logits = env.legal_logits(policy(obs), s_hard)
        if t == 0:
            first_logits = logits
        ent = ent + alive * entropy(logits)
        yt, yt_hard = straight_through_sample(logits / cfg.gamma, tau, hard=cfg.rollout == "st")
        y_acq = yt[:, :K]
        if with_stop:
            pred = pred + alive * yt[:, K] * F.cross_entropy(predictor(obs), y, reduction="none")
        cost = cost + alive * (y_acq @ env.costs)
        s = s_in + alive[:, None] * (1.0 - s_in) * y_acq  # soft OR accumulation
        s_hard = torch.maximum(s_hard, (alive.detach() > 0.5).float()[:, None] * yt_hard[:, :K])
        masks.append(s)
        if cfg.myopic or cfg.terminal_weight < 1.0:
            step_losses.append(F.cross_entropy(predictor(env.observe(x, s)), y, reduction="none"))
        if with_stop:
            alive = alive * (1.0 - yt[:, K])
    terminal = F.cross_entropy(predictor(env.observe(x, s)), y, reduction="none")
    if with_stop:
        per_row = pred + alive * terminal + cfg.cost_weight * cost
    elif cfg.myopic:
        per_row = torch.stack(step_losses).mean(0)  # one-step (GDFS-like) credit per decision
    else:
        per_row = cfg.terminal_weight * terminal
        if cfg.terminal_weight < 1.0:
            per_row = per_row + (1.0 - cfg.terminal_weight) * torch.stack(step_losses).mean(0)
    loss = (per_row - cfg.entropy * ent).mean()
    assert first_logits is not None
    return RelaxedRollout(loss, terminal, first_logits, masks, cost, alive)


@dataclass
class TrainedPolicy:
    """A trained acquisition policy with its (jointly trained) predictor and validation history."""

    name: str
    policy: nn.Module | None
    predictor: nn.Module
    history: list[float]


def make_policy(data: AFAData, cfg: NMPPGConfig) -> MaskedMLP:
    """pi_theta: ``(n, 2d) -> (n, K)`` logits, or ``(n, K + 1)`` with the STOP logit last."""
    with_stop = cfg.stop == "relaxed"
    pol = MaskedMLP(data.n_features, data.n_groups + int(with_stop), cfg.hidden, cfg.dropout)
    if with_stop:
        with torch.no_grad():
            pol.net[-1].bias[-1] = cfg.stop_bias_init
    return pol


def validation_score(env: AcquisitionEnv, policy: nn.Module, predictor: nn.Module, data: AFAData,
                     cfg: NMPPGConfig) -> float:
    """Deterministic validation rollout: AUC over budgets 1..T, or -(CE + lambda cost) with STOP."""
    roll = hard_rollout(env, policy_chooser(policy), predictor, data.x["val"], data.y["val"], cfg.horizon)
    if cfg.stop == "relaxed":
        return -float((roll.loss[-1] + cfg.cost_weight * roll.cost[-1]).mean())
    return roll.auc()


def train_nm_ppg(data: AFAData, predictor: nn.Module, cfg: NMPPGConfig, name: str = "nm_ppg") -> TrainedPolicy:
    """Train pi_theta and a copy of the pretrained ``predictor`` jointly on L (:func:`relaxed_rollout`) with the staged
    temperature schedule (``schedule.py``)."""
    env = AcquisitionEnv(data)
    f = copy.deepcopy(predictor)
    pol = make_policy(data, cfg)

    def loss_fn(xb: Tensor, yb: Tensor, tau: float) -> Tensor:
        return relaxed_rollout(env, pol, f, xb, yb, tau, cfg).loss

    hist = fit([pol, f], loss_fn, lambda: validation_score(env, pol, f, data, cfg),
               data.x["train"], data.y["train"], cfg.schedule)
    return TrainedPolicy(name, pol, f, hist)
