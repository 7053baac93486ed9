"""The advantage-estimator registry: a name -> estimator class map that is open to new inputs and state.

verl's registry maps a name to a pure function with a fixed argument list, so estimators that need more
(prompt features, statistics kept across steps, old log-probs) must be special-cased in the trainer. Here
an estimator is a small class that declares which ``RolloutBatch`` fields it ``reads``, how many rollouts
per prompt it needs, its typed parameters, and (optionally) state to checkpoint. The arithmetic itself
lives in pure tensor functions next to each class (``group.py``, ``reinforce.py``).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor

from rollwise.config import ConfigError
from rollwise.registry import Registry
from rollwise.rlvr.batch import RolloutBatch

ESTIMATORS: Registry[type[AdvantageEstimator]] = Registry("advantage estimator", key="algorithm.estimator")


@dataclasses.dataclass(frozen=True)
class NoParams:
    """Parameters of an estimator that has none."""


class AdvantageEstimator:
    """Base class: turns a ``RolloutBatch`` into token-level advantages ``(B, T)``.

    Subclasses set the class variables and implement ``compute``. ``__call__`` checks the batch first
    (required fields present, every group large enough) so that no estimator silently returns zeros.
    """

    name: ClassVar[str] = ""
    #: RolloutBatch fields the estimator reads (the trainer fills only what some stage reads)
    reads: ClassVar[frozenset[str]] = frozenset({"rewards", "group_ids", "response_mask"})
    #: rollouts per prompt the estimator needs; group-relative estimators need 2
    min_group_size: ClassVar[int] = 1
    #: frozen dataclass of typed parameters with defaults (``field(metadata={"help": ...})``)
    Params: ClassVar[type] = NoParams

    def __init__(self, **params: Any) -> None:
        self.params = build_params(self.Params, params, where=f"advantage estimator '{self.name}'")

    def fields_read(self) -> frozenset[str]:
        """Fields this configured instance reads (``reads`` plus any that its parameters switch on)."""
        return self.reads

    def validate(self, n_per_prompt: int) -> None:
        """Raise ConfigError at config time when ``rollout.n`` is too small for this estimator."""
        if n_per_prompt < 1:
            raise ConfigError(f"rollout.n={n_per_prompt} is invalid; it must be >= 1")
        if n_per_prompt >= self.min_group_size:
            return
        usable = [n for n, cls in ESTIMATORS.items() if cls.min_group_size <= n_per_prompt]
        raise ConfigError(
            f"advantage estimator '{self.name}' needs at least {self.min_group_size} rollouts per prompt "
            f"(got rollout.n={n_per_prompt}); with {_rollouts(n_per_prompt)} per prompt use one of: "
            f"{', '.join(usable) or '(none registered)'}"
        )

    def __call__(self, batch: RolloutBatch) -> Tensor:
        """Token-level advantages ``(B, T)``, zero where ``batch.response_mask`` is 0."""
        batch.require(*sorted(self.fields_read()), stage=f"advantage estimator '{self.name}'")
        if self.min_group_size > 1:
            self._check_group_sizes(batch)
        advantages = self.compute(batch)
        if advantages.shape != batch.response_mask.shape:
            raise RuntimeError(f"advantage estimator '{self.name}' returned shape {tuple(advantages.shape)}, "
                               f"expected {tuple(batch.response_mask.shape)}")
        return advantages

    def compute(self, batch: RolloutBatch) -> Tensor:
        """The estimator's arithmetic on a checked batch; returns ``(B, T)``."""
        raise NotImplementedError

    def prepare(self, context: Any) -> None:
        """Optional hook run once before training (e.g. an offline stage). Default: nothing."""

    def state_dict(self) -> dict[str, Any]:
        """State kept across steps, for checkpoints. Default: none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned. Default: nothing to restore."""

    def _check_group_sizes(self, batch: RolloutBatch) -> None:
        sizes = batch.group_sizes()
        small = batch.group_ids[sizes < self.min_group_size].unique()
        if small.numel():
            raise ValueError(
                f"advantage estimator '{self.name}' needs at least {self.min_group_size} rollouts per "
                f"group, but group(s) {small.tolist()[:10]} have fewer (sizes "
                f"{sizes[sizes < self.min_group_size].unique().tolist()}); it would otherwise give "
                "meaningless advantages. Check rollout.n and any filtering that drops rollouts."
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"


def _rollouts(n: int) -> str:
    return "one rollout" if n == 1 else f"{n} rollouts"


def build_params(params_cls: type, given: dict[str, Any], *, where: str) -> Any:
    """Build a params dataclass from keyword values, with ConfigErrors that name the key and the choices."""
    names = [f.name for f in dataclasses.fields(params_cls)]
    for key in given:
        if key not in names:
            raise ConfigError(f"unknown parameter '{key}' for {where}; valid parameters: "
                              f"{', '.join(names) or '(none)'}")
    hints = typing.get_type_hints(params_cls)
    values = {key: _check_type(key, value, hints[key], where) for key, value in given.items()}
    return params_cls(**values)


def _check_type(key: str, value: Any, hint: Any, where: str) -> Any:
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: parameter '{key}' must be a bool, got {value!r}")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: parameter '{key}' must be a number, got {value!r}")
        return float(value)
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: parameter '{key}' must be an int, got {value!r}")
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{where}: parameter '{key}' must be a string, got {value!r}")
    return value


def register_estimator(name: str) -> Callable[[type[AdvantageEstimator]], type[AdvantageEstimator]]:
    """Class decorator: register an ``AdvantageEstimator`` subclass under ``name`` (sets ``cls.name``)."""

    def decorator(cls: type[AdvantageEstimator]) -> type[AdvantageEstimator]:
        cls.name = name
        return ESTIMATORS.add(name, cls)

    return decorator


def available_estimators() -> list[str]:
    """Sorted names of every registered estimator."""
    return ESTIMATORS.names()


def make_estimator(name: str, **params: Any) -> AdvantageEstimator:
    """Instantiate the estimator registered under ``name`` with its typed parameters."""
    return ESTIMATORS[name](**params)
