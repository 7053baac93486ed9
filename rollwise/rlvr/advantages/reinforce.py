"""REINFORCE++ (Hu et al. 2025, arXiv 2501.03262) and REINFORCE++-baseline: globally normalised advantages.

REINFORCE++ places the outcome reward on the last valid token, optionally subtracts a per-token KL
penalty beta * kl_t (KL in the reward), accumulates returns G_t = sum_{s>=t} gamma^{s-t} r_s and whitens
them over every valid token of the batch. REINFORCE++-baseline first subtracts the group mean of the
sequence score R_i (KL included) and then whitens. Formulas follow verl ``core_algos.py``
(``compute_reinforce_plus_plus_outcome_advantage``, ``..._baseline_outcome_advantage``,
``verl_F.masked_whiten``); ``variance="population"`` gives OpenRLHF's normalisation instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from rollwise.config import ConfigError
from rollwise.rlvr.advantages.group import as_float, broadcast_to_tokens, group_stats
from rollwise.rlvr.advantages.registry import AdvantageEstimator, register_estimator
from rollwise.rlvr.batch import RolloutBatch
from rollwise.rlvr.losses import KL_KINDS, kl_penalty

#: how ``whiten`` scales: verl (Bessel variance, rsqrt(var + 1e-8)), OpenRLHF (population variance,
#: rsqrt(max(var, 1e-8))), or centre only (OpenRLHF ``no_std_norm``)
VARIANCES = ("bessel", "population", "none")


def whiten(values: Tensor, mask: Tensor, variance: str = "bessel") -> Tensor:
    """Masked global whitening (REINFORCE++ "global normalisation"), ``(B, T) -> (B, T)``.

    (x - mu) / sigma with mu and sigma over every (i, t) where ``mask`` is 1; zero where ``mask`` is 0.
    A batch whose valid values are all equal gives exactly 0 (not NaN, not a rounding residual).
    """
    if variance not in VARIANCES:
        raise ConfigError(f"variance={variance!r} is invalid; valid choices: {', '.join(VARIANCES)}")
    m = mask.to(values.dtype)
    n = m.sum()
    if variance == "bessel" and n < 2:
        raise ValueError(f"whiten with Bessel variance needs at least 2 valid tokens, got {int(n)}")
    if n == 0:
        return torch.zeros_like(values)
    valid = values[mask.bool()]
    if bool(valid.min() == valid.max()):  # exactly 0, not a rounded mean's residual scaled up by 1e4
        return torch.zeros_like(values)
    mean = (values * m).sum() / n
    centred = (values - mean) * m
    if variance == "none":
        return centred
    var = centred.square().sum() / n
    if variance == "bessel":
        return centred * torch.rsqrt(var * n / (n - 1) + 1e-8)
    return centred * torch.rsqrt(var.clamp_min(1e-8))


def outcome_token_rewards(rewards: Tensor, response_mask: Tensor, kl: Tensor | None = None,
                          kl_coef: float = 0.0) -> Tensor:
    """Token rewards ``(B, T)``: r_{i,t} = 1[t = T_i] r_i - kl_coef * kl_{i,t} on valid tokens (Sec. 3.1).

    T_i is the last valid token of rollout i; a rollout with no valid token gets no reward.
    """
    r = as_float(rewards)
    m = response_mask.to(r.dtype)
    positions = torch.arange(m.shape[-1], device=m.device)
    last = (m * (positions + 1)).argmax(dim=-1)  # index of the last valid token
    token_rewards = torch.zeros_like(m)
    token_rewards[torch.arange(m.shape[0]), last] = r
    token_rewards = token_rewards * m
    if kl is not None and kl_coef != 0.0:
        token_rewards = token_rewards - kl_coef * kl.to(r.dtype) * m
    return token_rewards


def discounted_returns(token_rewards: Tensor, response_mask: Tensor, gamma: float = 1.0) -> Tensor:
    """G_{i,t} = sum_{s >= t} gamma^{s-t} r_{i,s} over valid tokens, ``(B, T) -> (B, T)``."""
    m = response_mask.to(token_rewards.dtype)
    returns = torch.zeros_like(token_rewards)
    running = torch.zeros_like(token_rewards[:, 0])
    for t in reversed(range(token_rewards.shape[-1])):
        running = (token_rewards[:, t] + gamma * running) * m[:, t]
        returns[:, t] = running
    return returns


def reinforce_pp_advantages(rewards: Tensor, response_mask: Tensor, *, kl: Tensor | None = None,
                            kl_coef: float = 0.0, gamma: float = 1.0, variance: str = "bessel") -> Tensor:
    """REINFORCE++ (k = 1) advantages: whitened token returns (arXiv 2501.03262, Sec. 3).

    Args:
        rewards: (B,) outcome reward per rollout.
        response_mask: (B, T) 1 on generated tokens.
        kl: (B, T) per-token KL estimate between the sampling and reference policies (KL in the reward),
            e.g. ``kl_penalty(old_logprobs, ref_logprobs, "k1")``; used when ``kl_coef`` != 0.
        kl_coef: beta, the weight of the KL penalty in the reward.
        gamma: discount of the token returns (1 in RLVR).
        variance: ``bessel`` (verl, default), ``population`` (OpenRLHF) or ``none`` (centre only).

    Returns:
        (B, T) advantages, zero where the mask is 0.
    """
    token_rewards = outcome_token_rewards(rewards, response_mask, kl, kl_coef)
    returns = discounted_returns(token_rewards, response_mask, gamma)
    return whiten(returns, response_mask, variance)


def sequence_scores(rewards: Tensor, response_mask: Tensor, kl: Tensor | None = None,
                    kl_coef: float = 0.0) -> Tensor:
    """R_i = r_i - kl_coef * sum_t kl_{i,t} over valid tokens, ``(B,)``.

    A rollout with no valid token keeps its reward r_i, so it counts in its group's mean as it does in
    GRPO, RLOO and verl (its own advantage is still 0: it has no token to carry it).
    """
    scores = as_float(rewards)
    if kl is not None and kl_coef != 0.0:
        scores = scores - kl_coef * (kl.to(scores.dtype) * response_mask.to(scores.dtype)).sum(dim=-1)
    return scores


def reinforce_pp_baseline_advantages(rewards: Tensor, group_ids: Tensor, response_mask: Tensor, *,
                                     kl: Tensor | None = None, kl_coef: float = 0.0,
                                     variance: str = "bessel") -> Tensor:
    """REINFORCE++-baseline (k >= 1) advantages: group-mean-centred scores, whitened over the batch.

    A~_i = R_i - mean_g(R) with R_i = r_i - kl_coef * sum_t kl_{i,t} (a one-member group has mean 0),
    broadcast to tokens and whitened over every valid token (verl; arXiv 2501.03262 v9).

    Args:
        rewards: (B,), group_ids: (B,) int, response_mask: (B, T); kl, kl_coef, variance as in
        ``reinforce_pp_advantages``.

    Returns:
        (B, T) advantages, zero where the mask is 0.
    """
    scores = sequence_scores(rewards, response_mask, kl, kl_coef)
    mean, _, size = group_stats(scores, group_ids)
    centred = scores - torch.where(size > 1, mean, torch.zeros_like(mean))
    return whiten(broadcast_to_tokens(centred, response_mask), response_mask, variance)


@dataclass(frozen=True)
class KLRewardParams:
    variance: str = field(default="bessel", metadata={"help": "whitening: bessel (verl), population "
                                                              "(OpenRLHF), none (centre only)"})
    kl_coef: float = field(default=0.0, metadata={"help": "beta of the KL penalty in the reward; 0: off"})
    kl_kind: str = field(default="k1", metadata={"help": "KL estimator in the reward: k1, k2, k3, abs"})

    def __post_init__(self) -> None:
        if self.variance not in VARIANCES:
            raise ConfigError(f"variance={self.variance!r} is invalid; valid choices: {', '.join(VARIANCES)}")
        if self.kl_kind not in KL_KINDS:
            raise ConfigError(f"kl_kind={self.kl_kind!r} is invalid; valid kinds: {', '.join(KL_KINDS)}")
        if self.kl_coef < 0:
            raise ConfigError(f"kl_coef={self.kl_coef!r} is invalid; it must be >= 0")


@dataclass(frozen=True)
class ReinforcePPParams(KLRewardParams):
    gamma: float = field(default=1.0, metadata={"help": "discount of the token returns (1 in RLVR)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"gamma={self.gamma!r} is invalid; it must be in [0, 1]")


class _KLInReward(AdvantageEstimator):
    """Shared part of the REINFORCE++ estimators: the optional KL-in-reward input."""

    reads: ClassVar[frozenset[str]] = frozenset({"rewards", "response_mask"})
    Params: ClassVar[type] = KLRewardParams

    def fields_read(self) -> frozenset[str]:
        if self.params.kl_coef > 0:
            return self.reads | {"old_logprobs", "ref_logprobs"}
        return self.reads

    def token_kl(self, batch: RolloutBatch) -> Tensor | None:
        """(B, T) KL of the sampling (old) policy to the reference, or None when the KL is off."""
        if self.params.kl_coef == 0:
            return None
        return kl_penalty(batch.old_logprobs, batch.ref_logprobs, self.params.kl_kind)


@register_estimator("reinforce_pp")
class ReinforcePP(_KLInReward):
    """REINFORCE++ with one rollout per prompt (``reinforce_pp_advantages``); ignores ``group_ids``."""

    Params: ClassVar[type] = ReinforcePPParams

    def compute(self, batch: RolloutBatch) -> Tensor:
        return reinforce_pp_advantages(batch.rewards, batch.response_mask, kl=self.token_kl(batch),
                                       kl_coef=self.params.kl_coef, gamma=self.params.gamma,
                                       variance=self.params.variance)


@register_estimator("reinforce_pp_baseline")
class ReinforcePPBaseline(_KLInReward):
    """REINFORCE++-baseline (``reinforce_pp_baseline_advantages``); a group of one has baseline 0."""

    reads: ClassVar[frozenset[str]] = frozenset({"rewards", "group_ids", "response_mask"})

    def compute(self, batch: RolloutBatch) -> Tensor:
        return reinforce_pp_baseline_advantages(batch.rewards, batch.group_ids, batch.response_mask,
                                                kl=self.token_kl(batch), kl_coef=self.params.kl_coef,
                                                variance=self.params.variance)
