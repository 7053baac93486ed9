"""Reverse (our CPU task for the quantized-rollout benchmark, not from the AIS paper): the prompt is a random
string of ``length`` letters followed by ``=``; the one correct completion is that string reversed
(``op="reverse"``), copied (``"copy"``) or sorted (``"sort"``), then EOS. The reward is 1 iff the whole
completion is exactly right and ended with EOS, so it checks a property of the whole sequence: with
per-token accuracy p the success rate is about p^length, a sparse reward that a short supervised warm start
can put at 5-15%.

Built for the low-precision rollout benchmark (``benchmarks/quantized_rollout.py``), which needs responses of
16+ tokens so that the rollout/train mismatch compounds along the sequence. Exactly one completion is
correct, so V(x) = pi(y*|x) is exact (evaluate.py).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

from rollwise.rlvr.rewards import RewardFunc, exact_answer
from rollwise.rlvr.tasks.base import Example, Task, check_split, register_task, require

OPS = ("reverse", "copy", "sort")


@dataclass
class ReverseParams:
    length: int = 16  # letters per prompt string (= response tokens before EOS)
    alphabet: str = string.ascii_lowercase  # letters the strings are drawn from (uniform, independent)
    op: str = "reverse"  # reverse | copy | sort: the transformation the completion must apply
    sft_noise: float = 0.0  # per-letter probability that a warm-start target letter is swapped for another letter
    n_train: int = 1024  # RL training prompts
    n_test: int = 256  # held-out prompts, disjoint from the training pool
    seed: int = 0  # seed of the two pools

    def __post_init__(self) -> None:
        require(self.length >= 1, "length", self.length, "must be >= 1")
        require(len(self.alphabet) >= 2 and len(set(self.alphabet)) == len(self.alphabet), "alphabet",
                self.alphabet, "must hold at least 2 distinct characters")
        require(not set(self.alphabet) & set("= "), "alphabet", self.alphabet, "may not contain '=' or ' '")
        require(0.0 <= self.sft_noise < 1.0, "sft_noise", self.sft_noise, "must be in [0, 1)")
        require(self.op in OPS, "op", self.op, f"must be one of {', '.join(OPS)}")
        require(self.n_train >= 0 and self.n_test >= 0, "n_train/n_test", (self.n_train, self.n_test),
                "must be >= 0")
        require(self.n_train + self.n_test <= len(self.alphabet) ** self.length, "n_train+n_test",
                self.n_train + self.n_test, "exceeds the number of distinct strings")


def transform(text: str, op: str) -> str:
    """The correct completion for prompt string ``text`` under ``op``."""
    if op == "reverse":
        return text[::-1]
    if op == "copy":
        return text
    if op == "sort":
        return "".join(sorted(text))
    raise ValueError(f"op={op!r} is not valid; valid choices: {', '.join(OPS)}")


@register_task
class Reverse(Task):
    """Whole-sequence exact match on a transformed random string; 0 for truncated completions."""

    name = "reverse"
    unique_answer = True
    params_cls = ReverseParams
    params: ReverseParams

    def _strings(self, rng: np.random.Generator, n: int) -> list[str]:
        p = self.params
        letters = np.array(list(p.alphabet))
        return ["".join(row) for row in letters[rng.integers(0, len(letters), size=(n, p.length))]]

    def _pools(self) -> tuple[list[str], list[str]]:
        """Distinct training and test strings (the test pool never overlaps the training pool)."""
        p = self.params
        rng = np.random.default_rng([p.seed, 11])
        seen: dict[str, None] = {}
        while len(seen) < p.n_train + p.n_test:
            for s in self._strings(rng, p.n_train + p.n_test - len(seen)):
                seen.setdefault(s, None)
        pool = list(seen)
        return pool[: p.n_train], pool[p.n_train:]

    def _example(self, text: str) -> Example:
        answer = transform(text, self.params.op)
        return Example(prompt=f"{text}=", answer=answer, target=answer)

    def examples(self, split: str) -> list[Example]:
        check_split(split)
        train, test = self._pools()
        return [self._example(s) for s in (train if split == "train" else test)]

    def reward_funcs(self) -> list[RewardFunc]:
        return [exact_answer]

    def sft_examples(self, n: int, seed: int) -> list[Example]:
        """``n`` fresh random strings (never from the test pool), each with its correct completion as target,
        except that each target letter is, with probability ``sft_noise``, replaced by a uniformly drawn
        *other* letter of the alphabet. A model fitted to these targets copies each letter right with
        probability 1 - sft_noise, so its exact-match rate is about (1 - sft_noise)^length: the knob that
        sets the sparse reward's base rate at the start of RL."""
        test = set(self._pools()[1])
        rng = np.random.default_rng([seed, 3])
        out: list[Example] = []
        while len(out) < n:
            out.extend(self._example(s) for s in self._strings(rng, n - len(out)) if s not in test)
        if self.params.sft_noise > 0:
            out = [Example(e.prompt, e.answer, self._corrupt(e.target or e.answer, rng), e.columns) for e in out]
        return out

    def _corrupt(self, target: str, rng: np.random.Generator) -> str:
        """``target`` with each letter swapped, with probability ``sft_noise``, for a different letter."""
        alphabet = self.params.alphabet
        flip = rng.random(len(target)) < self.params.sft_noise
        shift = rng.integers(1, len(alphabet), size=len(target))  # a non-zero shift: always another letter
        return "".join(alphabet[(alphabet.index(c) + k) % len(alphabet)] if f else c
                       for c, f, k in zip(target, flip, shift, strict=True))
