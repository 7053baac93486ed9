"""Stages an algorithm adds to the ordinary RLVR step, and what one rollout shard hands to the next stage.

The trainer (``trainer.py``) runs the same step for every algorithm. An algorithm that needs more than an
estimator, a correction and loss terms (CoDistill-GRPO's second model: ``codistill.py``) supplies an
:class:`ExtraStages` object; every method of the base class does nothing, so the plain step is the
special case with no extra stages::

    rollout shard   generate -> reward -> old log-probs -> extra.score_shard      (per shard, before gather)
    rollout         gather the shards -> extra.merge_shards                        (step metrics)
    advantages      estimator -> correction                                        (the ordinary stages)
    update          the policy's update -> extra.after_update                       (e.g. a second model's)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from rollwise.rlvr.batch import RolloutBatch
from rollwise.rlvr.engines.base import RolloutEngine


@dataclass
class Shard:
    """One rollout shard after every per-shard stage.

    ``batch`` is what the update trains on; ``rewards`` and ``truncated`` (both (n,)) cover every rollout
    generated for the shard (a stage may keep fewer rows in ``batch``); ``reward_metrics`` are the reward
    runner's; ``extra`` is what the extra stages measured on the shard (merged by ``merge_shards``).
    """

    batch: RolloutBatch
    rewards: Tensor
    truncated: Tensor
    reward_metrics: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)


class ExtraStages:
    """No extra stages: the plain step. Subclasses override what they add."""

    def attach(self, trainer: Any) -> RolloutEngine:
        """Called once at the end of the ``Trainer``'s construction; returns the engine the step generates
        with (the trainer's own, or one that wraps it)."""
        assert trainer.engine is not None
        return trainer.engine

    def begin_step(self, step: int) -> None:
        """Before the step's rollouts are generated."""

    def score_shard(self, step: int, shard: int, batch: RolloutBatch) -> tuple[RolloutBatch, dict[str, Any]]:
        """After one shard is generated, rewarded and teacher-forced: the batch to keep and what was measured."""
        return batch, {}

    def merge_shards(self, extras: list[dict[str, Any]]) -> dict[str, float]:
        """The step metrics of the gathered shards' ``extra`` (every rank's, in shard order)."""
        return {}

    def after_update(self, step: int, batch: RolloutBatch) -> dict[str, float]:
        """After the policy's update on ``batch``; returns step metrics."""
        return {}

    def evaluate(self) -> dict[str, float]:
        """Evaluation metrics added to the policy's (on rank 0)."""
        return {}

    def state(self) -> dict[str, Any]:
        """Entries added to the checkpoint's trainer state."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what ``state`` added."""
