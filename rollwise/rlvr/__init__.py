"""RL with verifiable rewards for language models (see ARCHITECTURE.md, "One RLVR training step")."""
