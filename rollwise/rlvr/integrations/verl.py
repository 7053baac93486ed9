"""rollwise's UCPO estimators and AIS correction inside verl's registries (written against verl 0.9.1).

``register_with_verl()`` adds, in the process that calls it:

- advantage estimators ``rollwise_ucpo`` and ``rollwise_divgrpo`` (``algorithm.adv_estimator``), the
  registered rollwise estimators ``ucpo`` / ``divgrpo`` run on a ``RolloutBatch`` built from verl's
  arguments. Parameters come from ``algorithm.<name>`` (e.g. ``+algorithm.rollwise_ucpo.tau=0.3``).
  They need the old-policy log-probs, which verl's ``compute_advantage`` does not pass to a custom
  estimator: call ``compute_rollwise_advantage(data, name, config)`` from your trainer (docs/rlvr.md).
- a policy loss ``rollwise_ais`` (``actor_rollout_ref.actor.policy_loss.loss_mode``): verl's vanilla
  PPO-clip loss with rollwise's AIS weights in place of verl's ``rollout_is_weights``. verl hands a policy
  loss the rollout correction weights, not the engine's log-probs, so the log-ratio is read back from
  UNTRUNCATED token-level weights: set ``algorithm.rollout_correction.rollout_is=token``,
  ``rollout_is_threshold=1e9`` and ``rollout_is_batch_normalize=false``. AIS parameters come from the
  environment variable ``ROLLWISE_VERL_AIS`` (a JSON object of ``AISConfig`` fields).

verl looks policy losses up in its Ray workers, so every process must register: import
``rollwise.rlvr.integrations.verl_plugin`` there, e.g. with ``VERL_USE_EXTERNAL_MODULES`` (docs/rlvr.md).
- advantage estimator ``rollwise_basis``: rollwise's BASIS with its state kept across steps and in verl's
  checkpoints (``verl_basis.py``).
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

import torch
from torch import Tensor

from rollwise.config import ConfigError
from rollwise.rlvr.advantages import make_estimator
from rollwise.rlvr.correction import make_correction
from rollwise.rlvr.integrations import verl_basis
from rollwise.rlvr.integrations.verl_batch import placeholder_batch, rollout_batch

#: verl name -> rollwise estimator name
ESTIMATORS = {"rollwise_ucpo": "ucpo", "rollwise_divgrpo": "divgrpo"}
AIS_LOSS = "rollwise_ais"
AIS_ENV = "ROLLWISE_VERL_AIS"
#: the RolloutBatch fields that can be filled from what verl has when it computes advantages
_FILLED = frozenset({"rewards", "group_ids", "response_mask", "old_logprobs"})


def _core_algos() -> Any:
    try:
        return importlib.import_module("verl.trainer.ppo.core_algos")
    except ImportError as err:
        raise ImportError(f"the verl integration needs verl and its light dependencies: pip install "
                          f"'rollwise[verl]' (import failed: {err})") from err


# ------------------------------------------------------------------------------------ estimators
def estimator_params(config: Any, name: str) -> dict[str, Any]:
    """``algorithm.<name>`` of verl's algorithm config (DictConfig, AlgoConfig, dict or None) as a dict."""
    if config is None:
        return {}
    if config.get("use_kl_in_reward", False):
        raise ConfigError(f"{name}: algorithm.use_kl_in_reward=true adds the KL penalty to the rewards, but "
                          "UCPO needs outcome rewards (correct = reward > 0); use the actor's KL loss instead")
    if not config.get("norm_adv_by_std_in_grpo", True):
        raise ConfigError(f"{name}: algorithm.norm_adv_by_std_in_grpo=false is not supported; UCPO's base "
                          "advantage is std-normalised GRPO")
    params = config.get(name, None)
    return {} if params is None else dict(params)


