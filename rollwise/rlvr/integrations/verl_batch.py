"""The RolloutBatch a rollwise estimator sees inside verl, built from what verl passes (``verl.py``,
``verl_basis.py``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rollwise.rlvr.batch import RolloutBatch


def group_ids_from_index(index: Any) -> Tensor:
    """verl's ``index`` (B,) (numpy object array of prompt uids) -> (B,) int64 group ids, first seen = 0."""
    ids: dict[Any, int] = {}
    return torch.tensor([ids.setdefault(uid, len(ids)) for uid in list(index)], dtype=torch.long)


def rollout_batch(token_level_rewards: Tensor, response_mask: Tensor, index: Any,
                  old_log_probs: Tensor | None = None) -> RolloutBatch:
    """The RolloutBatch an estimator sees, from verl's estimator arguments.

    rewards = the token-level rewards summed per response (as verl's own outcome estimators do), group ids
    from the uids, and the old log-probs. Token ids, prompts and engine log-probs are not available to a
    verl estimator; they are zero placeholders that the registered estimators do not read.
    """
    return placeholder_batch(response_mask.float(), group_ids_from_index(index),
                             rewards=token_level_rewards.sum(dim=-1), old_logprobs=old_log_probs)


def placeholder_batch(response_mask: Tensor, group_ids: Tensor, **fields: Any) -> RolloutBatch:
    """A RolloutBatch with zero placeholders for the token ids, prompts and engine log-probs."""
    b, t = response_mask.shape
    zeros = {"prompt_ids": torch.zeros(b, 0, dtype=torch.long), "prompt_mask": torch.zeros(b, 0, dtype=torch.long),
             "response_ids": torch.zeros(b, t, dtype=torch.long), "rollout_logprobs": torch.zeros(b, t),
             "truncated": torch.zeros(b, dtype=torch.bool)}
    return RolloutBatch(response_mask=response_mask, group_ids=group_ids, **{**zeros, **fields})
