"""Correction of the mismatch between the rollout engine and the trainer: the standard corrections and AIS
(Zhou et al., arXiv 2605.13907).

A correction maps a batch (with ``rollout_logprobs`` from the engine and ``old_logprobs`` from the
trainer) to per-token importance weights ``(B, T)`` (detached, multiplied into the policy loss), an
optional rejection mask ``(B, T)`` (multiplied into the token mask, so rejected tokens leave the loss
denominator), and diagnostics. Diagnostics are computed for every correction, ``none`` included, so the
mismatch is always visible.

Registry (``algorithm.correction``):

- ``none``: w = 1 (plain GRPO on engine samples).
- ``tis``: truncated IS, ``level = token`` (Yao et al., w_t = min(rho_t, C)) or ``sequence``
  (w_i = min(exp(sum_t delta_t), C)); ``cap = inf`` gives untruncated IS.
- ``mis``: masked IS, ``level = token`` (IcePop) or ``sequence`` (Seq-MIS): samples whose ratio leaves
  [lower, upper] are rejected (mask 0), the others keep their ratio. ``level = geometric`` uses each
  sequence's geometric-mean ratio exp(mean_t delta_t); with ``weight = one`` it is geo-RS (length-invariant
  rejection, verl's ``seq_mean_k1``). ``tis`` accepts ``geometric`` too.
- ``ais``: adaptive IS (arXiv 2605.13907): w_hat = (1 - lambda) + lambda * min(rho, C), with lambda from
  three per-batch diagnostics. The AIS abstract names the diagnostics (weight reliability, divergence severity,
  variance amplification) but its method section was not available: how each is computed, the maps to [0, 1]
  and the combination rule are reconstructed, and every guess is a field of :class:`AISConfig`.

Notation: delta = log pi_old - log mu (trainer minus engine), rho = exp(delta). All exponents are clamped to
[-20, 20] (verl convention), so no weight overflows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import torch
from torch import Tensor

from rollwise.config import ConfigError, from_dict
from rollwise.registry import Registry
from rollwise.rlvr.batch import RolloutBatch

LOG_RATIO_BOUND = 20.0  # exponents are clamped to [-20, 20] before exp
CfgT = TypeVar("CfgT")


# ------------------------------------------------------------------------------------------ primitives
def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over ``mask`` (same shape); 0 when the mask is empty."""
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def masked_cv(x: Tensor, mask: Tensor) -> float:
    """Coefficient of variation std/mean of ``x`` over ``mask`` (population std); 0 for < 2 entries."""
    m = mask.bool()
    if int(m.sum()) < 2:
        return 0.0
    v = x[m].double()
    return float(v.std(unbiased=False) / v.mean().abs().clamp_min(1e-12))


def ess_ratio(log_w: Tensor) -> float:
    """Kish effective-sample-size ratio (sum w)^2 / (N sum w^2) in (0, 1] of weights given in log space.

    Args:
        log_w: (N,) log-weights; shifted by their max before exp, so any range is safe.
    """
    if log_w.numel() == 0:
        return 1.0
    w = torch.exp(log_w.double() - log_w.double().max())
    return float(w.sum() ** 2 / (w.numel() * w.pow(2).sum()))


def sequence_log_ratio(log_ratio: Tensor, mask: Tensor) -> Tensor:
    """Sum of the token log-ratios of each sequence, (B, T) -> (B,) (the log of the sequence weight)."""
    return (log_ratio * mask).sum(-1)


LEVELS = ("token", "sequence", "geometric")


def level_log_weights(log_ratio: Tensor, mask: Tensor, level: str) -> Tensor:
    """Log-weights at ``level``, broadcast to (B, T): per token, the sequence sum on every token, or
    (``geometric``) the sequence mean over its valid tokens, i.e. the log of the geometric-mean ratio
    (verl's ``seq_mean_k1``; a length-invariant sequence statistic, used by geo-RS rejection)."""
    if level == "token":
        return log_ratio
    if level == "sequence":
        return sequence_log_ratio(log_ratio, mask)[:, None].expand_as(log_ratio)
    if level == "geometric":
        mean = sequence_log_ratio(log_ratio, mask) / mask.sum(-1).clamp_min(1.0)
        return mean[:, None].expand_as(log_ratio)
    raise ConfigError(f"level={level!r} is not valid; valid choices: {', '.join(LEVELS)}")


def bounded_exp(log_w: Tensor) -> Tensor:
    """exp(clamp(log_w, -20, 20))."""
    return torch.exp(log_w.clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND))


