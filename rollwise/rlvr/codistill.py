"""CoDistill-GRPO (Kwon et al. 2026, arXiv 2605.08873): a small and a large model trained together, and only
the small model generates full rollouts.

CoDistill adds stages to the ordinary step of :class:`~rollwise.rlvr.trainer.Trainer` (:class:`CoDistillStages`)
and uses its ordinary estimator (``codistill``: GRPO on the effective reward) and correction stages::

    batch    = small rollouts, n = M per prompt                 # (optional large-model hint prefix, epoch 1)
    lp_large = large.logprob(batch)                             # score_shard; no grad; each distinct rollout once
    r~       = r + alpha * r_KD,  r_KD = mean_t(lp_large - lp_small_old)          (the paper's KD reward)
    keep     = max-variance downsampling of r~, M -> G per prompt                  (inferred rule, docs/codistill.md)
    A~       = group_norm(r~[keep])                             # the ``codistill`` estimator
    small.update(A~)  (PPO-clip, hint tokens masked)            # the ordinary update
    A^ = group_norm(r[keep]); large.update(A^)                  # after_update, cross-model ratio pi_theta / pi_phi_old:
        ppo_clip  : PPO-clip on w = pi_theta / pi_phi_old (paper)
        truncated : detached min(w, c) x A^ x grad log pi_theta (our fallback)

Shapes: B rollouts, T padded response length. The large model is a second :class:`Trainer` whose ``update``
stage is reused; its engine generates only hint prefixes.

Data-parallel (``torchrun``, ``train.parallel = "ddp"``; ``distributed.py``): both models are replicated. Each
rank scores and downsamples its own rollout shards (a prompt group never spans shards, so the M -> G
downsampling is per group; hints too), the shards are gathered, and both ``update`` stages back-propagate this
rank's rows with global loss shares and sum the gradients across ranks. FSDP2 is refused (``check_parallel``).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rollwise.config import ConfigError
from rollwise.rlvr import distributed
from rollwise.rlvr.batch import RolloutBatch
from rollwise.rlvr.engines.base import RolloutEngine, SamplingConfig
from rollwise.rlvr.engines.hf import response_mask_from_ids
from rollwise.rlvr.losses import LOG_RATIO_BOUND
from rollwise.rlvr.models import encode_prompts, sequence_logprobs
from rollwise.rlvr.policy import build_policy
from rollwise.rlvr.run_config import RLVRConfig
from rollwise.rlvr.stages import ExtraStages
from rollwise.rlvr.tasks import Task
from rollwise.rlvr.trainer import Trainer, step_seed

# ----------------------------------------------------------------------------------- pure functions


def kd_reward(lp_large: Tensor, lp_small_old: Tensor, mask: Tensor) -> Tensor:
    """Length-normalised KD log-ratio reward (the paper's KD reward, as third-party notes on the paper give it;
    its full text was not available), one number per sequence.

    r_KD_i = (1/N_i) sum_t [log pi_theta(o_it) - log pi_phi_old(o_it)] over the tokens in ``mask``.

    Args:
        lp_large, lp_small_old: (B, T) log-probs of the sampled tokens (treated as constants).
        mask: (B, T) 1 on the tokens that count (the response; hint tokens included).

    Returns:
        (B,) rewards; 0 for an empty row.
    """
    m = mask.to(lp_large.dtype)
    diff = (lp_large.detach() - lp_small_old.detach()) * m
    return diff.sum(-1) / m.sum(-1).clamp_min(1.0)


def effective_reward(rewards: Tensor, lp_large: Tensor, lp_small_old: Tensor, mask: Tensor,
                     alpha: float) -> Tensor:
    """r~ = r + alpha * r_KD, the small model's effective reward in the paper; (B,)."""
    return rewards.to(lp_large.dtype) + alpha * kd_reward(lp_large, lp_small_old, mask)


