"""Our tabular bandit check of UCPO: GRPO vs UCPO-iq on one prompt with an enumerable correct set.

One prompt, a softmax over K = 60 arms of which C = 15 are correct, initial logits ~ N(0, 1). Each step
draws 16 groups of G = 8 arms, computes advantages with the library's estimators (the sequence score of an
arm is its log-probability) and takes an SGD step of size ``lr`` on the logits of the token-mean policy
gradient loss -mean_i A_i log pi(a_i). numpy/torch only; about a second per run. Used by
``benchmarks/diversity.py`` and by ``tests/rlvr/test_ucpo.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rollwise.rlvr.advantages import grpo_advantages, ucpo_advantages


@dataclass(frozen=True)
class BanditConfig:
    arms: int = 60  # K, arms of the softmax policy
    correct: int = 15  # C, arms rewarded 1 (the first C of a seeded permutation)
    group: int = 8  # G, rollouts per group
    groups: int = 16  # groups per step
    lr: float = 0.1  # SGD step size on the logits
    steps: int = 600  # SGD steps
    draws: int = 64  # n of the expected distinct-correct count


def bandit_metrics(logits: np.ndarray, correct: np.ndarray, draws: int) -> dict[str, float]:
    """Accuracy pi(C), normalised entropy of pi_C and expected distinct correct arms in ``draws`` samples."""
    p = np.exp(logits - logits.max())
    p /= p.sum()
    pc = p[correct]
    acc = float(pc.sum())
    cond = pc / acc
    ent = float(-(cond * np.log(np.clip(cond, 1e-300, None))).sum())
    return {"accuracy": acc, "h_norm": ent / float(np.log(correct.sum())),
            "distinct": float((1.0 - (1.0 - pc) ** draws).sum())}


def run_bandit(tau: float | None, seed: int, cfg: BanditConfig = BanditConfig()) -> dict[str, float]:
    """Train the bandit with GRPO (``tau=None``) or UCPO-iq with ``tau``; metrics at the last step."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=cfg.arms)
    correct = np.zeros(cfg.arms, dtype=bool)
    correct[rng.permutation(cfg.arms)[: cfg.correct]] = True
    group_ids = torch.arange(cfg.groups).repeat_interleave(cfg.group)
    mask = torch.ones(cfg.groups * cfg.group, 1)
    for _ in range(cfg.steps):
        p = np.exp(logits - logits.max())
        p /= p.sum()
        arms = rng.choice(cfg.arms, size=cfg.groups * cfg.group, p=p)
        rewards = torch.tensor(correct[arms], dtype=torch.float64)
        if tau is None:
            adv = grpo_advantages(rewards, group_ids, mask.double())
        else:
            old_lp = torch.tensor(np.log(p[arms]), dtype=torch.float64).unsqueeze(-1)
            adv = ucpo_advantages(rewards, old_lp, mask.double(), group_ids, tau=tau)
        a = adv[:, 0].numpy()
        # d/dz of mean_i A_i log pi(a_i) = mean_i A_i (onehot(a_i) - p)
        grad = np.bincount(arms, weights=a, minlength=cfg.arms) / len(arms) - a.mean() * p
        logits = logits + cfg.lr * grad
    return bandit_metrics(logits, correct, cfg.draws)


def bandit_table(taus: list[float | None], seeds: list[int], cfg: BanditConfig = BanditConfig()
                 ) -> dict[str, dict[str, list[float]]]:
    """``{method: {metric: [value per seed]}}`` for GRPO (``None``) and each UCPO tau."""
    out: dict[str, dict[str, list[float]]] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors of 128 elements: extra threads only spin (20x slower measured)
    try:
        for tau in taus:
            name = "GRPO" if tau is None else f"UCPO tau={tau:g}"
            runs = [run_bandit(tau, s, cfg) for s in seeds]
            out[name] = {k: [r[k] for r in runs] for k in runs[0]}
    finally:
        torch.set_num_threads(threads)
    return out
