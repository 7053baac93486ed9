"""The self-supervised intrinsic reward R^self_φ and its meta-gradient update, as the
authors' code implements it.

φ ascends the surrogate
    L(φ) = Σ_buffer Σ_t π_old(a_t|s_t)·(Ḡ_t − V̄(s_t))·[R_φ(s_t,a_t) − Σ_b π_old(b|s_t)·R_φ(s_t,b)],
everything but R_φ held constant. Ḡ is the extrinsic return-to-go and V̄ a critic of it, updated right
after φ on the same buffer. Tabular: closed form, summed over the buffer without averaging
(``update_SelfRS`` of the tabular code). That this is a one-step meta-gradient (with a myopic
Q_φ ≈ R_φ, dropping a state-visitation factor) is our derivation, not the paper's. Neural: one Adam step per buffered episode on −mean_t(·) with the
raw tanh output (no 0.1 scale), then one smooth-L1 critic step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from rollwise.shaping.agents import FrozenMLP, mlp
from rollwise.shaping.rollout import Episode, stack


def selfrs_gradient(states: np.ndarray, actions: np.ndarray, probs: np.ndarray, advantages: np.ndarray,
                    n_states: int) -> np.ndarray:
    """∂L/∂φ of the surrogate (module docstring) for a table φ: Σ π(a_t|s_t)·A_t·(e_{a_t} − π(·|s_t)) scattered into (S, A).

    ``states``, ``actions``, ``advantages``: (N,); ``probs``: (N, A), π_old at rollout time.
    """
    w = probs[np.arange(len(actions)), actions] * advantages
    grad = np.zeros((n_states, probs.shape[1]))
    np.add.at(grad, (states, actions), w)
    np.add.at(grad, states, -w[:, None] * probs)
    return grad


class TabularCritic:
    """V̄[s] += η_c·Σ_samples(Ḡ_t − V̄[s_t])·1[s_t = s] / (#samples)."""

    def __init__(self, n_states: int, lr: float = 0.01):
        self.v = np.zeros(n_states)
        self.lr = lr

    def __call__(self, states: np.ndarray) -> np.ndarray:
        return self.v[states]

    def update(self, states: np.ndarray, returns: np.ndarray) -> None:
        delta = np.bincount(states, weights=returns - self.v[states], minlength=len(self.v))
        self.v += self.lr * delta / len(states)


class TabularSelfRS:
    """R^self_φ(s, a) = φ[s, a], φ = 0 at start; meta-gradient update of the meta-gradient (tabular closed form)."""

    def __init__(self, n_states: int, n_actions: int, lr: float = 0.01, critic_lr: float = 0.01,
                 clip: float | None = None):
        self.phi = np.zeros((n_states, n_actions))
        self.critic = TabularCritic(n_states, critic_lr)
        self.lr, self.clip = lr, clip

    def value(self, obs: int, action: int) -> float:
        return float(self.phi[obs, action])

    def update(self, buffer: list[Episode], agent: Any = None) -> None:
        """φ += η_φ·Σ_buffer π_old(a|s)(Ḡ − V̄(s))(e_a − π_old(·|s)); then the critic."""
        del agent
        states, actions, probs, returns = stack(buffer)
        advantages = returns - self.critic(states)
        self.phi += self.lr * selfrs_gradient(states, actions, probs, advantages, len(self.phi))
        if self.clip is not None:
            np.clip(self.phi, -self.clip, self.clip, out=self.phi)
        self.critic.update(states, returns)


class NeuralCritic:
    """MLP critic of the extrinsic return: smooth-L1 regression to Ḡ, Adam, one step per episode."""

    def __init__(self, obs_dim: int, hidden: int = 256, lr: float = 5e-3):
        self.net = mlp(obs_dim, 1, hidden)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net(states).squeeze(-1)

    def update(self, states: torch.Tensor, returns: torch.Tensor) -> None:
        loss = nn.functional.smooth_l1_loss(self.net(states), returns.unsqueeze(1))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


def selfrs_surrogate(out: torch.Tensor, actions: torch.Tensor, probs: torch.Tensor,
                     advantages: torch.Tensor) -> torch.Tensor:
    """Per-sample bracket of the surrogate: π(a|s)·A·[R(s,a) − Σ_b π(b|s) R(s,b)]. ``out``, ``probs``: (T, A) -> (T,)."""
    chosen = out.gather(1, actions.view(-1, 1)).squeeze(1)
    baseline = (probs * out).sum(1)
    return probs.gather(1, actions.view(-1, 1)).squeeze(1) * advantages * (chosen - baseline)


class NeuralSelfRS:
    """R^self = scale·tanh-MLP(s)[a]; Adam step per buffered episode on −mean_t(surrogate)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 256, lr: float = 1e-3,
                 critic_lr: float = 5e-3, scale: float = 0.1):
        self.net = mlp(obs_dim, n_actions, hidden, nn.Tanh())
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.critic = NeuralCritic(obs_dim, hidden, critic_lr)
        self.scale = scale
        self.frozen = FrozenMLP(self.net)

    def value(self, obs: np.ndarray, action: int) -> float:
        return self.scale * float(np.tanh(self.frozen.logits(obs)[action]))

    def update(self, buffer: list[Episode], agent: Any = None) -> None:
        del agent
        for e in buffer:
            states = torch.as_tensor(e.states, dtype=torch.float32)
            returns = torch.as_tensor(e.returns, dtype=torch.float32)
            advantages = returns - self.critic(states)
            surrogate = selfrs_surrogate(self.net(states), torch.as_tensor(e.actions),
                                         torch.as_tensor(e.probs, dtype=torch.float32), advantages)
            loss = -surrogate.mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.critic.update(states, returns)
        self.frozen.refresh()
