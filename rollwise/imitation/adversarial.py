"""Adversarial moment matching (WGAIL-style "MM" of the authors' code, its deep
instantiation).

The game  min_pi max_f  E_{pi}[f(s,a)] - C(f)  is played by
* a discriminator f(s, a) (MLP on concat(s, a), orthogonal init, scalar output) minimising
      C(f) - E_learner[f] + gp_coef * E[(||grad_x f(x~)||_2 - gp_target)^2]
  at random interpolates x~ of learner and expert pairs (target norm 0.4, as in the code), with
  optimistic Adam re-created every outer iteration (the code decays its lr as 8e-3 / k; we keep it
  constant by default, flag ``disc_lr_decay``, see docs/replay_estimation.md);
* a policy player maximising the per-step reward -f(s, a). The code uses SB3 SAC for ~4e5 steps; on a
  CPU budget we use REINFORCE with a per-step baseline on a Gaussian policy (reconstructed).
C(f) is a weighted mean over target pairs: uniform expert pairs for MM, RE weights for RE (:mod:`.deep`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rollwise.imitation.point_mass import NoisyPointMass, rollouts


@dataclass
class AdversarialConfig:
    """Adversarial learner settings (code values in comments; smaller ones fit a CPU budget)."""

    outer_iters: int = 30  # outer iterations (code: 81)
    disc_steps: int = 5  # discriminator steps per outer iteration (code: 1)
    disc_hidden: int = 64  # discriminator width, 2 hidden layers (code: 256)
    disc_lr: float = 8e-3  # lr at k=0 (code: 8e-3)
    disc_lr_decay: bool = False  # lr / k at outer iteration k (code); off: constant lr (stabler here)
    gp_coef: float = 10.0  # gradient-penalty weight (code: 10)
    gp_target: float = 0.4  # gradient-norm target (code: 0.4)
    optimistic: bool = True  # optimistic Adam (code: OAdam) instead of plain Adam
    policy_rollouts: int = 32  # episodes per policy update
    policy_steps: int = 4  # policy updates per outer iteration
    policy_lr: float = 7.3e-4  # Adam lr of the REINFORCE policy player at k=0 (code's SAC: 7.3e-4)
    policy_lr_decay: bool = True  # decay the policy lr linearly to 0 over the outer iterations (as the code)
    init_log_std: float = -1.2  # initial log-std of the Gaussian policy
    normalise_advantages: bool = True  # divide REINFORCE advantages by their std
    buffer_batches: int = 1  # f sees the last k rollout batches (code: SAC's replay buffer; k > 1 was worse here)
    disc_batch: int = 2048  # learner pairs per discriminator step (code: 2048)


def mlp(n_in: int, hidden: int, n_out: int, out_act: nn.Module | None = None) -> nn.Sequential:
    """2 hidden ReLU layers, orthogonal init (as the code's nets)."""
    layers: list[nn.Module] = [nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                               nn.Linear(hidden, n_out)]
    if out_act is not None:
        layers.append(out_act)
    net = nn.Sequential(*layers)
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight)
            nn.init.zeros_(m.bias)
    return net


class OptimisticAdam(torch.optim.Adam):
    """Optimistic Adam (Daskalakis et al. 2018): apply 2 * (new Adam step) - (previous Adam step)."""

    def __init__(self, params, lr: float = 1e-3) -> None:
        super().__init__(params, lr=lr)
        self._previous: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        before = [p.detach().clone() for p in params]
        super().step(closure)
        for p, old in zip(params, before):
            delta = p - old  # this step's Adam update
            prev = self._previous.get(id(p), torch.zeros_like(p))
            p.add_(delta - prev)  # total: old + 2 * delta - prev
            self._previous[id(p)] = delta.clone()


class GaussianPolicy(nn.Module):
    """pi(a|s) = N(tanh-MLP mean(s), exp(log_std)^2); ``mean`` may be copied from a BC net."""

    def __init__(self, mean: nn.Module, act_dim: int, init_log_std: float) -> None:
        super().__init__()
        self.mean = mean
        self.log_std = nn.Parameter(torch.full((act_dim,), init_log_std))

    def log_prob(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) summed over action dims; s (n, ds), a (n, da) -> (n,)."""
        return torch.distributions.Normal(self.mean(s), self.log_std.exp()).log_prob(a).sum(-1)

    def act(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Actions (n, da) for states (n, ds); the mean if ``rng`` is None, else a sample."""
        with torch.no_grad():
            mu = self.mean(torch.as_tensor(x, dtype=torch.float32)).numpy().astype(float)
            if rng is None:
                return mu
            return mu + float(self.log_std.exp()[0]) * rng.standard_normal(mu.shape)


