"""The partially observed spring task of UWM-JEPA (Radha & Goktas 2026, arXiv 2605.25313).

A driven, lightly damped 1-D spring with state (x, v). Only a coarse position token is seen, every third
step; the velocity is hidden. Five discrete actions a ∈ {−2, −1, 0, +1, +2} push the cart. The label is
``y = 1[v_{t+K} > 0]`` with K = 5, and the observation at ``t+K`` is masked.

Indexing (reconstructed: the paper does not give it): a window has ``T = context_len + horizon`` steps (0..T−1); tokens
``o_0..o_{T−1}``, actions ``a_0..a_{T−2}`` with ``a_τ`` applied between ``τ`` and ``τ+1``. The "current" time
is ``t = context_len − 1``; the future actions are ``a_t..a_{t+K−1}`` and the label reads ``v_{t+K}``.
Action *indices* 0..4 stand for the symbols ``a = index − 2``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

#: Action symbols; index ``i`` means ``ACTION_VALUES[i]``.
ACTION_VALUES = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
N_ACTIONS = 5
NO_ACTION = 2  # index of a = 0
CONDITIONS = ("correct", "no-action", "shuffled", "wrong", "reversed", "negated")


@dataclass(frozen=True)
class SpringConfig:
    """Constants of the spring task: "released" where the paper's released configs give them, else reconstructed."""

    dt: float = 0.1  # integration step (reconstructed)
    omega: float = 1.0  # spring frequency (reconstructed)
    gamma: float = 0.1  # damping (reconstructed)
    action_strength: float = 1.5  # α, force per action unit (released)
    noise_std: float = 0.02  # σ, process noise on v per step (reconstructed)
    init_range: float = 1.5  # x0, v0 ~ U(−r, r) before burn-in (reconstructed)
    burn_in: int = 20  # random-action steps before the window starts (reconstructed)
    n_bins: int = 16  # position tokens; token n_bins is MASK (vocab_size = 17) (released)
    x_range: float = 2.5  # bins split [−x_range, x_range] evenly, clipped at the edges (reconstructed)
    obs_stride: int = 3  # a token is visible when τ mod stride == 0 (released)
    context_len: int = 15  # observed steps 0..t (released)
    horizon: int = 5  # K (released)

    @property
    def mask_token(self) -> int:
        return self.n_bins

    @property
    def vocab_size(self) -> int:
        return self.n_bins + 1

    @property
    def t(self) -> int:
        """Index of the current time step (last context step)."""
        return self.context_len - 1

    @property
    def length(self) -> int:
        """Window length T = context_len + horizon."""
        return self.context_len + self.horizon


@dataclass
class Windows:
    """A batch of windows. tokens (B, T) int64; actions (B, T−1) int64 indices; x, v (B, T) float64."""

    tokens: np.ndarray
    actions: np.ndarray
    x: np.ndarray
    v: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        """(B,) int64: the indicator 1[v_{T−1} > 0] (v at t+K)."""
        return (self.v[:, -1] > 0).astype(np.int64)

    def __len__(self) -> int:
        return self.tokens.shape[0]


def step(cfg: SpringConfig, x: np.ndarray, v: np.ndarray, a: np.ndarray, eps: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray]:
    """One semi-implicit Euler step (reconstructed integrator). x, v, a (action values), eps: (B,)."""
    v = v + cfg.dt * (-cfg.omega**2 * x - cfg.gamma * v + cfg.action_strength * a) + cfg.noise_std * eps
    return x + cfg.dt * v, v


