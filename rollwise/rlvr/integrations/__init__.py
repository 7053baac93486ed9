"""Bridges from rollwise's registries to other RL frameworks.

``verl.py`` registers rollwise estimators and corrections into verl's registries. Nothing here imports an
optional framework at import time: verl is imported only when ``register_with_verl()`` (or a registered
function) runs.
"""
