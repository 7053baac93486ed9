"""One small name -> entry registry, used by advantage estimators, corrections, tasks and rollout engines.

An entry is whatever the registry's users build from (a class, usually); lookups of an unknown name raise a
``ConfigError`` that names the config key and lists the valid names::

    ESTIMATORS = Registry("advantage estimator", key="algorithm.estimator")

    @ESTIMATORS.register("grpo")
    class GRPO: ...

    ESTIMATORS["grpo"]   # GRPO;  ESTIMATORS["nope"] -> ConfigError: algorithm.estimator='nope' is not a known ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from rollwise.config import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name. ``what`` names the kind of entry, ``key`` the config key that selects one."""

    def __init__(self, what: str, key: str) -> None:
        self.what, self.key = what, key
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; registering a different entry under a taken name is an error
        (the same one again, e.g. on a module reload, is not)."""
        old = self._entries.get(name)
        if old is not None and _identity(old) != _identity(entry):
            raise ValueError(f"{self.what} {name!r} is already registered to {_identity(old)}")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda entry: self.add(name, entry)

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise ConfigError(f"{self.key}={name!r} is not a known {self.what}; valid choices: "
                              f"{', '.join(self.names()) or '(none registered)'}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())

    def copy(self) -> Registry[T]:
        """An independent registry with the same entries (tests register throw-away entries in a copy)."""
        out: Registry[T] = Registry(self.what, self.key)
        out._entries = dict(self._entries)
        return out

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def _identity(entry: object) -> str:
    """``module.qualname`` of a class or function, else the value's repr."""
    qualname = getattr(entry, "__qualname__", None)
    return f"{entry.__module__}.{qualname}" if qualname else repr(entry)
