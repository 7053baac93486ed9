"""Group-relative advantage estimators: GRPO, Dr.GRPO and RLOO (k >= 2 rollouts per prompt).

Each pure function takes outcome rewards ``(B,)``, prompt ``group_ids (B,)`` and ``response_mask (B, T)``,
computes one advantage per rollout and broadcasts it to every valid token. Formulas and the treatment
of one-member groups follow verl ``core_algos.py`` (``compute_grpo_outcome_advantage``,
``compute_rloo_outcome_advantage``); the registered estimators refuse one-member groups instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from rollwise.rlvr.advantages.registry import AdvantageEstimator, register_estimator
from rollwise.rlvr.batch import RolloutBatch


def as_float(rewards: Tensor) -> Tensor:
    """Rewards as a floating tensor (keeps float64 if given, else float32)."""
    return rewards if rewards.is_floating_point() else rewards.float()


def broadcast_to_tokens(values: Tensor, response_mask: Tensor) -> Tensor:
    """Per-rollout values ``(B,)`` -> ``(B, T)``, zero where the mask is 0."""
    return values.unsqueeze(-1) * response_mask.to(values.dtype)


def group_stats(values: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean, unbiased (Bessel) std and size of each element's group, each ``(B,)``.

    A one-member group gets std 0 (its Bessel variance is undefined); callers decide what to do with it.
    A group whose values are all equal gets exactly its value as mean and std 0 in any dtype: a rounded
    float32 mean of 16 copies of 1.1 is one unit in the last place off, and ``(r - mean) / (std + eps)``
    would turn that residual into an advantage of arbitrary sign.
    """
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    counts_f = counts.to(values.dtype)
    mean = torch.zeros_like(counts_f).index_add_(0, inverse, values) / counts_f
    lowest = torch.full_like(counts_f, float("inf")).scatter_reduce(0, inverse, values, "amin")
    highest = torch.full_like(counts_f, float("-inf")).scatter_reduce(0, inverse, values, "amax")
    constant = (lowest == highest)[inverse]
    mean_i = torch.where(constant, values, mean[inverse])
    centred = values - mean_i
    sq = torch.zeros_like(counts_f).index_add_(0, inverse, centred.square())
    std = (sq / (counts_f - 1).clamp_min(1)).sqrt()
    return mean_i, std[inverse], counts[inverse]


def grpo_advantages(rewards: Tensor, group_ids: Tensor, response_mask: Tensor, *, norm_by_std: bool = True,
                    eps: float = 1e-6) -> Tensor:
    """GRPO outcome advantages (Shao et al. 2024, DeepSeekMath arXiv 2402.03300, Sec. 4.1.2).

    A_i = (R_i - mean_g) / (std_g + eps) with the Bessel std of the group; with ``norm_by_std=False``
    A_i = R_i - mean_g (Dr.GRPO). A group of one member gets mean 0 and std 1 (verl), i.e. A_i = R_i.

    Args:
        rewards: (B,) outcome reward per rollout.
        group_ids: (B,) int prompt index; rollouts of one prompt share it (any order, any group sizes).
        response_mask: (B, T) 1 on generated tokens.

    Returns:
        (B, T) advantages, zero where the mask is 0. A group with equal rewards gets 0 (not NaN).
    """
    r = as_float(rewards)
    mean, std, size = group_stats(r, group_ids)
    single = size == 1
    mean = torch.where(single, torch.zeros_like(mean), mean)
    adv = r - mean
    if norm_by_std:
        std = torch.where(single, torch.ones_like(std), std)
        adv = adv / (std + eps)
    return broadcast_to_tokens(adv, response_mask)


def rloo_advantages(rewards: Tensor, group_ids: Tensor, response_mask: Tensor) -> Tensor:
    """RLOO outcome advantages (Ahmadian et al. 2024, arXiv 2402.14740, Eq. 5).

    A_i = R_i - (1/(k-1)) sum_{j != i} R_j = k/(k-1) (R_i - mean_g). A one-member group keeps A_i = R_i
    (verl).

    Args:
        rewards: (B,), group_ids: (B,) int, response_mask: (B, T).

    Returns:
        (B, T) advantages, zero where the mask is 0.
    """
    r = as_float(rewards)
    mean, _, size = group_stats(r, group_ids)
    k = size.to(r.dtype)
    adv = torch.where(size > 1, k / (k - 1).clamp_min(1) * (r - mean), r)
    return broadcast_to_tokens(adv, response_mask)


@dataclass(frozen=True)
class GRPOParams:
    norm_by_std: bool = field(default=True, metadata={"help": "divide by the group std (False: Dr.GRPO)"})
    eps: float = field(default=1e-6, metadata={"help": "added to the group std (verl 1e-6, OpenRLHF 1e-9)"})


@register_estimator("grpo")
class GRPO(AdvantageEstimator):
    """GRPO: group-normalised outcome reward (``grpo_advantages``). Needs k >= 2 rollouts per prompt."""

    min_group_size: ClassVar[int] = 2
    Params: ClassVar[type] = GRPOParams

    def compute(self, batch: RolloutBatch) -> Tensor:
        return grpo_advantages(batch.rewards, batch.group_ids, batch.response_mask,
                               norm_by_std=self.params.norm_by_std, eps=self.params.eps)


@register_estimator("dr_grpo")
class DrGRPO(AdvantageEstimator):
    """Dr.GRPO (Liu et al. 2025, arXiv 2503.20783): A_i = R_i - mean_g, no std division.

    Pair it with ``agg_mode="seq-mean-token-sum-norm"`` in the loss to also remove the length bias.
    """

    min_group_size: ClassVar[int] = 2

    def compute(self, batch: RolloutBatch) -> Tensor:
        return grpo_advantages(batch.rewards, batch.group_ids, batch.response_mask, norm_by_std=False)


@register_estimator("rloo")
class RLOO(AdvantageEstimator):
    """RLOO: leave-one-out group baseline (``rloo_advantages``). Needs k >= 2 rollouts per prompt."""

    min_group_size: ClassVar[int] = 2

    def compute(self, batch: RolloutBatch) -> Tensor:
        return rloo_advantages(batch.rewards, batch.group_ids, batch.response_mask)


@register_estimator("codistill")
class CoDistillGRPO(GRPO):
    """CoDistill-GRPO's small-model advantage A~ = group_norm(r~), GRPO on the effective reward
    r~ = r + alpha r_KD that CoDistill's scoring stage writes to ``batch.extras["effective_reward"]`` (B,)
    (``rollwise.rlvr.codistill``; only valid with ``codistill.enabled``)."""

    def compute(self, batch: RolloutBatch) -> Tensor:
        if "effective_reward" not in batch.extras:
            raise ValueError("advantage estimator 'codistill' reads batch.extras['effective_reward'], which only "
                             "CoDistill-GRPO's scoring stage writes; set codistill.enabled=true")
        return grpo_advantages(batch.extras["effective_reward"], batch.group_ids, batch.response_mask,
                               norm_by_std=self.params.norm_by_std, eps=self.params.eps)
