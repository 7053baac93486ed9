"""Countdown with its steps written out (``countdown_steps``): given numbers and a target, combine two of the
remaining numbers per step with + - * / until only the target is left, writing each step and what remains.

Completion for ``3 5 7 9;31=``: ``9-5=4:3 4 7;4*7=28:3 28;28+3=31``. A step is ``x op y=z`` with x and y two of
the remaining numbers and z a positive integer (``-`` must not go to zero or below, ``/`` must divide
exactly); after every step but the last comes ``:`` and the remaining numbers, sorted ascending and
space-separated. Every number is used exactly once, and the last step must give the target.

The verifier replays the steps and fails closed: a truncated completion, a step outside the grammar, a
number that is not available, wrong arithmetic, wrong bookkeeping of the remaining numbers or a final
value other than the target earns 0. Because the bookkeeping is determined by the steps, the rewarded set
C(x) is exactly the set of step sequences that reach the target, listed by :func:`solutions` (tested
against the verifier), so the number of distinct correct answers and V(x) = sum_{y in C(x)} pi(y|x) are
exact. The step order and the operand order of commutative steps vary between solutions, so SFT traces
(a solution drawn uniformly from C(x)) are varied.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

from rollwise.rlvr.rewards import RewardFunc
from rollwise.rlvr.tasks.base import Example, PooledTask, distinct_pools, register_task, require
from rollwise.rlvr.tasks.countdown import OPS, NumbersParams, NumbersVerifier, combine_at_random

MAX_LEN = 200  # completions longer than this are rejected without parsing
_STEP = re.compile(r"^([1-9]\d*)([+\-*/])([1-9]\d*)=([1-9]\d*)(?::([1-9]\d*(?: [1-9]\d*)*))?$")


def apply_op(x: int, y: int, op: str) -> int | None:
    """``x op y`` when it is a positive integer, else None."""
    if op == "+":
        return x + y
    if op == "*":
        return x * y
    if op == "-":
        return x - y if x > y else None
    return x // y if x % y == 0 else None


def step_text(x: int, op: str, y: int, z: int, rest: list[int]) -> str:
    """One step: ``x op y=z`` and, when numbers remain, ``:`` with the remaining ones sorted."""
    return f"{x}{op}{y}={z}" + (":" + " ".join(map(str, sorted(rest))) if len(rest) > 1 else "")


def replay(text: str, numbers: list[int], ops: str = OPS) -> int | None:
    """The final number of a completion, replaying and checking every step; None when any step is invalid
    (grammar, availability, arithmetic, bookkeeping), when numbers are left over, or when it is too long."""
    if len(text) > MAX_LEN:
        return None
    remaining = Counter(numbers)
    steps = text.split(";")
    if len(steps) != len(numbers) - 1:
        return None
    z = None
    for i, step in enumerate(steps):
        m = _STEP.match(step)
        if m is None or m.group(2) not in ops:
            return None
        x, op, y, z = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        remaining[x] -= 1
        remaining[y] -= 1
        if remaining[x] < 0 or remaining[y] < 0 or apply_op(x, y, op) != z:
            return None
        remaining[z] += 1
        left = sorted(remaining.elements())
        listed = m.group(5)
        last = i == len(steps) - 1
        if (listed is not None) == last or (not last and [int(v) for v in listed.split(" ")] != left):
            return None
    return z


@lru_cache(maxsize=65536)
def _solutions(numbers: tuple[int, ...], target: int, ops: str) -> tuple[str, ...]:
    if len(numbers) == 1:
        return ("",) if numbers[0] == target else ()
    out: list[str] = []
    for i, x in enumerate(numbers):
        for j, y in enumerate(numbers):
            if i == j:
                continue
            rest = [v for k, v in enumerate(numbers) if k not in (i, j)]
            for op in ops:
                z = apply_op(x, y, op)
                if z is None:
                    continue
                head = step_text(x, op, y, z, [*rest, z])
                for tail in _solutions(tuple(sorted([*rest, z])), target, ops):
                    out.append(head + (";" + tail if tail else ""))
    return tuple(sorted(set(out)))


def solutions(numbers: list[int], target: int, ops: str = OPS) -> list[str]:
    """Every completion the verifier rewards (distinct strings, sorted): all step sequences that use every
    number once and end at ``target``. Exhaustive; cached per multiset of numbers and target."""
    return list(_solutions(tuple(sorted(numbers)), int(target), ops))


class CountdownStepsVerifier(NumbersVerifier):
    """Reward 1.0 iff the completion ended with EOS and :func:`replay` of it on the ``numbers`` column reaches
    ``answer``."""

    __name__ = "countdown_steps_correct"

    def __init__(self, ops: str = OPS) -> None:
        self.ops = ops

    def correct(self, completion: str, numbers: list[int], target: int) -> bool:
        return replay(completion, numbers, self.ops) == target


@dataclass
class CountdownStepsParams(NumbersParams):
    smallest_number: ClassVar[int] = 1

    max_number: int = 13
    min_solutions: int = 1  # pool problems have at least this many rewarded completions

    def __post_init__(self) -> None:
        require(2 <= self.n_numbers <= 5, "n_numbers", self.n_numbers, "must be in [2, 5] (solutions are enumerated)")
        require(self.min_solutions >= 1, "min_solutions", self.min_solutions, "must be >= 1")
        super().__post_init__()


@register_task
class CountdownSteps(PooledTask):
    """Countdown with written steps; many rewarded completions, all enumerable (:func:`solutions`)."""

    name = "countdown_steps"
    unique_answer = False
    params_cls = CountdownStepsParams
    params: CountdownStepsParams

    def _instance(self, rng: random.Random) -> tuple[list[int], int]:
        """Random numbers and a target in range reached by random valid steps; at least ``min_solutions``."""
        p = self.params
        while True:
            nums = [rng.randint(p.min_number, p.max_number) for _ in range(p.n_numbers)]
            z = combine_at_random(list(nums), rng, p.ops, apply_op)
            if z is not None and p.min_target <= z <= p.max_target and \
                    len(solutions(nums, z, p.ops)) >= p.min_solutions:
                return nums, z

    def example(self, nums: list[int], target: int, solution: str | None = None) -> Example:
        """The problem (numbers in the given order); ``target`` field = ``solution`` or the first solution."""
        sols = solutions(nums, target, self.params.ops)
        return Example(prompt=f"{' '.join(map(str, nums))};{target}=", answer=str(target),
                       target=solution if solution is not None else sols[0],
                       columns={"numbers": list(nums), "n_solutions": len(sols)})

    def pools(self) -> tuple[list[Example], list[Example]]:
        p = self.params
        rng = random.Random(f"countdown-steps-{p.seed}")

        def draw() -> tuple[tuple, Callable[[], Example]]:
            nums, target = self._instance(rng)
            return (tuple(sorted(nums)), target), lambda: self.example(nums, target)

        return distinct_pools(draw, p.n_train, p.n_test, "these ranges")

    def reward_funcs(self) -> list[RewardFunc]:
        return [CountdownStepsVerifier(self.params.ops)]

    def correct_set(self, example: Example) -> list[str]:
        """Every rewarded completion of ``example`` (:func:`solutions`)."""
        return solutions(example.columns["numbers"], int(example.answer), self.params.ops)

    def sft_examples(self, n: int, seed: int) -> list[Example]:
        """Fresh problems outside the test pool, each with a solution drawn uniformly from C(x) as target."""
        test = {(tuple(sorted(e.columns["numbers"])), int(e.answer)) for e in self.examples("test")}
        rng = random.Random(f"countdown-steps-sft-{seed}")
        out: list[Example] = []
        while len(out) < n:
            nums, target = self._instance(rng)
            if (tuple(sorted(nums)), target) not in test:
                out.append(self.example(nums, target, rng.choice(solutions(nums, target, self.params.ops))))
        return out
