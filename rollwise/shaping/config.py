"""Typed configuration of the EXPLORS lab.

Defaults are the tabular values of the authors' ``code_tabular/parameters.py``; :meth:`ExplorsConfig.neural`
gives the LineK column (``code_neural/parameters.py``). Fields marked "(inferred)" or "(ours)" are not in
the authors' code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

METHODS = ("orig", "explob", "selfrs", "explors", "sors", "lirpg")
LABELS = {"orig": "Orig", "explob": "ExploB", "selfrs": "SelfRS", "explors": "EXPLORS",
          "sors": "SORS'", "lirpg": "LIRPG'"}


@dataclass
class ExplorsConfig:
    """Schedule and hyper-parameters of one training run (one method, one environment, one seed)."""

    episodes: int = 6000              # training episodes (code: 50 001; our benchmark: 6000 chain, 10 000 room)
    eval_every: int = 100             # evaluate every this many episodes
    eval_episodes: int = 5            # evaluation rollouts per evaluation
    final_window: int = 5             # "final" = mean of the last this many evaluations (our benchmark)
    eval_counts: bool = True          # evaluation rollouts update the bonus counts (a side effect of the code)
    reward_period: int = 5            # N_r: update φ and the critic every N_r episodes (20 neural)
    policy_period: int = 2            # N_p: update the agent every N_p episodes
    buffer_size: int = 10             # FIFO buffer of episodes for the φ/critic update
    recent: int = 5                   # the agent updates on the last this many buffered episodes
    gamma: float = 0.99               # discount of every return
    eta_actor: float = 0.1            # agent step size (plain SGD tabular; Adam 1e-5 neural)
    eta_phi: float = 0.01             # η_φ of the SelfRS/EXPLORS meta-gradient update (Adam 1e-3 neural)
    eta_critic: float = 0.01          # η_c of the extrinsic critic V̄ (Adam 5e-3 neural)
    eta_sors: float = 0.01            # SORS′ Bradley–Terry step size (Adam 1e-3 neural)
    eta_lirpg: float = 0.01           # LIRPG′ step size
    sors_pairs: int = 10              # at most this many random pairs per SORS′ update
    bonus_lambda: float = 1.0         # λ of the bonus
    bonus_max: float = 1.0            # B of the bonus
    bonus_count_first: bool = False   # count s before the bonus of s' (True in the neural code)
    phi_clip: float | None = None     # clip φ to ±this after each update (0.01 with Q-learning only)
    lirpg_all_entries: bool = False   # (inferred) LIRPG′: full gradient of the MC surrogate, not only φ[s_i,a_i]
    learned_off_episodes: int = 0     # learned term off for episodes < this (code LineK: 5001, i.e. i <= 5000)
    agent: str = "reinforce"          # tabular agent: "reinforce" (main) or "q_learning" (chain)
    q_alpha: float = 0.1              # Q-learning step size
    q_epsilon: float = 0.05           # Q-learning ε-greedy exploration
    hidden: int = 256                 # neural: hidden width of every MLP
    phi_scale: float = 0.1            # neural: R_self = phi_scale·tanh-net(s)[a]
    behaviour_epsilon: float = 0.0    # neural: rollouts use (1-ε)π + ε/|A| (the authors' code: 0.05)

    def __post_init__(self) -> None:
        for name in ("episodes", "eval_every", "eval_episodes", "final_window", "reward_period",
                     "policy_period", "buffer_size", "recent"):
            if getattr(self, name) < 1:
                raise ValueError(f"ExplorsConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.recent > self.buffer_size:
            raise ValueError(f"ExplorsConfig.recent ({self.recent}) must be <= buffer_size ({self.buffer_size})")
        if self.agent not in ("reinforce", "q_learning"):
            raise ValueError(f"ExplorsConfig.agent must be 'reinforce' or 'q_learning', got {self.agent!r}")
        if not 0.0 <= self.behaviour_epsilon <= 1.0:
            raise ValueError(f"ExplorsConfig.behaviour_epsilon must be in [0, 1], got {self.behaviour_epsilon}")

    @classmethod
    def neural(cls, **overrides: object) -> ExplorsConfig:
        """The LineK values of ``code_neural/parameters.py`` (neural REINFORCE, MLP rewards, 5001-episode warm-up)."""
        base = dict(reward_period=20, eta_actor=1e-5, eta_phi=1e-3, eta_critic=5e-3, eta_sors=1e-3,
                    eta_lirpg=1e-3, bonus_count_first=True, learned_off_episodes=5001,
                    behaviour_epsilon=0.05)
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]

    @classmethod
    def q_learning(cls, **overrides: object) -> ExplorsConfig:
        """The tabular Q-learning setting of the authors' code: ε = 0.05, α = 0.1, φ clipped to ±0.01."""
        base: dict[str, object] = dict(agent="q_learning", phi_clip=0.01)
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> ExplorsConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
