"""World models: UWM-JEPA (density-matrix latent, unitary action-conditioned predictor) and its baselines.

Modules: ``env`` (partially observed spring task), ``density`` (density-matrix operations),
``uwm_jepa`` (the paper's model), ``baselines`` (LSTM/GRU-JEPA), ``training`` (CF/TF JEPA objectives),
``probes`` (indicator decoder, retention, context probe, invariants), ``repro`` (``rollwise repro uwm-jepa``).

Paper: Radha & Goktas 2026, arXiv 2605.25313. Its release holds the LaTeX source and the result data (configs,
parameter counts, per-seed numbers) but no code. Comments mark where each setting comes from: (paper) the
text, (released) the released configs and data, (reconstructed) our choice where neither says, (our pilot) a
value a pilot implementation settled.
"""
