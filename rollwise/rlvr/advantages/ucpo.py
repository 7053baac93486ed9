"""UCPO (Lochab, Li, Zhang 2026, arXiv 2605.00365): GRPO that keeps probability spread over correct answers.

GRPO's objective only sees how much probability sits on the correct set C(x), not how it is spread inside
it, so sampling noise lets popular correct answers crowd out rare ones. UCPO re-weights the positive
advantages of a group's correct responses towards those the old policy finds unlikely.
The paper's method section was not available: the estimators below follow the authors' released code
(AnamikaLochab/UCPO), and the penalty they are read against, KL(pi_C || Uniform(C)), is reconstructed.

Within a group, over its correct rollouts S = {i : r_i > 0} (length-normalised, detached)::

    s_i = (1/|y_i|) sum_t log pi_old(y_it | .)                       (sequence score)
    q_i = exp(s_i) / sum_{j in S} exp(s_j)                           (within-group conditional prob.)

Estimators (the arithmetic follows the authors' ``core_algos.py``, commit 93ce506):

- ``ucpo`` (their ``iq``, ``compute_dgrpo_advantage_outcome_invq_l``): in a group with
  |S| >= 2, A_i <- A_base |S| w_i with w_i = (1 - tau)/|S| + tau t_i and t_i proportional to 1/q_i, so the
  correct-set advantage sum is unchanged and tau = 0 is GRPO.
- ``divgrpo`` (their ``compute_dgrpo_advantage_outcome_A_mod[_l]``): A_i += tau (-log q_i - H(q))
  for i in S (|S| >= 2), the centred surprisal, i.e. the gradient of -KL(pi_C || Uniform) w.r.t. s_i
  divided by q_i. Unlike ``ucpo`` it also acts on all-correct groups.

Both optionally subtract the "sharpening" penalty alpha max(0, -log q_i - H(q)) from incorrect responses
(q over the incorrect subgroup); the paper's headline runs use alpha = 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from rollwise.config import ConfigError
from rollwise.rlvr.advantages.group import broadcast_to_tokens, grpo_advantages
from rollwise.rlvr.advantages.registry import AdvantageEstimator, register_estimator
from rollwise.rlvr.batch import RolloutBatch


def sequence_scores(old_logprobs: Tensor, response_mask: Tensor, length_norm: bool = True) -> Tensor:
    """s_i: the (per-token mean when ``length_norm``) old-policy log-prob of each response, detached.

    Args:
        old_logprobs: (B, T) behaviour-policy log-probs of the sampled tokens.
        response_mask: (B, T) 1 on generated tokens (EOS included).
    Returns:
        (B,) scores (the authors' code; ``length_norm=False`` is the sequence log-prob of ``divgrpo``).
    """
    mask = response_mask.to(old_logprobs.dtype)
    total = (old_logprobs.detach() * mask).sum(dim=-1)
    return total / mask.sum(dim=-1).clamp_min(1.0) if length_norm else total


def subgroup_log_q(scores: Tensor, member: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Self-normalised log q over the members of each group (the authors' code).

    Args:
        scores: (B,) sequence scores s_i.
        member: (B,) bool, which rollouts belong to the subgroup (e.g. the correct ones).
        group_ids: (B,) int prompt index.
    Returns:
        log_q (B,) (0 for non-members), the subgroup entropy H(q) of each row's group (B,) and the subgroup
        size of each row's group (B,).
    """
    _, inverse = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if inverse.numel() else 0
    s = scores.detach().double()
    masked = torch.where(member, s, torch.full_like(s, -torch.inf))
    top = torch.full((n_groups,), -torch.inf, dtype=s.dtype).scatter_reduce(0, inverse, masked, "amax")
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    mass = torch.zeros(n_groups, dtype=s.dtype).index_add_(0, inverse, (masked - top[inverse]).exp())
    lse = top + mass.clamp_min(1e-300).log()
    log_q = torch.where(member, s - lse[inverse], torch.zeros_like(s))
    ent = torch.zeros(n_groups, dtype=s.dtype).index_add_(0, inverse, -(log_q.exp() * log_q) * member)
    size = torch.zeros(n_groups, dtype=torch.long).index_add_(0, inverse, member.long())
    return log_q.to(scores.dtype), ent[inverse].to(scores.dtype), size[inverse]


def inverse_q_weights(log_q: Tensor, member: Tensor, group_ids: Tensor, tau: float, q_floor: float = 1e-6
                      ) -> Tensor:
    """|S| w_i with w_i = (1 - tau)/|S| + tau t_i, t_i = (1/max(q_i, q_floor)) / sum_S 1/max(q_j, q_floor).

    As the authors' ``iq`` estimator. The weights of a group's members average to 1 (sum to |S|); equal q gives 1.
    Returns (B,), 1 for non-members.
    """
    _, inverse = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if inverse.numel() else 0
    inv_q = torch.where(member, 1.0 / log_q.exp().clamp_min(q_floor), torch.zeros_like(log_q))
    inv_sum = torch.zeros(n_groups, dtype=log_q.dtype).index_add_(0, inverse, inv_q)[inverse]
    size = torch.zeros(n_groups, dtype=log_q.dtype).index_add_(0, inverse, member.to(log_q.dtype))[inverse]
    t = inv_q / inv_sum.clamp_min(1e-30)
    w = (1.0 - tau) / size.clamp_min(1.0) + tau * t
    return torch.where(member, size * w, torch.ones_like(w))


def sharpening_penalty(scores: Tensor, incorrect: Tensor, group_ids: Tensor, alpha: float) -> Tensor:
    """alpha max(0, -log q_i - H(q)) over each group's incorrect subgroup with >= 2 members, else 0 (B,).

    The authors' optional "sharpening" of rare incorrect responses.
    """
    if alpha == 0.0:
        return torch.zeros_like(scores)
    log_q, ent, size = subgroup_log_q(scores, incorrect, group_ids)
    penalty = (alpha * (-log_q - ent)).clamp_min(0.0)
    return torch.where(incorrect & (size >= 2), penalty, torch.zeros_like(penalty))


def _correct_sets(rewards: Tensor, old_logprobs: Tensor, response_mask: Tensor, group_ids: Tensor,
                  length_norm: bool, eps: float) -> tuple[Tensor, ...]:
    """What both UCPO estimators start from, per rollout (B,): the GRPO advantage (``grpo_advantages``), the
    correct flag, the sequence score, log q within the group's correct set and that set's entropy H(q), and
    whether the rollout is in a correct set of at least two (where the correction acts)."""
    ones = torch.ones_like(rewards, dtype=torch.float32 if not rewards.is_floating_point() else rewards.dtype)
    base = grpo_advantages(rewards, group_ids, ones.unsqueeze(-1), eps=eps).squeeze(-1)
    correct = rewards > 0
    scores = sequence_scores(old_logprobs, response_mask, length_norm).to(base.dtype)
    log_q, ent, n_correct = subgroup_log_q(scores, correct, group_ids)
    return base, correct, scores, log_q, ent, correct & (n_correct >= 2)


def ucpo_advantages(rewards: Tensor, old_logprobs: Tensor, response_mask: Tensor, group_ids: Tensor, *,
                    tau: float = 0.2, alpha: float = 0.0, length_norm: bool = True, q_floor: float = 1e-6,
                    eps: float = 1e-6) -> Tensor:
    """UCPO inverse-q advantages (the authors' ``iq`` estimator).

    1. A_i = GRPO advantage (group mean / Bessel std, ``grpo_advantages``).
    2. In each group with |S| >= 2 correct rollouts: q from ``subgroup_log_q`` of the detached scores.
    3-4. A_i <- A_base |S| w_i for i in S (``inverse_q_weights``); sum_{i in S} A_i is unchanged.
    5. Incorrect rollouts keep A_i, minus ``sharpening_penalty`` when alpha > 0.

    Args:
        rewards: (B,) outcome rewards; a rollout is correct when its reward is > 0 (binary rewards).
        old_logprobs: (B, T) behaviour-policy log-probs (no gradient flows through them).
        response_mask: (B, T), group_ids: (B,) int.
    Returns:
        (B, T) advantages, zero where the mask is 0.
    """
    base, correct, scores, log_q, _, act = _correct_sets(rewards, old_logprobs, response_mask, group_ids,
                                                         length_norm, eps)
    weights = inverse_q_weights(log_q, act, group_ids, tau, q_floor)
    adv = torch.where(act, base * weights, base)
    adv = adv - sharpening_penalty(scores, ~correct, group_ids, alpha)
    return broadcast_to_tokens(adv.detach(), response_mask)


def centred_surprisal_advantages(rewards: Tensor, old_logprobs: Tensor, response_mask: Tensor, group_ids: Tensor,
                                 *, tau: float = 0.1, alpha: float = 0.0, length_norm: bool = False,
                                 eps: float = 1e-6) -> Tensor:
    """``divgrpo``: GRPO plus tau (-log q_i - H(q)) on correct rollouts of groups with |S| >= 2.

    The bonus sums to 0 over each group's correct set (a centred surprisal). ``length_norm=False`` is the
    authors' ``divgrpo`` (sequence log-prob), ``True`` their ``divgrpo_l``. Shapes as ``ucpo_advantages``.
    """
    base, correct, scores, log_q, ent, act = _correct_sets(rewards, old_logprobs, response_mask, group_ids,
                                                            length_norm, eps)
    adv = torch.where(act, base + tau * (-log_q - ent), base)
    adv = adv - sharpening_penalty(scores, ~correct, group_ids, alpha)
    return broadcast_to_tokens(adv.detach(), response_mask)


def correct_set_diagnostics(rewards: Tensor, old_logprobs: Tensor, response_mask: Tensor, group_ids: Tensor,
                            length_norm: bool = True) -> dict[str, float]:
    """What the authors log per step, over groups with >= 2 correct rollouts.

    Returns ``ucpo/Hq_correct`` (mean H(q)), ``ucpo/Hq_norm`` (mean H(q)/log|S|), ``ucpo/max_q``,
    ``ucpo/n_correct`` (mean |S|) and ``ucpo/groups_active`` (fraction of groups with |S| >= 2); NaN when
    no group qualifies.
    """
    correct = rewards > 0
    scores = sequence_scores(old_logprobs, response_mask, length_norm)
    log_q, ent, size = subgroup_log_q(scores, correct, group_ids)
    _, first = _first_of_group(group_ids)
    act = size[first] >= 2
    n_groups = first.numel()
    if not bool(act.any()):
        nan = float("nan")
        return {"ucpo/Hq_correct": nan, "ucpo/Hq_norm": nan, "ucpo/max_q": nan, "ucpo/n_correct": nan,
                "ucpo/groups_active": 0.0}
    _, inverse = torch.unique(group_ids, return_inverse=True)
    q = torch.where(correct, log_q.exp(), torch.zeros_like(log_q))
    max_q = torch.zeros(n_groups, dtype=q.dtype).scatter_reduce(0, inverse, q, "amax")
    g_ent, g_size = ent[first][act], size[first][act].to(ent.dtype)
    return {"ucpo/Hq_correct": float(g_ent.mean()), "ucpo/Hq_norm": float((g_ent / g_size.log()).mean()),
            "ucpo/max_q": float(max_q[act].mean()), "ucpo/n_correct": float(g_size.mean()),
            "ucpo/groups_active": float(act.float().mean())}


def _first_of_group(group_ids: Tensor) -> tuple[Tensor, Tensor]:
    """Sorted unique group ids and the index of the first row of each."""
    uniq, inverse = torch.unique(group_ids, return_inverse=True)
    first = torch.full((uniq.numel(),), group_ids.numel(), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(group_ids.numel()), "amin")
    return uniq, first


def _check(name: str, tau: float, alpha: float, q_floor: float | None = None) -> None:
    if not 0.0 <= tau <= 1.0 and name == "ucpo":
        raise ConfigError(f"ucpo: tau={tau} must be in [0, 1] (0 = GRPO, 1 = advantage proportional to 1/q)")
    if tau < 0.0:
        raise ConfigError(f"{name}: tau={tau} must be >= 0")
    if alpha < 0.0:
        raise ConfigError(f"{name}: alpha={alpha} must be >= 0 (0 = no sharpening, the paper's setting)")
    if q_floor is not None and not 0.0 < q_floor < 1.0:
        raise ConfigError(f"{name}: q_floor={q_floor} must be in (0, 1)")


@dataclass(frozen=True)
class SurprisalParams:
    """The parameters UCPO and Div-GRPO share; each subclass gives ``tau`` and ``length_norm`` its own default and
    help (re-declared fields keep their place, so every estimator lists tau, alpha, length_norm, eps first)."""

    tau: float = 0.0
    alpha: float = field(default=0.0, metadata={"help": "sharpening of rare incorrect responses (0 = none, the "
                                                        "UCPO paper's setting)"})
    length_norm: bool = False
    eps: float = field(default=1e-6, metadata={"help": "added to the group std (UCPO authors 1e-8; grpo here 1e-6)"})


@dataclass(frozen=True)
class UCPOParams(SurprisalParams):
    tau: float = field(default=0.2, metadata={"help": "mix towards 1/q weights: 0 = GRPO, 1 = A ~ 1/q (paper 0.2)"})
    length_norm: bool = field(default=True, metadata={"help": "q from per-token mean old log-probs (authors' iq)"})
    q_floor: float = field(default=1e-6, metadata={"help": "q is clamped to this before 1/q (authors 1e-6)"})

    def __post_init__(self) -> None:
        _check("ucpo", self.tau, self.alpha, self.q_floor)


@dataclass(frozen=True)
class DivGRPOParams(SurprisalParams):
    tau: float = field(default=0.1, metadata={"help": "weight of the centred-surprisal bonus (authors' default 0.1)"})
    length_norm: bool = field(default=False, metadata={"help": "False: divgrpo (sequence log-prob); True: divgrpo_l"})

    def __post_init__(self) -> None:
        _check("divgrpo", self.tau, self.alpha)


_READS = frozenset({"rewards", "group_ids", "response_mask", "old_logprobs"})


@register_estimator("ucpo")
class UCPO(AdvantageEstimator):
    """UCPO inverse-q re-weighting (``ucpo_advantages``); reads the trainer's old log-probs. k >= 2."""

    reads: ClassVar[frozenset[str]] = _READS
    min_group_size: ClassVar[int] = 2
    Params: ClassVar[type] = UCPOParams

    def compute(self, batch: RolloutBatch) -> Tensor:
        p = self.params
        return ucpo_advantages(batch.rewards, batch.old_logprobs, batch.response_mask, batch.group_ids,
                               tau=p.tau, alpha=p.alpha, length_norm=p.length_norm, q_floor=p.q_floor, eps=p.eps)


@register_estimator("divgrpo")
class DivGRPO(UCPO):
    """The centred-surprisal bonus variant (``centred_surprisal_advantages``); reads what UCPO reads. k >= 2."""

    Params: ClassVar[type] = DivGRPOParams

    def compute(self, batch: RolloutBatch) -> Tensor:
        p = self.params
        return centred_surprisal_advantages(batch.rewards, batch.old_logprobs, batch.response_mask, batch.group_ids,
                                            tau=p.tau, alpha=p.alpha, length_norm=p.length_norm, eps=p.eps)
