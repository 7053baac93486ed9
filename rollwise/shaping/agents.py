"""Policy-gradient agents trained on the shaped reward (as the authors' code).

* :class:`TabularReinforce`: softmax over θ[s, a] (θ = 0 at start), no baseline,
  θ[s,·] += η·(1/n)·Σ_samples Ĝ_t·(e_{a_t} − π(·|s_t)) with the *current* π (``agent_reinforce_tabular.py``).
* :class:`NeuralReinforce`: MLP obs -> 256 ReLU -> log-softmax, Adam, one step per episode on
  −mean_t(log π(a_t|s_t)·Ĝ_t); rollouts use (1−ε)·π + ε/|A| (``code_neural/agent_reinforce.py``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rollwise.shaping.rollout import Episode


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise stable softmax. ``logits``: (S, A) -> (S, A)."""
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def sample_index(cumulative: np.ndarray, u: float) -> int:
    """Index drawn by inverse CDF: the first a with u < cumulative[a] (clamped to the last index)."""
    n = len(cumulative)
    a = 0
    while a < n - 1 and u >= cumulative[a]:
        a += 1
    return a


def reinforce_gradient(states: np.ndarray, actions: np.ndarray, returns: np.ndarray,
                       policy: np.ndarray) -> np.ndarray:
    """Σ_samples G_t·(e_{a_t} − π(·|s_t)) scattered into (S, A). ``policy``: (S, A) current π."""
    grad = np.zeros_like(policy)
    np.add.at(grad, (states, actions), returns)
    np.add.at(grad, states, -returns[:, None] * policy[states])
    return grad


class TabularReinforce:
    """Tabular softmax REINFORCE with plain SGD."""

    def __init__(self, n_states: int, n_actions: int, lr: float = 0.1):
        self.theta = np.zeros((n_states, n_actions))
        self.lr = lr
        self._refresh()

    def _refresh(self) -> None:
        # A new array each time: rows handed out by act() stay frozen as "π at rollout time".
        self.policy = softmax(self.theta)
        self.cumulative = np.cumsum(self.policy, axis=1)

    def act(self, obs: int, rng: np.random.Generator, explore: bool = True) -> tuple[int, np.ndarray]:
        del explore  # the tabular agent always samples from π
        return sample_index(self.cumulative[obs], rng.random()), self.policy[obs]

    def update(self, episodes: list[Episode]) -> None:
        """θ += η·(1/n)·Σ Ĝ_t (e_{a_t} − π(·|s_t)) over the given (recent) episodes."""
        states = np.concatenate([e.states for e in episodes])
        actions = np.concatenate([e.actions for e in episodes])
        shaped = np.concatenate([e.shaped_returns for e in episodes])
        grad = reinforce_gradient(states, actions, shaped, self.policy)
        self.theta += self.lr * grad / len(states)
        self._refresh()


class TabularQLearning:
    """ε-greedy tabular Q-learning on the shaped reward (chain only in the paper).

    Update: for each given episode, a backward sweep Q[s,a] += α·(r̂ + γ·max_b Q[s',b] − Q[s,a]) (the code
    bootstraps also at the horizon). Policy: (1 − ε)·uniform-over-argmax + ε/|A|, ties within 1e-6.
    """

    def __init__(self, n_states: int, n_actions: int, alpha: float = 0.1, epsilon: float = 0.05,
                 gamma: float = 0.99):
        self.q = np.zeros((n_states, n_actions))
        self.alpha, self.epsilon, self.gamma = alpha, epsilon, gamma
        self._refresh()

    def _refresh(self) -> None:
        greedy = (self.q - self.q.max(axis=1, keepdims=True)) >= -1e-6
        greedy = greedy / greedy.sum(axis=1, keepdims=True)
        self.policy = (1.0 - self.epsilon) * greedy + self.epsilon / self.q.shape[1]
        self.cumulative = np.cumsum(self.policy, axis=1)

    def act(self, obs: int, rng: np.random.Generator, explore: bool = True) -> tuple[int, np.ndarray]:
        del explore  # evaluation also follows the ε-greedy policy, as in the code
        return sample_index(self.cumulative[obs], rng.random()), self.policy[obs]

    def update(self, episodes: list[Episode]) -> None:
        for e in episodes:
            assert e.next_states is not None, "Q-learning needs next states in the episodes"
            for s, a, r, s2 in zip(e.states[::-1], e.actions[::-1], e.shaped[::-1], e.next_states[::-1]):
                self.q[s, a] += self.alpha * (r + self.gamma * self.q[s2].max() - self.q[s, a])
        self._refresh()


def mlp(n_in: int, n_out: int, hidden: int, out: nn.Module | None = None) -> nn.Sequential:
    """Linear(n_in, hidden) -> ReLU -> Linear(hidden, n_out) [-> out]: every network of the neural code."""
    layers: list[nn.Module] = [nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out)]
    if out is not None:
        layers.append(out)
    return nn.Sequential(*layers)


class FrozenMLP:
    """A numpy copy of an :func:`mlp` for fast single-observation forwards during rollouts.

    Refresh it after every optimizer step of the torch network (:meth:`refresh`).
    """

    def __init__(self, net: nn.Sequential):
        self.net = net
        self.refresh()

    def refresh(self) -> None:
        first, last = self.net[0], self.net[2]
        self.w1, self.b1 = first.weight.detach().double().numpy().T.copy(), first.bias.detach().double().numpy().copy()
        self.w2, self.b2 = last.weight.detach().double().numpy().T.copy(), last.bias.detach().double().numpy().copy()

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """Pre-activation output. ``obs``: (obs_dim,) -> (n_out,)."""
        return np.maximum(obs @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2


class NeuralReinforce:
    """REINFORCE with an MLP policy and Adam, one step per episode (LineK)."""

    def __init__(self, obs_dim: int, n_actions: int, lr: float = 1e-5, hidden: int = 256,
                 epsilon: float = 0.05):
        self.net = mlp(obs_dim, n_actions, hidden, nn.LogSoftmax(dim=-1))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.epsilon, self.n_actions = epsilon, n_actions
        self.frozen = FrozenMLP(self.net)

    def probs(self, obs: np.ndarray) -> np.ndarray:
        """π(·|obs) from the numpy copy of the policy. ``obs``: (obs_dim,) -> (A,)."""
        return softmax(self.frozen.logits(obs))

    def act(self, obs: np.ndarray, rng: np.random.Generator, explore: bool = True) -> tuple[int, np.ndarray]:
        p = self.probs(obs)
        behaviour = (1 - self.epsilon) * p + self.epsilon / self.n_actions if explore else p
        return sample_index(np.cumsum(behaviour), rng.random()), p

    def update(self, episodes: list[Episode]) -> None:
        """One Adam step per episode on −mean_t log π(a_t|s_t)·Ĝ_t."""
        for e in episodes:
            logp = self.net(torch.as_tensor(e.states, dtype=torch.float32))
            chosen = logp.gather(1, torch.as_tensor(e.actions).view(-1, 1)).squeeze(1)
            loss = -(chosen * torch.as_tensor(e.shaped_returns, dtype=torch.float32)).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        self.frozen.refresh()


__all__ = ["TabularReinforce", "TabularQLearning", "NeuralReinforce", "FrozenMLP", "mlp", "softmax", "sample_index", "reinforce_gradient"]