def maxvar_downsample_rows(values: Tensor, g: int) -> Tensor:
    """Per row of ``values`` (n, M), the size-``g`` subset with the largest variance (PODS, arXiv 2504.13818).

    The optimum is always "the j largest plus the g - j smallest" for some j, so each row is sorted once and
    the g + 1 candidates are scored together from prefix sums (no loop over rows or j). Ties go to the
    smallest j, and within equal values to the lowest index (stable sort).

    Returns:
        (n, g) column indices, sorted within each row.
    """
    n, m = values.shape
    if not 1 <= g <= m:
        raise ValueError(f"maxvar_downsample: need 1 <= g={g} <= M={m}")
    v = values.double()
    sorted_v, order = torch.sort(v - v.mean(-1, keepdim=True), dim=-1, stable=True)  # centred: no cancellation
    zero = sorted_v.new_zeros(n, 1)
    c1 = torch.cat([zero, sorted_v.cumsum(-1)], -1)  # (n, M+1) prefix sums
    c2 = torch.cat([zero, (sorted_v**2).cumsum(-1)], -1)
    j = torch.arange(g + 1)  # j largest + (g - j) smallest
    s1 = c1[:, g - j] + c1[:, m:] - c1[:, m - j]  # (n, g+1)
    s2 = c2[:, g - j] + c2[:, m:] - c2[:, m - j]
    var = s2 / g - (s1 / g) ** 2
    best = (var >= var.max(-1, keepdim=True).values - 1e-12).double().argmax(-1, keepdim=True)  # first max j
    pos = torch.arange(m)
    keep = (pos < g - best) | (pos >= m - best)  # (n, M) over sorted positions; g True per row
    return torch.sort(order[keep].view(n, g), dim=-1).values


def maxvar_downsample(values: Tensor, g: int) -> Tensor:
    """Indices (g,) of the size-``g`` subset of ``values`` (M,) with the largest variance, sorted."""
    return maxvar_downsample_rows(values.reshape(1, -1), g)[0]


def brute_force_maxvar(values: Tensor, g: int) -> float:
    """Largest population variance over every size-``g`` subset (the reference for tests; M <= 12)."""
    v = values.double()
    return max(float(v[list(c)].var(unbiased=False)) for c in itertools.combinations(range(v.numel()), g))


def downsample_groups(values: Tensor, group_ids: Tensor, g: int, rule: str, seed: int) -> Tensor:
    """Indices (B',) of the rollouts kept per group: ``maxvar``, ``random`` (uniform, no replacement) or
    ``none`` (keep all). Groups must have equal sizes; the result lists the groups in id order, each group's
    kept rows in their original order.

    Args:
        values: (B,) the quantity downsampled on (r~). group_ids: (B,) prompt index per rollout.
    """
    if rule == "none":
        return torch.arange(values.numel())
    order = torch.argsort(group_ids, stable=True)
    counts = torch.unique_consecutive(group_ids[order], return_counts=True)[1]
    if not bool((counts == counts[0]).all()):
        raise ValueError(f"downsample_groups: groups have unequal sizes {sorted(set(counts.tolist()))}")
    rows = order.view(counts.numel(), int(counts[0]))  # (n groups, M) rollout indices
    k = min(g, rows.shape[1])
    if rule == "maxvar":
        cols = maxvar_downsample_rows(values[rows], k)
    elif rule == "random":
        gen = torch.Generator().manual_seed(seed)
        cols = torch.sort(torch.rand(rows.shape, generator=gen).argsort(-1)[:, :k], dim=-1).values
    else:
        raise ValueError(f"unknown downsample rule {rule!r}; valid: maxvar, random, none")
    return rows.gather(1, cols).flatten()


def cross_model_targets(lp_large_old: Tensor, lp_small_old: Tensor, hint_mask: Tensor | None, mode: str,
                        c: float) -> tuple[Tensor, Tensor | None]:
    """``old_logprobs`` and ``is_weights`` (both (B, T)) that turn the PPO-clip loss into the large model's loss.

    - ``ppo_clip`` (the paper's large-model loss): old = log pi_phi_old, so the PPO ratio is w = pi_theta / pi_phi_old;
      on hint tokens old = log pi_theta_old (they were sampled by the large model: on-policy).
    - ``truncated`` (our fallback, not in the paper): old = log pi_theta_old (ratio 1 at the first epoch, so the gradient is
      grad log pi_theta) and a detached weight min(w_old, c) with w_old = pi_theta_old / pi_phi_old;
      weight 1 on hint tokens.
    """
    hint = torch.zeros_like(lp_large_old, dtype=torch.bool) if hint_mask is None else hint_mask.bool()
    if mode == "ppo_clip":
        return torch.where(hint, lp_large_old, lp_small_old).detach(), None
    if mode == "truncated":
        log_w = (lp_large_old - lp_small_old).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
        w = torch.where(hint, torch.ones_like(log_w), log_w.exp().clamp(max=c))
        return lp_large_old.detach(), w.detach()
    raise ValueError(f"unknown large_is_mode {mode!r}; valid: ppo_clip, truncated")


