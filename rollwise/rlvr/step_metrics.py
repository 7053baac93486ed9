"""The metrics of one RLVR step: the batch's own (reward, accuracy, advantages, lengths) and the update's,
accumulated over micro-batches and ranks so that they equal the whole mini-batch's."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from rollwise.rlvr.batch import RolloutBatch
from rollwise.rlvr.distributed import loss_share, token_share
from rollwise.rlvr.losses import kl_penalty

#: update metrics reduced by their maximum over micro-batches and ranks (per optimizer step)
MAX_METRICS = frozenset({"ratio_max"})
#: which share of the mini-batch weights a metric (``micro_batch_shares``); unnamed metrics are row-weighted
METRIC_SHARE = {**dict.fromkeys(("loss", "pg_loss", "kl_loss", "entropy"), "loss"),
                **dict.fromkeys(("clip_frac_low", "clip_frac_high", "dual_clip_frac", "approx_kl", "ratio_mean"),
                                "tokens")}


def batch_metrics(batch: RolloutBatch, accuracy: float) -> dict[str, Any]:
    """Reward, ``accuracy`` (the task verifier's, from the reward runner), advantage statistics over valid
    tokens, response lengths."""
    r = batch.rewards
    adv = batch.advantages[batch.response_mask.bool()]
    lengths = batch.response_lengths
    return {
        "reward": float(r.mean()),
        "accuracy": accuracy,  # the task's verifier, not the summed reward
        "adv/mean": float(adv.mean()), "adv/std": float(adv.std()) if adv.numel() > 1 else 0.0,
        "adv/abs_mean": float(adv.abs().mean()), "adv/max": float(adv.max()), "adv/min": float(adv.min()),
        "response_length": float(lengths.mean()), "response_length_max": float(lengths.max()),
        "truncated_frac": float(batch.truncated.float().mean()),
    }


def step_record(step: int, batch: RolloutBatch, accuracy: float, rollouts_total: int, lr: float,
                phases: dict[str, float], seconds: float) -> dict[str, Any]:
    """The step's own record: ``batch_metrics``, rollout counts, learning rate and time per phase."""
    return {"step": step, **batch_metrics(batch, accuracy), "rollouts": batch.size, "rollouts_total": rollouts_total,
            "lr": lr, **{f"time/{k}": v for k, v in phases.items()}, "time/step": seconds,
            "tokens_per_s": float(batch.response_lengths.sum()) / max(phases.get("generate", 1e-9), 1e-9)}


def kl_to_reference(batch: RolloutBatch) -> dict[str, float]:
    """``kl_ref``: the k3 estimate of KL(policy || reference) per valid token, when a reference scored the batch."""
    if batch.ref_logprobs is None:
        return {}
    kl = kl_penalty(batch.old_logprobs, batch.ref_logprobs, "k3")
    return {"kl_ref": float((kl * batch.response_mask).sum() / batch.response_mask.sum())}


def micro_batch_shares(part_mask: Tensor, whole_mask: Tensor, rows: float, agg_mode: str) -> dict[str, float]:
    """Weights of a micro-batch's loss (``loss_share`` in ``agg_mode``), token-averaged metrics and row-averaged
    metrics in its mini-batch; masks (b, T) and (B, T), ``rows`` = b / B."""
    return {"loss": loss_share(part_mask, whole_mask, agg_mode), "tokens": token_share(part_mask, whole_mask),
            "rows": rows}


def accumulate(sums: dict[str, float], peaks: dict[str, float], metrics: dict[str, float],
               shares: dict[str, float]) -> None:
    """Add a micro-batch's metrics to this rank's sums (weighted by their ``METRIC_SHARE``) and maxima."""
    for k, v in metrics.items():
        if k in MAX_METRICS:
            peaks[k] = max(peaks.get(k, -math.inf), v)
        else:
            sums[k] = sums.get(k, 0.0) + v * shares[METRIC_SHARE.get(k, "rows")]


def merge_update_metrics(parts: list[tuple[dict[str, float], list[dict[str, float]]]]) -> dict[str, float]:
    """Sum the ranks' shares of the additive update metrics; add the per-step maxima over ranks."""
    out: dict[str, float] = {}
    for sums, _ in parts:
        for k, v in sums.items():
            out[k] = out.get(k, 0.0) + v
    for j in range(len(parts[0][1])):
        for k in dict.fromkeys(key for _, peaks in parts for key in peaks[j]):
            out[k] = out.get(k, 0.0) + max(peaks[j][k] for _, peaks in parts if k in peaks[j])
    return out
