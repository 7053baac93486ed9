"""Column arithmetic with a scratchpad (``column_arith``): ``a+b`` or ``a-b`` (a >= b) worked column by column
from the right, each column written out with its carry (borrow), then the answer.

Trace of ``472+389=``: ``2+9+0=11;7+8+1=16;4+3+1=8;ans:861``. A column is ``x+y+c=s`` (c the incoming carry,
s the column sum; a two-digit s carries 1). Subtraction writes ``x-y-c=d`` and, when the column borrows,
``1x-y-c=d`` (x + 10). Both operands have the same number of digits (the shorter is never zero-padded in
the prompt; columns are counted on the longer one and a missing digit reads 0). Difficulty is set by the
number of digits and of carries (the ``digits`` and ``carries`` columns).

The verifier fails closed: a truncated completion, anything outside the grammar, a step count other than
the number of columns, or a malformed answer earns 0. ``check`` picks what else it requires:

- ``"trace"`` (default): the completion must be the canonical trace, character for character. Exactly one
  completion is then rewarded, so V(x) = pi(trace | x) is exact by one teacher-forced pass
  (``evaluate.exact_success_prob``); a right answer after wrong column work earns 0.
- ``"answer"``: the columns only have to be in the grammar and the final answer right. A wrong column
  followed by the right answer earns 1, so several completions are rewarded and pi(trace | x) is only a
  lower bound of V(x); estimate V by sampling (``evaluate.sampled_success_prob``, with its standard error).

Prompt phrasings vary (``phrasings``): ``472+389=`` or ``472 plus 389=`` (``minus`` for subtraction), fixed
per pool example and drawn at random for SFT examples.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from rollwise.rlvr.rewards import RewardFunc, truncated_flags
from rollwise.rlvr.tasks.base import (
    Example,
    PooledTask,
    distinct_pools,
    register_task,
    require,
)

CHECKS = ("trace", "answer")
PHRASES = {"+": ("{a}+{b}=", "{a} plus {b}="), "-": ("{a}-{b}=", "{a} minus {b}=")}
MAX_LEN = 200  # completions longer than this are rejected without parsing
_STEP = {"+": re.compile(r"^(\d)\+(\d)\+([01])=(1?\d)$"), "-": re.compile(r"^(1?\d)-(\d)-([01])=(\d)$")}
_ANSWER = re.compile(r"^ans:(0|[1-9]\d*)$")


def column_steps(a: int, b: int, op: str) -> tuple[list[str], int]:
    """The column steps of ``a op b`` (right to left) and the number of carries (borrows).

    ``op`` is ``+`` or ``-`` (then a >= b). One step per digit of the longer operand.
    """
    if op not in PHRASES:
        raise ValueError(f"column_steps: op={op!r} is not valid; valid choices: + -")
    if op == "-" and a < b:
        raise ValueError(f"column_steps: {a}-{b} would be negative; the task keeps a >= b")
    da, db = str(a)[::-1], str(b)[::-1]
    steps, carry, count = [], 0, 0
    for i in range(max(len(da), len(db))):
        x, y = int(da[i]) if i < len(da) else 0, int(db[i]) if i < len(db) else 0
        if op == "+":
            s = x + y + carry
            steps.append(f"{x}+{y}+{carry}={s}")
            carry = int(s >= 10)
        else:
            d = x - y - carry
            borrow = int(d < 0)
            steps.append(f"{x + 10 * borrow}-{y}-{carry}={d + 10 * borrow}")
            carry = borrow
        count += carry
    return steps, count


def canonical_trace(a: int, b: int, op: str) -> str:
    """The one completion the ``trace`` check rewards: the column steps, then ``ans:<result>``."""
    steps, _ = column_steps(a, b, op)
    return ";".join([*steps, f"ans:{a + b if op == '+' else a - b}"])


def parse_trace(text: str, op: str) -> tuple[list[str], str] | None:
    """(steps, answer digits) when ``text`` is in the grammar (every step matches ``op``'s column pattern,
    then exactly one ``ans:<digits>`` at the end); None otherwise. The arithmetic is not checked here."""
    if len(text) > MAX_LEN:
        return None
    *steps, last = text.split(";")
    answer = _ANSWER.match(last)
    if answer is None or not steps or not all(_STEP[op].match(s) for s in steps):
        return None
    return steps, answer.group(1)


class ColumnVerifier:
    """Reward 1.0 iff the completion ended with EOS, is in the grammar with one step per column, has the
    right answer and, under ``check="trace"``, is the canonical trace. Reads the ``a``, ``b``, ``op``
    columns."""

    __name__ = "column_correct"

    def __init__(self, check: str = "trace") -> None:
        if check not in CHECKS:
            raise ValueError(f"check={check!r} is not valid; valid choices: {', '.join(CHECKS)}")
        self.check = check

    def score(self, completion: str, a: int, b: int, op: str) -> float:
        if self.check == "trace":
            return float(completion == canonical_trace(a, b, op))
        parsed = parse_trace(completion, op)
        if parsed is None:
            return 0.0
        steps, answer = parsed
        n_columns = max(len(str(a)), len(str(b)))
        return float(len(steps) == n_columns and answer == str(a + b if op == "+" else a - b))

    def __call__(self, prompts: list[str], completions: list[str], a: list[int], b: list[int], op: list[str],
                 **kwargs) -> list[float]:
        truncated = truncated_flags(kwargs, len(completions), self.__name__)
        return [0.0 if t else self.score(c, int(x), int(y), o)
                for c, x, y, o, t in zip(completions, a, b, op, truncated, strict=True)]


@dataclass
class ColumnArithParams:
    ops: str = "+-"  # operations drawn uniformly per problem, a subset of "+-"
    min_digits: int = 3  # digits of each operand, uniform in [min_digits, max_digits] per problem
    max_digits: int = 6
    check: str = "trace"  # what the verifier requires besides the answer: "trace" (exact V) or "answer"
    phrasings: int = 2  # prompt phrasings in use: 1 ("472+389=") or 2 (also "472 plus 389=")
    n_train: int = 4096  # RL training problems
    n_test: int = 512  # held-out problems, disjoint from training as (a, op, b)
    seed: int = 0  # seed of the pools

    def __post_init__(self) -> None:
        require(bool(self.ops) and all(c in PHRASES for c in self.ops) and len(set(self.ops)) == len(self.ops),
                "ops", self.ops, "must be '+', '-' or '+-'")
        require(1 <= self.min_digits <= self.max_digits <= 12, "min_digits/max_digits",
                (self.min_digits, self.max_digits), "need 1 <= min_digits <= max_digits <= 12")
        require(self.check in CHECKS, "check", self.check, f"valid choices: {', '.join(CHECKS)}")
        require(self.phrasings in (1, 2), "phrasings", self.phrasings, "must be 1 or 2")
        require(self.n_train >= 0 and self.n_test >= 0, "n_train/n_test", (self.n_train, self.n_test), "must be >= 0")


@register_task
class ColumnArith(PooledTask):
    """Column addition / subtraction with a scratchpad; unique answer (exact V) under ``check="trace"``."""

    name = "column_arith"
    unique_answer = True  # set per instance from params.check
    params_cls = ColumnArithParams
    params: ColumnArithParams

    def __init__(self, params: ColumnArithParams | None = None) -> None:
        super().__init__(params)
        self.unique_answer = self.params.check == "trace"  # type: ignore[misc]

    def _draw(self, rng: random.Random) -> tuple[int, int, str, int]:
        """(a, b, op, phrasing) with both operands of the same random number of digits."""
        p = self.params
        d = rng.randint(p.min_digits, p.max_digits)
        lo = 10 ** (d - 1) if d > 1 else 0
        a, b, op = rng.randint(lo, 10**d - 1), rng.randint(lo, 10**d - 1), rng.choice(p.ops)
        if op == "-" and a < b:
            a, b = b, a
        return a, b, op, rng.randrange(p.phrasings)

    def example(self, a: int, b: int, op: str, phrasing: int = 0) -> Example:
        """The problem ``a op b`` in phrasing ``phrasing``, with its canonical trace as target."""
        steps, carries = column_steps(a, b, op)
        answer = str(a + b if op == "+" else a - b)
        return Example(prompt=PHRASES[op][phrasing].format(a=a, b=b), answer=answer,
                       target=";".join([*steps, f"ans:{answer}"]),
                       columns={"a": a, "b": b, "op": op, "digits": len(steps), "carries": carries})

    def pools(self) -> tuple[list[Example], list[Example]]:
        p = self.params
        rng = random.Random(f"column-arith-{p.seed}")

        def draw() -> tuple[tuple, Callable[[], Example]]:
            a, b, op, phrasing = self._draw(rng)
            return (a, b, op), lambda: self.example(a, b, op, phrasing)

        return distinct_pools(draw, p.n_train, p.n_test, "these digit ranges")

    def reward_funcs(self) -> list[RewardFunc]:
        return [ColumnVerifier(self.params.check)]

    def correct_set(self, example: Example) -> list[str]:
        """Every rewarded completion of ``example`` (only under ``check="trace"``: the canonical trace)."""
        if self.params.check != "trace":
            raise ValueError("column_arith: the rewarded set is enumerable only under check='trace'")
        return [example.target or ""]

    def sft_examples(self, n: int, seed: int) -> list[Example]:
        """``n`` fresh problems outside the test pool, phrasing drawn at random, canonical trace as target."""
        test = {(int(e.columns["a"]), int(e.columns["b"]), e.columns["op"]) for e in self.examples("test")}
        rng = random.Random(f"column-arith-sft-{seed}")
        out: list[Example] = []
        while len(out) < n:
            a, b, op, phrasing = self._draw(rng)
            if (a, b, op) not in test:
                out.append(self.example(a, b, op, phrasing))
        return out