def distinct_row_logprobs(model: PreTrainedModel, ids: Tensor, mask: Tensor, response_len: int,
                          temperature: float) -> tuple[Tensor, int]:
    """Teacher-forced log-probs (B, T) of the last ``response_len`` tokens, one forward pass per DISTINCT row.

    The M rollouts of a prompt often repeat (a peaked small model samples the same answer many times); equal
    rows (same ids and mask) have equal log-probs, so the large model scores each distinct sequence once and the
    result is scattered back. Args: ids, mask (B, P+T) as ``RolloutBatch.sequences()``. Returns the (B, T)
    log-probs and the number of rows actually scored.
    """
    rows, inverse = torch.unique(torch.cat([ids, mask.to(ids.dtype)], 1), dim=0, return_inverse=True)
    first = torch.empty(rows.shape[0], dtype=torch.long).scatter_(0, inverse, torch.arange(ids.shape[0]))
    lp = sequence_logprobs(model, ids[first], mask[first], response_len, temperature)[0]
    return lp[inverse], int(rows.shape[0])


# ----------------------------------------------------------------------------------- hint prefixes


class HintedEngine(RolloutEngine):
    """The small model's engine; while ``active``, the large model first writes ``hint_tokens`` tokens per
    prompt (the paper's optional hint prefix, first epoch only) and the small model continues. The returned batch's responses are hint + continuation
    and ``extras["hint_mask"]`` (B, T) marks the hint tokens. Hints are re-tokenised as text (exact for the
    character tokenizer). ``large_tokens`` counts every token the large model generated."""

    def __init__(self, small: RolloutEngine, large: RolloutEngine, tokenizer: PreTrainedTokenizerBase,
                 hint_tokens: int) -> None:
        self.small, self.large, self.tokenizer, self.hint_tokens = small, large, tokenizer, hint_tokens
        self.active = False
        self.large_tokens = 0

    def sync_weights(self, policy: torch.nn.Module) -> None:
        self.small.sync_weights(policy)

    def generate(self, prompts: list[str], sampling: SamplingConfig, seed: int) -> RolloutBatch:
        if not self.active or self.hint_tokens <= 0:
            batch = self.small.generate(prompts, sampling, seed)
            batch.extras["hint_mask"] = torch.zeros_like(batch.response_mask)
            return batch
        hint_cfg = dataclasses.replace(sampling, n=1, max_new_tokens=self.hint_tokens)
        hb = self.large.generate(prompts, hint_cfg, step_seed(seed % (2**62), 0, 9))
        self.large_tokens += int(hb.response_mask.sum())
        eos = self.tokenizer.eos_token_id
        hints = [[t for t, m in zip(r.tolist(), mk.tolist()) if m and t != eos]
                 for r, mk in zip(hb.response_ids, hb.response_mask)]
        texts = [self.tokenizer.decode(h) for h in hints]
        cont = self.small.generate([p + h for p, h in zip(prompts, texts)], sampling, seed)
        rows, lps, hmask = [], [], []
        for i, g in enumerate(cont.group_ids.tolist()):
            valid = cont.response_mask[i].bool()
            rows.append(hints[g] + cont.response_ids[i][valid].tolist())
            lps.append([0.0] * len(hints[g]) + cont.rollout_logprobs[i][valid].tolist())
            hmask.append([1.0] * len(hints[g]) + [0.0] * int(valid.sum()))
        width = max(1, max(len(r) for r in rows))
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        lp, hm = torch.zeros(len(rows), width), torch.zeros(len(rows), width)
        for i, (r, x, h) in enumerate(zip(rows, lps, hmask)):
            ids[i, : len(r)], lp[i, : len(r)], hm[i, : len(r)] = torch.tensor(r), torch.tensor(x), torch.tensor(h)
        mask, _ = response_mask_from_ids(ids, eos)
        mask = mask * (torch.arange(width) < torch.tensor([len(r) for r in rows]).unsqueeze(-1))
        expanded = [prompts[g] for g in cont.group_ids.tolist()]
        p_ids, p_mask = encode_prompts(self.tokenizer, expanded)
        completions = [self.tokenizer.decode(r[m.bool()], skip_special_tokens=True) for r, m in zip(ids, mask)]
        out = RolloutBatch(prompt_ids=p_ids, prompt_mask=p_mask, response_ids=ids, response_mask=mask,
                           rollout_logprobs=lp * mask, group_ids=cont.group_ids, truncated=cont.truncated,
                           prompts=expanded, completions=completions)
        out.extras["hint_mask"] = hm * mask
        return out


# ----------------------------------------------------------------------------------- the two-model loop


