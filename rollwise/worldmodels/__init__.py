"""World models: UWM-JEPA (density-matrix latent, unitary action-conditioned predictor) and its baselines.

Modules: ``env`` (partially observed spring task), ``density`` (density-matrix operations),
``uwm_jepa`` (the paper's model), ``baselines`` (LSTM/GRU-JEPA), ``training`` (CF/TF JEPA objectives),
``probes`` (indicator decoder, retention, context probe, invariants), ``repro`` (``rollwise repro uwm-jepa``).
"""
