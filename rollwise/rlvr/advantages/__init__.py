"""Advantage estimators: a registry of estimator classes over pure tensor functions.

Importing this package registers ``grpo``, ``dr_grpo``, ``rloo``, ``reinforce_pp``,
``reinforce_pp_baseline``, ``basis``, ``ucpo``, ``divgrpo`` and ``codistill``. Use ``make_estimator(name, **params)``; ``available_estimators()`` lists names.
"""

from rollwise.rlvr.advantages.basis import Basis, cross_fit_baseline, eb_prior, fit_calibration
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
from rollwise.rlvr.advantages.ucpo import (
    UCPO,
    DivGRPO,
    centred_surprisal_advantages,
    correct_set_diagnostics,
    ucpo_advantages,
)

__all__ = [
    "AdvantageEstimator",
    "Basis",
    "DivGRPO",
    "DrGRPO",
    "GRPO",
    "RLOO",
    "ReinforcePP",
    "ReinforcePPBaseline",
    "UCPO",
    "available_estimators",
    "centred_surprisal_advantages",
    "correct_set_diagnostics",
    "cross_fit_baseline",
    "eb_prior",
    "fit_calibration",
    "grpo_advantages",
    "group_stats",
    "make_estimator",
    "register_estimator",
    "reinforce_pp_advantages",
    "reinforce_pp_baseline_advantages",
    "rloo_advantages",
    "ucpo_advantages",
    "whiten",
]