def mismatch_diagnostics(log_ratio: Tensor, mask: Tensor) -> dict[str, float]:
    """Always-on diagnostics of ``log_ratio = log pi_train - log pi_rollout`` (B, T) over valid tokens.

    Returns ``mismatch/ess_ratio`` (Kish ESS ratio of the sequence weights; 1 = no mismatch),
    ``mismatch/abs_log_ratio`` (mean |delta|, AIS's divergence severity D), ``mismatch/k3_kl`` (k3 estimate
    of KL(rollout || train) per token, mean of rho - 1 - delta), ``mismatch/weight_cv`` (CV of the raw token
    ratios rho) and ``mismatch/chi2_token`` (E[rho^2] - 1, verl's chi2_token).
    """
    m = mask.bool()
    if not m.any():
        return {}
    lr = log_ratio.clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
    rho = torch.exp(lr)
    return {
        "mismatch/ess_ratio": ess_ratio(sequence_log_ratio(lr, mask)[m.any(-1)]),
        "mismatch/abs_log_ratio": float(lr[m].abs().mean()),
        "mismatch/k3_kl": float((rho - 1 - lr)[m].mean()),
        "mismatch/weight_cv": masked_cv(rho, mask),
        "mismatch/chi2_token": float(rho[m].pow(2).mean() - 1),
    }


def applied_weight_metrics(weights: Tensor | None, keep: Tensor | None, mask: Tensor) -> dict[str, float]:
    """Statistics of the weights a correction applies, over tokens it keeps, and its rejection fraction."""
    kept = mask if keep is None else mask * keep
    n_valid = float(mask.sum().clamp_min(1.0))
    out = {"correction/mask_frac": 1.0 - float(kept.sum()) / n_valid}
    w = torch.ones_like(mask) if weights is None else weights
    if kept.bool().any():
        out.update({"correction/weight_mean": float(w[kept.bool()].mean()),
                    "correction/weight_max": float(w[kept.bool()].max()),
                    "correction/weight_cv": masked_cv(w, kept)})
    return out


def parse_params(cls: type[CfgT], params: dict[str, Any], name: str) -> CfgT:
    """Typed config ``cls`` from ``algorithm.correction_params``; unknown keys and bad types raise ConfigError."""
    cfg = from_dict(cls, dict(params), prefix="algorithm.correction_params")
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


# ------------------------------------------------------------------------------------------ registry
class Correction:
    """Base class: subclasses compute weights and masks; diagnostics come for free."""

    name: ClassVar[str] = ""

    #: typed parameters from ``algorithm.correction_params`` (a dataclass, optionally with ``validate``), or None
    Config: ClassVar[type | None] = None

    def __init__(self, **params: Any) -> None:
        if self.Config is not None:
            self.cfg = parse_params(self.Config, params, self.name)
        elif params:
            raise ConfigError(f"correction {self.name!r} takes no parameters {sorted(params)}")

    def weights(self, log_ratio: Tensor, mask: Tensor, advantages: Tensor | None = None
                ) -> tuple[Tensor | None, Tensor | None, dict[str, float]]:
        """Weights (B, T) or None (= 1), keep mask (B, T) or None (= keep all), metrics.

        ``log_ratio`` (B, T) is finite and 0 on padding; ``mask`` (B, T) is 1 on valid tokens;
        ``advantages`` (B, T) is the batch's advantages when the estimator has run.
        """
        return None, None, {}

    def __call__(self, batch: RolloutBatch) -> tuple[Tensor | None, Tensor | None, dict[str, float]]:
        batch.require("old_logprobs", "rollout_logprobs", stage=f"correction {self.name!r}")
        mask = batch.response_mask
        raw = (batch.old_logprobs - batch.rollout_logprobs).detach()
        finite = torch.isfinite(raw) | (mask == 0)
        bad_seq = ~finite.all(-1)  # (B,) engine returned -inf/nan for a sampled token
        valid = mask * (~bad_seq).to(mask.dtype)[:, None]
        log_ratio = torch.where(finite, raw, torch.zeros_like(raw)) * valid
        with torch.no_grad():
            w, keep, metrics = self.weights(log_ratio, valid, batch.advantages)
        if bad_seq.any():
            keep = (torch.ones_like(mask) if keep is None else keep) * (~bad_seq).to(mask.dtype)[:, None]
        return w, keep, {**mismatch_diagnostics(log_ratio, valid), "correction/clip_frac": 0.0,
                         **applied_weight_metrics(w, keep, mask), **metrics,
                         "mismatch/nonfinite_seq_frac": float(bad_seq.float().mean())}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - stateless by default
        pass


