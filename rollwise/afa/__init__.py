"""Active feature acquisition lab: NM-PPG (pathwise policy gradients) and its baselines.

``data`` (CUBE, CUBE-NM, scikit-learn sets), ``env`` (masks, budgets, masked classifier), ``nm_ppg``
(the method), ``baselines`` (random, static, GDFS, REINFORCE), ``soft_budget`` (STOP), ``repro``.
"""
