"""Countdown (the harder CPU task of our CoDistill tests, not from the paper): given numbers and a target,
write an arithmetic expression with + - * / and parentheses that reaches the target, using each given
number exactly once (``use_all=True``) or at most once.

The verifier parses completions with a small recursive-descent parser over exact fractions (nothing is
ever passed to ``eval``). Pool instances are built by combining the numbers at random until an integer
target in range comes out, so every instance is solvable; SFT targets come from an exhaustive solver over
subsets of the numbers (:func:`solve`).
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import ClassVar, TypeVar

from rollwise.rlvr.rewards import RewardFunc, truncated_flags
from rollwise.rlvr.tasks.base import Example, PooledTask, distinct_pools, register_task, require

OPS = "+-*/"
MAX_LEN = 128  # completions longer than this are rejected without parsing
T = TypeVar("T")


class _Parser:
    """expr := term (('+'|'-') term)* ; term := factor (('*'|'/') factor)* ; factor := INT | '(' expr ')'."""

    def __init__(self, text: str, ops: str, max_depth: int = 16) -> None:
        self.s, self.i, self.ops, self.max_depth = text.replace(" ", ""), 0, ops, max_depth
        self.numbers: list[int] = []

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def expr(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.take_op()
            rhs = self.term(depth)
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self, depth: int) -> Fraction:
        value = self.factor(depth)
        while self.peek() in ("*", "/"):
            op = self.take_op()
            rhs = self.factor(depth)
            if op == "*":
                value = value * rhs
            elif rhs == 0:
                raise ZeroDivisionError("division by zero")
            else:
                value = value / rhs
        return value

    def take_op(self) -> str:
        op = self.s[self.i]
        if op not in self.ops:
            raise ValueError(f"operator {op!r} is not allowed")
        self.i += 1
        return op

    def factor(self, depth: int) -> Fraction:
        if self.peek() == "(":
            if depth >= self.max_depth:
                raise ValueError("parentheses nested too deeply")
            self.i += 1
            value = self.expr(depth + 1)
            if self.peek() != ")":
                raise ValueError(f"expected ')' at {self.i}")
            self.i += 1
            return value
        start = self.i
        while self.peek().isdigit() and self.peek().isascii():
            self.i += 1
        tok = self.s[start : self.i]
        if not tok or (len(tok) > 1 and tok[0] == "0"):
            raise ValueError(f"expected a number at {start}")
        self.numbers.append(int(tok))
        return Fraction(int(tok))


def parse_expression(text: str, ops: str = OPS) -> tuple[Fraction, list[int]] | None:
    """Exact value and the numbers used (in order) of an arithmetic expression, or None when it does not
    parse, divides by zero or uses an operator outside ``ops``."""
    if len(text) > MAX_LEN:
        return None
    parser = _Parser(text, ops)
    try:
        value = parser.expr(0)
    except (ValueError, ZeroDivisionError):
        return None
    return (value, parser.numbers) if parser.i == len(parser.s) and parser.s else None


def uses_numbers(used: list[int], given: list[int], use_all: bool) -> bool:
    """Each given number used at most once (exactly once when ``use_all``), as multisets."""
    u, g = Counter(used), Counter(given)
    return u == g if use_all else all(u[k] <= g[k] for k in u)


def is_solution(text: str, numbers: list[int], target: int, use_all: bool = True, ops: str = OPS) -> bool:
    parsed = parse_expression(text, ops)
    return parsed is not None and parsed[0] == target and uses_numbers(parsed[1], numbers, use_all)


# Exact rationals as reduced (numerator, denominator > 0) pairs: several times faster than Fraction here.
_Q = tuple[int, int]
# An expression node: (value, text, precedence); precedence 3 = atom, 2 = * /, 1 = + -.
_Node = tuple[_Q, str, int]


def _apply(x: _Q, y: _Q, op: str) -> _Q | None:
    (a, b), (c, d) = x, y
    if op == "+":
        n, m = a * d + c * b, b * d
    elif op == "-":
        n, m = a * d - c * b, b * d
    elif op == "*":
        n, m = a * c, b * d
    elif c == 0:
        return None
    else:
        n, m = (a * d, b * c) if c > 0 else (-a * d, -b * c)
    g = math.gcd(n, m)
    return n // g, m // g


def _text(a: _Node, b: _Node, op: str) -> tuple[str, int]:
    """Text of ``a op b`` with only the parentheses that precedence and left-associativity need."""
    prec = 1 if op in "+-" else 2
    left = f"({a[1]})" if a[2] < prec else a[1]
    right = f"({b[1]})" if b[2] < prec or (b[2] == prec and op in "-/") else b[1]
    return f"{left}{op}{right}", prec


def _combine(a: _Node, b: _Node, op: str) -> _Node | None:
    value = _apply(a[0], b[0], op)
    return None if value is None else (value, *_text(a, b, op))


def _leaf(x: int) -> _Node:
    return (x, 1), str(x), 3


def combine_at_random(items: list[T], rng: random.Random, ops: str,
                      combine: Callable[[T, T, str], T | None]) -> T | None:
    """Replace two of ``items`` drawn at random by ``combine(a, b, op)`` with a random operator from ``ops``
    until one item is left, and return it; None as soon as a combination is invalid (``combine`` gave None).

    Each combination draws ``rng.sample(range(len(items)), 2)`` and then ``rng.choice(ops)``."""
    while len(items) > 1:
        i, j = rng.sample(range(len(items)), 2)
        item = combine(items[i], items[j], rng.choice(ops))
        if item is None:
            return None
        items = [m for t, m in enumerate(items) if t not in (i, j)] + [item]
    return items[0]


@lru_cache(maxsize=4096)
def _reachable(numbers: tuple[int, ...], ops: str) -> dict[int, dict[_Q, _Node]]:
    """For every non-empty subset (bit mask) of ``numbers``, each reachable value with one expression for it."""
    table: dict[int, dict[_Q, _Node]] = {}
    for mask in range(1, 1 << len(numbers)):
        if mask & (mask - 1) == 0:
            leaf = _leaf(numbers[mask.bit_length() - 1])
            table[mask] = {leaf[0]: leaf}
            continue
        found: dict[_Q, _Node] = {}
        for a, b, op, value in _splits(table, mask, ops):
            if value not in found:
                found[value] = (value, *_text(a, b, op))
        table[mask] = found
    return table


def _splits(table: dict[int, dict[_Q, _Node]], mask: int, ops: str):
    """Every (a, b, op, value) of ``a op b`` over representatives of two disjoint subsets covering ``mask``."""
    sub = (mask - 1) & mask
    while sub:
        for a, b in itertools.product(table[sub].values(), table[mask ^ sub].values()):
            for op in ops:
                value = _apply(a[0], b[0], op)
                if value is not None:
                    yield a, b, op, value
        sub = (sub - 1) & mask


@lru_cache(maxsize=65536)
def _solve(numbers: tuple[int, ...], target: int, use_all: bool, ops: str) -> tuple[str, ...]:
    table = _reachable(numbers, ops)
    goal = (target, 1)
    texts: set[str] = set()
    for mask in [(1 << len(numbers)) - 1] if use_all else list(table):
        if goal not in table[mask]:
            continue
        if mask & (mask - 1) == 0:
            texts.add(table[mask][goal][1])
        else:
            texts.update(_text(a, b, op)[0] for a, b, op, v in _splits(table, mask, ops) if v == goal)
    return tuple(sorted(texts))


def solve(numbers: list[int], target: int, use_all: bool = True, ops: str = OPS) -> list[str]:
    """Solutions found by dynamic programming over subsets of the numbers (sorted, distinct texts).

    Every reachable value of every subset is kept with one representative expression, so a solution
    is found whenever one exists (the search is exhaustive over values); the listed solutions are all last
    steps ``a op b`` over those representatives, so several but not every spelling of a solution appear.
    Results are cached per multiset of numbers.
    """
    return list(_solve(tuple(sorted(numbers)), int(target), use_all, ops))


@dataclass
class NumbersParams:
    """The settings both Countdown tasks share: how numbers and targets are drawn, the operators, the pools."""

    #: the smallest ``min_number`` the task accepts
    smallest_number: ClassVar[int] = 0

    n_numbers: int = 4  # numbers given per problem
    min_number: int = 1  # numbers are uniform integers in [min_number, max_number]
    max_number: int = 9
    min_target: int = 10  # targets are integers in [min_target, max_target]
    max_target: int = 99
    ops: str = OPS  # allowed operators, a subset of "+-*/"
    n_train: int = 4096  # RL training problems
    n_test: int = 512  # held-out problems, disjoint from training as (multiset of numbers, target)
    seed: int = 0  # seed of the pools

    def __post_init__(self) -> None:
        low = self.smallest_number
        require(low <= self.min_number <= self.max_number, "min_number/max_number",
                (self.min_number, self.max_number), f"need {low} <= min_number <= max_number")
        require(self.min_target <= self.max_target, "min_target/max_target", (self.min_target, self.max_target),
                "need min_target <= max_target")
        require(bool(self.ops) and all(c in OPS for c in self.ops), "ops", self.ops, f"must be a subset of {OPS!r}")
        require(self.n_train >= 0 and self.n_test >= 0, "n_train/n_test", (self.n_train, self.n_test), "must be >= 0")


@dataclass
class CountdownParams(NumbersParams):
    use_all: bool = True  # True: each number exactly once; False: at most once
    prompt_template: str = "{numbers};{target}="  # {numbers} is space-separated

    def __post_init__(self) -> None:
        require(self.n_numbers >= 2, "n_numbers", self.n_numbers, "must be >= 2")
        super().__post_init__()
        require("{numbers}" in self.prompt_template and "{target}" in self.prompt_template, "prompt_template",
                self.prompt_template, "must contain {numbers} and {target}")


class NumbersVerifier:
    """Reward 1.0 iff the completion is not truncated and :meth:`correct` holds for it, the ``numbers``
    column and the target ``answer``."""

    __name__ = "numbers_correct"

    def correct(self, completion: str, numbers: list[int], target: int) -> bool:
        raise NotImplementedError

    def __call__(self, prompts: list[str], completions: list[str], answer: list[str], numbers: list[list[int]],
                 **kwargs) -> list[float]:
        truncated = truncated_flags(kwargs, len(completions), self.__name__)
        return [float(not t and self.correct(c, list(nums), int(a)))
                for c, a, nums, t in zip(completions, answer, numbers, truncated, strict=True)]


class CountdownVerifier(NumbersVerifier):
    """Reward 1.0 iff the completion parses, uses the given ``numbers`` column correctly, equals ``answer``
    and is not truncated."""

    __name__ = "countdown_correct"

    def __init__(self, use_all: bool = True, ops: str = OPS) -> None:
        self.use_all, self.ops = use_all, ops

    def correct(self, completion: str, numbers: list[int], target: int) -> bool:
        return is_solution(completion, numbers, target, self.use_all, self.ops)


@register_task
class Countdown(PooledTask):
    name = "countdown"
    unique_answer = False
    params_cls = CountdownParams
    params: CountdownParams

    def _instance(self, rng: random.Random) -> tuple[list[int], int, str]:
        """Random numbers and an integer target in range reached by combining them at random."""
        p = self.params
        while True:
            nums = [rng.randint(p.min_number, p.max_number) for _ in range(p.n_numbers)]
            for _ in range(64):
                k = p.n_numbers if p.use_all else rng.randint(2, p.n_numbers)
                node = combine_at_random([_leaf(x) for x in rng.sample(nums, k)], rng, p.ops, _combine)
                if node is not None and node[0][1] == 1 and p.min_target <= node[0][0] <= p.max_target:
                    return nums, node[0][0], node[1]

    def _example(self, nums: list[int], target: int, solution: str) -> Example:
        prompt = self.params.prompt_template.format(numbers=" ".join(map(str, nums)), target=target)
        return Example(prompt=prompt, answer=str(target), target=solution, columns={"numbers": list(nums)})

    def pools(self) -> tuple[list[Example], list[Example]]:
        p = self.params
        rng = random.Random(p.seed)

        def draw() -> tuple[tuple, Callable[[], Example]]:
            nums, target, solution = self._instance(rng)
            # the same numbers in another order count as the same problem
            return (tuple(sorted(nums)), target), lambda: self._example(nums, target, solution)

        return distinct_pools(draw, p.n_train, p.n_test, "these ranges")

    def reward_funcs(self) -> list[RewardFunc]:
        return [CountdownVerifier(self.params.use_all, self.params.ops)]

    def sft_examples(self, n: int, seed: int) -> list[Example]:
        """Fresh problems outside the test pool; each target is a random solution found by :func:`solve`."""
        p = self.params
        test = {(tuple(sorted(ex.columns["numbers"])), int(ex.answer)) for ex in self.examples("test")}
        rng = random.Random(f"countdown-sft-{seed}")
        out = []
        while len(out) < n:
            nums, target, _ = self._instance(rng)
            if (tuple(sorted(nums)), target) in test:
                continue
            solutions = solve(nums, target, p.use_all, p.ops)
            out.append(self._example(nums, target, rng.choice(solutions)))
        return out
