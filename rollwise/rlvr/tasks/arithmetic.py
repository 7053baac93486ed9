"""ADD-3 (our CPU task for the BASIS experiments, not from the paper): prompt "a+b=", a and b uniform in [0,
max_operand]; the answer is the decimal sum without leading zeros. Exactly one completion is correct, so
V(x) is exact (evaluate.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rollwise.rlvr.rewards import RewardFunc, exact_answer
from rollwise.rlvr.tasks.base import Example, Task, check_split, register_task, require


@dataclass
class Add3Params:
    max_operand: int = 999  # operands a, b are uniform integers in [0, max_operand]
    n_train: int = 4096  # RL training prompts
    n_test: int = 512  # held-out prompts, disjoint from the training pool (as (a, b) pairs)
    seed: int = 0  # seed of the two pools

    def __post_init__(self) -> None:
        require(self.max_operand >= 0, "max_operand", self.max_operand, "must be >= 0")
        require(self.n_train >= 0 and self.n_test >= 0, "n_train/n_test", (self.n_train, self.n_test), "must be >= 0")
        space = (self.max_operand + 1) ** 2
        require(self.n_train + self.n_test <= space, "n_train+n_test", self.n_train + self.n_test,
                f"must be <= (max_operand+1)^2 = {space} distinct (a, b) pairs")


def carries(a: int, b: int) -> int:
    """Number of decimal carries in a + b (an 'oracle' difficulty feature of a prompt)."""
    count, carry = 0, 0
    while a or b:
        carry = int(a % 10 + b % 10 + carry >= 10)
        count += carry
        a, b = a // 10, b // 10
    return count


def add3_example(a: int, b: int) -> Example:
    s = str(a + b)
    return Example(prompt=f"{a}+{b}=", answer=s, target=s, columns={"a": a, "b": b, "carries": carries(a, b)})


@register_task
class Add3(Task):
    """ADD-3: exact-match reward on the sum, 0 for truncated completions."""

    name = "add3"
    unique_answer = True
    params_cls = Add3Params
    params: Add3Params

    def _pairs(self) -> np.ndarray:
        """(n_train + n_test,) distinct codes a * (max_operand + 1) + b; train first, then test."""
        p = self.params
        rng = np.random.default_rng(p.seed)
        return rng.choice((p.max_operand + 1) ** 2, size=p.n_train + p.n_test, replace=False)

    def _decode(self, codes: np.ndarray) -> list[Example]:
        m = self.params.max_operand + 1
        return [add3_example(int(c) // m, int(c) % m) for c in codes]

    def examples(self, split: str) -> list[Example]:
        check_split(split)
        codes = self._pairs()
        n = self.params.n_train
        return self._decode(codes[:n] if split == "train" else codes[n:])

    def reward_funcs(self) -> list[RewardFunc]:
        return [exact_answer]

    def sft_examples(self, n: int, seed: int) -> list[Example]:
        """``n`` random pairs (with replacement) outside the test pool, each with its sum as target."""
        p = self.params
        test = set(self._pairs()[p.n_train:].tolist())
        require(len(test) < (p.max_operand + 1) ** 2, "n_test", p.n_test, "leaves no pairs for SFT")
        rng = np.random.default_rng([seed, 1])
        codes: list[int] = []
        while len(codes) < n:
            draw = rng.integers(0, (p.max_operand + 1) ** 2, size=max(16, n - len(codes)))
            codes.extend(int(c) for c in draw if int(c) not in test)
        return self._decode(np.asarray(codes[:n]))
