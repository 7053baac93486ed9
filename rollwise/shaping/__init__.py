"""EXPLORS: exploration-guided reward shaping under sparse rewards (Devidze et al., NeurIPS 2022).

The paper's full text was not available (abstract only); the algorithm, environments, baselines and
hyper-parameters follow the authors' code (``code_tabular/``, ``code_neural/``), see docs/explors.md.
Layout: ``env`` (Chain, Room, LineK), ``bonus`` (count bonus), ``intrinsic`` (learned R^self_φ and its
meta-gradient), ``agents`` (REINFORCE), ``explors`` (the composition R̄ + R^self + R^explore), ``baselines``
(Orig, ExploB, SelfRS, SORS′, LIRPG′), ``training`` (the training loop), ``repro`` (``rollwise repro explors``).
"""

from rollwise.shaping.agents import NeuralReinforce, TabularReinforce
from rollwise.shaping.baselines import TabularLIRPG, TabularSORS, make_shaper
from rollwise.shaping.bonus import CountBonus
from rollwise.shaping.config import METHODS, ExplorsConfig
from rollwise.shaping.env import ChainEnv, LineKEnv, RoomEnv, make_env
from rollwise.shaping.explors import ShapedReward, make_explors
from rollwise.shaping.intrinsic import NeuralSelfRS, TabularSelfRS
from rollwise.shaping.training import Curve, run_method

__all__ = ["ChainEnv", "RoomEnv", "LineKEnv", "make_env", "CountBonus", "TabularSelfRS", "NeuralSelfRS",
           "ShapedReward", "make_explors", "TabularSORS", "TabularLIRPG", "make_shaper", "TabularReinforce",
           "NeuralReinforce", "ExplorsConfig", "METHODS", "Curve", "run_method"]
