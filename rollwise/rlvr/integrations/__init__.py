"""Bridges from rollwise to other RL frameworks.

``verl.py`` registers rollwise estimators and corrections into verl's registries; ``trl.py`` turns rollwise
tasks and verifiers into a data set and reward functions for TRL's ``GRPOTrainer``. Nothing here imports an
optional framework at import time: verl and trl are imported only when a function that needs them runs.
"""
