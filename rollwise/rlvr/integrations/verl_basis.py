"""BASIS in verl (written against verl 0.9.1): the ``rollwise_basis`` advantage estimator and its state.

- ``compute_rollwise_basis_advantage`` (registered as ``algorithm.adv_estimator=rollwise_basis`` by
  ``register_with_verl``): rollwise's ``basis`` estimator on verl's tensors, one response per prompt
  (``actor_rollout_ref.rollout.n=1``). Parameters: ``algorithm.rollwise_basis`` (``BasisParams`` fields plus
  ``prior_path``, a prior table written by :func:`write_basis_prior`).
- State across steps: verl calls advantage estimators in its driver process, so the process keeps ONE
  ``Basis`` (:func:`basis_estimator`): its prior table, calibration (a, b) and fold-split counter move on
  every call, exactly as in rollwise's trainer.
- State in checkpoints: verl 0.9.1's v1 trainer calls ``trainer.checkpoint_callback_class`` after each save;
  :class:`BasisCheckpointCallback` writes ``rollwise_basis.pt`` into the ``global_step_N`` folder and, when
  the trainer will resume (``trainer.resume_mode``), loads it back at construction, before the first step.
- Prompt identity: the prior is keyed by prompt text, and verl's ``compute_advantage`` passes none (only a
  fresh random ``uid`` per prompt per step). ``compute_rollwise_advantage(data, "rollwise_basis", config)``
  (``verl.py``) passes ``data.non_tensor_batch["raw_prompt"]``; called by stock verl without prompts, the
  estimator works only without a prior table (every prompt then gets the calibrated batch rate sigma(a)).

Importing this module does not import verl.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from rollwise.config import ConfigError
from rollwise.rlvr.advantages import Basis, eb_prior, make_estimator

VERL_NAME = "rollwise_basis"
STATE_FILE = "rollwise_basis.pt"
#: verl's checkpoint tracker (``verl.utils.checkpoint.checkpoint_manager``, whose module needs peft)
TRACKER = "latest_checkpointed_iteration.txt"
_PROCESS: dict[str, Basis] = {}


def prompt_text(prompt: Any) -> str:
    """The key of a prompt in the prior table: the text itself, or a chat (message list) as sorted JSON."""
    if isinstance(prompt, str):
        return prompt
    if hasattr(prompt, "tolist"):
        prompt = prompt.tolist()
    return json.dumps(prompt, sort_keys=True, default=str)


def _params(config: Any) -> tuple[dict[str, Any], str | None]:
    """``algorithm.rollwise_basis`` as (BasisParams fields, prior_path)."""
    raw = None if config is None else config.get(VERL_NAME, None)
    params = {} if raw is None else dict(raw)
    return params, params.pop("prior_path", None)


def basis_estimator(config: Any = None) -> Basis:
    """This process's BASIS, built on first use from ``algorithm.rollwise_basis`` (and its ``prior_path``).

    Later calls return the same instance, so its calibration and fold counter carry across steps; a call
    whose parameters differ from the first one's raises.
    """
    params, prior_path = _params(config)
    est = make_estimator("basis", **params)
    if "prompt_features" in est.fields_read():
        raise ConfigError(f"{VERL_NAME}: features='policy' needs prompt features, which verl does not pass; "
                          "use kernel='off' or features='pi0' (features stored in the prior table)")
    current = _PROCESS.get(VERL_NAME)
    if current is not None:
        if current.params != est.params:
            raise ConfigError(f"{VERL_NAME}: parameters changed during the run ({current.params} -> {est.params})")
        return current
    if prior_path is not None:
        est.load_state_dict(torch.load(prior_path, weights_only=False))
    _PROCESS[VERL_NAME] = est
    return est


def reset_basis_estimator() -> None:
    """Forget this process's BASIS (a new run in the same process starts from its prior again)."""
    _PROCESS.pop(VERL_NAME, None)


