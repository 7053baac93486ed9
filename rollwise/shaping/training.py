"""The training schedule shared by EXPLORS and every baseline (as the authors' code).

```
for episode i:
    if i % eval_every == 0: evaluate eval_episodes rollouts -> mean discounted EXTRINSIC return
    roll out one episode on the shaped reward; buffer.append(episode)       (FIFO, buffer_size)
    if (i+1) % N_r == 0: update the shaped reward (φ and V̄) on the whole buffer
    if (i+1) % N_p == 0: update the agent on the last ``recent`` episodes
```
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rollwise.runlog import set_threads
from rollwise.shaping.agents import NeuralReinforce, TabularQLearning, TabularReinforce
from rollwise.shaping.baselines import make_shaper
from rollwise.shaping.config import ExplorsConfig
from rollwise.shaping.env import make_env
from rollwise.shaping.explors import ShapedReward
from rollwise.shaping.rollout import Episode, rollout


@dataclass
class Curve:
    """Evaluation curve of one run: mean discounted extrinsic return at each evaluated episode index."""

    method: str
    env: str
    seed: int
    episodes: list[int] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    seconds: float = 0.0
    first_success: int | None = None  # first training episode with a positive extrinsic return
    successes: int = 0  # training episodes with a positive extrinsic return (the code's "goal visits")

    def final(self, window: int = 5) -> float:
        """Mean of the last ``window`` evaluations (our benchmark's "final")."""
        return float(np.mean(self.returns[-window:])) if self.returns else float("nan")


def make_agent(env: Any, config: ExplorsConfig) -> TabularReinforce | TabularQLearning | NeuralReinforce:
    """Tabular REINFORCE (or Q-learning) for tabular envs, the MLP REINFORCE for LineK."""
    if hasattr(env, "n_states") and config.agent == "q_learning":
        return TabularQLearning(env.n_states, env.n_actions, config.q_alpha, config.q_epsilon, config.gamma)
    if hasattr(env, "n_states"):
        return TabularReinforce(env.n_states, env.n_actions, config.eta_actor)
    return NeuralReinforce(env.obs_dim, env.n_actions, config.eta_actor, config.hidden, config.behaviour_epsilon)


def evaluate(env: Any, agent: Any, shaper: ShapedReward, rng: np.random.Generator, config: ExplorsConfig) -> float:
    """Mean Ḡ_0 over ``eval_episodes`` rollouts of the current (non-exploring) policy.

    As in the code the rollouts go through the shaped reward, so they update the bonus counts unless
    ``config.eval_counts`` is False.
    """
    bonus = shaper.bonus
    if not config.eval_counts:
        shaper.bonus = None
    try:
        return float(np.mean([rollout(env, agent, shaper, rng, config.gamma, explore=False).extrinsic_return
                              for _ in range(config.eval_episodes)]))
    finally:
        shaper.bonus = bonus


def train(env: Any, agent: Any, shaper: ShapedReward, config: ExplorsConfig, rng: np.random.Generator,
          curve: Curve, progress: Any = None) -> Curve:
    """Run the schedule of the module docstring, filling ``curve`` with the evaluations; returns it."""
    buffer: deque[Episode] = deque(maxlen=config.buffer_size)
    t0 = time.perf_counter()
    for i in range(config.episodes):
        shaper.learned_active = i >= config.learned_off_episodes
        if i % config.eval_every == 0:
            curve.episodes.append(i)
            curve.returns.append(evaluate(env, agent, shaper, rng, config))
            if progress is not None:
                progress.update(config.eval_every, info=f"{curve.method} eval {curve.returns[-1]:.2f}")
        episode = rollout(env, agent, shaper, rng, config.gamma)
        if episode.extrinsic_return > 0:
            curve.successes += 1
            if curve.first_success is None:
                curve.first_success = i
        buffer.append(episode)
        if (i + 1) % config.reward_period == 0:
            shaper.update(list(buffer), agent)
        if (i + 1) % config.policy_period == 0:
            agent.update(list(buffer)[-config.recent:])
    curve.seconds = time.perf_counter() - t0
    return curve


def run_method(env_name: str, method: str, config: ExplorsConfig, seed: int, env_kwargs: dict | None = None,
               progress: Any = None) -> Curve:
    """One (environment, method, seed) run; deterministic on CPU for a given seed.

    Torch runs single-threaded inside (the networks are tiny; extra threads only add contention).
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    env = make_env(env_name, **(env_kwargs or {}))
    env.reset(seed=seed)
    env.np_random = rng  # one stream for the env, the agent and the shaper
    threads = torch.get_num_threads()
    set_threads(1)
    try:
        agent = make_agent(env, config)
        shaper = make_shaper(method, env, config, rng)
        return train(env, agent, shaper, config, rng, Curve(method, env_name, seed), progress)
    finally:
        set_threads(threads)
