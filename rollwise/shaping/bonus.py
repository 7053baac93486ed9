"""The count-based exploration bonus R^explore of EXPLORS (as the authors' code).

R^explore(s') = λ / sqrt((λ/B)² + N(ψ(s'))), 0 for the absorbing terminal. N(x) counts how often x was
the *current* state; counts persist across episodes (evaluation rollouts included, as in the code).
"""

from __future__ import annotations

import math

import numpy as np


class CountBonus:
    """Count table over ψ-keys with the bonus of the module docstring.

    ``count_first`` selects the order of the two codes: False (tabular code) computes the bonus of s'
    and then counts s; True (neural code) counts s first, so s' already sees this step when ψ(s') = ψ(s).
    """

    def __init__(self, n_keys: int, lam: float = 1.0, max_bonus: float = 1.0, count_first: bool = False):
        self.counts = np.zeros(n_keys)
        self.lam, self.max_bonus, self.count_first = lam, max_bonus, count_first

    def value(self, key: int) -> float:
        """λ / sqrt((λ/B)² + N(key)); equals 1/sqrt(1 + N) for λ = B = 1."""
        return self.lam / math.sqrt((self.lam / self.max_bonus) ** 2 + self.counts[key])

    def step(self, key: int, next_key: int, next_terminal: bool) -> float:
        """The bonus paid for a transition s -> s' (keys ψ(s), ψ(s')), updating N(ψ(s)) by one."""
        if self.count_first:
            self.counts[key] += 1.0
        bonus = 0.0 if next_terminal else self.value(next_key)
        if not self.count_first:
            self.counts[key] += 1.0
        return bonus
