"""The algorithm-blind RLVR loop (ARCHITECTURE.md, "One RLVR training step").

An algorithm is a choice of estimator, correction and loss terms, all named in the config; nothing in
this file knows which one runs. One step (``train_step``), each stage returning what the next one needs::

    batch, metrics = rollout(step)          # per shard: generate, reward, score (old / ref log-probs),
                                            #   extra.score_shard; then gather the shards
    batch, metrics = compute_advantages()   # estimator (registry) -> advantages; correction -> weights
    metrics        = update(batch, step)    # PPO-clip epochs; optimizer step; engine.sync_weights
    metrics        = extra.after_update()   # an algorithm's own stage (CoDistill's large model), or nothing

Data parallelism (``torchrun``) is the ``dp`` object (``distributed.DataParallel``), whose operations are
no-ops in one process: each rank rolls out its own shards of the prompts, every rank holds the gathered
global batch, back-propagates its own rows and the gradients are summed (``distributed.py`` has the rest).
"""

from __future__ import annotations

import copy
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
from rollwise.rlvr.evaluate import evaluate_policy
from rollwise.rlvr.losses import LossConfig
from rollwise.rlvr.microbatch import loss_backward, reuse_blocker, zero_backward
from rollwise.rlvr.models import prompt_features, response_logprobs
from rollwise.rlvr.rewards import RewardRunner
from rollwise.rlvr.run_config import RLVRConfig
from rollwise.rlvr.stages import ExtraStages, Shard
from rollwise.rlvr.step_metrics import (
    accumulate,
    kl_to_reference,
    merge_update_metrics,
    micro_batch_shares,
    step_record,
)
from rollwise.rlvr.tasks import Example, Task, collate_columns
from rollwise.runlog import PhaseTimer, RunLog, progress_bar


def step_seed(seed: int, step: int, stream: int) -> int:
    """A reproducible 63-bit seed for (run seed, step, stream); resumed runs draw the same numbers."""
    return int(np.random.default_rng([seed, step, stream]).integers(0, 2**63 - 1))


