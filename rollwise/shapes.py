"""Sizes read off an array's shape, declared once per class: ``n_states = Dim("P", 0)``."""

from __future__ import annotations

from typing import Any


class Dim:
    """A read-only attribute equal to ``getattr(obj, attr).shape[axis]`` (a tensor's or an array's size).

    Declared in the class body without an annotation, so a dataclass does not take it for a field.
    """

    def __init__(self, attr: str, axis: int) -> None:
        self.attr, self.axis = attr, axis

    def __get__(self, obj: Any, owner: type | None = None) -> int:
        if obj is None:
            return self  # type: ignore[return-value]  # class access: the descriptor itself
        return int(getattr(obj, self.attr).shape[self.axis])
