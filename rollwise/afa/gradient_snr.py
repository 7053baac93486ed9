"""Gradient signal-to-noise ratio of policy-gradient estimators at initialisation (acceptance row AC5 of ``rollwise repro nm-ppg``).

SNR = ||mean g|| / sqrt(E ||g - mean g||^2) over repeated minibatch estimates g of the policy gradient.
Both estimators see the same initial policy, the same pretrained predictor and the same minibatches; the
entropy bonus is left out (beta = 0) so only the loss-gradient estimator is compared; dropout is off.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Literal

import torch
from torch import Tensor, nn

from rollwise.afa.baselines import reinforce_terms
from rollwise.afa.data import AFAData
from rollwise.afa.env import AcquisitionEnv
from rollwise.afa.nm_ppg import NMPPGConfig, make_policy, relaxed_rollout


def snr(grads: Tensor) -> float:
    """``grads: (R, P)`` repeated flat gradient estimates -> ||mean|| / sqrt(mean ||g - mean||^2)."""
    mean = grads.mean(0)
    noise = ((grads - mean) ** 2).sum(1).mean().sqrt()
    return float(mean.norm() / noise.clamp_min(1e-30))


def policy_gradient_estimates(data: AFAData, predictor: nn.Module, cfg: NMPPGConfig,
                              estimator: Literal["pathwise", "score_function"], n_estimates: int = 64,
                              batch_size: int = 128, tau: float = 1.0, seed: int = 0,
                              fixed_batch: bool = False) -> Tensor:
    """``(n_estimates, P)`` flat gradients of the policy parameters at initialisation.

    A fresh random minibatch per estimate, or with ``fixed_batch`` one minibatch for all estimates (then
    only the estimator's own sampling noise - Gumbel or categorical - is measured).
    """
    env = AcquisitionEnv(data)
    cfg0 = dataclasses.replace(cfg, entropy=0.0)
    torch.manual_seed(seed)
    pol = make_policy(data, cfg0).eval()
    f = copy.deepcopy(predictor).eval()
    params = list(pol.parameters())
    x, y = data.x["train"], data.y["train"]
    gen = torch.Generator().manual_seed(seed + 1)
    out = []
    idx = torch.randint(0, x.shape[0], (batch_size,), generator=gen)
    for _ in range(n_estimates):
        if not fixed_batch:
            idx = torch.randint(0, x.shape[0], (batch_size,), generator=gen)
        if estimator == "pathwise":
            loss = relaxed_rollout(env, pol, f, x[idx], y[idx], tau, cfg0).loss
        else:
            loss = reinforce_terms(env, pol, f, x[idx], y[idx], cfg0)[0]
        grads = torch.autograd.grad(loss, params)
        out.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(out)