@dataclass
class Trainer:
    """Owns the policy, optimizer and stages of one RLVR run. ``extra``: an algorithm's own stages (``stages.py``);
    ``dp``: every data-parallel operation, each a no-op in a single process (``distributed.py``)."""

    cfg: RLVRConfig
    policy: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    task: Task
    engine: RolloutEngine | None = None
    extra: ExtraStages = field(default_factory=ExtraStages)
    run_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        cfg = self.cfg
        self.dp = distributed.current().for_training(cfg.train.parallel)
        self.run_dir = Path(cfg.run.output_dir)
        self.train_pool: list[Example] = self.task.examples("train")
        #: rollout shards per step (a multiple of the world size): 1 process with N draws an N-rank run's rollouts
        self.rollout_shards = cfg.train.rollout_shards or self.dp.world_size
        self.dp.local_shards(self.rollout_shards)  # a multiple of the world size, or a ConfigError
        self.n_prompts = min(cfg.train.prompts_per_step, len(self.train_pool))
        distributed.shard_bounds(self.n_prompts, 0, self.rollout_shards)
        self.dp.broadcast_parameters(self.policy)  # every rank starts from rank 0's weights
        #: the full weights that generate, score, evaluate and are checkpointed (under FSDP2 a replica)
        self.rollout_policy = self.dp.replica(self.policy)
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
        self.dp.shard(self.policy)  # FSDP2: after the copies, before the optimizer sees the parameters
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=cfg.train.lr,
                                           weight_decay=cfg.train.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cfg.train.lr_factor)
        self.timer = PhaseTimer()
        self.start_step, self.rollouts_generated, self.wall_offset = 1, 0, 0.0
        self._t_start = time.perf_counter()
        self.engine = self.extra.attach(self)

    # ----------------------------------------------------------------------------------- the step
    def train_step(self, step: int) -> dict[str, Any]:
        """One RLVR step (ARCHITECTURE.md): rollouts, advantages, update; returns the step's metrics."""
        t0 = time.perf_counter()
        batch, rollout_metrics = self.rollout(step)
        batch, correction_metrics = self.compute_advantages(batch)
        update_metrics = self.update(batch, step)  # with reused old log-probs: the correction's diagnostics too
        extra_metrics = self.extra.after_update(step, batch)  # e.g. CoDistill's large-model update
        return {**step_record(step, batch, rollout_metrics["reward/accuracy"], self.rollouts_generated,
                              self.scheduler.get_last_lr()[0], self.timer.pop(), time.perf_counter() - t0),
                **rollout_metrics, **correction_metrics, **update_metrics,
                **getattr(self.estimator, "metrics", {}),  # estimator diagnostics, e.g. basis/*
                **kl_to_reference(batch), **extra_metrics}

    def sample_prompts(self, step: int) -> list[Example]:
        rng = np.random.default_rng([self.cfg.train.seed, step, 0])
        return [self.train_pool[i] for i in rng.choice(len(self.train_pool), size=self.n_prompts, replace=False)]

    def rollout(self, step: int) -> tuple[RolloutBatch, dict[str, float]]:
        """Generate, score and teacher-force one global batch; returns it and its reward metrics. This rank
        rolls out its own shards (``rollout_shard``); every rank returns the same gathered global batch."""
        self.extra.begin_step(step)
        examples = self.sample_prompts(step)
        local = [self.rollout_shard(step, examples, s) for s in self.dp.local_shards(self.rollout_shards)]
        with self.timer("gather"):
            shards: list[Shard] = [part for rank_parts in self.dp.all_gather(local) for part in rank_parts]
        batch = distributed.concat_batches([s.batch for s in shards], self.tokenizer.pad_token_id)
        rewards, truncated = torch.cat([s.rewards for s in shards]), torch.cat([s.truncated for s in shards])
        metrics = distributed.merge_reward_metrics([(s.rewards.numel(), s.reward_metrics) for s in shards],
                                                   rewards, truncated)
        self.rollouts_generated += rewards.numel()
        return batch, {**metrics, **self.extra.merge_shards([s.extra for s in shards])}

    def rollout_shard(self, step: int, examples: list[Example], shard: int) -> Shard:
        """Rollouts of one contiguous shard of ``examples``: generated, rewarded, teacher-forced (and passed
        through the extra stages' ``score_shard``)."""
        cfg = self.cfg
        lo, hi = distributed.shard_bounds(len(examples), shard, self.rollout_shards)
        seed = distributed.shard_seed(cfg.train.seed, step, shard, self.rollout_shards)
        with self.timer("generate"):
            batch = self.engine.generate([e.prompt for e in examples[lo:hi]], cfg.rollout, seed)
        batch.group_ids = batch.group_ids + lo  # global prompt index
        batch.columns = columns = collate_columns([examples[g] for g in batch.group_ids.tolist()])
        with self.timer("reward"):
            batch.rewards, reward_metrics = self.rewards(batch.prompts, batch.completions, batch.truncated.tolist(),
                                                         columns)
        with self.timer("logprobs"), torch.no_grad():
            self.score(batch)
        kept, extra = self.extra.score_shard(step, shard, batch)
        return Shard(kept, batch.rewards, batch.truncated, reward_metrics, extra)

    def score(self, batch: RolloutBatch) -> None:
        """Teacher-forced log-probs (B, T) of the full policy (``old_logprobs``, unless the update's own forward
        supplies them) and of the reference, and prompt features when the estimator reads them."""
        if not self.reuse_logprobs:
            batch.old_logprobs = self.teacher_forced(self.rollout_policy, batch)[0] * batch.response_mask
        if self.ref_policy is not None:
            batch.ref_logprobs = self.teacher_forced(self.ref_policy, batch)[0] * batch.response_mask
        if "prompt_features" in self.reads:
            batch.prompt_features = prompt_features(self.rollout_policy, batch.prompt_ids, batch.prompt_mask)

    def teacher_forced(self, model: torch.nn.Module, batch: RolloutBatch, with_entropy: bool = False
                       ) -> tuple[Tensor, Tensor | None]:
        """Log-probs (B, T) of the batch's responses under ``model`` (and entropies), at the rollout temperature."""
        return response_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask,
                                 self.cfg.rollout.temperature, with_entropy, compact=self.compact)

    def compute_advantages(self, batch: RolloutBatch) -> tuple[RolloutBatch, dict[str, float]]:
        """The estimator's advantages and the correction's weights and keep mask (combined with any loss
        mask an earlier stage set); returns the batch and the correction's diagnostics (with reused old
        log-probs the correction, then ``none``, runs after the update)."""
        with self.timer("advantage"):
            batch.advantages = self.estimator(batch)
            if batch.old_logprobs is None:
                return batch, {}
            batch.is_weights, keep, metrics = self.correction(batch)
            batch.loss_mask = keep if batch.loss_mask is None else batch.loss_mask if keep is None \
                else batch.loss_mask * keep
        return batch, metrics

    def update(self, batch: RolloutBatch, step: int) -> dict[str, float]:
        """PPO epochs over mini-batches with gradient accumulation and clipping; returns update metrics.

        Each micro-batch's loss is weighted by its share of the mini-batch's global count (``loss_share``), so
        accumulating micro-batches, on one rank or across ranks, gives the whole mini-batch's gradient; each
        rank trains on its own rows and ``dp.reduce_gradients`` sums the gradients before clipping."""
        cfg = self.cfg.train
        gen = torch.Generator().manual_seed(step_seed(cfg.seed, step, 2))
        mine = self.dp.own_rows(batch.group_ids, self.n_prompts, self.rollout_shards)
        token_mask = batch.response_mask if batch.loss_mask is None else batch.response_mask * batch.loss_mask
        sums: dict[str, float] = {}  # this rank's share of the additive metrics
        peaks: list[dict[str, float]] = []  # per optimizer step: this rank's maxima
        reused = torch.zeros_like(batch.response_mask) if batch.old_logprobs is None else None
        grad_norm, n_updates = 0.0, 0
        self.policy.train()
        with self.timer("update"):
            for _ in range(cfg.ppo_epochs):
                for mb_idx in torch.randperm(batch.size, generator=gen).chunk(cfg.mini_batches):
                    self.optimizer.zero_grad(set_to_none=True)
                    own = mb_idx[mine[mb_idx]]
                    peaks.append({})
                    chunks = own.split(cfg.micro_batch_size or len(mb_idx)) if len(own) else ()
                    n_passes = self.dp.backward_passes(len(chunks))  # a collective: before FSDP2's passes
                    for mc_idx in chunks:
                        shares = micro_batch_shares(token_mask[mc_idx], token_mask[mb_idx], len(mc_idx) / len(mb_idx),
                                                    self.loss_cfg.agg_mode)
                        metrics, logprobs = loss_backward(self.policy, batch.select(mc_idx), self.loss_cfg,
                                                          self.teacher_forced, shares["loss"])
                        if reused is not None:
                            reused[mc_idx] = logprobs
                        accumulate(sums, peaks[-1], metrics, shares)
                    for _ in range(n_passes - len(chunks)):
                        zero_backward(self.policy, batch.select(mb_idx[:1]), self.teacher_forced)
                    with self.timer("allreduce"):
                        self.dp.reduce_gradients(self.policy.parameters())
                    if cfg.max_grad_norm > 0:
                        gn = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                        grad_norm += float(distributed.full_tensor(gn))
                    self.optimizer.step()
                    n_updates += 1
            self.scheduler.step()
        self.policy.eval()
        correction_metrics: dict[str, float] = {}
        if reused is not None:  # the update's own log-probs were the old ones; the mismatch diagnostics use them
            batch.old_logprobs = reused * batch.response_mask
            _, _, correction_metrics = self.correction(batch)
        with self.timer("sync"):
            self._sync_rollout_policy()
        out = merge_update_metrics(self.dp.all_gather((sums, peaks)))
        if cfg.max_grad_norm > 0:
            out["grad_norm"] = grad_norm  # computed on the summed gradient: the same on every rank
        return {**{k: v / n_updates for k, v in out.items()}, **correction_metrics}

    def _sync_rollout_policy(self) -> None:
        """Hand the updated weights to the engine (under FSDP2 gathered into the replica first)."""
        self.dp.refresh_replica(self.policy, self.rollout_policy)
        self.engine.sync_weights(self.rollout_policy)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The full-precision policy's test accuracy (``evaluate.evaluate_policy``), plus the extra stages'."""
        if not self.test_pool:
            return {}
        return {**evaluate_policy(self.rollout_policy, self.tokenizer, self.task.unique_answer, self.test_pool,
                                  self.rewards, self.cfg.rollout, step_seed(self.cfg.train.seed, 0, 3), self.compact),
                **self.extra.evaluate()}

    def state(self) -> dict[str, Any]:
        """The trainer state of a checkpoint (under FSDP2 a collective: the optimizer state is gathered)."""
        return {"optimizer": self.dp.optimizer_state(self.policy, self.optimizer),
                "scheduler": self.scheduler.state_dict(),
                "estimator": self.estimator.state_dict(), "correction": self.correction.state_dict(),
                "rollouts_generated": self.rollouts_generated, "wall": self._wall(),
                "config": to_dict(self.cfg), **self.extra.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.dp.load_optimizer_state(self.policy, self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.estimator.load_state_dict(state["estimator"])
        self.correction.load_state_dict(state.get("correction", {}))
        self.rollouts_generated = state["rollouts_generated"]
        self.wall_offset = state.get("wall", 0.0)
        set_rng_state(state["rng"])
        self.start_step = state["step"] + 1
        self.extra.load_state(state)

    def _wall(self) -> float:
        return self.wall_offset + (time.perf_counter() - self._t_start)

    def _prepare_estimator(self) -> None:
        """The estimator's one-off stage (e.g. BASIS's offline rollouts): on rank 0 only, then its state
        (the same ``state_dict`` a checkpoint holds) and the rollout count are sent to every rank."""

        def prepare() -> tuple[dict[str, Any], int]:
            self.estimator.prepare(self)
            return self.estimator.state_dict(), self.rollouts_generated

        state, self.rollouts_generated = self.dp.on_main(prepare)
        self.estimator.load_state_dict(state)

    def _resume(self, log: RunLog | None) -> None:
        ckpt = latest_checkpoint(self.run_dir)
        if ckpt is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {self.run_dir / 'checkpoints'}")
        from rollwise.rlvr.models import load_policy

        self.dp.load_weights(self.policy, load_policy(ckpt)[0].state_dict())
        self._sync_rollout_policy()
        self.load_state(load_trainer_state(ckpt))
        if log is not None:
            log.truncate_after(self.start_step - 1)

    def _checkpoint(self, step: int) -> None:
        """Write checkpoint ``step`` (rank 0; under FSDP2 every rank helps build it); no rank runs ahead."""
        state = self.state() if self.dp.builds_checkpoints else None
        if self.dp.is_main:
            save_checkpoint(self.run_dir, step, self.rollout_policy, self.tokenizer, state,
                            keep=self.cfg.train.keep_checkpoints)
        self.dp.barrier()

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Run (or resume) training; returns the last evaluation metrics (on every rank).

        Under data parallelism only rank 0 evaluates and writes the metrics log and checkpoints; every
        rank resumes from the same (shared) checkpoint folder.
        """
        cfg = self.cfg.train
        log = RunLog(self.run_dir, tensorboard=self.cfg.run.tensorboard) if self.dp.is_main else None
        self._t_start = time.perf_counter()
        if resume:
            self._resume(log)
        else:
            self._prepare_estimator()
            ev = self.dp.on_main(self.evaluate)
            if log is not None:
                log.log({"step": 0, "wall": 0.0, "rollouts_total": self.rollouts_generated, **ev})
        last_eval: dict[str, Any] = {}
        with progress_bar("train", total=cfg.steps, disable=None if self.dp.is_main else True) as bar:
            bar.update(advance=self.start_step - 1)
            for step in range(self.start_step, cfg.steps + 1):
                rec = self.train_step(step)
                if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
                    with self.timer("eval"):
                        last_eval = self.dp.on_main(self.evaluate)
                    rec.update(last_eval)
                    rec["time/eval"] = self.timer.pop().get("eval", 0.0)
                rec["wall"] = self._wall()
                if log is not None:
                    log.log(rec)
                if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == cfg.steps:
                    self._checkpoint(step)
                acc = last_eval.get("eval/exact_accuracy", last_eval.get("eval/accuracy", float("nan")))
                bar.update(info=f"reward {rec['reward']:.3f} eval {acc:.3f}")
        if log is not None:
            log.close()
        return last_eval
