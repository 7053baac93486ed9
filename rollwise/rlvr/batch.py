"""RolloutBatch: the one data contract between rollout, reward, advantage, correction, loss and trainer.

Shapes (B = number of rollouts = prompts x n, P = padded prompt length, T = padded response length):

- ``prompt_ids``   (B, P) int64, LEFT-padded prompt tokens; ``prompt_mask`` (B, P) 1 on real tokens.
- ``response_ids`` (B, T) int64, RIGHT-padded sampled tokens (EOS included when sampled).
- ``response_mask`` (B, T) float, 1 on every generated token up to and including EOS.
- ``rollout_logprobs`` (B, T) float, the ENGINE's log-probabilities of the sampled tokens (its own
  precision and sampling distribution); 0 where ``response_mask`` is 0.
- ``group_ids`` (B,) int64, index of the prompt a rollout belongs to; rollouts of one prompt share it.
- ``truncated`` (B,) bool, True when generation hit the length limit without EOS.

Stages fill the optional fields in order: ``rewards`` (B,), ``old_logprobs`` (B, T) (trainer precision,
teacher-forced), ``ref_logprobs`` (B, T), ``advantages`` (B, T), ``is_weights`` (B, T) and
``loss_mask`` (B, T) (from the rollout-correction stage). ``prompt_features`` (B, D) is filled only for
estimators that declare they read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor


@dataclass
class RolloutBatch:
    prompt_ids: Tensor
    prompt_mask: Tensor
    response_ids: Tensor
    response_mask: Tensor
    rollout_logprobs: Tensor
    group_ids: Tensor
    truncated: Tensor
    prompts: list[str] = field(default_factory=list)
    completions: list[str] = field(default_factory=list)
    #: data-set columns per rollout (e.g. ``{"answer": [...]}``), passed to reward functions as kwargs
    columns: dict[str, list[Any]] = field(default_factory=dict)
    rewards: Tensor | None = None
    old_logprobs: Tensor | None = None
    ref_logprobs: Tensor | None = None
    advantages: Tensor | None = None
    is_weights: Tensor | None = None
    loss_mask: Tensor | None = None
    prompt_features: Tensor | None = None
    #: per-rollout scalars that some stages add (e.g. KD reward); (B,) tensors
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.response_ids.shape[0])

    @property
    def response_lengths(self) -> Tensor:
        """(B,) number of generated tokens per rollout (EOS included)."""
        return self.response_mask.sum(dim=-1)

    @property
    def num_groups(self) -> int:
        return int(torch.unique(self.group_ids).numel())

    def group_sizes(self) -> Tensor:
        """(B,) size of the group each rollout belongs to."""
        _, inverse, counts = torch.unique(self.group_ids, return_inverse=True, return_counts=True)
        return counts[inverse]

    def sequences(self) -> tuple[Tensor, Tensor]:
        """Prompt+response token ids (B, P+T) and attention mask (B, P+T) for teacher-forced passes."""
        ids = torch.cat([self.prompt_ids, self.response_ids], dim=1)
        mask = torch.cat([self.prompt_mask, self.response_mask.to(self.prompt_mask.dtype)], dim=1)
        return ids, mask

    def select(self, index: Tensor) -> RolloutBatch:
        """A sub-batch (mini-batch) of rows ``index``: every tensor/list field is indexed along dim 0."""
        idx = index.tolist()
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                out[f.name] = v[index]
            elif isinstance(v, list):
                out[f.name] = [v[i] for i in idx]
            elif f.name == "columns":
                out[f.name] = {k: [col[i] for i in idx] for k, col in v.items()}
            elif f.name == "extras":
                out[f.name] = {k: t[index] for k, t in v.items()}
            else:
                out[f.name] = v
        return RolloutBatch(**out)

    def with_(self, **changes: Any) -> RolloutBatch:
        """A copy with some fields replaced."""
        return replace(self, **changes)

    def require(self, *names: str, stage: str = "") -> None:
        """Raise a clear error when a stage reads a field that an earlier stage has not filled."""
        missing = [n for n in names if getattr(self, n, None) is None]
        if missing:
            where = f" for {stage}" if stage else ""
            raise ValueError(f"RolloutBatch is missing {', '.join(missing)}{where}; "
                             "an earlier stage of the training step must fill it")