def write_basis_prior(path: str, prompts: Sequence[Any], successes: Tensor, m: int, **params: Any) -> Basis:
    """Write BASIS's Stage O result for verl: prompts (N,), success counts s (N,) out of ``m`` samples of pi_0.

    p_0 = the empirical-Bayes Beta-binomial rates of s/m (``eb_prior``; ``eb_shrink=False``: raw
    rates). ``params`` are the ``BasisParams`` of the run (``eps_p`` and ``eb_shrink`` shape the table).
    """
    est = make_estimator("basis", **{"offline_rollouts": m, **params})
    counts = torch.as_tensor(successes, dtype=torch.float64)
    est.set_prior([prompt_text(p) for p in prompts], eb_prior(counts, m, est.params.eb_shrink))
    est.counts, est.counts_index = counts, torch.arange(counts.numel())
    est.offline = {"rollouts": m * counts.numel(), "seconds": 0.0, "prompts": counts.numel()}
    torch.save(est.state_dict(), path)
    return est


def compute_rollwise_basis_advantage(token_level_rewards: Tensor, response_mask: Tensor, index: Any = None,
                                     config: Any = None, prompts: Sequence[Any] | None = None, **unused: Any
                                     ) -> tuple[Tensor, Tensor]:
    """verl advantage estimator ``rollwise_basis``: rollwise's BASIS, one response per prompt.

    Args:
        token_level_rewards: (B, T), summed per response as verl's outcome estimators do.
        response_mask: (B, T). index: (B,) verl uids (each must occur once). config: verl's algorithm config.
        prompts: (B,) prompt texts or chats (``compute_rollwise_advantage`` passes ``raw_prompt``).

    Returns:
        (advantages, returns), both (B, T): A_i = r_i - b_i, whitened (BASIS, ``Basis.compute``).
    """
    from rollwise.rlvr.integrations.verl_batch import group_ids_from_index, placeholder_batch

    est = basis_estimator(config)
    b = response_mask.shape[0]
    if prompts is None:
        if est.prompts:
            raise ValueError(f"{VERL_NAME} has a prior table keyed by prompt text, and verl's compute_advantage "
                             "passes no prompt text. Call rollwise.rlvr.integrations.verl.compute_rollwise_advantage"
                             f"(data, '{VERL_NAME}', config.algorithm) from your trainer (docs/rlvr.md)")
        keys = [f"uid:{u}" for u in (range(b) if index is None else index)]
    else:
        keys = [prompt_text(p) for p in prompts]
    group_ids = torch.arange(b) if index is None else group_ids_from_index(index)
    batch = placeholder_batch(response_mask.float(), group_ids, rewards=token_level_rewards.sum(dim=-1), prompts=keys)
    advantages = est(batch).to(token_level_rewards.dtype)
    return advantages, advantages


# ------------------------------------------------------------------------------------ checkpoints
def resume_folder(trainer_config: Any) -> str | None:
    """The ``global_step_N`` folder verl 0.9.1's trainer resumes from (``trainer.resume_mode``), or None."""
    mode = trainer_config.get("resume_mode", "auto")
    if mode == "disable":
        return None
    if mode == "resume_path":
        folder = str(trainer_config.get("resume_from_path"))
    else:
        root = str(trainer_config.get("default_local_dir"))
        tracker = os.path.join(root, TRACKER)
        if not os.path.exists(tracker):
            return None
        with open(tracker) as f:
            folder = os.path.join(root, f"global_step_{int(f.read().strip())}")
    return os.path.abspath(folder)


class BasisCheckpointCallback:
    """``trainer.checkpoint_callback_class=rollwise.rlvr.integrations.verl_basis.BasisCheckpointCallback``.

    Built by verl's trainer at start-up with the full config: when the trainer will resume, the BASIS state
    of that checkpoint is loaded into this process's estimator (a checkpoint without it raises). After every
    save, ``on_save`` writes the state next to verl's ``data.pt``.
    """

    def __init__(self, config: Any = None) -> None:
        self.config = config
        folder = None if config is None else resume_folder(config.trainer)
        if folder is None:
            return
        path = os.path.join(folder, STATE_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} is missing: resuming {VERL_NAME} needs the state its checkpoint "
                                    "callback writes (was trainer.checkpoint_callback_class set when it was saved?)")
        basis_estimator(config.algorithm).load_state_dict(torch.load(path, weights_only=False))

    def on_save(self, trainer: Any, global_step: int, checkpoint_dir: str, async_save: bool = False,
                **kwargs: Any) -> None:
        est = _PROCESS.get(VERL_NAME)
        if est is not None:
            torch.save(est.state_dict(), os.path.join(checkpoint_dir, STATE_FILE))
