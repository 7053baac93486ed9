"""Function-approximation replay estimation, as the authors' code ``gkswamy98/replay_est`` instantiates it.

1. D1 = the first ``n_d1`` demos; an ensemble of E BC regressors is trained on D1 (differ by init).
2. Confidence per state: alpha(s) = sigmoid((mu - delta(s)) / beta), delta(s) = ||max_i a_i(s) -
   min_i a_i(s)||_2, the L2 norm of the per-dimension spread of the E predicted actions.
3. D3 = rollouts of the ensemble (mean, best or worst member) with deterministic actions in the noisy
   simulator (the code uses the worst member, which looks unintentional).
4. RE cost C_RE(f) = [mean_{D3} w f + mean_{D2} (1 - w) f] / Z, with w = alpha(s) per state (the
   code) or the prefix product prod_{tau<=t} alpha(s_tau) (inferred), Z normalising.
5. Any moment matcher fits this target; here the adversarial learner of :mod:`.adversarial`.
BC (on all N demos) and MM (the same adversarial learner on plain expert pairs) are the baselines.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from rollwise.imitation.adversarial import AdversarialConfig, GaussianPolicy, adversarial_moment_matching, mlp
from rollwise.imitation.point_mass import NoisyPointMass, PointMassConfig, rollouts

REPLAY_MEMBERS = ("mean", "best", "worst")


@dataclass
class DeepConfig:
    """Deep RE settings (code values in comments)."""

    n_demos: int = 6  # N expert trajectories (code: 6, 12, 18)
    n_d1: int = 2  # D1 = the first n_d1 demos (code: 2)
    d2_contains_d1: bool = False  # D2 = all N demos (code) instead of the disjoint rest (theory)
    ensemble_size: int = 5  # E BC members (code: 5)
    bc_hidden: int = 64  # BC width, 2 hidden layers (code: 256)
    bc_steps: int = 1500  # BC gradient steps (code: 1e5)
    bc_lr: float = 3e-3  # BC Adam lr (code: 3e-4)
    bc_batch: int = 32  # BC batch size (code: 32)
    conf_mu: float = 0.35  # alpha's threshold mu on the ensemble spread (code: 0.35)
    conf_beta: float = 0.1  # alpha's temperature beta (code: 0.1)
    n_replay_rollouts: int = 100  # |D3| rollouts (code: 100)
    replay_member: str = "mean"  # which ensemble policy makes D3: mean, best or worst (code: worst)
    prefix_weighting: bool = False  # w_t = prod_{tau<=t} alpha(s_tau) (inferred) instead of alpha(s_t)
    init_from_bc: bool = True  # start the policy player from BC on all demos (ours; code: SAC from scratch)
    eval_episodes: int = 50  # evaluation episodes, same noise for every method
    env: PointMassConfig = field(default_factory=PointMassConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)

    def __post_init__(self) -> None:
        if self.replay_member not in REPLAY_MEMBERS:
            raise ValueError(f"DeepConfig.replay_member={self.replay_member!r}; valid: {', '.join(REPLAY_MEMBERS)}")
        if not 1 <= self.n_d1 < self.n_demos:
            raise ValueError(f"DeepConfig.n_d1={self.n_d1} must be in [1, n_demos={self.n_demos})")


def train_bc(states: np.ndarray, actions: np.ndarray, cfg: DeepConfig, seed: int) -> nn.Module:
    """MSE regression of actions (n, da) on states (n, ds); a tanh-output MLP (the code's BC)."""
    torch.manual_seed(seed)
    net = mlp(states.shape[-1], cfg.bc_hidden, actions.shape[-1], nn.Tanh())
    opt = torch.optim.Adam(net.parameters(), lr=cfg.bc_lr)
    s = torch.as_tensor(states, dtype=torch.float32)
    a = torch.as_tensor(np.clip(actions, -1, 1), dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(cfg.bc_steps):
        idx = torch.randint(len(s), (cfg.bc_batch,), generator=gen)
        loss = ((net(s[idx]) - a[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def ensemble_actions(ensemble: list[nn.Module], states: np.ndarray) -> np.ndarray:
    """Predicted actions of every member, (E, n, da) for states (n, ds)."""
    with torch.no_grad():
        s = torch.as_tensor(states, dtype=torch.float32)
        return np.stack([m(s).numpy().astype(float) for m in ensemble])


def confidence(ensemble: list[nn.Module], states: np.ndarray, mu: float, beta: float) -> np.ndarray:
    """alpha(s) = sigmoid((mu - ||ptp_i a_i(s)||_2) / beta), shape (n,) (step 2 above)."""
    preds = ensemble_actions(ensemble, states)
    spread = np.linalg.norm(preds.max(0) - preds.min(0), axis=-1)
    return 1.0 / (1.0 + np.exp(-(mu - spread) / beta))


def replay_weights(alpha_d3: np.ndarray, alpha_d2: np.ndarray, prefix: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair weights of the RE target from confidences (n3, H) and (n2, H) (step 4 above).

    w3 = c / (|D3 pairs| Z), w2 = (1 - c) / (|D2 pairs| Z), with c = alpha or its running product
    along the episode, and Z = mean_{D3} c + mean_{D2} (1 - c); together the weights sum to 1.
    """
    c3 = np.cumprod(alpha_d3, axis=1) if prefix else alpha_d3
    c2 = np.cumprod(alpha_d2, axis=1) if prefix else alpha_d2
    z = c3.mean() + (1 - c2).mean()
    return c3 / (c3.size * z), (1 - c2) / (c2.size * z)


def pairs(states: np.ndarray, actions: np.ndarray) -> torch.Tensor:
    """Flatten (n, H, ds) states and (n, H, da) actions into (n*H, ds+da) pairs, actions clipped."""
    x = np.concatenate([states, np.clip(actions, -1, 1)], -1)
    return torch.as_tensor(x.reshape(-1, x.shape[-1]), dtype=torch.float32)


def evaluate(env: NoisyPointMass, act, episodes: int, seed: int) -> float:
    """Mean return of deterministic ``act`` over episodes with a fixed noise seed (same for all methods)."""
    return float(rollouts(env, act, episodes, np.random.default_rng(10_000 + seed))[2].mean())


def _member_policy(ensemble: list[nn.Module], env: NoisyPointMass, cfg: DeepConfig, seed: int):
    if cfg.replay_member == "mean":
        return lambda x: ensemble_actions(ensemble, x).mean(0)
    scores = [evaluate(env, lambda x, m=m: ensemble_actions([m], x)[0], cfg.eval_episodes, seed + 1)
              for m in ensemble]
    pick = ensemble[int(np.argmax(scores) if cfg.replay_member == "best" else np.argmin(scores))]
    return lambda x: ensemble_actions([pick], x)[0]


def run_deep(cfg: DeepConfig | None = None, seed: int = 0) -> dict[str, float]:
    """BC, MM and RE on the noisy point mass; returns evaluation returns and weight diagnostics."""
    cfg = cfg or DeepConfig()
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = NoisyPointMass(cfg.env)
    demo_s, demo_a, demo_ret = rollouts(env, env.expert_action, cfg.n_demos, rng)
    d1 = slice(0, cfg.n_d1)
    d2 = slice(0, cfg.n_demos) if cfg.d2_contains_d1 else slice(cfg.n_d1, cfg.n_demos)
    flat = (demo_s.reshape(-1, demo_s.shape[-1]), demo_a.reshape(-1, demo_a.shape[-1]))

    bc = train_bc(*flat, cfg, seed)
    ensemble = [train_bc(demo_s[d1].reshape(-1, 1), demo_a[d1].reshape(-1, 1), cfg, seed + 1 + i)
                for i in range(cfg.ensemble_size)]
    d3_s, d3_a, _ = rollouts(env, _member_policy(ensemble, env, cfg, seed), cfg.n_replay_rollouts, rng)
    n3, H = d3_s.shape[:2]
    alpha_d3 = confidence(ensemble, d3_s.reshape(n3 * H, -1), cfg.conf_mu, cfg.conf_beta).reshape(n3, H)
    n2 = demo_s[d2].shape[0]
    alpha_d2 = confidence(ensemble, demo_s[d2].reshape(n2 * H, -1), cfg.conf_mu, cfg.conf_beta).reshape(n2, H)
    w3, w2 = replay_weights(alpha_d3, alpha_d2, cfg.prefix_weighting)

    expert = pairs(demo_s, demo_a)
    re_target = torch.cat([pairs(d3_s, d3_a), pairs(demo_s[d2], demo_a[d2])])
    re_weights = torch.as_tensor(np.concatenate([w3.ravel(), w2.ravel()]), dtype=torch.float32)
    mm_weights = torch.full((len(expert),), 1.0 / len(expert))

    def learner(target: torch.Tensor, weights: torch.Tensor) -> GaussianPolicy:
        mean = copy.deepcopy(bc) if cfg.init_from_bc else mlp(1, cfg.bc_hidden, 1, nn.Tanh())
        policy = GaussianPolicy(mean, 1, cfg.adversarial.init_log_std)
        adversarial_moment_matching(env, policy, target, weights, expert, cfg.adversarial, seed)
        return policy

    mm, re = learner(expert, mm_weights), learner(re_target, re_weights)
    bc_act = lambda x: ensemble_actions([bc], x)[0]  # noqa: E731
    return {
        "expert_return": evaluate(env, env.expert_action, cfg.eval_episodes, seed),
        "demo_return": float(demo_ret.mean()),
        "bc_return": evaluate(env, bc_act, cfg.eval_episodes, seed),
        "mm_return": evaluate(env, mm.act, cfg.eval_episodes, seed),
        "re_return": evaluate(env, re.act, cfg.eval_episodes, seed),
        "alpha_min": float(min(alpha_d3.min(), alpha_d2.min())),
        "alpha_max": float(max(alpha_d3.max(), alpha_d2.max())),
        "alpha_mean_d3": float(alpha_d3.mean()),
        "alpha_mean_d2": float(alpha_d2.mean()),
        "weight_sum": float(re_weights.sum()),
        "weight_min": float(re_weights.min()),
        "seconds": time.perf_counter() - t0,
    }