def simulate(cfg: SpringConfig, x0: np.ndarray, v0: np.ndarray, actions: np.ndarray,
             rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """Roll the spring from (x0, v0) under action indices (B, n); noise-free when ``rng`` is None.

    Returns x, v of shape (B, n+1), including the start state.
    """
    b, n = actions.shape
    xs, vs = [x0.astype(np.float64)], [v0.astype(np.float64)]
    for k in range(n):
        eps = rng.standard_normal(b) if rng is not None else np.zeros(b)
        x, v = step(cfg, xs[-1], vs[-1], ACTION_VALUES[actions[:, k]], eps)
        xs.append(x)
        vs.append(v)
    return np.stack(xs, 1), np.stack(vs, 1)


def tokenize(cfg: SpringConfig, x: np.ndarray) -> np.ndarray:
    """Position bins with stride masking; the last step (t+K) is always MASK. x (B, T) -> (B, T) int64."""
    frac = (x + cfg.x_range) / (2 * cfg.x_range)
    tokens = np.clip(np.floor(frac * cfg.n_bins), 0, cfg.n_bins - 1).astype(np.int64)
    visible = (np.arange(x.shape[1]) % cfg.obs_stride) == 0
    tokens[:, ~visible] = cfg.mask_token
    tokens[:, -1] = cfg.mask_token
    return tokens


def sample_windows(cfg: SpringConfig, rng: np.random.Generator, n: int) -> Windows:
    """Draw ``n`` fresh windows: uniform start, burn-in under random actions, then T steps (iid actions)."""
    x0 = rng.uniform(-cfg.init_range, cfg.init_range, n)
    v0 = rng.uniform(-cfg.init_range, cfg.init_range, n)
    burn = rng.integers(0, N_ACTIONS, (n, cfg.burn_in))
    xb, vb = simulate(cfg, x0, v0, burn, rng)
    actions = rng.integers(0, N_ACTIONS, (n, cfg.length - 1))
    x, v = simulate(cfg, xb[:, -1], vb[:, -1], actions, rng)
    return Windows(tokenize(cfg, x), actions, x, v)


def counterfactual(cfg: SpringConfig, w: Windows, rng: np.random.Generator,
                   future: np.ndarray | None = None) -> Windows:
    """CF target sample (paper eq. cf-target): keep the context, re-simulate from the simulator state s_t.

    Fresh iid future actions ã (B, K) unless ``future`` is given; fresh noise; re-tokenised with the
    same masks and spliced after the real context.
    """
    t = cfg.t
    if future is None:
        future = rng.integers(0, N_ACTIONS, (len(w), cfg.length - 1 - t))
    xf, vf = simulate(cfg, w.x[:, t], w.v[:, t], future, rng)
    x = np.concatenate([w.x[:, :t], xf], 1)
    v = np.concatenate([w.v[:, :t], vf], 1)
    actions = np.concatenate([w.actions[:, :t], future], 1)
    return Windows(tokenize(cfg, x), actions, x, v)


def context(cfg: SpringConfig, w: Windows) -> tuple[np.ndarray, np.ndarray]:
    """Context the online encoder sees: tokens o_0..o_t (B, t+1) and actions a_0..a_{t−1} (B, t)."""
    return w.tokens[:, : cfg.t + 1], w.actions[:, : cfg.t]


def future_actions(cfg: SpringConfig, w: Windows) -> np.ndarray:
    """The true future actions a_t..a_{T−2}: (B, T−1−t)."""
    return w.actions[:, cfg.t:]


def condition_actions(cfg: SpringConfig, w: Windows, condition: str, rng: np.random.Generator) -> np.ndarray:
    """Future actions fed to the predictor under a test-time condition (the paper's action
    conditions); (B, K) indices.

    correct: true; no-action: all a=0; shuffled: another example's sequence (cross-example permutation);
    wrong: fresh iid; reversed: time-reversed; negated: −a. The label always comes from the true future.
    """
    a = future_actions(cfg, w)
    if condition == "correct":
        return a.copy()
    if condition == "no-action":
        return np.full_like(a, NO_ACTION)
    if condition == "shuffled":
        return a[rng.permutation(len(a))]
    if condition == "wrong":
        return rng.integers(0, N_ACTIONS, a.shape)
    if condition == "reversed":
        return a[:, ::-1].copy()
    if condition == "negated":
        return (N_ACTIONS - 1) - a
    raise ValueError(f"unknown action condition {condition!r}; valid: {', '.join(CONDITIONS)}")


def oracle_accuracy(cfg: SpringConfig, w: Windows, actions: np.ndarray) -> float:
    """Noise-free oracle: from the exact (x_t, v_t), simulate ``actions`` (B, K) and predict sign(v_{t+K})."""
    _, v = simulate(cfg, w.x[:, cfg.t], w.v[:, cfg.t], actions, None)
    return float(((v[:, -1] > 0).astype(np.int64) == w.labels).mean())


def with_horizon(cfg: SpringConfig, horizon: int) -> SpringConfig:
    """The same task with a longer future (for blind-rollout retention at k up to 20)."""
    return replace(cfg, horizon=horizon)


@dataclass
class TeacherLog:
    """A fixed logged dataset for the teacher-forced objective (reconstructed): windows with fixed actions."""

    windows: Windows

    @classmethod
    def collect(cls, cfg: SpringConfig, rng: np.random.Generator, n: int) -> TeacherLog:
        return cls(sample_windows(cfg, rng, n))

    def batch(self, rng: np.random.Generator, n: int) -> Windows:
        idx = rng.integers(0, len(self.windows), n)
        w = self.windows
        return Windows(w.tokens[idx], w.actions[idx], w.x[idx], w.v[idx])
