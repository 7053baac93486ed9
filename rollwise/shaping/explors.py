"""EXPLORS: exploration-guided reward shaping (Devidze et al., NeurIPS 2022).

The agent is trained on R̂(s,a,s') = R̄(s,a) + R^self_φ(s,a) + R^explore(s'): the sparse extrinsic reward,
a self-supervised intrinsic reward learned by a meta-gradient (:mod:`rollwise.shaping.intrinsic`) and a
count-based exploration bonus (:mod:`rollwise.shaping.bonus`). :class:`ShapedReward` composes any subset
of the two terms around any policy-gradient agent; the baselines are other subsets or other learned terms.
"""

from __future__ import annotations

from typing import Any, Protocol

from rollwise.shaping.bonus import CountBonus
from rollwise.shaping.config import ExplorsConfig
from rollwise.shaping.intrinsic import NeuralSelfRS, TabularSelfRS
from rollwise.shaping.rollout import Episode


class LearnedReward(Protocol):
    """A learned additive reward term R_φ(s, a) with its own update rule."""

    def value(self, obs: Any, action: int) -> float: ...

    def update(self, buffer: list[Episode], agent: Any) -> None: ...


class ShapedReward:
    """R̂ = R̄ + [R_φ(s,a) if learned and active] + [R^explore(s') if bonus].

    ``learned_active`` lets the training loop switch the learned term off during a warm-up (LineK);
    the learned term is still updated while off, as in the code.
    """

    def __init__(self, env: Any, bonus: CountBonus | None = None, learned: LearnedReward | None = None):
        self.env, self.bonus, self.learned = env, bonus, learned
        self.learned_active = True

    def reward(self, obs: Any, action: int, extrinsic: float, next_obs: Any, terminated: bool) -> float:
        r = extrinsic
        if self.learned is not None and self.learned_active:
            r += self.learned.value(obs, action)
        if self.bonus is not None:
            r += self.bonus.step(self.env.count_key(obs), self.env.count_key(next_obs), terminated)
        return r

    def update(self, buffer: list[Episode], agent: Any) -> None:
        if self.learned is not None:
            self.learned.update(buffer, agent)


def make_bonus(env: Any, config: ExplorsConfig) -> CountBonus:
    """The count bonus over the environment's ψ-keys (states, or LineK's 10·(1 + n_picks) bins)."""
    n_keys = env.n_states if hasattr(env, "n_states") else env.n_count_keys
    return CountBonus(n_keys, config.bonus_lambda, config.bonus_max, config.bonus_count_first)


def make_selfrs(env: Any, config: ExplorsConfig) -> LearnedReward:
    """The learned intrinsic reward: a table for tabular envs, a tanh-MLP for LineK."""
    if hasattr(env, "n_states"):
        return TabularSelfRS(env.n_states, env.n_actions, config.eta_phi, config.eta_critic, config.phi_clip)
    return NeuralSelfRS(env.obs_dim, env.n_actions, config.hidden, config.eta_phi, config.eta_critic,
                        config.phi_scale)


def make_explors(env: Any, config: ExplorsConfig) -> ShapedReward:
    """EXPLORS = R̄ + R^self_φ + R^explore."""
    return ShapedReward(env, bonus=make_bonus(env, config), learned=make_selfrs(env, config))
