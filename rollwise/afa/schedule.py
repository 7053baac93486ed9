"""The training schedule shared by NM-PPG, GDFS and REINFORCE: temperature stages, epochs, model selection.

Same optimiser, batch size, clipping, number of epochs and validation rule for every trained method, so
comparisons isolate the gradient estimator and the objective.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class ScheduleConfig:
    """Optimiser and temperature schedule (values from AFABench's GDFS code; the epochs from our pilot)."""

    tau_start: float = 1.0  # first temperature stage
    tau_end: float = 0.1  # last temperature stage
    n_stages: int = 5  # geometric temperature stages
    epochs_per_stage: int = 6  # epochs per stage (pilot value; AFABench uses <= 250 with patience 5)
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 128  # minibatch size
    grad_clip: float = 5.0  # gradient-norm clip

    def temperatures(self) -> list[float]:
        """The stage temperatures, geometric from ``tau_start`` to ``tau_end``."""
        if self.n_stages == 1:
            return [self.tau_end]
        return [float(t) for t in np.geomspace(self.tau_start, self.tau_end, self.n_stages)]


def fit(modules: list[nn.Module], loss_fn: Callable[[Tensor, Tensor, float], Tensor],
        score_fn: Callable[[], float], x: Tensor, y: Tensor, cfg: ScheduleConfig) -> list[float]:
    """Minimise ``loss_fn(xb, yb, tau)`` over temperature stages; keep the weights with the best ``score_fn``.

    ``score_fn`` is evaluated after every epoch (deterministic validation rollout, higher is better).
    Returns the validation score history.
    """
    params = [p for m in modules for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    best, best_state, history = -float("inf"), None, []
    for tau in cfg.temperatures():
        for _ in range(cfg.epochs_per_stage):
            for m in modules:
                m.train()
            perm = torch.randperm(x.shape[0])
            for i in range(0, x.shape[0], cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                loss = loss_fn(x[idx], y[idx], tau)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
            for m in modules:
                m.eval()
            score = score_fn()
            history.append(score)
            if score > best:
                best, best_state = score, [copy.deepcopy(m.state_dict()) for m in modules]
    assert best_state is not None
    for m, st in zip(modules, best_state):
        m.load_state_dict(st)
        m.eval()
    return history
