"""What EXPLORS is compared against, under the same agent and loop
(the baselines of the authors' code).

* Orig (R̄), ExploB (R̄ + bonus), SelfRS (R̄ + φ, no bonus): subsets of :class:`ShapedReward`.
* SORS′ (SORS keeping R̄): R̄ + R_sors, R_sors trained by a Bradley–Terry loss on buffered trajectory
  pairs ordered by extrinsic return; no update when all buffered returns are equal.
* LIRPG′ (LIRPG without the exact meta-gradient): like SelfRS, but the intrinsic advantage of (s, a) is
  estimated by simulator rollouts from (s, a) and from (s, b ~ π_old). Tabular only, as in the code.

:func:`make_shaper` builds any method by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from rollwise.shaping.agents import FrozenMLP, TabularReinforce, mlp
from rollwise.shaping.config import METHODS, ExplorsConfig
from rollwise.shaping.env import TabularEnv
from rollwise.shaping.explors import ShapedReward, make_bonus, make_explors, make_selfrs
from rollwise.shaping.intrinsic import TabularCritic
from rollwise.shaping.rollout import Episode, stack


def preference_pairs(buffer: list[Episode]) -> list[tuple[int, int]]:
    """All ordered pairs (i, j) with Ḡ_0(τ_i) > Ḡ_0(τ_j); empty when every return is equal."""
    g = [e.extrinsic_return for e in buffer]
    return [(i, j) for i in range(len(g)) for j in range(len(g)) if g[i] > g[j]]


def subsample_pairs(pairs: list[tuple[int, int]], k: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """At most ``k`` pairs, drawn uniformly with replacement when there are more (code behaviour)."""
    if len(pairs) <= k:
        return pairs
    return [pairs[i] for i in rng.choice(len(pairs), size=k)]


def discounted_visits(episode: Episode, shape: tuple[int, int], gamma: float) -> np.ndarray:
    """g[s, a] = Σ_t γ^t 1[(s_t, a_t) = (s, a)], so that Σγ^t φ(s_t,a_t) = <φ, g>. -> ``shape``."""
    g = np.zeros(shape)
    np.add.at(g, (episode.states, episode.actions), gamma ** np.arange(len(episode.actions)))
    return g


class TabularSORS:
    """SORS′ reward table, ascending log σ(R_φ(τ_i) − R_φ(τ_j)) for Ḡ(τ_i) > Ḡ(τ_j)."""

    def __init__(self, n_states: int, n_actions: int, lr: float, n_pairs: int, gamma: float,
                 rng: np.random.Generator):
        self.phi = np.zeros((n_states, n_actions))
        self.lr, self.n_pairs, self.gamma, self.rng = lr, n_pairs, gamma, rng
        self.updates = 0

    def value(self, obs: int, action: int) -> float:
        return float(self.phi[obs, action])

    def update(self, buffer: list[Episode], agent: Any = None) -> None:
        """φ += η·mean_pairs (1 − σ(R_i − R_j))·(g_i − g_j); nothing when no pair is ordered."""
        pairs = subsample_pairs(preference_pairs(buffer), self.n_pairs, self.rng)
        if not pairs:
            return
        visits = {k: discounted_visits(buffer[k], self.phi.shape, self.gamma) for k in {i for p in pairs for i in p}}
        grad = np.zeros_like(self.phi)
        for i, j in pairs:
            margin = float((self.phi * (visits[i] - visits[j])).sum())
            grad += (1.0 - expit(margin)) * (visits[i] - visits[j])
        self.phi += self.lr * grad / len(pairs)
        self.updates += 1


class NeuralSORS:
    """SORS′ with a tanh-MLP (LineK): R = scale·net(s)[a]; one Adam step per pair on the raw output."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int, lr: float, n_pairs: int, gamma: float,
                 rng: np.random.Generator, scale: float = 0.1):
        self.net = mlp(obs_dim, n_actions, hidden, nn.Tanh())
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.n_pairs, self.gamma, self.rng, self.scale = n_pairs, gamma, rng, scale
        self.updates = 0
        self.frozen = FrozenMLP(self.net)

    def value(self, obs: np.ndarray, action: int) -> float:
        return self.scale * float(np.tanh(self.frozen.logits(obs)[action]))

    def _return(self, e: Episode) -> torch.Tensor:
        out = self.net(torch.as_tensor(e.states, dtype=torch.float32))
        chosen = out.gather(1, torch.as_tensor(e.actions).view(-1, 1)).squeeze(1)
        return (self.gamma ** torch.arange(len(chosen), dtype=torch.float32) * chosen).sum()

    def update(self, buffer: list[Episode], agent: Any = None) -> None:
        pairs = subsample_pairs(preference_pairs(buffer), self.n_pairs, self.rng)
        for i, j in pairs:
            margin = self._return(buffer[i]) - self._return(buffer[j])
            loss = -(1.0 - torch.sigmoid(margin.detach())) * margin
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        self.updates += bool(pairs)
        self.frozen.refresh()


