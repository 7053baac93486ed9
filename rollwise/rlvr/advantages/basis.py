"""BASIS (Gong et al., arXiv 2605.27293): one rollout per prompt, baselines shared across the batch.

Only the abstract is public: it states the goal (one rollout per prompt, a baseline built from information
shared across the batch, lower value-estimation MSE than REINFORCE++) but not the estimator. The estimator
below is RECONSTRUCTED (docs/basis.md) and every reconstructed choice is a parameter of :class:`BasisParams`.

- Stage O (offline, once, :meth:`Basis.prepare`): M rollouts per training prompt from pi_0 give success
  counts s(x); an empirical-Bayes Beta-binomial fit shrinks them to p_0(x); l_0 = logit(clip(p_0)).
  Optionally only a subset is rolled out and a Nadaraya-Watson probe on pi_0 prompt features fills the
  rest.
- Stage C (online, every step): V_t(x) = sigma(a_t + b_t l_0(x)), (a_t, b_t) fitted by ridge-penalised
  Bernoulli likelihood on the batch, CROSS-FITTED: the baseline of a prompt in fold k uses (a, b) fitted
  without fold k, so b_i never depends on r_i.
- Stage S (optional): a kernel-weighted average of out-of-fold residuals over prompt features (after the
  companion paper, Kernelized Advantage Estimation, arXiv 2604.28005, of which only the abstract was read).

The advantage is A_i = r_i - b_i broadcast to the tokens, then globally whitened as in REINFORCE++.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from rollwise.config import ConfigError
from rollwise.rlvr.advantages.group import as_float, broadcast_to_tokens
from rollwise.rlvr.advantages.registry import AdvantageEstimator, register_estimator
from rollwise.rlvr.advantages.reinforce import VARIANCES, whiten
from rollwise.rlvr.batch import RolloutBatch

CALIBRATIONS = ("none", "shift", "logit_affine")
KERNELS = ("off", "rbf")
FEATURES = ("pi0", "policy")


# ------------------------------------------------------------------------------------ Stage O (offline)
def eb_prior(successes: Tensor, m: int, shrink: bool = True) -> Tensor:
    """Empirical-Bayes Beta-binomial success rates (stage O, reconstructed), ``(N,) -> (N,)``.

    Moments over all prompts: mu = mean(s/M), v = var(s/M); v_true = max(v - mu(1-mu)/M, 1e-4);
    c = max(mu(1-mu)/v_true - 1, 1e-2); alpha = mu c, beta = (1-mu) c; p_0 = (s+alpha)/(M+alpha+beta).
    ``shrink=False`` returns the raw rates s/M.
    """
    s = successes.to(torch.float64)
    rate = s / m
    if not shrink:
        return rate
    mu = rate.mean()
    v = rate.var(unbiased=False) if rate.numel() > 1 else torch.zeros((), dtype=torch.float64)
    v_true = torch.clamp(v - mu * (1 - mu) / m, min=1e-4)
    c = torch.clamp(mu * (1 - mu) / v_true - 1, min=1e-2)
    return (s + mu * c) / (m + c)


def clipped_logit(p: Tensor, eps: float) -> Tensor:
    """logit(clip(p, eps, 1 - eps)) (stage O: the prior l_0 on the logit scale)."""
    p = p.to(torch.float64).clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


def median_bandwidth(features: Tensor) -> float:
    """Median pairwise distance of the rows of ``features`` (N, d) (the median heuristic)."""
    d = torch.cdist(features.double(), features.double())
    off = d[~torch.eye(d.shape[0], dtype=torch.bool)]
    h = float(off.median()) if off.numel() else 1.0
    return h if h > 0 else 1.0


def nadaraya_watson_probe(feat_fit: Tensor, target: Tensor, feat_query: Tensor,
                          scales: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)) -> tuple[Tensor, float]:
    """Kernel regression of ``target`` (n,) on ``feat_fit`` (n, d), evaluated at ``feat_query`` (N, d): stage O's
    probe for the prompts that were not rolled out.

    The RBF bandwidth is ``scale * median distance`` with the scale chosen by leave-one-out CV on the
    fitting set. Returns the (N,) predictions and the chosen bandwidth.
    """
    base = median_bandwidth(feat_fit)
    d2_fit = torch.cdist(feat_fit.double(), feat_fit.double()).square()
    y = target.double()
    best, best_h = math.inf, base
    for s in scales:
        h = s * base
        w = torch.exp(-d2_fit / (2 * h * h))
        w.fill_diagonal_(0.0)
        pred = (w @ y + 1e-12 * y.mean()) / (w.sum(1) + 1e-12)
        err = float((pred - y).square().mean())
        if err < best:
            best, best_h = err, h
    d2 = torch.cdist(feat_query.double(), feat_fit.double()).square()
    w = torch.exp(-d2 / (2 * best_h * best_h))
    return (w @ y + 1e-12 * y.mean()) / (w.sum(1) + 1e-12), best_h


# ------------------------------------------------------------------------------------ Stage C (online)
def fit_calibration(l0: Tensor, rewards: Tensor, weights: Tensor, prior: Tensor, lam: tuple[float, float],
                    calib: str = "logit_affine", iters: int = 20) -> Tensor:
    """Penalised Bernoulli fits of (a, b) in V = sigma(a + b l0), one per row of ``weights`` (stage C, reconstructed).

    Minimises sum_j w_kj BCE(r_j, sigma(a + b l0_j)) + lam_a/2 (a - a_prev)^2 + lam_b/2 (b - b_prev)^2
    by Newton's method started at the prior.

    Args:
        l0: (B,) prior logits; rewards: (B,) in [0, 1]; weights: (K, B) 0/1 (which rows enter fit k);
        prior: (2,) the previous (a, b); lam: (lambda_a, lambda_b); calib: ``none`` (a, b) = (0, 1),
        ``shift`` (a only, b held at the prior), ``logit_affine`` (both); iters: Newton iterations.

    Returns:
        (K, 2) fitted (a, b).
    """
    k = weights.shape[0]
    prior = prior.to(torch.float64)
    if calib == "none":
        return torch.tensor([0.0, 1.0], dtype=torch.float64).expand(k, 2).clone()
    x, r, w = l0.to(torch.float64), rewards.to(torch.float64), weights.to(torch.float64)
    a = prior[0].expand(k).clone()
    b = prior[1].expand(k).clone()
    lam_a, lam_b = lam
    for _ in range(iters):
        p = torch.sigmoid(a[:, None] + b[:, None] * x)  # (K, B)
        res, curv = w * (p - r), w * p * (1 - p)
        g_a = res.sum(1) + lam_a * (a - prior[0])
        h_aa = curv.sum(1) + lam_a
        if calib == "shift":
            a = a - (g_a / h_aa).clamp(-5.0, 5.0)
            continue
        g_b = (res * x).sum(1) + lam_b * (b - prior[1])
        h_ab = (curv * x).sum(1)
        h_bb = (curv * x * x).sum(1) + lam_b
        det = h_aa * h_bb - h_ab * h_ab
        a = a - ((h_bb * g_a - h_ab * g_b) / det).clamp(-5.0, 5.0)
        b = b - ((h_aa * g_b - h_ab * g_a) / det).clamp(-5.0, 5.0)
    return torch.stack([a, b], dim=1)


def fold_assignment(batch_size: int, folds: int, generator: torch.Generator | None = None) -> Tensor:
    """(B,) random fold index in [0, K); ``folds`` <= 0 or >= B gives leave-one-out (K = B)."""
    k = batch_size if folds <= 0 or folds >= batch_size else folds
    perm = torch.randperm(batch_size, generator=generator)
    fold = torch.empty(batch_size, dtype=torch.long)
    fold[perm] = torch.arange(batch_size) % k
    return fold


@dataclass
class CrossFit:
    """What one cross-fitted BASIS baseline computation returns (all float64)."""

    baseline: Tensor  # (B,) b_i, never a function of r_i
    calibrated: Tensor  # (B,) sigma(a^(-k) + b^(-k) l0_i) before the kernel channel
    params: Tensor  # (K, 2) per-fold (a, b)
    clipped_frac: float  # fraction of b_i clipped to [0, 1] by the kernel channel


def cross_fit_baseline(l0: Tensor, rewards: Tensor, fold: Tensor, prior: Tensor, lam: tuple[float, float],
                       calib: str = "logit_affine", iters: int = 20, features: Tensor | None = None,
                       bandwidth: float = 0.0, kappa: float = 2.0, bandwidth_scale: float = 1.0) -> CrossFit:
    """BASIS baselines b_i for a batch of single rollouts (stages C and S, reconstructed).

    For prompt i in fold k: b_i = sigma(a^(-k) + b^(-k) l0_i) with (a, b)^(-k) fitted on the other folds.
    With ``features`` (B, d) the kernel channel adds sum_{j not in k} w_ij e_j / (sum w_ij + kappa),
    e_j = r_j - sigma(a^(-k) + b^(-k) l0_j): the residuals use fold k's own out-of-fold fit, so b_i stays
    independent of r_i (the reconstruction's "out of fold" residuals, made exact). ``bandwidth`` 0 = median heuristic
    times ``bandwidth_scale``.

    Args: l0 (B,), rewards (B,), fold (B,) long in [0, K). Returns a :class:`CrossFit`.
    """
    l0, r = l0.to(torch.float64), as_float(rewards).to(torch.float64)
    n_folds = int(fold.max()) + 1 if fold.numel() else 0
    member = fold[None, :] == torch.arange(n_folds)[:, None]  # (K, B): j in fold k
    outside = (~member).to(torch.float64)
    params = fit_calibration(l0, r, outside, prior, lam, calib, iters)
    fitted = torch.sigmoid(params[:, :1] + params[:, 1:] * l0)  # (K, B): fold k's fit at every prompt
    calibrated = fitted[fold, torch.arange(l0.numel())]
    if features is None:
        return CrossFit(calibrated, calibrated, params, 0.0)
    f = features.to(torch.float64)
    h = bandwidth if bandwidth > 0 else bandwidth_scale * median_bandwidth(f)
    w = torch.exp(-torch.cdist(f, f).square() / (2 * h * h)) * outside[fold]  # (B, B), j outside fold(i)
    resid = r[None, :] - fitted[fold]  # (B, B): e_j under fold(i)'s fit
    raw = calibrated + (w * resid).sum(1) / (w.sum(1) + kappa)
    base = raw.clamp(0.0, 1.0)
    return CrossFit(base, calibrated, params, float((base != raw).double().mean()))


# ------------------------------------------------------------------------------------ the estimator
@dataclass(frozen=True)
class BasisParams:
    offline_rollouts: int = field(default=16, metadata={"help": "M: rollouts per prompt from pi_0 in Stage O"})
    offline_subset: float = field(default=1.0, metadata={"help": "fraction of the train pool rolled out "
                                                                 "offline; < 1 fills the rest with a probe"})
    eb_shrink: bool = field(default=True, metadata={"help": "Beta-binomial empirical-Bayes shrinkage"})
    calib: str = field(default="logit_affine", metadata={"help": "online calibration: none | shift | "
                                                                 "logit_affine"})
    lambda_a: float = field(default=1.0, metadata={"help": "ridge of a towards the previous step's a"})
    lambda_b: float = field(default=10.0, metadata={"help": "ridge of b towards the previous step's b"})
    folds: int = field(default=8, metadata={"help": "K cross-fitting folds; 0 = leave-one-out"})
    newton_iters: int = field(default=20, metadata={"help": "Newton iterations per calibration fit"})
    kernel: str = field(default="off", metadata={"help": "Stage S residual smoothing: off | rbf"})
    features: str = field(default="pi0", metadata={"help": "kernel/probe features: pi0 (frozen, computed "
                                                           "once) | policy (current policy, kernel only)"})
    bandwidth: float = field(default=0.0, metadata={"help": "RBF bandwidth h; 0 = median heuristic per batch"})
    bandwidth_scale: float = field(default=1.0, metadata={"help": "multiplies the median-heuristic bandwidth"})
    kappa: float = field(default=2.0, metadata={"help": "shrinkage of the kernel correction"})
    eps_p: float = field(default=1e-3, metadata={"help": "clip of p_0 before the logit"})
    whiten: bool = field(default=True, metadata={"help": "REINFORCE++ global whitening of r - b"})
    variance: str = field(default="bessel", metadata={"help": "whitening: bessel | population | none"})
    seed: int = field(default=0, metadata={"help": "seed of the offline rollouts, subset and fold splits"})

    def __post_init__(self) -> None:
        for key, value, choices in (("calib", self.calib, CALIBRATIONS), ("kernel", self.kernel, KERNELS),
                                    ("features", self.features, FEATURES), ("variance", self.variance, VARIANCES)):
            if value not in choices:
                raise ConfigError(f"basis: {key}={value!r} is invalid; valid choices: {', '.join(choices)}")
        if self.offline_rollouts < 1:
            raise ConfigError(f"basis: offline_rollouts={self.offline_rollouts} must be >= 1")
        if not 0 < self.offline_subset <= 1:
            raise ConfigError(f"basis: offline_subset={self.offline_subset} must be in (0, 1]")
        if self.lambda_a <= 0 or self.lambda_b <= 0:
            raise ConfigError("basis: lambda_a and lambda_b must be > 0 (they keep the Newton system definite)")
        if self.kappa < 0 or self.bandwidth < 0 or self.bandwidth_scale <= 0 or not 0 < self.eps_p < 0.5 \
                or self.newton_iters < 1:
            raise ConfigError("basis: need kappa >= 0, bandwidth >= 0, bandwidth_scale > 0, 0 < eps_p < 0.5, "
                              "newton_iters >= 1")


@register_estimator("basis")
class Basis(AdvantageEstimator):
    """BASIS advantages for one rollout per prompt (reconstructed; see module docstring and docs/basis.md).

    State (checkpointed): the prior table (prompt text -> l_0, optional pi_0 features), the calibration
    (a, b) carried across steps, the step counter of the fold splits and the offline cost.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"rewards", "group_ids", "response_mask"})
    Params: ClassVar[type] = BasisParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.prompts: list[str] = []
        self.index: dict[str, int] = {}
        self.l0 = torch.zeros(0, dtype=torch.float64)
        self.features: Tensor | None = None
        self.default_l0 = 0.0
        self.calibration = torch.tensor([0.0, 1.0], dtype=torch.float64)
        self.steps = 0
        self.offline: dict[str, float] = {"rollouts": 0, "seconds": 0.0, "prompts": 0}
        #: Stage O raw data: success counts (n,) of the prompts ``counts_index`` (n,) of the table
        self.counts = torch.zeros(0, dtype=torch.float64)
        self.counts_index = torch.zeros(0, dtype=torch.long)
        self.metrics: dict[str, float] = {}

    # --------------------------------------------------------------------------------- config
    def fields_read(self) -> frozenset[str]:
        if self.params.kernel == "rbf" and self.params.features == "policy":
            return self.reads | {"prompt_features"}
        return self.reads

    def validate(self, n_per_prompt: int) -> None:
        super().validate(n_per_prompt)
        if n_per_prompt != 1:
            raise ConfigError(f"advantage estimator 'basis' uses exactly one rollout per prompt (got rollout.n="
                              f"{n_per_prompt}); its baseline comes from the other prompts of the batch. "
                              "For several rollouts per prompt use grpo, dr_grpo, rloo or reinforce_pp_baseline")

    @property
    def lam(self) -> tuple[float, float]:
        return (self.params.lambda_a, self.params.lambda_b)

    # --------------------------------------------------------------------------------- Stage O
    def set_prior(self, prompts: list[str], p0: Tensor, features: Tensor | None = None) -> None:
        """Install the prior table: p_0 (N,) per prompt text and optional pi_0 features (N, d)."""
        self.prompts = list(prompts)
        self.index = {p: i for i, p in enumerate(self.prompts)}
        p0 = p0.to(torch.float64)
        self.l0 = clipped_logit(p0, self.params.eps_p)
        self.default_l0 = float(clipped_logit(p0.mean(), self.params.eps_p)) if p0.numel() else 0.0
        self.features = None if features is None else features.to(torch.float32)

    def prior_from_counts(self, successes: Tensor, subset: Tensor, features: Tensor | None) -> Tensor:
        """p_0 (N,) from offline success counts on ``subset`` (n,) rows; a probe fills the rest (stage O)."""
        p_sub = eb_prior(successes, self.params.offline_rollouts, self.params.eb_shrink)
        n = features.shape[0] if features is not None else subset.numel()
        if subset.numel() == n:
            out = torch.empty(n, dtype=torch.float64)
            out[subset] = p_sub
            return out
        assert features is not None
        pred, _ = nadaraya_watson_probe(features[subset], p_sub, features)
        pred[subset] = p_sub
        return pred

    @torch.no_grad()
    def prepare(self, context: Any) -> None:
        """Stage O on the trainer ``context``: offline rollouts of pi_0, prior table, pi_0 features.

        The offline rollouts are added to ``context.rollouts_generated`` and kept in ``self.offline``.
        """
        from rollwise.rlvr.engines.base import SamplingConfig
        from rollwise.rlvr.models import prompt_features
        from rollwise.rlvr.tasks import collate_columns

        t0 = time.perf_counter()
        p = self.params
        pool = context.train_pool
        prompts = [e.prompt for e in pool]
        rng = np.random.default_rng([p.seed, 7])
        n_sub = max(2, round(p.offline_subset * len(pool))) if p.offline_subset < 1 else len(pool)
        subset = torch.as_tensor(np.sort(rng.choice(len(pool), size=n_sub, replace=False)))
        need_features = p.offline_subset < 1 or (p.kernel == "rbf" and p.features == "pi0")
        features = None
        if need_features:
            from rollwise.rlvr.models import encode_prompts

            parts = []
            for start in range(0, len(prompts), 1024):
                ids, mask = encode_prompts(context.tokenizer, prompts[start:start + 1024])
                # the trainer's full weights (under FSDP2 its replica: this stage runs on rank 0 alone)
                parts.append(prompt_features(context.rollout_policy, ids, mask))
            features = torch.cat(parts)
        r = context.cfg.rollout
        sampling = SamplingConfig(n=p.offline_rollouts, temperature=r.temperature, top_p=r.top_p,
                                  max_new_tokens=r.max_new_tokens)
        sub_examples = [pool[i] for i in subset.tolist()]
        seed = int(np.random.default_rng([p.seed, 8]).integers(0, 2**62))
        batch = context.engine.generate([e.prompt for e in sub_examples], sampling, seed)
        rewards, _ = context.rewards(batch.prompts, batch.completions, batch.truncated.tolist(),
                                     collate_columns([sub_examples[g] for g in batch.group_ids.tolist()]))
        successes = torch.zeros(len(sub_examples), dtype=torch.float64)
        successes.index_add_(0, batch.group_ids, (rewards >= 1.0 - 1e-6).to(torch.float64))
        self.set_prior(prompts, self.prior_from_counts(successes, subset, features), features)
        self.counts, self.counts_index = successes, subset
        context.rollouts_generated += batch.size
        self.offline = {"rollouts": batch.size, "seconds": time.perf_counter() - t0, "prompts": len(sub_examples)}
        print(f"basis: offline stage generated {batch.size} rollouts ({len(sub_examples)} prompts x "
              f"{p.offline_rollouts}) in {self.offline['seconds']:.1f} s; counted in rollouts_total", flush=True)

    # --------------------------------------------------------------------------------- Stage C
    def prior_logits(self, prompts: list[str]) -> tuple[Tensor, int]:
        """(B,) l_0 of each prompt (the table's mean logit for unknown prompts) and how many were unknown."""
        idx = [self.index.get(p, -1) for p in prompts]
        l0 = torch.tensor([float(self.l0[i]) if i >= 0 else self.default_l0 for i in idx], dtype=torch.float64)
        return l0, sum(i < 0 for i in idx)

    def batch_features(self, batch: RolloutBatch) -> Tensor | None:
        if self.params.kernel == "off":
            return None
        if self.params.features == "policy":
            return batch.prompt_features
        if self.features is None:
            raise RuntimeError("basis: kernel='rbf' with features='pi0' needs the prior table's features; "
                               "run prepare() (the trainer does) or set_prior(..., features=...)")
        return self.features[torch.tensor([self.index[p] for p in batch.prompts])]

    def baselines(self, prompts: list[str], rewards: Tensor, features: Tensor | None = None,
                  update: bool = True) -> Tensor:
        """(B,) BASIS baselines for one batch; with ``update`` the calibration state moves on one step."""
        p = self.params
        l0, missing = self.prior_logits(prompts)
        gen = torch.Generator().manual_seed(int(np.random.default_rng([p.seed, self.steps, 9]).integers(0, 2**62)))
        fold = fold_assignment(len(prompts), p.folds, gen)
        fit = cross_fit_baseline(l0, rewards, fold, self.calibration, self.lam, p.calib, p.newton_iters,
                                 features, p.bandwidth, p.kappa, p.bandwidth_scale)
        r = as_float(rewards).to(torch.float64)
        self.metrics = {"basis/baseline_mean": float(fit.baseline.mean()),
                        "basis/mse_proxy": float((r - fit.baseline).square().mean()),
                        "basis/clipped_frac": fit.clipped_frac, "basis/prior_missing": float(missing),
                        "basis/a": float(self.calibration[0]), "basis/b": float(self.calibration[1])}
        if update:
            full = torch.ones(1, len(prompts), dtype=torch.float64)
            self.calibration = fit_calibration(l0, r, full, self.calibration, self.lam, p.calib, p.newton_iters)[0]
            self.steps += 1
        return fit.baseline

    def compute(self, batch: RolloutBatch) -> Tensor:
        sizes = batch.group_sizes()
        if bool((sizes != 1).any()):
            raise ValueError("advantage estimator 'basis' needs exactly one rollout per prompt; got groups of "
                             f"sizes {sizes.unique().tolist()} (set rollout.n=1)")
        b = self.baselines(batch.prompts, batch.rewards, self.batch_features(batch))
        centred = as_float(batch.rewards) - b.to(as_float(batch.rewards).dtype)
        tokens = broadcast_to_tokens(centred, batch.response_mask)
        if self.params.whiten:
            return whiten(tokens, batch.response_mask, self.params.variance)
        return tokens

    # --------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"prompts": list(self.prompts), "l0": self.l0.clone(), "default_l0": self.default_l0,
                "features": None if self.features is None else self.features.clone(),
                "calibration": self.calibration.clone(), "steps": self.steps, "offline": dict(self.offline),
                "counts": self.counts.clone(), "counts_index": self.counts_index.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prompts = list(state["prompts"])
        self.index = {p: i for i, p in enumerate(self.prompts)}
        self.l0 = state["l0"].clone()
        self.default_l0 = float(state["default_l0"])
        self.features = None if state["features"] is None else state["features"].clone()
        self.calibration = state["calibration"].clone()
        self.steps = int(state["steps"])
        self.offline = dict(state["offline"])
        self.counts = state.get("counts", torch.zeros(0, dtype=torch.float64)).clone()
        self.counts_index = state.get("counts_index", torch.zeros(0, dtype=torch.long)).clone()