def _verl_estimator(verl_name: str):
    rollwise_name = ESTIMATORS[verl_name]

    def estimator(token_level_rewards: Tensor, response_mask: Tensor, index: Any = None, config: Any = None,
                  old_log_probs: Tensor | None = None, **unused: Any) -> tuple[Tensor, Tensor]:
        if index is None:
            raise ValueError(f"{verl_name} is group-relative: verl must pass index (non_tensor_batch['uid'])")
        if old_log_probs is None:
            raise ValueError(
                f"{verl_name} needs the old-policy log-probs (q is computed from them), and verl's "
                "compute_advantage passes them only to its optimal_token_baseline estimators. Call "
                f"rollwise.rlvr.integrations.verl.compute_rollwise_advantage(data, '{verl_name}', "
                "config.algorithm) from your trainer instead (see docs/rlvr.md, 'verl integration')")
        est = make_estimator(rollwise_name, **estimator_params(config, verl_name))
        advantages = est(rollout_batch(token_level_rewards, response_mask, index, old_log_probs))
        return advantages, advantages

    estimator.__name__ = estimator.__qualname__ = f"compute_{verl_name}_advantage"
    estimator.__doc__ = (f"verl advantage estimator '{verl_name}': rollwise's '{rollwise_name}' estimator "
                         "on verl's tensors; returns (advantages, returns), both (B, T).")
    return estimator


# one function object per name, so that registering twice is a no-op for verl's duplicate check
compute_rollwise_ucpo_advantage = _verl_estimator("rollwise_ucpo")
compute_rollwise_divgrpo_advantage = _verl_estimator("rollwise_divgrpo")
_ESTIMATOR_FNS = {"rollwise_ucpo": compute_rollwise_ucpo_advantage,
                  "rollwise_divgrpo": compute_rollwise_divgrpo_advantage}


def compute_rollwise_advantage(data: Any, adv_estimator: str, config: Any = None, prompt_key: str = "raw_prompt"
                               ) -> Any:
    """What verl's ``compute_advantage`` does for a custom estimator, plus what ours need and it does not pass:
    the old log-probs (``rollwise_ucpo``, ``rollwise_divgrpo``) or the prompts (``rollwise_basis``).

    ``data`` is a verl ``DataProto`` with ``token_level_rewards``, ``response_mask``, ``non_tensor_batch['uid']``
    and ``old_log_probs`` (UCPO) or ``non_tensor_batch[prompt_key]`` (BASIS); sets ``advantages`` and
    ``returns`` and returns ``data``.
    """
    if adv_estimator == verl_basis.VERL_NAME:
        if prompt_key not in data.non_tensor_batch:
            raise ValueError(f"{adv_estimator}: data.non_tensor_batch has no '{prompt_key}' (the prompts); "
                             f"present: {sorted(data.non_tensor_batch)}")
        advantages, returns = _core_algos().get_adv_estimator_fn(adv_estimator)(
            token_level_rewards=data.batch["token_level_rewards"], response_mask=data.batch["response_mask"],
            index=data.non_tensor_batch["uid"], config=config, prompts=list(data.non_tensor_batch[prompt_key]))
        data.batch["advantages"], data.batch["returns"] = advantages, returns
        return data
    if adv_estimator not in _ESTIMATOR_FNS:
        raise ConfigError(f"unknown rollwise verl estimator '{adv_estimator}'; valid: "
                          f"{', '.join([*ESTIMATORS, verl_basis.VERL_NAME])}")
    if "old_log_probs" not in data.batch.keys():
        raise ValueError(f"{adv_estimator}: data.batch has no 'old_log_probs'; compute them before advantages")
    fn = _core_algos().get_adv_estimator_fn(adv_estimator)
    advantages, returns = fn(token_level_rewards=data.batch["token_level_rewards"],
                             response_mask=data.batch["response_mask"], index=data.non_tensor_batch["uid"],
                             config=config, old_log_probs=data.batch["old_log_probs"])
    data.batch["advantages"] = advantages
    data.batch["returns"] = returns
    return data


