"""MakeN (our CPU task for the UCPO diversity tests, not from the paper): given a target N, write
``a o b o c`` (digits a, b, c in 1..9, o in {+, -, *}, usual precedence) that evaluates to N. Many completions
are correct and all of them can be listed, so the exact conditional distribution of a policy over the
correct set C(N) is computable.

The grammar is strict: exactly ``n_operands`` single digits from ``digits`` separated by one operator from
``ops``, no spaces. A completion is rewarded 1 iff it is in the grammar, evaluates to N and ended with EOS;
so the set of rewarded strings is exactly :func:`correct_set` (tested).

The SFT warm start is skewed (our choice, so that UCPO has an unequal spread to correct): per target, C(N) is ranked by a fixed seeded permutation and
targets are drawn with probability proportional to rank^-sft_zipf, so the starting policy is already unequal
within the correct set (sft_zipf=0 gives uniform targets). With ``sft_rank="lex"`` the ranking is the sorted
order of C(N) instead (small first operand first, ``*`` before ``+`` before ``-``): one preference shared by every
target, which a model can carry over to held-out targets (a per-target random ranking cannot be).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rollwise.rlvr.rewards import RewardFunc, truncated_flags
from rollwise.rlvr.tasks.base import Example, Task, check_split, register_task, require

DIGITS = "123456789"
OPS = "+-*"


def evaluate(operands: list[int], operators: list[str]) -> int:
    """Value of ``operands[0] op operators[0] operands[1] ...`` with * binding tighter than + and -."""
    total, sign, term = 0, 1, operands[0]
    for op, x in zip(operators, operands[1:], strict=True):
        if op == "*":
            term *= x
        else:
            total += sign * term
            sign, term = (1 if op == "+" else -1), x
    return total + sign * term


def parse_strict(text: str, n_operands: int = 3, digits: str = DIGITS, ops: str = OPS
                 ) -> tuple[list[int], list[str]] | None:
    """Operands and operators of ``text`` if it is exactly in the grammar, else None (never evaluates text)."""
    if len(text) != 2 * n_operands - 1:
        return None
    operands, operators = text[0::2], text[1::2]
    if any(c not in digits for c in operands) or any(c not in ops for c in operators):
        return None
    return [int(c) for c in operands], list(operators)


@lru_cache(maxsize=8)
def _table(n_operands: int, digits: str, ops: str) -> dict[int, tuple[str, ...]]:
    """Every expression of the grammar, grouped by value, each group sorted."""
    groups: dict[int, list[str]] = {}
    for operands in itertools.product(digits, repeat=n_operands):
        nums = [int(c) for c in operands]
        for operators in itertools.product(ops, repeat=n_operands - 1):
            text = "".join(a + o for a, o in zip(operands, (*operators, ""), strict=True))
            groups.setdefault(evaluate(nums, list(operators)), []).append(text)
    return {v: tuple(sorted(g)) for v, g in groups.items()}


def correct_set(target: int, n_operands: int = 3, digits: str = DIGITS, ops: str = OPS) -> list[str]:
    """All completions in the grammar that evaluate to ``target`` (sorted); empty when there are none."""
    return list(_table(n_operands, digits, ops).get(int(target), ()))


def canonical_form(expr: str) -> str:
    """Equation-level canonical form (our definition: neither the paper's available text nor the authors' code
    defines "equation-level diversity"): factors of each product sorted, then the added
    terms sorted and the subtracted terms sorted, e.g. ``"4*3-2+1"`` -> ``"1+3*4-2"``.

    Accepts any ``+ - *`` expression over non-negative integers without spaces; raises ValueError otherwise.
    """
    plus: list[str] = []
    minus: list[str] = []
    sign = "+"
    for i, chunk in enumerate(_split_signed(expr)):
        if i:
            sign, chunk = chunk[0], chunk[1:]
        factors = chunk.split("*")
        if not all(f.isdigit() for f in factors):
            raise ValueError(f"canonical_form: {expr!r} is not an expression over + - * and integers")
        term = "*".join(sorted(factors, key=lambda f: (int(f), f)))
        (plus if sign == "+" else minus).append(term)
    if not plus:
        raise ValueError(f"canonical_form: {expr!r} has no leading term")
    plus.sort()
    minus.sort()
    return "+".join(plus) + "".join("-" + t for t in minus)


def _split_signed(expr: str) -> list[str]:
    """``"1+2*3-4"`` -> ``["1", "+2*3", "-4"]``."""
    chunks, start = [], 0
    for i, c in enumerate(expr):
        if c in "+-" and i > 0:
            chunks.append(expr[start:i])
            start = i
    chunks.append(expr[start:])
    return chunks


@dataclass
class MakeNParams:
    n_operands: int = 3  # operands per expression (3: 6561 strings; 4: 177147, the harder CoDistill variant)
    digits: str = DIGITS  # allowed single-digit operands
    ops: str = OPS  # allowed operators, a subset of "+-*"
    min_correct: int = 8  # keep targets N with |C(N)| >= min_correct
    min_target: int | None = None  # optional lower bound on N
    max_target: int | None = None  # optional upper bound on N
    test_fraction: float = 0.2  # fraction of targets held out for testing
    prompt_template: str = "{n}="  # prompt text; {n} is the target
    sft_zipf: float = 1.0  # skew of SFT targets within C(N): p(rank r) ~ r^-sft_zipf; 0 = uniform
    sft_rank: str = "random"  # ranking of C(N) for the skew: random (seeded per target) | lex (sorted, shared)
    seed: int = 0  # seed of the train/test split and of the SFT ranking

    def __post_init__(self) -> None:
        require(self.n_operands >= 1, "n_operands", self.n_operands, "must be >= 1")
        require(bool(self.digits) and all(c in "0123456789" for c in self.digits), "digits", self.digits,
                "must be a non-empty string of decimal digits")
        require(bool(self.ops) and all(c in OPS for c in self.ops), "ops", self.ops, f"must be a subset of {OPS!r}")
        require(self.min_correct >= 1, "min_correct", self.min_correct, "must be >= 1")
        require(0.0 < self.test_fraction < 1.0, "test_fraction", self.test_fraction, "must be in (0, 1)")
        require(self.sft_zipf >= 0.0, "sft_zipf", self.sft_zipf, "must be >= 0")
        require(self.sft_rank in ("random", "lex"), "sft_rank", self.sft_rank, "must be 'random' or 'lex'")
        require("{n}" in self.prompt_template, "prompt_template", self.prompt_template, "must contain {n}")


class MakeNVerifier:
    """Reward 1.0 iff the completion is in the grammar, evaluates to ``answer`` and is not truncated."""

    __name__ = "make_n_correct"

    def __init__(self, n_operands: int = 3, digits: str = DIGITS, ops: str = OPS) -> None:
        self.n_operands, self.digits, self.ops = n_operands, digits, ops

    def __call__(self, prompts: list[str], completions: list[str], answer: list[str], **kwargs) -> list[float]:
        truncated = truncated_flags(kwargs, len(completions), self.__name__)
        out = []
        for c, a, t in zip(completions, answer, truncated, strict=True):
            parsed = None if t else parse_strict(c, self.n_operands, self.digits, self.ops)
            out.append(float(parsed is not None and evaluate(*parsed) == int(a)))
        return out


@register_task
class MakeN(Task):
    name = "make_n"
    unique_answer = False
    params_cls = MakeNParams
    params: MakeNParams

    def correct_set(self, target: int | Example) -> list[str]:
        """C(N) of a target N, or of an example (its ``target`` column), as for every enumerable task."""
        p = self.params
        n = int(target.columns["target"]) if isinstance(target, Example) else target
        return correct_set(n, p.n_operands, p.digits, p.ops)

    def targets(self, split: str) -> list[int]:
        """Targets of ``split``: those with |C(N)| >= min_correct, shuffled by the seed, the last
        ``test_fraction`` held out."""
        check_split(split)
        p = self.params
        table = _table(p.n_operands, p.digits, p.ops)
        pool = sorted(v for v, g in table.items() if len(g) >= p.min_correct
                      and (p.min_target is None or v >= p.min_target) and (p.max_target is None or v <= p.max_target))
        require(len(pool) >= 2, "min_correct", p.min_correct, f"leaves {len(pool)} targets; need at least 2")
        order = np.random.default_rng(p.seed).permutation(len(pool))
        n_test = max(1, round(p.test_fraction * len(pool)))
        idx = order[: len(pool) - n_test] if split == "train" else order[len(pool) - n_test:]
        return sorted(pool[i] for i in idx)

    def _example(self, n: int, target: str | None = None) -> Example:
        correct = self.correct_set(n)
        return Example(prompt=self.params.prompt_template.format(n=n), answer=str(n),
                       target=correct[0] if target is None else target,
                       columns={"target": n, "n_correct": len(correct)})

    def examples(self, split: str) -> list[Example]:
        return [self._example(n) for n in self.targets(split)]

    def reward_funcs(self) -> list[RewardFunc]:
        p = self.params
        return [MakeNVerifier(p.n_operands, p.digits, p.ops)]

    def sft_distribution(self, target: int) -> dict[str, float]:
        """The skewed SFT distribution over C(target): p(rank r) ~ r^-sft_zipf, with a seeded per-target ranking
        (``sft_rank="random"``) or the sorted order of C(target) (``"lex"``, rank 1 = ``correct_set(target)[0]``)."""
        correct = self.correct_set(target)
        if not correct:
            raise ValueError(f"make_n: target {target} has no correct expression")
        if self.params.sft_rank == "lex":
            rank = np.arange(len(correct))
        else:
            key = 2 * target if target >= 0 else -2 * target - 1  # SeedSequence entropy must be >= 0
            rank = np.random.default_rng([self.params.seed, 7, key]).permutation(len(correct))
        w = (rank + 1.0) ** -self.params.sft_zipf
        w = w / w.sum()
        return {c: float(x) for c, x in zip(correct, w, strict=True)}

    def sft_examples(self, n: int, seed: int) -> list[Example]:
        """``n`` examples over training targets (uniform), targets drawn from :meth:`sft_distribution`."""
        rng = np.random.default_rng([seed, 2])
        train = self.targets("train")
        dists: dict[int, dict[str, float]] = {}
        out = []
        for t in rng.choice(train, size=n).tolist():
            dist = dists.setdefault(t, self.sft_distribution(t))
            exprs = list(dist)
            out.append(self._example(t, exprs[rng.choice(len(exprs), p=list(dist.values()))]))
        return out
