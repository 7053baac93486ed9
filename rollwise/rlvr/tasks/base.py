"""The task contract: examples (prompt, gold answer, optional SFT target, extra columns), default verifiers,
and a registry of tasks by name with typed parameters.

A task owns two deterministic, disjoint pools (``train`` for RL prompts, ``test`` for held-out evaluation)
built from its seed, and can produce supervised warm-start examples that never touch the test pool.
"""

from __future__ import annotations

import dataclasses
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rollwise.config import ConfigError, from_dict
from rollwise.registry import Registry
from rollwise.rlvr.rewards import RewardFunc

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Example:
    """One verifiable problem.

    ``prompt`` is fed to the policy as is (the tokenizer adds BOS); ``answer`` is what the verifier compares
    against; ``target`` is one correct completion (characters only, the tokenizer adds EOS) for a supervised
    warm start; ``columns`` are extra data-set columns passed to reward functions as keyword arguments.
    """

    prompt: str
    answer: str
    target: str | None = None
    columns: Mapping[str, Any] = field(default_factory=dict)


class Task(ABC):
    """A verifiable task. Subclasses set ``name``, ``unique_answer`` and ``params_cls`` (a dataclass)."""

    name: ClassVar[str]
    #: True when exactly one completion is correct, so V(x) = pi(y*|x) is exact (see evaluate.py)
    unique_answer: ClassVar[bool]
    params_cls: ClassVar[type]

    def __init__(self, params: Any | None = None) -> None:
        self.params = self.params_cls() if params is None else params

    @abstractmethod
    def examples(self, split: str) -> list[Example]:
        """The deterministic pool of ``split`` ('train' or 'test'); the two pools are disjoint."""

    @abstractmethod
    def reward_funcs(self) -> list[RewardFunc]:
        """The default verifier(s), TRL-style callables (see rewards.py)."""

    @abstractmethod
    def sft_examples(self, n: int, seed: int) -> list[Example]:
        """``n`` examples with a ``target`` for a supervised warm start; never drawn from the test pool."""

    def where(self, example: Example) -> str:
        """Where ``example`` comes from, for error messages (data-set tasks name the file and line)."""
        return f"task {self.name!r}"


#: a prompt this many times longer (in characters) than the context is refused without tokenizing it
_CHARS_PER_TOKEN_BOUND = 64


def check_prompts_fit(task: Task, tokenizer: Any, context: int) -> None:
    """Every prompt of both pools, tokenized (BOS included), fits the model's ``context`` (its position
    limit), and the test pool is not empty (else the run could never evaluate).

    Raises:
        DataError: naming the example's file and line (data sets), its length and the model's limit.
    """
    from rollwise.errors import DataError

    if not task.examples("test"):
        raise DataError(f"{task.where(Example('', ''))}: the test split is empty, so the run could never evaluate; "
                        f"give the task test examples")
    bound = _CHARS_PER_TOKEN_BOUND * context
    for split in SPLITS:
        pool = task.examples(split)
        short = [ex.prompt for ex in pool if len(ex.prompt) <= bound]
        lengths = iter([len(ids) for ids in tokenizer(short, add_special_tokens=True)["input_ids"]] if short else [])
        for ex in pool:
            n = next(lengths) if len(ex.prompt) <= bound else None
            if n is None or n > context:
                size = f"{n} tokens" if n is not None else f"{len(ex.prompt)} characters"
                raise DataError(f"{task.where(ex)}: the prompt is {size}, longer than the model's context of "
                                f"{context} positions; shorten or remove it")


class PooledTask(Task):
    """A generated task whose train and test pools are built once, by :meth:`pools` (cached on first use)."""

    def pools(self) -> tuple[list[Example], list[Example]]:
        """(train pool, test pool)."""
        raise NotImplementedError

    @functools.cached_property
    def _built_pools(self) -> tuple[list[Example], list[Example]]:
        return self.pools()

    def examples(self, split: str) -> list[Example]:
        check_split(split)
        train, test = self._built_pools
        return train if split == "train" else test


def distinct_pools(draw: Callable[[], tuple[Hashable, Callable[[], Example]]], n_train: int, n_test: int,
                   what: str) -> tuple[list[Example], list[Example]]:
    """The train and test pools of a generated task: ``draw()`` returns a problem's key and a builder of its
    Example; problems are drawn until ``n_train + n_test`` distinct keys (a repeat is skipped, never built),
    the first ``n_train`` forming the training pool. Gives up, naming ``n_train+n_test``, when the space is too
    small for that many (``what`` says which ranges)."""
    seen: set[Hashable] = set()
    pool: list[Example] = []
    tries = 0
    while len(pool) < n_train + n_test:
        key, build = draw()
        tries += 1
        require(tries < 50 * (n_train + n_test) + 1000, "n_train+n_test", n_train + n_test,
                f"more distinct problems than {what} allow")
        if key not in seen:
            seen.add(key)
            pool.append(build())
    return pool[:n_train], pool[n_train:]


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not valid; valid choices: {', '.join(SPLITS)}")


def collate_columns(examples: Sequence[Example], repeat: int = 1) -> dict[str, list[Any]]:
    """Reward-function keyword columns for rollouts of ``examples``, each example repeated ``repeat`` times
    consecutively (the rollout order of a group): ``{"answer": [...], <column>: [...]}``."""
    keys: list[str] = []
    for ex in examples:
        keys.extend(k for k in ex.columns if k not in keys)
    if "answer" in keys:
        raise ValueError("an Example column may not be called 'answer'; it is reserved for Example.answer")
    cols: dict[str, list[Any]] = {"answer": [ex.answer for ex in examples for _ in range(repeat)]}
    for k in keys:
        cols[k] = [ex.columns.get(k) for ex in examples for _ in range(repeat)]
    return cols


TASKS: Registry[type[Task]] = Registry("task", key="task.name")


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` available to :func:`make_task` under ``cls.name``."""
    return TASKS.add(cls.name, cls)


def task_names() -> list[str]:
    return TASKS.names()


def make_task(name: str, **params: Any) -> Task:
    """Build a registered task; unknown names and unknown parameters raise ``ConfigError``."""
    cls = TASKS[name]
    valid = [f.name for f in dataclasses.fields(cls.params_cls)]
    for key in params:
        if key not in valid:
            raise ConfigError(f"task.{key} is not a parameter of task {name!r}; valid parameters: {', '.join(valid)}")
    return cls(from_dict(cls.params_cls, params, prefix="task.params"))  # typed: a wrong type is a ConfigError


def require(ok: bool, key: str, value: Any, must: str) -> None:
    """Raise ``ConfigError`` naming the task parameter when a validity condition fails."""
    if not ok:
        raise ConfigError(f"task.{key}={value!r} is invalid: {must}")