# ------------------------------------------------------------------------------------ AIS policy loss
def ais_params() -> dict[str, Any]:
    """AIS parameters from ``ROLLWISE_VERL_AIS`` (JSON object); ``ema`` must stay 0 (no state under verl)."""
    raw = os.environ.get(AIS_ENV, "").strip()
    params = json.loads(raw) if raw else {}
    if not isinstance(params, dict):
        raise ConfigError(f"{AIS_ENV} must be a JSON object of AIS parameters, got {raw!r}")
    if params.get("ema", 0.0) != 0.0:
        raise ConfigError(f"{AIS_LOSS}: ema must be 0; verl calls the loss once per micro-batch on every rank, "
                          "so a lambda carried across calls would not be a per-step average")
    return params


def log_ratio_from_weights(rollout_is_weights: Tensor, response_mask: Tensor) -> Tensor:
    """delta = log pi_old - log pi_rollout read back from verl's untruncated token weights exp(delta).

    verl clamps delta to [-20, 20] before exp (as rollwise does), so |delta| > 20 comes back as +-20.
    """
    w = rollout_is_weights.detach()
    return torch.where(response_mask.bool(), w.clamp_min(torch.finfo(w.dtype).tiny).log(), torch.zeros_like(w))


def compute_policy_loss_rollwise_ais(old_log_prob: Tensor, log_prob: Tensor, advantages: Tensor,
                                     response_mask: Tensor, loss_agg_mode: str = "token-mean", config: Any = None,
                                     rollout_is_weights: Tensor | None = None, **unused: Any
                                     ) -> tuple[Tensor, dict[str, Any]]:
    """verl policy loss ``rollwise_ais``: verl's vanilla PPO-clip with rollwise's AIS token weights.

    lambda comes from the diagnostics of the tokens this call sees (one micro-batch of one rank), whereas
    rollwise's trainer computes it once over the whole rollout batch.
    """
    if rollout_is_weights is None:
        raise ValueError(
            f"{AIS_LOSS} needs verl's untruncated token IS weights: set actor_rollout_ref.rollout."
            "calculate_log_probs=true, algorithm.rollout_correction.rollout_is=token, rollout_is_threshold=1e9, "
            "rollout_is_batch_normalize=false, bypass_mode=false (and no rollout_rs)")
    mask = response_mask.to(log_prob.dtype)
    delta = log_ratio_from_weights(rollout_is_weights, response_mask)
    # the correction reads delta = old_logprobs - rollout_logprobs: delta stands in for old_logprobs, 0 for the rest
    batch = placeholder_batch(mask, torch.arange(mask.shape[0]), old_logprobs=delta, rollout_logprobs=torch.zeros_like(delta),
                   advantages=advantages.detach())
    weights, keep, metrics = make_correction("ais", **ais_params())(batch)
    if keep is not None:
        weights = weights * keep
        response_mask = response_mask & keep.bool() if response_mask.dtype == torch.bool else response_mask * keep
    loss, pg_metrics = _core_algos().compute_policy_loss_vanilla(
        old_log_prob=old_log_prob, log_prob=log_prob, advantages=advantages, response_mask=response_mask,
        loss_agg_mode=loss_agg_mode, config=config, rollout_is_weights=weights)
    return loss, {**pg_metrics, **{f"actor/{k}": v for k, v in metrics.items()}}


# ------------------------------------------------------------------------------------ registration
def register_with_verl() -> list[str]:
    """Register rollwise's estimators and the AIS policy loss into verl's registries (idempotent).

    Returns the registered names. Raises ImportError naming ``rollwise[verl]`` when verl is missing.
    """
    core = _core_algos()
    for name, fn in _ESTIMATOR_FNS.items():
        reads = make_estimator(ESTIMATORS[name]).fields_read()
        if not reads <= _FILLED:
            raise RuntimeError(f"{name} reads {sorted(reads - _FILLED)}, which verl does not provide")
        core.register_adv_est(name)(fn)
    core.register_adv_est(verl_basis.VERL_NAME)(verl_basis.compute_rollwise_basis_advantage)
    core.register_policy_loss(AIS_LOSS)(compute_policy_loss_rollwise_ais)
    return [*_ESTIMATOR_FNS, verl_basis.VERL_NAME, AIS_LOSS]