CORRECTIONS: Registry[type[Correction]] = Registry("rollout correction", key="algorithm.correction")


def register_correction(name: str) -> Callable[[type[Correction]], type[Correction]]:
    """Class decorator: register a ``Correction`` subclass under ``name`` (sets ``cls.name``)."""

    def deco(cls: type[Correction]) -> type[Correction]:
        cls.name = name
        return CORRECTIONS.add(name, cls)

    return deco


def make_correction(name: str, **params: Any) -> Correction:
    return CORRECTIONS[name](**params)


@register_correction("none")
class NoCorrection(Correction):
    """Use rollouts as if they came from the trainer's policy (diagnostics only)."""


class RatioCorrection(Correction):
    """A correction that reads only the importance ratio rho = exp(level log-weights) at ``cfg.level``."""

    def weights(self, log_ratio: Tensor, mask: Tensor, advantages: Tensor | None = None
                ) -> tuple[Tensor | None, Tensor | None, dict[str, float]]:
        return self.from_ratio(bounded_exp(level_log_weights(log_ratio, mask, self.cfg.level)), mask)

    def from_ratio(self, rho: Tensor, mask: Tensor) -> tuple[Tensor | None, Tensor | None, dict[str, float]]:
        """Weights, keep mask and metrics (as :meth:`Correction.weights`) from the ratios ``rho`` (B, T)."""
        raise NotImplementedError


# ------------------------------------------------------------------------------------------ TIS
@dataclass
class TISConfig:
    level: Literal["token", "sequence", "geometric"] = "token"  # per token (Yao et al.), sequence, or geometric mean
    cap: float = 2.0  # upper truncation C (inf = untruncated IS); verl/FlashRL default 2
    floor: float = 0.0  # lower truncation (0 = none); the SGLang/Miles band uses 0.5

    def validate(self) -> None:
        if not self.cap > 0 or self.floor < 0 or self.floor > self.cap:
            raise ConfigError(f"tis: need 0 <= floor <= cap and cap > 0, got floor={self.floor}, cap={self.cap}")


@register_correction("tis")
class TruncatedIS(RatioCorrection):
    """Truncated importance sampling (Yao et al. 2025, "Your Efficient RL Framework Secretly Brings You
    Off-Policy RL Training"): w = clamp(rho, floor, C) at token, sequence or geometric-mean level."""

    Config = TISConfig
    cfg: TISConfig

    def from_ratio(self, rho: Tensor, mask: Tensor) -> tuple[Tensor | None, Tensor | None, dict[str, float]]:
        clipped = ((rho > self.cfg.cap) | (rho < self.cfg.floor)).to(mask.dtype)
        w = rho.clamp(self.cfg.floor, self.cfg.cap) * mask
        return w, None, {"correction/clip_frac": float(masked_mean(clipped, mask))}


# ------------------------------------------------------------------------------------------ MIS
@dataclass
class MISConfig:
    #: reject tokens (IcePop), whole sequences by their ratio (Seq-MIS) or by their geometric-mean ratio
    #: (``geometric`` with ``weight="one"``: geo-RS, verl's ``seq_mean_k1`` rejection)
    level: Literal["token", "sequence", "geometric"] = "sequence"
    lower: float = 0.0  # reject when the ratio is below this (IcePop's band is recalled as [0.5, 5])
    upper: float = 2.0  # reject when the ratio is above this (Seq-MIS threshold C)
    weight: Literal["ratio", "one"] = "ratio"  # kept samples are weighted by their ratio, or by 1 (pure rejection)

    def validate(self) -> None:
        if self.lower < 0 or not self.upper > self.lower:
            raise ConfigError(f"mis: need 0 <= lower < upper, got lower={self.lower}, upper={self.upper}")


@register_correction("mis")
class MaskedIS(RatioCorrection):
    """Masked importance sampling: keep = lower <= rho <= upper, w = rho * keep (or keep alone).

    Per token it is IcePop (Ling team); per sequence, Seq-MIS (Liu, Li et al. 2025, "When Speed Kills
    Stability"); on the geometric-mean ratio with ``weight="one"``, geo-RS."""

    Config = MISConfig
    cfg: MISConfig

    def from_ratio(self, rho: Tensor, mask: Tensor) -> tuple[Tensor | None, Tensor | None, dict[str, float]]:
        keep = ((rho >= self.cfg.lower) & (rho <= self.cfg.upper)).to(mask.dtype) * mask
        w = (rho if self.cfg.weight == "ratio" else torch.ones_like(rho)) * keep
        return w, keep, {}