def simulate(env: TabularEnv, start_states: np.ndarray, start_actions: np.ndarray, policy_cdf: np.ndarray,
             steps: int, gamma: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """M parallel rollouts from (s_i, a_i) on the env's tables, then following π (row CDFs ``policy_cdf``).

    Returns states, actions (steps, M) int and weights γ^t·1[not yet terminated] (steps, M).
    """
    m = len(start_states)
    s, a = start_states.copy(), start_actions.copy()
    alive, disc = np.ones(m, dtype=bool), 1.0
    S, A, W = np.zeros((steps, m), np.int64), np.zeros((steps, m), np.int64), np.zeros((steps, m))
    for t in range(steps):
        S[t], A[t], W[t] = s, a, disc * alive
        noisy = rng.random(m) < env.noise
        moved = np.where(noisy, rng.integers(env.n_actions, size=m), a)
        s = env.transitions[s, moved]
        alive &= s != env.terminal
        disc *= gamma
        a = np.minimum((rng.random(m)[:, None] >= policy_cdf[s]).sum(1), env.n_actions - 1)
    return S, A, W


def sample_rows(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row of ``probs`` (N, A) -> (N,)."""
    return np.minimum((rng.random(len(probs))[:, None] >= np.cumsum(probs, 1)).sum(1), probs.shape[1] - 1)


class TabularLIRPG:
    """LIRPG′ table: the myopic R_φ of the meta-gradient replaced by Monte-Carlo intrinsic Q estimates.

    For each buffered (s_i, a_i): roll out τ_a from (s_i, a_i) and τ_b from (s_i, b ~ π_old(·|s_i)) for H
    steps under the current policy; Q̂_φ(s,x) = Σ_t γ^t φ(s_t, a_t) along τ_x. The code applies only the
    φ[s_i, a_i] entry of ∇_φ(Q̂(s_i,a_i) − Q̂(s_i,b)), scaled by π_old(a_i|s_i)(Ḡ_i − V̄(s_i))/|buffer|;
    ``all_entries`` applies the whole gradient instead (inferred alternative).
    """

    def __init__(self, env: TabularEnv, lr: float, critic_lr: float, gamma: float, rng: np.random.Generator,
                 all_entries: bool = False):
        self.env = env
        self.phi = np.zeros((env.n_states, env.n_actions))
        self.critic = TabularCritic(env.n_states, critic_lr)
        self.lr, self.gamma, self.rng, self.all_entries = lr, gamma, rng, all_entries

    def value(self, obs: int, action: int) -> float:
        return float(self.phi[obs, action])

    def update(self, buffer: list[Episode], agent: TabularReinforce) -> None:
        states, actions, probs, returns = stack(buffer)
        weight = probs[np.arange(len(actions)), actions] * (returns - self.critic(states))
        h, rng = self.env.horizon, self.rng
        Sa, Aa, Wa = simulate(self.env, states, actions, agent.cumulative, h, self.gamma, rng)
        Sb, Ab, Wb = simulate(self.env, states, sample_rows(probs, rng), agent.cumulative, h, self.gamma, rng)
        grad = np.zeros_like(self.phi)
        if self.all_entries:
            np.add.at(grad, (Sa.ravel(), Aa.ravel()), (Wa * weight).ravel())
            np.add.at(grad, (Sb.ravel(), Ab.ravel()), -(Wb * weight).ravel())
        else:
            hits_a = (Wa * ((Sa == states) & (Aa == actions))).sum(0)
            hits_b = (Wb * ((Sb == states) & (Ab == actions))).sum(0)
            np.add.at(grad, (states, actions), weight * (hits_a - hits_b))
        self.phi += self.lr * grad / len(buffer)
        self.critic.update(states, returns)


def make_shaper(method: str, env: Any, config: ExplorsConfig, rng: np.random.Generator) -> ShapedReward:
    """Build the shaped reward of ``method`` (one of :data:`METHODS`) for ``env``."""
    tabular = hasattr(env, "n_states")
    if method == "orig":
        return ShapedReward(env)
    if method == "explob":
        return ShapedReward(env, bonus=make_bonus(env, config))
    if method == "selfrs":
        return ShapedReward(env, learned=make_selfrs(env, config))
    if method == "explors":
        return make_explors(env, config)
    if method == "sors":
        learned: Any = (TabularSORS(env.n_states, env.n_actions, config.eta_sors, config.sors_pairs, config.gamma, rng)
                        if tabular else
                        NeuralSORS(env.obs_dim, env.n_actions, config.hidden, config.eta_sors, config.sors_pairs,
                                   config.gamma, rng, config.phi_scale))
        return ShapedReward(env, learned=learned)
    if method == "lirpg":
        if not tabular:
            raise ValueError("LIRPG' needs simulator resets and is tabular only (as in the authors' code)")
        return ShapedReward(env, learned=TabularLIRPG(env, config.eta_lirpg, config.eta_critic, config.gamma, rng,
                                                      config.lirpg_all_entries))
    raise ValueError(f"unknown shaping method {method!r}; valid: {', '.join(METHODS)}")
