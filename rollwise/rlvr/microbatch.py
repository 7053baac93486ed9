"""The forward and backward pass of one micro-batch of the update (``Trainer.update`` accumulates them), and
when the update's own forward may stand in for the separate old-log-prob pass (``reuse_blocker``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rollwise.rlvr.batch import RolloutBatch
from rollwise.rlvr.losses import LossConfig, policy_loss

#: ``forward(model, batch, with_entropy)``: teacher-forced log-probs (B, T) and entropies (B, T) or None
TeacherForced = Callable[..., tuple[Tensor, Tensor | None]]


def loss_backward(policy: torch.nn.Module, mb: RolloutBatch, loss_cfg: LossConfig, forward: TeacherForced,
                  scale: float) -> tuple[dict[str, float], Tensor]:
    """Back-propagate ``scale`` x the policy loss of micro-batch ``mb`` (its share of the mini-batch's loss);
    returns the loss metrics of ``mb`` (unscaled) and its detached log-probs (b, T).

    Reused old log-probs (``mb.old_logprobs`` None): the detached log-probs of this same forward, so the
    PPO ratio is exactly 1 (one on-policy update, as in TRL).
    """
    logprobs, entropy = forward(policy, mb, with_entropy=True)
    old = logprobs.detach() if mb.old_logprobs is None else mb.old_logprobs
    token_mask = mb.response_mask if mb.loss_mask is None else mb.response_mask * mb.loss_mask
    loss, metrics = policy_loss(logprobs, old, mb.advantages, token_mask, loss_cfg,
                                ref_logprobs=mb.ref_logprobs, entropy=entropy, is_weights=mb.is_weights)
    (loss * scale).backward()
    return {**metrics, "loss": float(loss.detach())}, logprobs.detach()


def zero_backward(policy: torch.nn.Module, mb: RolloutBatch, forward: TeacherForced) -> None:
    """A forward and backward pass that adds exactly zero to every gradient: FSDP2 gathers parameters and
    reduce-scatters gradients inside these passes, so a rank with fewer micro-batches than another in a
    mini-batch runs these until the counts match (``DataParallel.backward_passes``)."""
    logprobs, _ = forward(policy, mb)
    (logprobs.sum() * 0.0).backward()


#: engines that sample the trainer's own full-precision weights (so rollout log-probs are the policy's)
OWN_WEIGHT_ENGINES = frozenset({"lean", "hf"})


def reuse_blocker(cfg, reads: frozenset[str], data_parallel: bool) -> str | None:
    """Why the update's own detached log-probs cannot stand in for a separate old-log-prob pass (None: they can).

    They equal the old log-probs (up to float rounding) only for one on-policy update of the weights the engine
    sampled, and only stages that run after the update may read them. ``cfg`` is the run's ``RLVRConfig``.
    """
    a, t = cfg.algorithm, cfg.train
    checks = [
        (t.ppo_epochs != 1 or t.mini_batches != 1, "several PPO epochs or mini-batches update between passes"),
        (cfg.rollout.engine not in OWN_WEIGHT_ENGINES, f"rollout.engine={cfg.rollout.engine!r} samples another copy"),
        (a.correction != "none", f"algorithm.correction={a.correction!r} weights tokens before the update"),
        ("old_logprobs" in reads or "ref_logprobs" in reads, f"estimator {a.estimator!r} reads log-probs"),
        (a.loss.kl_coef > 0, "a reference model (algorithm.loss.kl_coef > 0)"),
        (cfg.codistill.enabled, "CoDistill scores with two models"),
        (data_parallel, "data-parallel ranks would have to gather them"),
    ]
    return next((why for hit, why in checks if hit), None)