def gradient_penalty(f: nn.Module, learner: torch.Tensor, expert: torch.Tensor, target: float,
                     gen: torch.Generator) -> torch.Tensor:
    """E[(||grad f(x~)|| - target)^2] at x~ = u * learner + (1 - u) * expert; inputs (n, ds + da)."""
    n = min(len(learner), len(expert))
    li = torch.randint(len(learner), (n,), generator=gen)
    ei = torch.randint(len(expert), (n,), generator=gen)
    u = torch.rand(n, 1, generator=gen)
    x = (u * learner[li] + (1 - u) * expert[ei]).requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
    return ((grad.norm(dim=-1) - target) ** 2).mean()


def discriminator_step(f: nn.Module, opt: torch.optim.Optimizer, learner: torch.Tensor, target: torch.Tensor,
                       weights: torch.Tensor, expert: torch.Tensor, cfg: AdversarialConfig,
                       gen: torch.Generator) -> float:
    """One step on C(f) - E_learner f + gp; target (m, d) with weights (m,) summing to 1. Returns the loss."""
    cost = (weights * f(target).squeeze(-1)).sum()
    loss = cost - f(learner).mean() + cfg.gp_coef * gradient_penalty(f, learner, expert, cfg.gp_target, gen)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


def reinforce_step(policy: GaussianPolicy, opt: torch.optim.Optimizer, f: nn.Module, env: NoisyPointMass,
                   n: int, rng: np.random.Generator, normalise: bool = True) -> tuple[torch.Tensor, float]:
    """One REINFORCE update on reward -f(s, a) from n fresh episodes.

    Returns the learner's (n*H, ds+da) pairs (actions clipped to [-1, 1], as the env plays them) and
    the mean true return of the episodes.
    """
    states, actions, ret = rollouts(env, lambda x: policy.act(x, rng), n, rng)
    s = torch.as_tensor(states, dtype=torch.float32)  # (n, H, ds)
    a = torch.as_tensor(actions, dtype=torch.float32)  # (n, H, da)
    pairs = torch.cat([s, a.clamp(-1, 1)], -1)
    with torch.no_grad():
        r = -f(pairs).squeeze(-1)  # (n, H)
        to_go = r.flip(1).cumsum(1).flip(1)
        adv = to_go - to_go.mean(0, keepdim=True)
        if normalise:
            adv = adv / (adv.std() + 1e-8)
    logp = policy.log_prob(s.reshape(-1, s.shape[-1]), a.reshape(-1, a.shape[-1])).reshape(adv.shape)
    loss = -(logp * adv).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return pairs.reshape(-1, pairs.shape[-1]), float(ret.mean())


def adversarial_moment_matching(env: NoisyPointMass, policy: GaussianPolicy, target: torch.Tensor,
                                weights: torch.Tensor, expert: torch.Tensor, cfg: AdversarialConfig,
                                seed: int) -> list[float]:
    """Run the game; ``policy`` is trained in place. target (m, ds+da), weights (m,), expert (k, ds+da).

    Returns the mean training-episode return per outer iteration.
    """
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    f = mlp(target.shape[-1], cfg.disc_hidden, 1)
    pi_opt = torch.optim.Adam(policy.parameters(), lr=cfg.policy_lr)
    history: list[float] = []
    buffer: list[torch.Tensor] = []
    for k in range(cfg.outer_iters):
        if cfg.policy_lr_decay:
            for group in pi_opt.param_groups:
                group["lr"] = cfg.policy_lr * (1 - k / cfg.outer_iters)
        returns = []
        for _ in range(cfg.policy_steps):  # the policy player's (approximate) best response to -f
            learner, ret = reinforce_step(policy, pi_opt, f, env, cfg.policy_rollouts, rng, cfg.normalise_advantages)
            buffer, returns = (buffer + [learner])[-cfg.buffer_batches:], returns + [ret]
        pool = torch.cat(buffer)
        lr = cfg.disc_lr / max(k, 1) if cfg.disc_lr_decay else cfg.disc_lr
        opt = OptimisticAdam(f.parameters(), lr=lr) if cfg.optimistic else torch.optim.Adam(f.parameters(), lr=lr)
        for _ in range(cfg.disc_steps):
            batch = pool[torch.randint(len(pool), (min(cfg.disc_batch, len(pool)),), generator=gen)]
            discriminator_step(f, opt, batch, target, weights, expert, cfg, gen)
        history.append(float(np.mean(returns)))
    return history
