"""Advantage estimators: a registry of estimator classes over pure tensor functions.

Importing this package registers ``grpo``, ``dr_grpo``, ``rloo``, ``reinforce_pp`` and
``reinforce_pp_baseline``. Use ``make_estimator(name, **params)``; ``available_estimators()`` lists names.
"""

from rollwise.rlvr.advantages.group import GRPO, RLOO, DrGRPO, group_stats, grpo_advantages, rloo_advantages
from rollwise.rlvr.advantages.registry import (
    AdvantageEstimator,
    available_estimators,
    make_estimator,
    register_estimator,
)
from rollwise.rlvr.advantages.reinforce import (
    ReinforcePP,
    ReinforcePPBaseline,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    whiten,
)

__all__ = [
    "AdvantageEstimator",
    "DrGRPO",
    "GRPO",
    "RLOO",
    "ReinforcePP",
    "ReinforcePPBaseline",
    "available_estimators",
    "grpo_advantages",
    "group_stats",
    "make_estimator",
    "register_estimator",
    "reinforce_pp_advantages",
    "reinforce_pp_baseline_advantages",
    "rloo_advantages",
    "whiten",
]
