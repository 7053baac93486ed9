"""Bridges from rollwise to other RL frameworks.

``verl.py`` registers rollwise estimators and corrections into verl's registries (``verl_basis.py``: BASIS
and its state); ``trl.py`` turns rollwise tasks and verifiers into a data set and reward functions for TRL's
``GRPOTrainer``; ``trl_trainer.py`` is a ``GRPOTrainer`` with rollwise's estimators and corrections. Apart
from ``trl_trainer.py`` (which imports trl), nothing here imports an optional framework at import time:
verl and trl are imported only when a function that needs them runs.
"""
