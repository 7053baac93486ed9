"""The rollout-engine interface every engine implements (transformers, quantized, Ray, vLLM)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from rollwise.rlvr.batch import RolloutBatch


@dataclass
class SamplingConfig:
    """How rollouts are sampled."""

    n: int = 1  # rollouts per prompt
    temperature: float = 1.0  # softmax temperature; log-probs are of the temperature-scaled distribution
    top_p: float = 1.0  # nucleus sampling (1.0 = off; exact V(x) needs 1.0)
    max_new_tokens: int = 8  # response length limit; a response that hits it without EOS is truncated


class RolloutEngine(ABC):
    """Samples ``n`` completions per prompt and returns them with the engine's own log-probs.

    The engine may hold its own copy of the policy (another precision, another process); the trainer
    calls :meth:`sync_weights` after every optimizer step.
    """

    @abstractmethod
    def generate(self, prompts: list[str], sampling: SamplingConfig, seed: int) -> RolloutBatch:
        """Rollouts for ``prompts`` (each repeated ``sampling.n`` times, grouped contiguously).

        ``seed`` makes sampling reproducible. ``group_ids[i]`` is the index of the prompt in ``prompts``.
        Fills prompt/response ids and masks, ``rollout_logprobs``, ``truncated``, ``prompts`` and
        ``completions``; reward and later fields stay empty.
        """

    @abstractmethod
    def sync_weights(self, policy: torch.nn.Module) -> None:
        """Make the engine sample from ``policy``'s current weights."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers or memory (no-op for in-process engines)."""