def small_config(cfg: RLVRConfig) -> RLVRConfig:
    """The small model's run config: ``cfg`` with ``rollout.n = codistill.m`` and the ``codistill`` estimator
    normalised as ``codistill.kd_adv_norm`` (``run_config`` has already rejected settings that disagree)."""
    small = copy.deepcopy(cfg)
    small.rollout.n = cfg.codistill.m  # the small model generates M per prompt
    small.algorithm.estimator_params = {"norm_by_std": cfg.codistill.kd_adv_norm == "mean_std"}
    return small


def large_config(cfg: RLVRConfig) -> RLVRConfig:
    """The large model's run config: its model section, learning rate and output folder; GRPO on the verifier
    reward (normalised as ``codistill.large_adv_norm``) with n = G and no rollout correction (its update is
    weighted by the cross-model ratio instead)."""
    big = copy.deepcopy(cfg)
    cd = cfg.codistill
    big.model = copy.deepcopy(cd.large)
    big.train.lr = cd.large_lr or cfg.train.lr
    big.sft.steps = cfg.sft.steps if cd.large_sft_steps < 0 else cd.large_sft_steps
    big.rollout.n = cd.g
    big.algorithm.estimator = "grpo"
    big.algorithm.estimator_params = {"norm_by_std": cd.large_adv_norm == "mean_std"}
    big.algorithm.correction, big.algorithm.correction_params = "none", {}
    big.run.output_dir = str(Path(cfg.run.output_dir) / "large")
    big.codistill = dataclasses.replace(cd, enabled=False)
    return big


class CoDistillStages(ExtraStages):
    """CoDistill-GRPO's stages in the ordinary step: the large model scores each shard (r~, M -> G), and is
    updated after the small model with the cross-model ratio. ``large`` is the large model's :class:`Trainer`
    (its ``update`` stage is reused; its engine generates only hint prefixes)."""

    def __init__(self, cfg: RLVRConfig, large_policy: PreTrainedModel) -> None:
        self.cfg, self.cd, self.large_policy = cfg, cfg.codistill, large_policy

    def attach(self, trainer: Trainer) -> RolloutEngine:
        self.trainer = trainer
        self.large = Trainer(large_config(self.cfg), self.large_policy, trainer.tokenizer, trainer.task)
        self.steps_per_epoch = max(1, math.ceil(len(trainer.train_pool) / self.cfg.train.prompts_per_step))
        self.engine = HintedEngine(trainer.engine, self.large.engine, trainer.tokenizer, self.cd.hint_tokens)
        return self.engine

    def begin_step(self, step: int) -> None:
        self.engine.active = self.cd.hint_tokens > 0 and step <= self.cd.hint_epochs * self.steps_per_epoch
        self._tokens_at_start = self._tokens_seen = self.engine.large_tokens

    def score_shard(self, step: int, shard: int, batch: RolloutBatch) -> tuple[RolloutBatch, dict[str, Any]]:
        """Large-model scoring of one shard's M rollouts per prompt, r~ = r + alpha r_KD, max-variance M -> G.

        A prompt group never spans shards, so downsampling per shard is per group. Sets
        ``extras["effective_reward"]`` (read by the ``codistill`` estimator), ``extras["lp_large"]`` and, when
        hint tokens are left out of the small model's loss, ``loss_mask``.
        """
        tr, cd = self.trainer, self.cd
        out = {"large_tokens": self.engine.large_tokens - self._tokens_seen}
        self._tokens_seen = self.engine.large_tokens
        seed = distributed.shard_seed(tr.cfg.train.seed, step, shard, tr.rollout_shards, stream=5)
        hint = batch.extras["hint_mask"]
        lp_small = batch.old_logprobs
        with tr.timer("large_score"), torch.no_grad():
            need_all = cd.alpha != 0 and cd.downsample != "none"
            if not need_all:  # r~ = r: downsample first, score only the kept rollouts
                batch = batch.select(downsample_groups(batch.rewards.double(), batch.group_ids, cd.g, cd.downsample,
                                                       seed))
                hint, lp_small = batch.extras["hint_mask"], batch.old_logprobs
            ids, mask = batch.sequences()
            lp_large, n_unique = distinct_row_logprobs(self.large.policy, ids, mask, batch.response_ids.shape[1],
                                                       tr.cfg.rollout.temperature)
            lp_large = lp_large * batch.response_mask
            out["scored"] = (n_unique, batch.size)
        r_eff = effective_reward(batch.rewards, lp_large, lp_small, batch.response_mask, cd.alpha)
        out["kd"] = kd_reward(lp_large, lp_small, batch.response_mask * (1 - hint))
        batch.extras.update(effective_reward=r_eff, lp_large=lp_large)
        if need_all:
            batch = batch.select(downsample_groups(r_eff, batch.group_ids, cd.g, cd.downsample, seed))
        if cd.mask_hints_small:
            batch.loss_mask = 1 - batch.extras["hint_mask"]
        return batch, out

    def merge_shards(self, extras: list[dict[str, Any]]) -> dict[str, float]:
        """Large-model tokens, scored rows and KL(pi_phi || pi_theta) per token over every shard's M rollouts."""
        generated = sum(e["large_tokens"] for e in extras)  # every rank's hints
        self.engine.large_tokens = self._tokens_at_start + generated
        kd = float(torch.cat([e["kd"] for e in extras]).mean())
        return {"large/generated_tokens": generated, "large/scored_rows": sum(e["scored"][0] for e in extras),
                "large/candidate_rows": sum(e["scored"][1] for e in extras),  # distinct rows scored / rollouts
                "kl_small_large": -kd, "kd_reward": kd}

    def large_batch(self, batch: RolloutBatch) -> RolloutBatch:
        """The same kept rollouts with the large model's advantages (its estimator on the verifier reward), old
        log-probs and weights."""
        old, weights = cross_model_targets(batch.extras["lp_large"], batch.old_logprobs, batch.extras["hint_mask"],
                                           self.cd.large_is_mode, self.cd.is_clip_c)
        lb = batch.with_(old_logprobs=old, is_weights=weights, loss_mask=None, ref_logprobs=None)
        lb.advantages = self.large.estimator(lb)
        return lb

    def after_update(self, step: int, batch: RolloutBatch) -> dict[str, float]:
        """The large model's update on the kept rollouts; its metrics under ``large/``."""
        upd = self.large.update(self.large_batch(batch), step)
        phases = self.large.timer.pop()
        m = batch.response_mask.bool()
        log_w = (batch.extras["lp_large"] - batch.old_logprobs)[m]  # cross-model log-ratio of the kept tokens
        return {**{f"large/{k}": v for k, v in upd.items()}, **{f"time/large_{k}": v for k, v in phases.items()},
                "large/w_outside_clip_frac": float((log_w.abs() > math.log(1.2)).float().mean()),
                "large/w_above_c_frac": float((log_w > math.log(self.cd.is_clip_c)).float().mean())}

    def evaluate(self) -> dict[str, float]:
        return {k.replace("eval/", "eval_large/"): v for k, v in self.large.evaluate().items()}

    def state(self) -> dict[str, Any]:
        """The large model's weights and optimizer inside the trainer state (the small model is the
        checkpoint's model folder)."""
        big = self.large
        return {"large": {"weights": big.policy.state_dict(), "optimizer": big.optimizer.state_dict(),
                          "scheduler": big.scheduler.state_dict()},
                "large_tokens": self.engine.large_tokens}

    def load_state(self, state: dict[str, Any]) -> None:
        big = state["large"]
        self.large.policy.load_state_dict(big["weights"])
        self.large.optimizer.load_state_dict(big["optimizer"])
        self.large.scheduler.load_state_dict(big["scheduler"])
        self.large.engine.sync_weights(self.large.policy)
        self.engine.large_tokens = state.get("large_tokens", 0)


