"""rollwise's verifiable tasks and verifiers for TRL's ``GRPOTrainer`` (written against trl 1.16.0).

- ``task_dataset(task, split)``: a ``datasets.Dataset`` with TRL's ``prompt`` column (plain text, the
  "standard" format) plus ``answer`` and the task's extra columns, which TRL passes to reward functions as
  keyword arguments (the rollwise convention already).
- ``reward_funcs(task, tokenizer, model)``: the task's verifiers wrapped for TRL. rollwise verifiers need
  ``truncated`` (PITFALLS: TRL decodes with ``skip_special_tokens=True``, which drops EOS, so a completion cut
  off by ``max_completion_length`` can look correct). TRL passes ``completion_ids`` (each cut after its first
  EOS); the wrapper sets truncated = the last id is not an EOS id, with TRL's EOS ids (the tokenizer's plus the
  model's ``generation_config.eos_token_id``). No ``completion_ids`` and no ``truncated`` column: it raises.
  Each verifier runs under rollwise's containment (``RewardRunner``): one that raises or hangs scores 0 for
  that call and is counted in ``reward/<name>/errors`` / ``timeouts`` (TRL's ``log_metric``).
- ``grpo_trainer(task, model, tokenizer, args)``: a ``trl.GRPOTrainer`` on the two.

Importing this module does not import trl (nor datasets): ``grpo_trainer`` and ``reward_funcs`` import trl and
raise an ImportError naming the install when it is missing.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from rollwise.rlvr.rewards import RewardFunc, RewardRunner, func_name, truncated_flags
from rollwise.rlvr.tasks import Task, collate_columns, make_task

TRL_INSTALL = 'pip install "trl==1.16.0"'
#: keyword names TRL itself passes to reward functions (or reads from the data set); a task column may not use them
RESERVED = frozenset({"prompt", "prompts", "completion", "completions", "completion_ids", "truncated",
                      "trainer_state", "log_extra", "log_metric", "environments"})


def _trl() -> Any:
    try:
        return importlib.import_module("trl")
    except ImportError as err:
        raise ImportError(f"the TRL integration needs trl: {TRL_INSTALL} (import failed: {err})") from err


def _task(task: Task | str) -> Task:
    return make_task(task) if isinstance(task, str) else task


# ------------------------------------------------------------------------------------ data set
def task_dataset(task: Task | str, split: str = "train") -> Any:
    """``split`` of ``task`` as a ``datasets.Dataset``: ``prompt``, ``answer`` and the ``Example.columns``."""
    from datasets import Dataset

    task = _task(task)
    examples = task.examples(split)
    columns = collate_columns(examples)
    clash = sorted(RESERVED & set(columns))
    if clash:
        raise ValueError(f"task {task.name!r} has columns {clash}, names that TRL passes to reward functions itself")
    return Dataset.from_dict({"prompt": [ex.prompt for ex in examples], **columns})


# ------------------------------------------------------------------------------------ rewards
def eos_token_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """The ids GRPOTrainer stops generation at: ``tokenizer.eos_token_id`` plus the model's
    ``generation_config.eos_token_id`` (``model``: a model, a ``GenerationConfig`` or a path; None: tokenizer only)."""
    ids = [] if tokenizer.eos_token_id is None else [int(tokenizer.eos_token_id)]
    gen = getattr(model, "generation_config", model)
    if isinstance(model, str):
        from transformers import GenerationConfig

        try:
            gen = GenerationConfig.from_pretrained(model)
        except OSError:  # no generation_config.json: TRL falls back to the model config's default
            gen = None
    extra = getattr(gen, "eos_token_id", None)
    for i in [extra] if isinstance(extra, int) else (extra or []):
        if int(i) not in ids:
            ids.append(int(i))
    if not ids:
        raise ValueError("no EOS token id: neither the tokenizer nor the model's generation config defines one")
    return ids


class TRLReward:
    """A rollwise reward function called by TRL, with rollwise's failure containment.

    ``truncated`` comes from ``completion_ids``. The function runs in a one-function :class:`RewardRunner`
    (``timeout_s``, ``isolation``): if it raises, hangs or returns the wrong number of values, this call's
    values are 0 and TRL's step goes on; ``None`` values count as 0 (rollwise's convention). The runner's
    metrics (``reward/<name>/errors``, ``.../timeouts``, ``pop_metrics`` values as ``reward/<name>/<key>``)
    go to TRL's ``log_metric``. Picklable when ``func`` is.
    """

    def __init__(self, func: RewardFunc, eos_ids: Sequence[int], timeout_s: float = 10.0,
                 isolation: str = "thread") -> None:
        self.func = func
        self.eos_ids = frozenset(int(i) for i in eos_ids)
        self.runner = RewardRunner([func], timeout_s=timeout_s, isolation=isolation)
        self.__name__ = func_name(func)  # TRL logs rewards/<name>/mean

    def truncated(self, completion_ids: Sequence[Sequence[int]]) -> list[bool]:
        """True where a completion does not end with an EOS id (TRL cuts each completion after its first EOS)."""
        return [len(ids) == 0 or int(ids[-1]) not in self.eos_ids for ids in completion_ids]

    def __call__(self, prompts: list[Any], completions: list[Any],
                 completion_ids: Sequence[Sequence[int]] | None = None, **kwargs: Any) -> list[float]:
        n = len(completions)
        if any(not isinstance(c, str) for c in completions):
            raise TypeError(f"{self.__name__}: rollwise verifiers score text completions; conversational (message "
                            "list) prompts are not supported, use task_dataset's plain-text prompts")
        if completion_ids is not None:
            if len(completion_ids) != n:
                raise ValueError(f"{self.__name__}: {len(completion_ids)} completion_ids for {n} completions")
            flags = self.truncated(completion_ids)
            if kwargs.get("truncated") is not None:  # e.g. from a rollout_func: truncated if either says so
                flags = [a or b for a, b in zip(flags, truncated_flags(kwargs, n, self.__name__), strict=True)]
        elif kwargs.get("truncated") is not None:
            flags = truncated_flags(kwargs, n, self.__name__)
        else:
            raise ValueError(f"{self.__name__}: TRL passed neither completion_ids nor truncated, so a completion cut "
                             "off by max_completion_length cannot be told from a finished one (written for trl 1.16.0)")
        columns = {k: v for k, v in kwargs.items() if k not in RESERVED}  # the data-set columns
        rewards, metrics = self.runner(prompts, completions, flags, columns)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            for key, value in metrics.items():
                if key.startswith(f"reward/{self.__name__}/") and not key.endswith(("/mean", "/none_frac")):
                    log_metric(key, float(value))
        return rewards.tolist()


def reward_funcs(task: Task | str, tokenizer: Any, model: Any = None, eos_ids: Sequence[int] | None = None,
                 timeout_s: float = 10.0, isolation: str = "thread") -> list[TRLReward]:
    """The task's verifiers as TRL reward functions (``GRPOTrainer(reward_funcs=...)``).

    ``model`` (or its path) adds its ``generation_config.eos_token_id`` to the EOS ids, as GRPOTrainer does;
    pass ``eos_ids`` instead when generation stops at other ids (e.g. ``generation_kwargs``). ``timeout_s`` and
    ``isolation`` are the containment of rollwise's ``task.reward_timeout_s`` / ``task.reward_isolation``.
    """
    _trl()
    ids = eos_token_ids(tokenizer, model) if eos_ids is None else list(eos_ids)
    return [TRLReward(f, ids, timeout_s, isolation) for f in _task(task).reward_funcs()]


def grpo_trainer(task: Task | str, model: Any, tokenizer: Any, args: Any, split: str = "train", **kwargs: Any) -> Any:
    """``trl.GRPOTrainer`` on ``task_dataset(task, split)`` with ``reward_funcs(task, tokenizer, model)``;
    ``args`` is a ``trl.GRPOConfig``, ``kwargs`` go to GRPOTrainer (e.g. ``eval_dataset``)."""
    trl = _trl()
    task = _task(task)
    return trl.GRPOTrainer(model=model, reward_funcs=reward_funcs(task, tokenizer, model), args=args,
                           train_dataset=task_dataset(task, split), processing_class=tokenizer, **kwargs)
