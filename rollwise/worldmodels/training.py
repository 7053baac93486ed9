"""JEPA training with counterfactual (CF) or teacher-forced (TF) targets (the paper's training objectives).

One step (both objectives, any model with ``encode/rollout/online_head/target_head``):

    ctx tokens/actions, future actions ã, target window   <- CF: simulator re-run from s_t under fresh ã
                                                              TF: a fixed logged window and its own actions
    ĥ  = online_head(rollout(encode(ctx), ã))               (online encoder + predictor)
    h⁺ = target.target_head(target.encode(target window))   (EMA copy, no gradient)
    L  = ‖n(ĥ) − n(h⁺)‖²  with n = L2 normalisation (or raw MSE)
    optimizer step; ξ ← τξ + (1−τ)θ
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rollwise.runlog import RunLog, progress_bar
from rollwise.worldmodels import env as spring


class JepaModel(Protocol):
    """What the trainer and the probes need from a world model (UWMJepa, RecurrentJepa)."""

    def encode(self, tokens: Tensor, actions: Tensor) -> Tensor: ...
    def rollout(self, state: Tensor, actions: Tensor) -> Tensor: ...
    def online_head(self, state: Tensor) -> Tensor: ...
    def target_head(self, state: Tensor) -> Tensor: ...
    def features(self, state: Tensor) -> Tensor: ...
    def probe_features(self, state: Tensor) -> Tensor: ...


@dataclass
class TrainConfig:
    """Training recipe; defaults are the paper's recipe A (from its released configs)."""

    objective: str = "cf"  # "cf": counterfactual simulator targets; "tf": teacher-forced on a fixed log
    steps: int = 5000  # optimiser steps (released)
    batch_size: int = 8  # (released)
    lr: float = 3e-4  # (released)
    weight_decay: float = 1e-5  # AdamW [data; optimiser type inferred]
    ema_tau: float = 0.99  # target encoder EMA (released)
    normalize_loss: bool = True  # L2-normalise both sides (BYOL-style); False = the paper-literal raw MSE (our pilot)
    tf_log_size: int = 2000  # trajectories in the fixed teacher-forcing log (reconstructed)
    log_every: int = 100  # metrics.jsonl cadence
    progress: bool = False  # rich progress bar


@dataclass
class TrainResult:
    """A trained online model, its EMA target copy, and the loss curve."""

    model: nn.Module
    target: nn.Module
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0  # wall-clock
    cpu_seconds: float = 0.0  # process CPU time (wall is inflated on a shared box)


def to_long(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).long()


def jepa_loss(pred: Tensor, target: Tensor, normalize: bool) -> Tensor:
    """‖n(ĥ) − n(h⁺)‖² averaged over the batch (paper eq. jepa-loss; n = L2 norm when ``normalize``)."""
    if normalize:
        pred, target = F.normalize(pred, dim=-1), F.normalize(target, dim=-1)
    return (pred - target).pow(2).sum(-1).mean()


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """ξ ← τξ + (1−τ)θ for every parameter."""
    for pt, po in zip(target.parameters(), online.parameters()):
        pt.mul_(tau).add_(po.detach(), alpha=1 - tau)


def make_target(model: nn.Module) -> nn.Module:
    """The EMA target network: a frozen deep copy."""
    target = copy.deepcopy(model)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


def sample_batch(task: spring.SpringConfig, cfg: TrainConfig, rng: np.random.Generator,
                 log: spring.TeacherLog | None) -> tuple[spring.Windows, spring.Windows]:
    """(online window, target window). CF: the target re-simulates the future from s_t under fresh ã and the
    online side gets the same ã. TF: both are the same logged window."""
    if cfg.objective == "cf":
        w = spring.sample_windows(task, rng, cfg.batch_size)
        cf = spring.counterfactual(task, w, rng)
        return cf, cf
    if cfg.objective == "tf":
        assert log is not None
        w = log.batch(rng, cfg.batch_size)
        return w, w
    raise ValueError(f"TrainConfig.objective={cfg.objective!r}; valid: 'cf', 'tf'")


def jepa_step_loss(model: nn.Module, target: nn.Module, task: spring.SpringConfig, online: spring.Windows,
                   tgt: spring.Windows, normalize: bool) -> Tensor:
    """Loss of one batch: predict the target latent at t+K from the context and the future actions."""
    tok, act = spring.context(task, online)
    state = model.rollout(model.encode(to_long(tok), to_long(act)), to_long(spring.future_actions(task, online)))
    pred = model.online_head(state)
    with torch.no_grad():
        tgt_h = target.target_head(target.encode(to_long(tgt.tokens), to_long(tgt.actions)))
    return jepa_loss(pred, tgt_h, normalize)


def train(model: nn.Module, task: spring.SpringConfig, cfg: TrainConfig, seed: int,
          run_log: RunLog | None = None, name: str = "model") -> TrainResult:
    """Train ``model`` in place with the JEPA objective; returns it with its EMA target.

    Deterministic given ``seed`` (the model must already be initialised under a seeded torch RNG).
    """
    rng = np.random.default_rng(seed)
    log = spring.TeacherLog.collect(task, np.random.default_rng(seed + 99_991), cfg.tf_log_size) \
        if cfg.objective == "tf" else None
    target = make_target(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    result = TrainResult(model, target)
    t0, c0 = time.perf_counter(), time.process_time()
    with progress_bar(f"{name} ({cfg.objective})", cfg.steps, disable=not cfg.progress) as bar:
        for step in range(1, cfg.steps + 1):
            online, tgt = sample_batch(task, cfg, rng, log)
            loss = jepa_step_loss(model, target, task, online, tgt, cfg.normalize_loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema_update(target, model, cfg.ema_tau)
            result.losses.append(float(loss.detach()))
            if step % cfg.log_every == 0 or step == cfg.steps:
                recent = float(np.mean(result.losses[-cfg.log_every:]))
                if run_log is not None:
                    run_log.log({"model": name, "step": step, "loss": recent, "seconds": time.perf_counter() - t0})
                bar.update(cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every,
                           info=f"loss {recent:.4f}")
    result.seconds = time.perf_counter() - t0
    result.cpu_seconds = time.process_time() - c0
    return result