# ------------------------------------------------------------------------------------------ AIS
@dataclass
class AISConfig:
    #: truncation C of the token weights min(rho, C) (that AIS keeps a cap comes from third-party reading notes
    #: on the paper's body, not from the paper itself); the remaining fields are reconstructed choices
    cap: float = 2.0
    tau_d: float = 0.05  # reconstructed divergence scale: S = 1 - exp(-D / tau_d), D = mean |delta|
    #: reconstructed: D read per token (mean_t |delta_t|, the first design) or per sequence (mean_i |sum_t delta_it|,
    #: design amendment "testbed-seq" in docs/ais.md: the mismatch that costs accuracy on long traces)
    severity: Literal["token", "sequence"] = "token"
    tau_v: float = 0.5  # reconstructed variance scale: P = 1 / (1 + (V / tau_v)^2)
    ess_weights: Literal["seq_raw", "seq_geo", "token"] = "seq_raw"  # reconstructed: weights whose ESS gives R
    variance: Literal["cv", "adv_ratio"] = "cv"  # reconstructed: V = CV of min(rho, C), or the advantage-weighted ratio
    combine: Literal["product", "sigmoid"] = "product"  # reconstructed: S*R*P, or sigmoid(a S + b R - c V + d)
    sigmoid_coefs: list[float] = field(default_factory=lambda: [8.0, 4.0, 4.0, -6.0])  # a, b, c, d of sigmoid
    affordability: Literal["trust", "flipped"] = "trust"  # reconstructed: lambda = S*(R*P), or S*(1 - R*P)
    interp: Literal["linear", "power"] = "linear"  # w_hat = (1-lambda) + lambda*w, or tempered w^lambda
    lam_min: float = 0.0  # lower clip of lambda
    lam_max: float = 1.0  # upper clip of lambda
    ema: float = 0.0  # lambda_k = ema * lambda_{k-1} + (1 - ema) * lambda_hat_k (0 = per batch, as the paper)

    def validate(self) -> None:
        if not (self.cap > 0 and self.tau_d > 0 and self.tau_v > 0):
            raise ConfigError(f"ais: cap, tau_d and tau_v must be > 0 (cap={self.cap}, tau_d={self.tau_d}, "
                              f"tau_v={self.tau_v})")
        if not 0.0 <= self.lam_min <= self.lam_max <= 1.0:
            raise ConfigError(f"ais: need 0 <= lam_min <= lam_max <= 1, got {self.lam_min}, {self.lam_max}")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"ais: ema={self.ema} must be in [0, 1)")
        if len(self.sigmoid_coefs) != 4:
            raise ConfigError(f"ais: sigmoid_coefs needs 4 numbers (a, b, c, d), got {self.sigmoid_coefs}")


def divergence(log_ratio: Tensor, mask: Tensor, level: str) -> float:
    """D, the mismatch that AIS's severity reads (reconstructed): mean |delta| over valid tokens (``token``) or
    mean over sequences with tokens of |sum_t delta_t| (``sequence``); log_ratio, mask (B, T)."""
    if level == "sequence":
        return float(sequence_log_ratio(log_ratio, mask)[mask.sum(-1) > 0].abs().mean())
    return float(log_ratio[mask.bool()].abs().mean())


def divergence_severity(d: float, tau_d: float) -> float:
    """S = 1 - exp(-D / tau_d) in [0, 1) (divergence severity; the map is reconstructed);
    0 iff D = 0, increasing in D."""
    return 1.0 - math.exp(-d / tau_d)


def variance_penalty(v: float, tau_v: float) -> float:
    """P = 1 / (1 + (V / tau_v)^2) in (0, 1] (from the variance amplification V; the map is
    reconstructed); 1 iff V = 0."""
    return 1.0 / (1.0 + (v / tau_v) ** 2)


def reliability_log_weights(log_ratio: Tensor, mask: Tensor, kind: str) -> Tensor:
    """Log-weights whose ESS is the weight reliability R (reconstructed): (N,) for N sequences or tokens.

    ``seq_raw``: sum_t delta per sequence; ``seq_geo``: mean_t delta per sequence; ``token``: every valid delta.
    """
    has_tokens = mask.sum(-1) > 0
    if kind == "token":
        return log_ratio[mask.bool()]
    seq = sequence_log_ratio(log_ratio, mask)
    if kind == "seq_geo":
        seq = seq / mask.sum(-1).clamp_min(1.0)
    return seq[has_tokens]


