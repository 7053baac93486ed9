"""Replay estimation for online imitation learning (Swamy et al. 2022), with BC and MM baselines.

Tabular: :mod:`.envs` (DriftChain, FrozenLake, TrapChain), :mod:`.replay` (the estimator),
:mod:`.learners` (LP moment matching), :mod:`.baselines`. Function approximation: :mod:`.deep`,
:mod:`.adversarial`, :mod:`.point_mass`. Benchmark: :mod:`.benchmark`, :mod:`.repro`.
"""

from rollwise.imitation.baselines import behavioural_cloning, moment_matching, replay_estimation_policy
from rollwise.imitation.envs import (
    TabularMDP,
    TabularSimulator,
    drift_chain,
    frozen_lake,
    make_env,
    trap_chain,
)
from rollwise.imitation.replay import ReplayConfig, ReplayEstimate, replay_estimate

__all__ = [
    "ReplayConfig", "ReplayEstimate", "TabularMDP", "TabularSimulator", "behavioural_cloning", "drift_chain",
    "frozen_lake", "make_env", "moment_matching", "replay_estimate", "replay_estimation_policy", "trap_chain",
]
