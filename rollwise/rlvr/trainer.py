"""The algorithm-blind RLVR loop (ARCHITECTURE.md, "One RLVR training step").

An algorithm is a choice of estimator, correction and loss terms, all named in the config; nothing in
this file knows which one runs. One step::

    prompts  = task pool sampled with (seed, step)
    batch    = engine.generate(prompts, n)               # tokens, masks, rollout log-probs
    rewards  = reward runner (failures contained, counted)
    old_lp   = policy log-probs, teacher-forced           # trainer precision
    adv      = estimator(batch)                           # registry
    weights  = correction(batch)                          # none / tis / mis / ais
    loss     = policy_loss(...); optimizer step; engine.sync_weights(policy)

Data-parallel (``torchrun``, ``distributed.py``): each rank generates, scores and teacher-forces its own
contiguous shard of the prompts; the shards are all-gathered so that every rank holds the global batch
(advantages, correction and metrics are global); each rank back-propagates its own rows with the loss
normalised by global counts, and the gradients are summed before clipping. Only rank 0 writes files.
With ``train.parallel = "fsdp2"`` the trained policy is sharded (FSDP2 sums the gradients) and a full,
gradient-free replica of it (``rollout_policy``) generates, scores, evaluates and is checkpointed.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rollwise.config import to_dict
from rollwise.rlvr import correction as corrections
from rollwise.rlvr import distributed
from rollwise.rlvr.advantages import make_estimator
from rollwise.rlvr.batch import RolloutBatch
from rollwise.rlvr.checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint, set_rng_state
from rollwise.rlvr.engines import RolloutEngine, make_engine
from rollwise.rlvr.engines.hf import HFEngine
from rollwise.rlvr.evaluate import exact_success_prob
from rollwise.rlvr.losses import LossConfig, kl_penalty, policy_loss
from rollwise.rlvr.models import prompt_features, response_logprobs
from rollwise.rlvr.rewards import RewardRunner
from rollwise.rlvr.run_config import RLVRConfig
from rollwise.rlvr.tasks import Example, Task, collate_columns
from rollwise.runlog import PhaseTimer, RunLog, progress_bar

#: update metrics reduced by their maximum over micro-batches and ranks (per optimizer step)
MAX_METRICS = frozenset({"ratio_max"})
#: which share of the mini-batch weights a metric (``Trainer._shares``); unnamed metrics are row-weighted
METRIC_SHARE = {**dict.fromkeys(("loss", "pg_loss", "kl_loss", "entropy"), "loss"),
                **dict.fromkeys(("clip_frac_low", "clip_frac_high", "dual_clip_frac", "approx_kl", "ratio_mean"),
                                "tokens")}


def step_seed(seed: int, step: int, stream: int) -> int:
    """A reproducible 63-bit seed for (run seed, step, stream); resumed runs draw the same numbers."""
    return int(np.random.default_rng([seed, step, stream]).integers(0, 2**63 - 1))


@dataclass
class Trainer:
    """Owns the policy, optimizer and stages of one RLVR run."""

    cfg: RLVRConfig
    policy: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    task: Task
    engine: RolloutEngine | None = None
    run_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        cfg = self.cfg
        self.dp = distributed.current()
        self.run_dir = Path(cfg.run.output_dir)
        self.train_pool: list[Example] = self.task.examples("train")
        #: contiguous rollout shards per step (a multiple of the world size); the batch depends on it, so a
        #: 1-process run with ``rollout_shards = N`` draws exactly the rollouts of an N-rank run
        self.rollout_shards = cfg.train.rollout_shards or self.dp.world_size
        self.dp.local_shards(self.rollout_shards)  # a multiple of the world size, or a ConfigError
        distributed.shard_bounds(min(cfg.train.prompts_per_step, len(self.train_pool)), 0, self.rollout_shards)
        self.dp.broadcast_parameters(self.policy)  # every rank starts from rank 0's weights
        #: FSDP2 (``train.parallel = "fsdp2"`` under torchrun): ``policy`` is sharded just before the
        #: optimizer is built; one process or ddp keep it whole (``train.parallel`` is then ignored)
        self.fsdp = self.dp.enabled and cfg.train.parallel == "fsdp2"
        #: the full weights that generate, score (no grad), evaluate and are checkpointed: the policy itself,
        #: or under FSDP2 a gradient-free replica, refreshed from the sharded policy after every update
        self.rollout_policy = copy.deepcopy(self.policy).requires_grad_(False) if self.fsdp else self.policy
        self.test_pool: list[Example] = self.task.examples("test")[: cfg.train.eval_prompts]
        if self.engine is None:
            self.engine = make_engine(cfg.rollout.engine, self.rollout_policy, self.tokenizer,
                                      **{"batch_size": cfg.rollout.batch_size, **cfg.rollout.engine_params})
        self.rewards = RewardRunner(self.task.reward_funcs(), timeout_s=cfg.task.reward_timeout_s,
                                    isolation=cfg.task.reward_isolation)
        self.estimator = make_estimator(cfg.algorithm.estimator, **cfg.algorithm.estimator_params)
        self.estimator.validate(cfg.rollout.n)
        self.correction = corrections.make_correction(cfg.algorithm.correction, **cfg.algorithm.correction_params)
        self.loss_cfg = LossConfig(**to_dict(cfg.algorithm.loss), max_len=cfg.rollout.max_new_tokens)
        self.reads = self.estimator.fields_read()
        needs_ref = cfg.algorithm.loss.kl_coef > 0 or "ref_logprobs" in self.reads
        self.ref_policy = copy.deepcopy(self.policy).eval().requires_grad_(False) if needs_ref else None
        #: teacher-forced passes through the compact forward (``model.forward = "compact"``, rlvr/compact.py)
        self.compact = cfg.model.forward == "compact"
        #: old log-probs taken from the update's own forward (detached) instead of a separate pass
        self.reuse_logprobs = cfg.train.reuse_logprobs and reuse_blocker(cfg, self.reads, self.dp.enabled) is None
        if self.fsdp:
            distributed.shard_model(self.policy)
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=cfg.train.lr,
                                           weight_decay=cfg.train.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.timer = PhaseTimer()
        self.start_step = 1
        self.rollouts_generated = 0
        self.wall_offset = 0.0
        self._t_start = time.perf_counter()

    # ----------------------------------------------------------------------------------- schedule
    def _lr_factor(self, step: int) -> float:
        t = self.cfg.train
        if t.warmup_steps and step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        frac = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
        if t.lr_schedule == "linear":
            return max(0.0, 1.0 - frac)
        if t.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))
        return 1.0

    # ----------------------------------------------------------------------------------- stages
    def sample_prompts(self, step: int) -> list[Example]:
        rng = np.random.default_rng([self.cfg.train.seed, step, 0])
        k = min(self.cfg.train.prompts_per_step, len(self.train_pool))
        return [self.train_pool[i] for i in rng.choice(len(self.train_pool), size=k, replace=False)]

    def rollout(self, step: int) -> RolloutBatch:
        """Generate, score and teacher-force one global batch (everything the update needs).

        This rank rolls out its own shards of the prompts (``_rollout_shard``); the shards of all ranks are
        gathered, so every rank returns the same global batch (rows in prompt order, ``group_ids`` global).
        """
        examples = self.sample_prompts(step)
        local = [self._rollout_shard(step, examples, s) for s in self.dp.local_shards(self.rollout_shards)]
        with self.timer("gather"):
            shards = [part for rank_parts in self.dp.all_gather(local) for part in rank_parts]
        batch = distributed.concat_batches([b for b, _ in shards], self.tokenizer.pad_token_id)
        self._reward_metrics = distributed.merge_reward_metrics([(b.size, m) for b, m in shards], batch.rewards,
                                                                batch.truncated)
        self.rollouts_generated += batch.size
        return batch

    def _rollout_shard(self, step: int, examples: list[Example], shard: int
                       ) -> tuple[RolloutBatch, dict[str, float]]:
        """Rollouts of one contiguous shard of ``examples``, scored and teacher-forced; and its reward metrics."""
        cfg = self.cfg
        lo, hi = distributed.shard_bounds(len(examples), shard, self.rollout_shards)
        seed = distributed.shard_seed(cfg.train.seed, step, shard, self.rollout_shards)
        with self.timer("generate"):
            batch = self.engine.generate([e.prompt for e in examples[lo:hi]], cfg.rollout, seed)
        batch.group_ids = batch.group_ids + lo  # global prompt index
        batch.columns = columns = collate_columns([examples[g] for g in batch.group_ids.tolist()])
        with self.timer("reward"):
            rewards, reward_metrics = self.rewards(batch.prompts, batch.completions, batch.truncated.tolist(),
                                                   columns)
        batch.rewards = rewards
        with self.timer("logprobs"), torch.no_grad():
            full = self.rollout_policy  # the policy, or its full replica under FSDP2
            if not self.reuse_logprobs:  # else the update's own forward supplies them
                batch.old_logprobs = self._teacher_forced(full, batch)[0] * batch.response_mask
            if self.ref_policy is not None:
                batch.ref_logprobs = self._teacher_forced(self.ref_policy, batch)[0] * batch.response_mask
            if "prompt_features" in self.reads:
                batch.prompt_features = prompt_features(full, batch.prompt_ids, batch.prompt_mask)
        return batch, reward_metrics

    def _teacher_forced(self, model: torch.nn.Module, batch: RolloutBatch, with_entropy: bool = False
                        ) -> tuple[Tensor, Tensor | None]:
        """Log-probs (B, T) of the batch's responses under ``model`` (and entropies), at the rollout temperature."""
        return response_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask,
                                 self.cfg.rollout.temperature, with_entropy, compact=self.compact)

    def compute_advantages(self, batch: RolloutBatch) -> RolloutBatch:
        with self.timer("advantage"):
            batch.advantages = self.estimator(batch)
            if batch.old_logprobs is None:  # reused log-probs: the correction ('none') runs after the update
                self._corr_metrics = {}
            else:
                weights, loss_mask, self._corr_metrics = self.correction(batch)
                batch.is_weights, batch.loss_mask = weights, loss_mask
        return batch

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        """PPO epochs over mini-batches with gradient accumulation and clipping.

        Every loss term of a micro-batch is weighted by its share of the mini-batch's global count
        (``distributed.loss_share``: tokens for token-mean, sequences for the seq-mean modes), so
        accumulating micro-batches, on one rank or across ranks, gives the gradient of the whole
        mini-batch. Each rank trains on its own rows only; gradients are summed across ranks before
        clipping (under FSDP2 by its reduce-scatter, and every rank runs as many passes: ``_zero_backward``).
        """
        cfg = self.cfg.train
        gen = torch.Generator().manual_seed(step_seed(cfg.seed, self._step, 2))
        mine = self._own_rows(batch)
        token_mask = batch.response_mask if batch.loss_mask is None else batch.response_mask * batch.loss_mask
        sums: dict[str, float] = {}  # this rank's share of the additive metrics
        peaks: list[dict[str, float]] = []  # per optimizer step: this rank's maxima
        reused = torch.zeros_like(batch.response_mask) if batch.old_logprobs is None else None
        grad_norm = 0.0
        n_updates = 0
        self.policy.train()
        with self.timer("update"):
            for _ in range(cfg.ppo_epochs):
                order = torch.randperm(batch.size, generator=gen)
                for mb_idx in order.chunk(cfg.mini_batches):
                    self.optimizer.zero_grad(set_to_none=True)
                    own = mb_idx[mine[mb_idx]]
                    peaks.append({})
                    chunks = own.split(cfg.micro_batch_size or len(mb_idx)) if len(own) else ()
                    # FSDP2: every rank runs as many passes (its collectives live in them); count them first
                    n_passes = self.dp.max_over_ranks(len(chunks)) if self.fsdp else len(chunks)
                    for mc_idx in chunks:
                        shares = self._shares(token_mask[mc_idx], token_mask[mb_idx], len(mc_idx) / len(mb_idx))
                        metrics, logprobs = self._loss_backward(batch.select(mc_idx), shares["loss"])
                        if reused is not None:
                            reused[mc_idx] = logprobs
                        for k, v in metrics.items():
                            if k in MAX_METRICS:
                                peaks[-1][k] = max(peaks[-1].get(k, -math.inf), v)
                            else:
                                sums[k] = sums.get(k, 0.0) + v * shares[METRIC_SHARE.get(k, "rows")]
                    for _ in range(n_passes - len(chunks)):
                        self._zero_backward(batch.select(mb_idx[:1]))
                    if not self.fsdp:
                        with self.timer("allreduce"):
                            self.dp.sum_gradients(self.policy.parameters())
                    if cfg.max_grad_norm > 0:
                        gn = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                        grad_norm += float(distributed.full_tensor(gn))
                    self.optimizer.step()
                    n_updates += 1
            self.scheduler.step()
        self.policy.eval()
        if reused is not None:  # the update's own log-probs were the old ones; the mismatch diagnostics use them
            batch.old_logprobs = reused * batch.response_mask
            _, _, self._corr_metrics = self.correction(batch)
        with self.timer("sync"):
            self._sync_rollout_policy()
        out = _merge_update_metrics(self.dp.all_gather((sums, peaks)))
        if cfg.max_grad_norm > 0:
            out["grad_norm"] = grad_norm  # computed on the summed gradient: the same on every rank
        return {k: v / n_updates for k, v in out.items()}

    def _own_rows(self, batch: RolloutBatch) -> Tensor:
        """(B,) bool: the rows of this rank's rollout shards (all rows in a single process)."""
        if not self.dp.enabled:
            return torch.ones(batch.size, dtype=torch.bool)
        shards = self.dp.local_shards(self.rollout_shards)
        n_prompts = min(self.cfg.train.prompts_per_step, len(self.train_pool))
        lo = distributed.shard_bounds(n_prompts, shards.start, self.rollout_shards)[0]
        hi = distributed.shard_bounds(n_prompts, shards.stop - 1, self.rollout_shards)[1]
        return (batch.group_ids >= lo) & (batch.group_ids < hi)

    def _shares(self, part_mask: Tensor, whole_mask: Tensor, rows: float) -> dict[str, float]:
        """Weights of a micro-batch's loss and metrics in its mini-batch (see ``update``)."""
        return {"loss": distributed.loss_share(part_mask, whole_mask, self.loss_cfg.agg_mode),
                "tokens": distributed.token_share(part_mask, whole_mask), "rows": rows}

    def _loss_backward(self, mb: RolloutBatch, scale: float) -> tuple[dict[str, float], Tensor]:
        """Back-propagate ``scale`` x the policy loss of micro-batch ``mb``; its metrics and detached log-probs.

        Reused old log-probs (``mb.old_logprobs`` None): the detached log-probs of this same forward, so the
        PPO ratio is exactly 1 (one on-policy update, as in TRL).
        """
        logprobs, entropy = self._teacher_forced(self.policy, mb, with_entropy=True)
        old = logprobs.detach() if mb.old_logprobs is None else mb.old_logprobs
        token_mask = mb.response_mask if mb.loss_mask is None else mb.response_mask * mb.loss_mask
        loss, metrics = policy_loss(logprobs, old, mb.advantages, token_mask, self.loss_cfg,
                                    ref_logprobs=mb.ref_logprobs, entropy=entropy, is_weights=mb.is_weights)
        (loss * scale).backward()
        return {**metrics, "loss": float(loss.detach())}, logprobs.detach()

    def _zero_backward(self, mb: RolloutBatch) -> None:
        """A forward and backward pass that adds exactly zero to every gradient: FSDP2 gathers parameters and
        reduce-scatters gradients inside these passes, so a rank with fewer micro-batches than another in a
        mini-batch runs these until the counts match."""
        logprobs, _ = self._teacher_forced(self.policy, mb)
        (logprobs.sum() * 0.0).backward()

    def _sync_rollout_policy(self) -> None:
        """Hand the updated weights to the engine; under FSDP2 gather them into the replica first."""
        if self.fsdp:
            self.rollout_policy.load_state_dict(distributed.full_state_dict(self.policy))
        self.engine.sync_weights(self.rollout_policy)

    # ----------------------------------------------------------------------------------- loop
    def train_step(self, step: int) -> dict[str, Any]:
        self._step = step
        t0 = time.perf_counter()
        batch = self.compute_advantages(self.rollout(step))
        upd = self.update(batch)
        phases = self.timer.pop()
        return self._step_metrics(step, batch, upd, phases, time.perf_counter() - t0)

    def _step_metrics(self, step: int, batch: RolloutBatch, upd: dict[str, float], phases: dict[str, float],
                      seconds: float) -> dict[str, Any]:
        r = batch.rewards
        m = batch.response_mask.bool()
        adv = batch.advantages[m]
        lengths = batch.response_lengths
        n_tokens = float(lengths.sum())
        rec: dict[str, Any] = {
            "step": step,
            "reward": float(r.mean()),
            "accuracy": self._reward_metrics["reward/accuracy"],  # the task's verifier, not the summed reward
            "adv/mean": float(adv.mean()), "adv/std": float(adv.std()) if adv.numel() > 1 else 0.0,
            "adv/abs_mean": float(adv.abs().mean()), "adv/max": float(adv.max()), "adv/min": float(adv.min()),
            "response_length": float(lengths.mean()), "response_length_max": float(lengths.max()),
            "truncated_frac": float(batch.truncated.float().mean()),
            "rollouts": batch.size, "rollouts_total": self.rollouts_generated,
            "lr": self.scheduler.get_last_lr()[0],
            **{f"time/{k}": v for k, v in phases.items()},
            "time/step": seconds,
            "tokens_per_s": n_tokens / max(phases.get("generate", 1e-9), 1e-9),
            **self._reward_metrics, **self._corr_metrics, **upd,
            **getattr(self.estimator, "metrics", {}),  # estimator diagnostics, e.g. basis/*
        }
        if batch.ref_logprobs is not None:
            kl = kl_penalty(batch.old_logprobs, batch.ref_logprobs, "k3")
            rec["kl_ref"] = float((kl * batch.response_mask).sum() / batch.response_mask.sum())
        return rec

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Exact expected test accuracy for unique-answer tasks; sampled accuracy otherwise.

        Both measure the trainer's full-precision policy: sampled evaluation uses an :class:`HFEngine` over
        ``self.rollout_policy`` (the policy, or its full replica under FSDP2), never the rollout engine (which
        may be a quantized or remote copy).
        """
        if not self.test_pool:
            return {}
        if self.task.unique_answer:
            v = exact_success_prob(self.rollout_policy, self.tokenizer, [e.prompt for e in self.test_pool],
                                   [e.target or e.answer for e in self.test_pool],
                                   temperature=self.cfg.rollout.temperature, compact=self.compact)
            return {"eval/exact_accuracy": float(v.mean())}
        sampling = copy.copy(self.cfg.rollout)
        sampling.n = 1
        engine = HFEngine(self.rollout_policy, self.tokenizer, batch_size=self.cfg.rollout.batch_size)
        batch = engine.generate([e.prompt for e in self.test_pool], sampling, step_seed(self.cfg.train.seed, 0, 3))
        rewards, metrics = self.rewards(batch.prompts, batch.completions, batch.truncated.tolist(),
                                        collate_columns(self.test_pool))
        return {"eval/accuracy": metrics["reward/accuracy"], "eval/reward": float(rewards.mean())}

    def state(self) -> dict[str, Any]:
        """The trainer state of a checkpoint (under FSDP2 a collective: the optimizer state is gathered)."""
        optimizer = distributed.full_optimizer_state_dict(self.policy, self.optimizer) if self.fsdp \
            else self.optimizer.state_dict()
        return {"optimizer": optimizer, "scheduler": self.scheduler.state_dict(),
                "estimator": self.estimator.state_dict(), "correction": self.correction.state_dict(),
                "rollouts_generated": self.rollouts_generated, "wall": self._wall(),
                "config": to_dict(self.cfg)}

    def load_state(self, state: dict[str, Any]) -> None:
        if self.fsdp:
            distributed.load_full_optimizer_state_dict(self.policy, self.optimizer, state["optimizer"])
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.estimator.load_state_dict(state["estimator"])
        self.correction.load_state_dict(state.get("correction", {}))
        self.rollouts_generated = state["rollouts_generated"]
        self.wall_offset = state.get("wall", 0.0)
        set_rng_state(state["rng"])
        self.start_step = state["step"] + 1

    def _wall(self) -> float:
        return self.wall_offset + (time.perf_counter() - self._t_start)

    def _prepare_estimator(self) -> None:
        """The estimator's one-off stage (e.g. BASIS's offline rollouts): on rank 0 only, then its state
        (the same ``state_dict`` a checkpoint holds) and the rollout count are sent to every rank."""
        if self.dp.is_main:
            self.estimator.prepare(self)
        if self.dp.enabled:
            state, self.rollouts_generated = self.dp.broadcast(
                (self.estimator.state_dict(), self.rollouts_generated) if self.dp.is_main else None)
            self.estimator.load_state_dict(state)

    def _evaluate_on_main(self) -> dict[str, float]:
        """``evaluate`` on rank 0, its result on every rank (the others do not evaluate)."""
        return self.dp.broadcast(self.evaluate() if self.dp.is_main else None)

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Run (or resume) training; returns the last evaluation metrics (on every rank).

        Under data parallelism only rank 0 evaluates and writes the metrics log and checkpoints; every
        rank resumes from the same (shared) checkpoint folder.
        """
        cfg = self.cfg
        main = self.dp.is_main
        log = RunLog(self.run_dir, tensorboard=cfg.run.tensorboard) if main else None
        self._t_start = time.perf_counter()
        if resume:
            ckpt = latest_checkpoint(self.run_dir)
            if ckpt is None:
                raise FileNotFoundError(f"--resume: no checkpoint in {self.run_dir / 'checkpoints'}")
            from rollwise.rlvr.models import load_policy

            weights, _ = load_policy(ckpt)
            if self.fsdp:
                distributed.load_full_state_dict(self.policy, weights.state_dict())
            else:
                self.policy.load_state_dict(weights.state_dict())
            self._sync_rollout_policy()
            self.load_state(load_trainer_state(ckpt))
            if log is not None:
                log.truncate_after(self.start_step - 1)
        else:
            self._prepare_estimator()
            ev = self._evaluate_on_main()
            if log is not None:
                log.log({"step": 0, "wall": 0.0, "rollouts_total": self.rollouts_generated, **ev})
        last_eval: dict[str, Any] = {}
        with progress_bar("train", total=cfg.train.steps, disable=None if main else True) as bar:
            bar.update(advance=self.start_step - 1)
            for step in range(self.start_step, cfg.train.steps + 1):
                rec = self.train_step(step)
                if (cfg.train.eval_every and step % cfg.train.eval_every == 0) or step == cfg.train.steps:
                    with self.timer("eval"):
                        last_eval = self._evaluate_on_main()
                    rec.update(last_eval)
                    rec["time/eval"] = self.timer.pop().get("eval", 0.0)
                rec["wall"] = self._wall()
                if log is not None:
                    log.log(rec)
                if (cfg.train.checkpoint_every and step % cfg.train.checkpoint_every == 0) or step == cfg.train.steps:
                    state = self.state() if main or self.fsdp else None  # FSDP2: every rank gathers
                    if main:
                        save_checkpoint(self.run_dir, step, self.rollout_policy, self.tokenizer, state,
                                        keep=cfg.train.keep_checkpoints)
                    self.dp.barrier()  # no rank runs ahead of the last complete checkpoint
                acc = last_eval.get("eval/exact_accuracy", last_eval.get("eval/accuracy", float("nan")))
                bar.update(info=f"reward {rec['reward']:.3f} eval {acc:.3f}")
        if log is not None:
            log.close()
        return last_eval


#: engines that sample the trainer's own full-precision weights (so rollout log-probs are the policy's)
OWN_WEIGHT_ENGINES = frozenset({"lean", "hf"})


def reuse_blocker(cfg: RLVRConfig, reads: frozenset[str], data_parallel: bool) -> str | None:
    """Why the update's own detached log-probs cannot stand in for a separate old-log-prob pass (None: they can).

    They equal the old log-probs (up to float rounding) only for one on-policy update of the weights the engine
    sampled, and only stages that run after the update may read them.
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


def _merge_update_metrics(parts: list[tuple[dict[str, float], list[dict[str, float]]]]) -> dict[str, float]:
    """Sum the ranks' shares of the additive update metrics; add the per-step maxima over ranks."""
    out: dict[str, float] = {}
    for sums, _ in parts:
        for k, v in sums.items():
            out[k] = out.get(k, 0.0) + v
    for j in range(len(parts[0][1])):
        for k in dict.fromkeys(key for _, peaks in parts for key in peaks[j]):
            out[k] = out.get(k, 0.0) + max(peaks[j][k] for _, peaks in parts if k in peaks[j])
    return out