def variance_amplification(w: Tensor, mask: Tensor, kind: str, advantages: Tensor | None) -> float:
    """Variance amplification V (reconstructed). ``cv``: std/mean of the truncated token weights (B, T) over valid tokens.

    ``adv_ratio`` (a second reconstruction): r = Var_i(A_i * mean_t w_it) / Var_i(A_i) over sequences and
    V = sqrt(max(r - 1, 0)), so that independent weights of CV c give V ~ c; falls back to ``cv`` when the
    advantages are missing or constant.
    """
    if kind == "adv_ratio" and advantages is not None:
        lengths = mask.sum(-1).clamp_min(1.0)
        a = (advantages * mask).sum(-1) / lengths
        wm = (w * mask).sum(-1) / lengths
        keep = mask.sum(-1) > 0
        var_a = a[keep].double().var(unbiased=False)
        if var_a > 1e-12:
            ratio = float((a * wm)[keep].double().var(unbiased=False) / var_a)
            return math.sqrt(max(ratio - 1.0, 0.0))
    return masked_cv(w, mask)


def mix_coefficient(s: float, r: float, v: float, cfg: AISConfig) -> float:
    """lambda from the three diagnostics (the combination rule is reconstructed), clipped to [lam_min, lam_max].

    product: S * R * P (need x affordability; 0 when the policies agree); ``flipped``: S * (1 - R * P);
    sigmoid: sigmoid(a S + b R - c V + d) (does not vanish at S = 0; an ablation only).
    """
    p = variance_penalty(v, cfg.tau_v)
    if cfg.combine == "sigmoid":
        a, b, c, d = cfg.sigmoid_coefs
        lam = 1.0 / (1.0 + math.exp(-(a * s + b * r - c * v + d)))
    elif cfg.affordability == "flipped":
        lam = s * (1.0 - r * p)
    else:
        lam = s * r * p
    return min(max(lam, cfg.lam_min), cfg.lam_max)


def ais_weights(rho_trunc: Tensor, lam: float, interp: str) -> Tensor:
    """w_hat, the interpolation the AIS abstract describes: (1 - lambda) + lambda * w (linear) or w ** lambda (power); (B, T) -> (B, T).

    Linear interpolation makes the gradient exactly (1 - lambda) * grad_uncorrected + lambda * grad_TIS.
    """
    if interp == "power":
        return rho_trunc.pow(lam)
    return (1.0 - lam) + lam * rho_trunc


@register_correction("ais")
class AdaptiveIS(Correction):
    """AIS (arXiv 2605.13907): per-batch mixing of the uncorrected and the token-TIS gradient; the diagnostics'
    formulas below are reconstructed (the paper's method section was not available).

    D = mean|delta| (``severity="sequence"``: mean_i |sum_t delta_it|), S = 1 - exp(-D/tau_d); R = ESS ratio of the sequence weights; V = CV of min(rho, C),
    P = 1/(1 + (V/tau_v)^2); lambda = clip(S R P); w_hat = (1 - lambda) + lambda min(rho, C).
    """

    Config = AISConfig
    cfg: AISConfig

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.prev_lambda: float | None = None

    def weights(self, log_ratio: Tensor, mask: Tensor, advantages: Tensor | None = None
                ) -> tuple[Tensor | None, Tensor | None, dict[str, float]]:
        cfg = self.cfg
        if not mask.bool().any():
            return torch.ones_like(mask) * mask, None, {}
        d = divergence(log_ratio, mask, cfg.severity)
        s = divergence_severity(d, cfg.tau_d)
        r = ess_ratio(reliability_log_weights(log_ratio, mask, cfg.ess_weights))
        rho = bounded_exp(log_ratio)
        w = rho.clamp(max=cfg.cap)
        v = variance_amplification(w, mask, cfg.variance, advantages)
        lam_hat = mix_coefficient(s, r, v, cfg)
        lam = lam_hat if self.prev_lambda is None else cfg.ema * self.prev_lambda + (1 - cfg.ema) * lam_hat
        self.prev_lambda = lam
        w_hat = ais_weights(w, lam, cfg.interp) * mask
        return w_hat, None, {
            "ais/lambda": lam, "ais/lambda_batch": lam_hat, "ais/divergence_D": d, "ais/severity_S": s,
            "ais/reliability_R": r, "ais/variance_V": v, "ais/variance_P": variance_penalty(v, cfg.tau_v),
            "correction/clip_frac": float(masked_mean((rho > cfg.cap).to(mask.dtype), mask)),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"prev_lambda": self.prev_lambda}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prev_lambda = state.get("prev_lambda")
