"""Policy losses: PPO-clip (separate low/high ranges, dual-clip, importance weights), named loss
aggregation modes, KL estimators k1/k2/k3/abs, token entropy, and ``policy_loss`` that combines them.

Everything is a pure function of tensors. Shapes: B rollouts, T padded response length, V vocabulary.
Semantics follow verl ``verl/trainer/ppo/core_algos.py`` (``agg_loss``, ``kl_penalty``,
``compute_policy_loss_vanilla``) at commit 012be9d9 unless a docstring says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from rollwise.config import ConfigError

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")
#: accepted KL estimator names -> canonical name (verl accepts both spellings)
KL_KINDS = {"k1": "k1", "kl": "k1", "k2": "k2", "mse": "k2", "k3": "k3", "low_var_kl": "k3", "abs": "abs"}
LOG_RATIO_BOUND = 20.0  # |log pi/pi_old| is clamped to this before exp (verl uses 20)


def aggregate(values: Tensor, mask: Tensor, mode: str, max_len: int | None = None) -> Tensor:
    """Reduce a per-token matrix to a scalar with a named mode.

    Args:
        values: (B, T) per-token loss (or any per-token quantity).
        mask: (B, T) 1 on tokens that count, 0 elsewhere.
        mode: one of ``AGG_MODES``:
            ``token-mean``: sum over all valid tokens / number of valid tokens (DAPO, verl default);
            ``seq-mean-token-mean``: mean over tokens of each sequence, then over sequences (original GRPO);
            ``seq-mean-token-sum``: sum over tokens of each sequence, then mean over sequences;
            ``seq-mean-token-sum-norm``: sum over every valid token / a constant ``max_len`` (Dr.GRPO,
            arXiv 2503.20783; verl divides the batch total by the padded length T, not also by B).
        max_len: the constant of ``seq-mean-token-sum-norm``; defaults to T = ``values.shape[-1]``.

    The seq-mean modes average over sequences with at least one valid token (a fully masked sequence, e.g.
    one rejected by rollout correction, does not count), which avoids 0/0 in ``seq-mean-token-mean``.
    """
    mask = mask.to(values.dtype)
    token_sums = (values * mask).sum(dim=-1)  # (B,)
    lengths = mask.sum(dim=-1)  # (B,)
    if mode == "token-mean":
        return token_sums.sum() / lengths.sum().clamp_min(1e-8)
    if mode == "seq-mean-token-sum-norm":
        return token_sums.sum() / float(max_len if max_len is not None else values.shape[-1])
    if mode in ("seq-mean-token-mean", "seq-mean-token-sum"):
        seq_valid = (lengths > 0).to(values.dtype)
        per_seq = token_sums / lengths.clamp_min(1e-8) if mode == "seq-mean-token-mean" else token_sums
        return (per_seq * seq_valid).sum() / seq_valid.sum().clamp_min(1.0)
    raise ConfigError(f"unknown loss aggregation mode '{mode}'; valid modes: {', '.join(AGG_MODES)}")


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, kind: str) -> Tensor:
    """Per-token KL estimate between the sampling policy and a reference (Schulman 2020, "Approximating KL").

    Args:
        logprobs: (B, T) log-probabilities of the sampled tokens under the policy that sampled them.
        ref_logprobs: (B, T) log-probabilities of the same tokens under the reference policy.
        kind: ``k1``/``kl``: d; ``abs``: |d|; ``k2``/``mse``: d^2/2; ``k3``/``low_var_kl``:
            exp(-d) + d - 1 with d = logprobs - ref_logprobs, d clamped to [-20, 20] and the result to
            [-10, 10] (verl's clamps).

    Returns:
        (B, T) per-token estimate (not masked).
    """
    if kind not in KL_KINDS:
        raise ConfigError(f"unknown KL estimator '{kind}'; valid kinds: {', '.join(KL_KINDS)}")
    kind = KL_KINDS[kind]
    delta = logprobs - ref_logprobs
    if kind == "k1":
        return delta
    if kind == "abs":
        return delta.abs()
    if kind == "k2":
        return 0.5 * delta.square()
    neg = (-delta).clamp(-20.0, 20.0)  # log(pi_ref / pi)
    return (neg.exp() - neg - 1.0).clamp(-10.0, 10.0)


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of each token's categorical distribution, ``(B, T, V) -> (B, T)``.

    H = logsumexp(z) - sum_v softmax(z)_v z_v, which needs no log of a small probability; logits of
    ``-inf`` (banned tokens) contribute 0.
    """
    probs = torch.softmax(logits, dim=-1)
    finite = torch.where(torch.isfinite(logits), logits, torch.zeros_like(logits))
    return torch.logsumexp(logits, dim=-1) - (probs * finite).sum(dim=-1)


def ppo_clip_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip_c: float | None = None,
    agg_mode: str = "token-mean",
    is_weights: Tensor | None = None,
    max_len: int | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO clipped surrogate (Schulman et al. 2017, Eq. 7) with DAPO's decoupled clip range
    (Yu et al. 2025, "clip-higher") and optional dual-clip (Ye et al. 2020, arXiv 1912.09729).

    Args:
        logprobs: (B, T) log pi_theta of the sampled tokens (carries the gradient).
        old_logprobs: (B, T) log pi_old of the same tokens (no gradient needed).
        advantages: (B, T) token-level advantages.
        mask: (B, T) 1 on tokens that enter the loss.
        clip_low, clip_high: the ratio is clipped to [1 - clip_low, 1 + clip_high].
        dual_clip_c: if given (> 1), the loss of a token with negative advantage is capped at -A * c.
        agg_mode, max_len: see ``aggregate``.
        is_weights: (B, T) per-token importance weights (TIS/MIS/AIS corrections); detached and
            multiplied into the per-token loss after clipping.

    Returns:
        The scalar loss and metrics over valid tokens: ``clip_frac_low`` (A < 0 and ratio < 1 - clip_low),
        ``clip_frac_high`` (A > 0 and ratio > 1 + clip_high), ``dual_clip_frac`` (A < 0 and the dual
        cap is active), ``approx_kl`` (k3 estimate of KL(pi_old || pi_theta)), ``ratio_mean``, ``ratio_max``.
    """
    _check_clip(clip_low, clip_high, dual_clip_c)
    log_ratio = (logprobs - old_logprobs).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
    ratio = log_ratio.exp()
    surr = -advantages * ratio
    surr_clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(surr, surr_clipped)  # Eq. 7: min of the objectives = max of the losses
    dual_active = torch.zeros_like(per_token, dtype=torch.bool)
    if dual_clip_c is not None:
        cap = -advantages * dual_clip_c
        dual_active = (advantages < 0) & (per_token > cap)
        per_token = torch.where(dual_active, cap, per_token)
    if is_weights is not None:
        per_token = per_token * is_weights.detach()
    loss = aggregate(per_token, mask, agg_mode, max_len)
    with torch.no_grad():
        clipped = surr_clipped > surr
        metrics = _clip_metrics(mask, ratio, log_ratio, clipped & (advantages > 0), clipped & (advantages < 0),
                                dual_active)
    return loss, metrics


def _clip_metrics(mask: Tensor, ratio: Tensor, log_ratio: Tensor, high: Tensor, low: Tensor,
                  dual: Tensor) -> dict[str, float]:
    valid = mask > 0
    n = valid.sum().clamp_min(1)

    def frac(x: Tensor) -> float:
        return float((x & valid).sum() / n)

    k3 = kl_penalty(torch.zeros_like(log_ratio), log_ratio, "k3")  # KL(pi_old || pi_theta), samples from old
    return {
        "clip_frac_low": frac(low),
        "clip_frac_high": frac(high),
        "dual_clip_frac": frac(dual),
        "approx_kl": float(k3[valid].sum() / n),
        "ratio_mean": float(ratio[valid].sum() / n),
        "ratio_max": float(ratio[valid].max()) if valid.any() else 1.0,
    }


def _check_clip(clip_low: float, clip_high: float, dual_clip_c: float | None) -> None:
    if not 0.0 <= clip_low < 1.0:
        raise ConfigError(f"clip_low={clip_low!r} is invalid; it must be in [0, 1)")
    if clip_high < 0.0:
        raise ConfigError(f"clip_high={clip_high!r} is invalid; it must be >= 0")
    if dual_clip_c is not None and dual_clip_c <= 1.0:
        raise ConfigError(f"dual_clip_c={dual_clip_c!r} is invalid; it must be > 1 (or None to disable)")


@dataclass
class LossConfig:
    """Settings of ``policy_loss``. Defaults: verl's PPO-clip with token-mean and no KL/entropy terms."""

    clip_low: float = field(default=0.2, metadata={"help": "ratio clipped below at 1 - clip_low"})
    clip_high: float = field(default=0.2, metadata={"help": "ratio clipped above at 1 + clip_high (DAPO: 0.28)"})
    dual_clip_c: float | None = field(default=None, metadata={"help": "dual-clip cap c > 1 for A < 0; None: off"})
    agg_mode: str = field(default="token-mean", metadata={"help": f"loss aggregation: {', '.join(AGG_MODES)}"})
    kl_coef: float = field(default=0.0, metadata={"help": "weight of the KL-to-reference loss term; 0: off"})
    kl_kind: str = field(default="k3", metadata={"help": "KL estimator for the loss term: k1, k2, k3, abs"})
    entropy_coef: float = field(default=0.0, metadata={"help": "weight of the entropy bonus; 0: off"})
    max_len: int | None = field(default=None, metadata={"help": "constant of seq-mean-token-sum-norm; None: T"})

    def __post_init__(self) -> None:
        _check_clip(self.clip_low, self.clip_high, self.dual_clip_c)
        if self.agg_mode not in AGG_MODES:
            raise ConfigError(f"agg_mode={self.agg_mode!r} is invalid; valid modes: {', '.join(AGG_MODES)}")
        if self.kl_kind not in KL_KINDS:
            raise ConfigError(f"kl_kind={self.kl_kind!r} is invalid; valid kinds: {', '.join(KL_KINDS)}")
        for name in ("kl_coef", "entropy_coef"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)!r} is invalid; it must be >= 0")
        if self.max_len is not None and (isinstance(self.max_len, bool) or not isinstance(self.max_len, int)
                                         or self.max_len <= 0):
            raise ConfigError(f"max_len={self.max_len!r} is invalid; it must be a positive int or None")


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    config: LossConfig,
    *,
    ref_logprobs: Tensor | None = None,
    entropy: Tensor | None = None,
    is_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Total policy loss = PPO-clip + kl_coef * agg(KL(pi_theta, pi_ref)) - entropy_coef * agg(H).

    Args:
        logprobs, old_logprobs, advantages, mask, is_weights: as in ``ppo_clip_loss``, all (B, T).
        config: clip ranges, aggregation mode and the coefficients of the optional terms.
        ref_logprobs: (B, T) reference log-probs; needed when ``config.kl_coef > 0``. The KL is estimated
            on ``logprobs`` (the current policy, so it carries the gradient), as verl's ``use_kl_loss``.
        entropy: (B, T) per-token entropy of pi_theta (``entropy_from_logits``); needed when
            ``config.entropy_coef > 0``.

    Returns:
        The scalar loss and metrics: ``loss``, ``pg_loss``, the ``ppo_clip_loss`` metrics, ``kl_loss`` when
        ``ref_logprobs`` is given and ``entropy`` when ``entropy`` is given (logged even if the coefficient
        is 0; the term enters the loss only when its coefficient is > 0).
    """
    if config.kl_coef > 0 and ref_logprobs is None:
        raise ValueError("policy_loss: kl_coef > 0 needs ref_logprobs (compute the reference log-probs)")
    if config.entropy_coef > 0 and entropy is None:
        raise ValueError("policy_loss: entropy_coef > 0 needs the per-token entropy (entropy_from_logits)")
    pg_loss, metrics = ppo_clip_loss(
        logprobs, old_logprobs, advantages, mask, clip_low=config.clip_low, clip_high=config.clip_high,
        dual_clip_c=config.dual_clip_c, agg_mode=config.agg_mode, is_weights=is_weights, max_len=config.max_len)
    total = pg_loss
    metrics["pg_loss"] = float(pg_loss.detach())
    if ref_logprobs is not None:
        kl_loss = aggregate(kl_penalty(logprobs, ref_logprobs, config.kl_kind), mask, config.agg_mode,
                            config.max_len)
        metrics["kl_loss"] = float(kl_loss.detach())
        if config.kl_coef > 0:
            total = total + config.kl_coef * kl_loss
    if entropy is not None:
        ent = aggregate(entropy, mask, config.agg_mode, config.max_len)
        metrics["entropy"] = float(ent.detach())
        if config.entropy_coef > 0:
            total = total - config.entropy_coef * ent
    metrics["loss"] = float(total.detach())
    return total, metrics
