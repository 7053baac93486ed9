"""EXPLORS reward shaping under sparse rewards (Devidze et al., NeurIPS 2022): envs, method, baselines."""