def codistill_trainer(cfg: RLVRConfig, policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: Task,
                      large_policy: PreTrainedModel) -> Trainer:
    """The ordinary :class:`Trainer` of the small model (``policy``) with CoDistill's stages; the large model's
    trainer is ``trainer.extra.large``."""
    check_parallel(cfg, distributed.current())
    return Trainer(small_config(cfg), policy, tokenizer, task, extra=CoDistillStages(cfg, large_policy))


def build_large_policy(cfg: RLVRConfig, task: Task, warm_dir: Path | None = None, resume: bool = False,
                       warm_up: bool = True):
    """The large model's starting policy (its own model section and SFT length; same tokenizer).
    ``warm_up=False``: no SFT (data-parallel ranks other than 0, which receive rank 0's weights)."""
    return build_policy(large_config(cfg), task, warm_dir, resume=resume, warm_up=warm_up)


def check_parallel(cfg: RLVRConfig, dp: distributed.DataParallel) -> None:
    """Under torchrun CoDistill-GRPO replicates both models (``train.parallel = "ddp"``); FSDP2 is refused."""
    if dp.enabled and cfg.train.parallel != "ddp":
        raise ConfigError(f"codistill.enabled with train.parallel={cfg.train.parallel!r}: CoDistill-GRPO runs "
                          "data-parallel only with train.parallel='ddp' (both models replicated); set "
                          "train.parallel=ddp or run without torchrun")
