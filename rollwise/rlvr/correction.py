"""Correction of the mismatch between the rollout engine and the trainer.

A correction maps a batch (with ``rollout_logprobs`` from the engine and ``old_logprobs`` from the
trainer) to per-token importance weights ``(B, T)`` (detached, multiplied into the policy loss), an
optional rejection mask ``(B, T)``, and diagnostics. Diagnostics are computed for every correction,
``none`` included, so the mismatch is always visible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from rollwise.config import ConfigError
from rollwise.rlvr.batch import RolloutBatch

LOG_RATIO_BOUND = 20.0  # exponents are clamped to [-20, 20] before exp


def mismatch_diagnostics(log_ratio: Tensor, mask: Tensor) -> dict[str, float]:
    """Always-on diagnostics of ``log_ratio = log pi_train - log pi_rollout`` over valid tokens.

    Returns the effective-sample-size ratio of sequence weights (1 = no mismatch), the mean absolute
    token log-ratio, and the k3 estimate of KL(rollout || train) per token.
    """
    m = mask.bool()
    if not m.any():
        return {}
    lr = log_ratio.clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
    seq_lr = (lr * mask).sum(-1)
    w = torch.exp(seq_lr - seq_lr.max())
    ess = float(w.sum() ** 2 / (w.pow(2).sum() * w.numel()))
    k3 = (torch.exp(lr) - 1 - lr)[m]
    return {"mismatch/ess_ratio": ess, "mismatch/abs_log_ratio": float(lr[m].abs().mean()),
            "mismatch/k3_kl": float(k3.mean())}


class Correction:
    """Base class: subclasses compute weights and masks; diagnostics come for free."""

    name: ClassVar[str] = ""

    def __init__(self, **params: Any) -> None:
        if params:
            raise ConfigError(f"correction {self.name!r} takes no parameters {sorted(params)}")

    def weights(self, log_ratio: Tensor, mask: Tensor) -> tuple[Tensor | None, Tensor | None, dict[str, float]]:
        return None, None, {}

    def __call__(self, batch: RolloutBatch) -> tuple[Tensor | None, Tensor | None, dict[str, float]]:
        batch.require("old_logprobs", "rollout_logprobs", stage=f"correction {self.name!r}")
        log_ratio = (batch.old_logprobs - batch.rollout_logprobs) * batch.response_mask
        w, keep, metrics = self.weights(log_ratio, batch.response_mask)
        return w, keep, {**mismatch_diagnostics(log_ratio, batch.response_mask), **metrics}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - stateless by default
        pass


CORRECTIONS: dict[str, type[Correction]] = {}


def register_correction(name: str) -> Callable[[type[Correction]], type[Correction]]:
    def deco(cls: type[Correction]) -> type[Correction]:
        cls.name = name
        CORRECTIONS[name] = cls
        return cls

    return deco


def make_correction(name: str, **params: Any) -> Correction:
    if name not in CORRECTIONS:
        raise ConfigError(f"algorithm.correction={name!r} is not known; valid choices: {', '.join(sorted(CORRECTIONS))}")
    return CORRECTIONS[name](**params)


@register_correction("none")
class NoCorrection(Correction):
    """Use rollouts as if they came from the trainer's policy (diagnostics only)."""
