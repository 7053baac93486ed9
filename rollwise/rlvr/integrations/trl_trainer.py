"""rollwise's estimators and corrections inside TRL's ``GRPOTrainer`` (written against trl 1.16.0).

``RollwiseGRPOTrainer(..., estimator="basis", estimator_params={...}, correction="ais")`` is a GRPOTrainer
whose advantages come from rollwise's estimator registry. It hooks three GRPOTrainer methods and no more:

- ``_calculate_rewards``: keeps TRL's (B, F) per-function rewards of the generation batch;
- ``_generate_and_score_completions``: after TRL's own step, builds a ``RolloutBatch`` from TRL's tensors
  (rewards = the weighted sum of the reward functions, as TRL's ``sum_then_normalize``; groups = TRL's
  layout, ``num_generations`` consecutive completions per prompt) and replaces ``advantages`` with the
  estimator's token-level ``(B, T)`` advantages (TRL's loss accepts (B, T)). With a correction, the
  weights w (B, T) are multiplied into them: for w >= 0 that equals TRL multiplying its per-token loss
  by w (what its vLLM importance sampling does) for the PPO-clip, CISPO and SAPO losses;
- ``_save_checkpoint`` / ``_load_optimizer_and_scheduler``: the estimator's and correction's state go to
  ``rollwise_state.pt`` in each TRL checkpoint and come back on ``train(resume_from_checkpoint=...)``,
  the mechanism TRL uses for its own adaptive-entropy state.

BASIS needs one completion per prompt, which ``GRPOConfig`` refuses; ``RollwiseGRPOConfig`` accepts
``num_generations=1``. BASIS's offline stage (``Basis.prepare``) runs at the start of ``train()`` on a
fresh run, with TRL's own sampler and reward functions (:class:`OfflineContext`).

Importing this module imports trl.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor
from trl import GRPOConfig, GRPOTrainer

from rollwise.config import ConfigError
from rollwise.rlvr.advantages import AdvantageEstimator, correct_set_diagnostics, make_estimator
from rollwise.rlvr.batch import RolloutBatch
from rollwise.rlvr.correction import make_correction
from rollwise.rlvr.tasks import Example

STATE_FILE = "rollwise_state.pt"
#: TRL loss types whose per-token loss is positively homogeneous in the advantage (so w * A == w * loss)
WEIGHTABLE_LOSSES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo")


class _OneGeneration(int):
    """The value 1 while ``GRPOConfig.__post_init__`` runs: it does not compare below 2, so TRL's
    ``num_generations < 2`` check passes; every other use (``%``, ``//``) sees the plain 1."""

    def __lt__(self, other: object) -> bool:
        return False


@dataclass
class RollwiseGRPOConfig(GRPOConfig):
    """``GRPOConfig`` that also accepts ``num_generations=1`` (for BASIS or REINFORCE++ with one completion
    per prompt); whether the chosen estimator accepts it is checked by :class:`RollwiseGRPOTrainer`."""

    def __post_init__(self) -> None:
        one = self.num_generations == 1
        if one:
            self.num_generations = _OneGeneration(1)
        super().__post_init__()
        if one:
            self.num_generations = 1


class RollwiseGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` with rollwise's advantage estimator and rollout correction (module docstring).

    Args (besides GRPOTrainer's): ``estimator`` / ``estimator_params``: a name of rollwise's estimator
    registry and its parameters; ``correction`` / ``correction_params``: ``none``, ``tis``, ``mis`` or
    ``ais`` and parameters. A correction needs the rollout log-probs, which TRL has on its vLLM path
    (``use_vllm=True``) or from a ``rollout_func``; set ``vllm_importance_sampling_correction=False`` so that
    TRL does not apply its own ratio as well. Logged per step: ``rollwise/adv_*``, the estimator's
    diagnostics (``basis/*``, ``ucpo/*``) and the correction's (``mismatch/*``, ``correction/*``, ``ais/*``).
    """

    def __init__(self, *args: Any, estimator: str = "grpo", estimator_params: dict[str, Any] | None = None,
                 correction: str = "none", correction_params: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.rollwise_estimator: AdvantageEstimator = make_estimator(estimator, **(estimator_params or {}))
        self.rollwise_correction = make_correction(correction, **(correction_params or {}))
        self._rollwise_rewards: Tensor | None = None
        self._rollwise_resumed = False
        super().__init__(*args, **kwargs)
        self._check_rollwise_setup()

    # ------------------------------------------------------------------------------------ checks
    def _check_rollwise_setup(self) -> None:
        name = self.rollwise_estimator.name
        self.rollwise_estimator.validate(self.num_generations)
        if self.accelerator.num_processes > 1:
            raise ConfigError("RollwiseGRPOTrainer runs in one process only (the estimator needs the whole batch's "
                              "masks and log-probs, which are not gathered across processes yet)")
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ConfigError(f"estimator '{name}' sees the weighted sum of the reward functions; "
                              "multi_objective_aggregation='normalize_then_sum' is not supported")
        reads = self.rollwise_estimator.fields_read()
        if "ref_logprobs" in reads and self.beta == 0.0:
            raise ConfigError(f"estimator '{name}' reads reference log-probs (kl_coef > 0), which TRL computes only "
                              "with beta > 0; set beta or estimator_params kl_coef=0")
        if self.rollwise_correction.name == "none":
            return
        if not self.use_vllm and self.rollout_func is None:
            raise ConfigError(f"correction '{self.rollwise_correction.name}' needs the rollout engine's log-probs; "
                              "TRL has them only with use_vllm=True or a rollout_func returning logprobs. Without "
                              "them use correction='none'")
        if self.use_vllm and self.vllm_importance_sampling_correction:
            raise ConfigError(f"correction '{self.rollwise_correction.name}' replaces TRL's vLLM importance "
                              "sampling: set vllm_importance_sampling_correction=False")
        if self.loss_type not in WEIGHTABLE_LOSSES:
            raise ConfigError(f"correction '{self.rollwise_correction.name}' is applied through the advantages, "
                              f"which equals weighting the loss only for loss_type in {', '.join(WEIGHTABLE_LOSSES)}"
                              f" (got {self.loss_type!r})")

    # ------------------------------------------------------------------------------------ offline stage
    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> Any:
        """TRL's ``train``; on a fresh run first the estimator's one-off stage (BASIS's offline rollouts)."""
        if not resume_from_checkpoint and _has_prepare(self.rollwise_estimator):
            self.rollwise_estimator.prepare(OfflineContext(self))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    # ------------------------------------------------------------------------------------ the step
    def _calculate_rewards(self, inputs: list[dict], prompts: list, completions: list,
                           completion_ids_list: list) -> Tensor:
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._rollwise_rewards = rewards_per_func
        return rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if not self.model.training:  # evaluation: TRL's own advantages, no estimator state moves
            return output
        batch = self.rollwise_batch(output, [x["prompt"] for x in inputs])
        batch.advantages = self.rollwise_estimator(batch)
        metrics = self.estimator_metrics(batch)
        advantages = batch.advantages
        if self.rollwise_correction.name != "none":
            weights, keep, corr_metrics = self.rollwise_correction(batch)
            metrics.update(corr_metrics)
            advantages = advantages * (1.0 if weights is None else weights) * (1.0 if keep is None else keep)
            if keep is not None:  # rejected tokens leave the loss's token count, as in rollwise's trainer
                kept = keep.to(device=output["completion_mask"].device, dtype=torch.long)
                output["tool_mask"] = output.get("tool_mask", torch.ones_like(kept)) * kept
                output["num_items_in_batch"] = (output["completion_mask"] * output["tool_mask"]).sum()
        output["advantages"] = advantages.to(device=output["completion_mask"].device, dtype=torch.float32)
        for key, value in metrics.items():
            self._metrics["train"][key].append(float(value))
        for _ in range(batch.size):  # the completions table shows rollwise's per-sequence advantages
            self._logs["advantages"].pop()
        self._logs["advantages"].extend(sequence_means(batch.advantages, batch.response_mask).tolist())
        return output

    def rollwise_batch(self, output: dict[str, Any], prompts: list[Any]) -> RolloutBatch:
        """The ``RolloutBatch`` (on CPU) the estimator sees, from TRL's generation output of one batch.

        rewards (B,) = sum_k weight_k r_k over reward functions (a completion no function scored gets 0);
        group_ids (B,) = i // num_generations (TRL's sampler repeats each prompt num_generations times).
        """
        n = self.num_generations
        group_ids = torch.arange(len(prompts)) // n
        if any(prompts[i] != prompts[int(g) * n] for i, g in enumerate(group_ids)):
            raise RuntimeError("TRL's generation batch is not in groups of num_generations consecutive prompts")
        rewards = (self._rollwise_rewards * self.reward_weights.to(self._rollwise_rewards.device)).nansum(dim=1)
        mask = output["completion_mask"] * output.get("tool_mask", 1)
        ids = output["completion_ids"]
        lengths = output["completion_mask"].sum(-1).clamp_min(1)
        last = ids.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)
        batch = RolloutBatch(
            prompt_ids=output["prompt_ids"].cpu(), prompt_mask=output["prompt_mask"].cpu(), response_ids=ids.cpu(),
            response_mask=mask.float().cpu(), rollout_logprobs=torch.zeros(ids.shape), group_ids=group_ids,
            truncated=~torch.isin(last, torch.tensor(self.eos_token_ids, device=ids.device)).cpu(),
            prompts=[p if isinstance(p, str) else repr(p) for p in prompts], rewards=rewards.float().cpu())
        reads = self.rollwise_estimator.fields_read()
        if "old_logprobs" in reads or self.rollwise_correction.name != "none":
            batch.old_logprobs = self._old_logprobs(output).float().cpu() * batch.response_mask
        if "ref_logprobs" in reads:
            batch.ref_logprobs = output["ref_per_token_logps"].float().cpu() * batch.response_mask
        if "prompt_features" in reads:
            from rollwise.rlvr.models import prompt_features

            batch.prompt_features = prompt_features(self.accelerator.unwrap_model(self.model),
                                                    output["prompt_ids"], output["prompt_mask"]).cpu()
        if self.rollwise_correction.name != "none":
            sampled = output.get("sampling_per_token_logps")
            if sampled is None:
                raise RuntimeError(f"correction '{self.rollwise_correction.name}': TRL returned no rollout "
                                   "log-probs for this batch (use_vllm=True, or a rollout_func returning logprobs)")
            sampled = sampled.float().cpu()
            batch.rollout_logprobs = torch.where(torch.isnan(sampled), batch.old_logprobs, sampled) * batch.response_mask
        return batch

    @torch.no_grad()
    def _old_logprobs(self, output: dict[str, Any]) -> Tensor:
        """(B, T) log-probs of the completions under the model that sampled them (TRL's when it has them)."""
        if output.get("old_per_token_logps") is not None:
            return output["old_per_token_logps"]
        ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        attention = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        logps, _, _ = self._get_per_token_logps_and_entropies(self.model, ids, attention,
                                                              output["completion_ids"].size(1),
                                                              batch_size=self.args.per_device_train_batch_size)
        return logps

    def estimator_metrics(self, batch: RolloutBatch) -> dict[str, float]:
        """rollwise's per-step diagnostics of the estimator: advantage statistics plus its own metrics."""
        adv = batch.advantages[batch.response_mask.bool()]
        out = {"rollwise/adv_mean": float(adv.mean()) if adv.numel() else 0.0,
               "rollwise/adv_abs_mean": float(adv.abs().mean()) if adv.numel() else 0.0,
               "rollwise/accuracy": float((batch.rewards >= 1.0 - 1e-6).float().mean()),
               **getattr(self.rollwise_estimator, "metrics", {})}
        if self.rollwise_estimator.name in ("ucpo", "divgrpo"):
            out.update(correct_set_diagnostics(batch.rewards, batch.old_logprobs, batch.response_mask,
                                               batch.group_ids, self.rollwise_estimator.params.length_norm))
        return out

    # ------------------------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            torch.save({"estimator": self.rollwise_estimator.state_dict(),
                        "correction": self.rollwise_correction.state_dict()}, os.path.join(folder, STATE_FILE))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, STATE_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} is missing: the checkpoint was not written by RollwiseGRPOTrainer, so "
                                    f"the state of estimator '{self.rollwise_estimator.name}' cannot be restored")
        state = torch.load(path, weights_only=False)
        self.rollwise_estimator.load_state_dict(state["estimator"])
        self.rollwise_correction.load_state_dict(state["correction"])


def sequence_means(values: Tensor, mask: Tensor) -> Tensor:
    """(B, T) -> (B,) mean over each row's valid tokens."""
    return (values * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)


def _has_prepare(estimator: AdvantageEstimator) -> bool:
    return type(estimator).prepare is not AdvantageEstimator.prepare


# ------------------------------------------------------------------------------------ BASIS's offline stage
class OfflineContext:
    """What an estimator's ``prepare`` reads from rollwise's trainer, served by a ``GRPOTrainer``.

    ``train_pool``: the train data set as rollwise ``Example`` rows (plain-text ``prompt``; ``answer`` and
    the other columns passed to the reward functions); ``engine``: TRL's own sampler (:class:`TRLSampler`);
    ``rewards``: TRL's reward functions and weights; ``cfg.rollout``: TRL's temperature, top_p and
    ``max_completion_length``.
    """

    def __init__(self, trainer: GRPOTrainer) -> None:
        rows = trainer.train_dataset
        if any(not isinstance(p, str) for p in rows["prompt"]):
            raise ConfigError("the estimator's offline stage keys its prior by prompt text; conversational "
                              "(message-list) prompts are not supported")
        self.has_answer = "answer" in rows.column_names
        extra = [c for c in rows.column_names if c not in ("prompt", "answer")]
        self.train_pool = [Example(prompt=row["prompt"], answer=row.get("answer"),
                                   columns={c: row[c] for c in extra}) for row in rows]
        self.tokenizer = trainer.processing_class
        self.rollout_policy = trainer.accelerator.unwrap_model(trainer.model)
        self.cfg = SimpleNamespace(rollout=SimpleNamespace(temperature=trainer.temperature, top_p=trainer.top_p,
                                                           max_new_tokens=trainer.max_completion_length))
        self.engine = TRLSampler(trainer)
        self.trainer = trainer
        self.rollouts_generated = 0

    def rewards(self, prompts: list[str], completions: list[str], truncated: list[bool],
                columns: dict[str, list[Any]]) -> tuple[Tensor, dict[str, float]]:
        """(N,) weighted sum of TRL's reward functions on the sampler's last batch (its completion ids)."""
        trainer = self.trainer
        if not self.has_answer:
            columns = {k: v for k, v in columns.items() if k != "answer"}
        inputs = [{"prompt": p, **{k: v[i] for k, v in columns.items()}} for i, p in enumerate(prompts)]
        per_func = GRPOTrainer._calculate_rewards(trainer, inputs, prompts, completions, self.engine.completion_ids)
        trainer._pending_metrics.clear()  # the offline stage's reward metrics are not the first step's
        trainer._pending_extra_logs.clear()
        return (per_func * trainer.reward_weights.to(per_func.device)).nansum(dim=1).cpu(), {}


class TRLSampler:
    """``engine.generate(prompts, sampling, seed)`` for the offline stage, with GRPOTrainer's own sampler.

    Each prompt is repeated ``sampling.n`` times (grouped, as TRL's sampler does) and generated with TRL's
    generation settings (its temperature, top_p, ``max_completion_length``, vLLM when on) in chunks of
    ``generation_batch_size``, under ``seed`` in a forked RNG so that training's random stream is unchanged
    (vLLM samples with its own generator, which ``seed`` does not reach).
    Returns a ``RolloutBatch`` with ``prompts``, ``completions``, ``group_ids`` and ``truncated``; the
    completion ids are kept in ``completion_ids`` for the reward functions.
    """

    def __init__(self, trainer: GRPOTrainer) -> None:
        self.trainer = trainer
        self.completion_ids: list[list[int]] = []

    @torch.no_grad()
    def generate(self, prompts: list[str], sampling: Any, seed: int) -> RolloutBatch:
        trainer, n = self.trainer, sampling.n
        repeated = [p for p in prompts for _ in range(n)]
        chunk = max(n, trainer.args.generation_batch_size // n * n)
        ids: list[list[int]] = []
        with torch.random.fork_rng():  # CPU and every CUDA device's generator
            torch.manual_seed(seed % 2**63)
            for start in range(0, len(repeated), chunk):
                prompt_ids, _, _ = trainer._tokenize_prompts(repeated[start:start + chunk])
                ids.extend(trainer._generate_single_turn(prompt_ids, None, {}, n)[0])
        self.completion_ids = ids
        eos = set(trainer.eos_token_ids)
        b = len(ids)
        return RolloutBatch(
            prompt_ids=torch.zeros(b, 0, dtype=torch.long), prompt_mask=torch.zeros(b, 0, dtype=torch.long),
            response_ids=torch.zeros(b, 0, dtype=torch.long), response_mask=torch.zeros(b, 0),
            rollout_logprobs=torch.zeros(b, 0), group_ids=torch.arange(b) // n,
            truncated=torch.tensor([len(c) == 0 or c[-1] not in eos for c in ids]), prompts=repeated,
            completions=trainer.processing_class.batch_decode(ids, skip_special_tokens=True))
