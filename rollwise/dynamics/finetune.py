"""Windowed evidence fine-tuning from the ITF model, and the continued-ITF control. The paper
(arXiv 2604.25904) reports the effect (held-out evidence up, dynamics QoIs possibly worse); the protocol is
reconstructed: fit sigma_x with theta frozen (so the "before" model is scored at its own best noise
level), then maximise the mean window evidence (1/W) l_W over theta and sigma_x with Adam on random
training windows. The control continues plain ITF (RAdam, same lr and number of updates) and refits
sigma_x before every scoring. Both are scored on the same fixed held-out windows (test series plus
fixed noise) and by the QoIs of the deterministic free run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from rollwise.dynamics.alrnn import ALRNN, ALRNNParams, initial_state
from rollwise.dynamics.measures import max_lyapunov
from rollwise.dynamics.switching import (
    SwitchingConfig,
    fit_log_sigma,
    leaf_logliks,
    mean_evidence,
    noisy_windows,
)
from rollwise.dynamics.teacher_forcing import ITFConfig, evaluate, itf_updates


@dataclass(frozen=True)
class FinetuneConfig:
    """Evidence fine-tuning and its control (reconstructed; defaults chosen by our pilot implementation)."""

    steps: int = 400  # optimizer steps for both runs
    lr: float = 3e-5  # Adam (evidence) and RAdam (control) learning rate
    batch_windows: int = 16  # training windows per evidence step
    eval_every: int = 50  # steps between scorings (held-out evidence, entropy, QoIs)
    n_heldout: int = 256  # fixed held-out windows of the noisy test series
    n_fit: int = 256  # fixed training windows used to fit sigma_x
    heldout_seed: int = 7  # RNG seed of the held-out windows and their noise
    fit_seed: int = 8  # RNG seed of the sigma_x fitting windows
    train_seed: int = 9  # RNG seed of the training windows / batches
    n_gen: int = 100_000  # free-run length for D_stsp
    n_dh: int = 10_000  # series length for D_H
    transient: int = 1000  # discarded free-run steps
    lyap_steps: int = 20_000  # steps for the max Lyapunov exponent


@dataclass
class FinetuneRun:
    """History (one dict per scoring), final parameters, final sigma_x and final free run (n_dh, N)."""

    name: str
    history: list[dict[str, float]] = field(default_factory=list)
    final: ALRNNParams | None = None
    log_sigma: float = math.nan
    final_run: np.ndarray | None = None


class Scorer:
    """Scores a model on the fixed held-out windows and by its free-run QoIs."""

    def __init__(self, train: np.ndarray, test: np.ndarray, sw: SwitchingConfig, cfg: FinetuneConfig):
        self.test, self.sw, self.cfg = test, sw, cfg
        self.held = noisy_windows(test, cfg.n_heldout, sw.window, sw.noise, cfg.heldout_seed)
        self.fit = noisy_windows(train, cfg.n_fit, sw.window, sw.noise, cfg.fit_seed)

    def fit_sigma(self, p: ALRNNParams) -> float:
        return fit_log_sigma(p.to(torch.float64), *self.fit, self.sw)

    def __call__(self, step: int, p: ALRNNParams, log_sigma: float) -> tuple[dict[str, float], np.ndarray]:
        p64 = p.to(torch.float64)
        ev, ent = mean_evidence(p64, *self.held, self.sw.window, self.sw.kappa, log_sigma)
        qoi, gen = evaluate(p64, self.test, self.cfg.n_gen, self.cfg.n_dh, self.cfg.transient)
        lyap = max_lyapunov(p64.numpy(), self.test[0], p.n_pwl, self.cfg.lyap_steps, self.cfg.transient)
        rec = {"step": step, "heldout_evidence": ev, "heldout_entropy": ent, "sigma_x": math.exp(log_sigma),
               "d_stsp": qoi.d_stsp, "d_h": qoi.d_h, "lyapunov": lyap}
        return rec, gen[: self.cfg.n_dh]


def evidence_finetune(p0: ALRNNParams, train: np.ndarray, scorer: Scorer, cfg: FinetuneConfig,
                      log: Callable[[dict], None] | None = None) -> FinetuneRun:
    """Spec 2.5: maximise (1/W) mean_windows l_W(theta, sigma_x) with Adam, starting from p0 (float64)."""
    sw = scorer.sw
    p = p0.to(torch.float64)
    params = [p.A, p.W, p.h, p.L]
    for t in params:
        t.requires_grad_(True)
    log_sigma = torch.tensor(scorer.fit_sigma(p0), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([*params, log_sigma], lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.train_seed)
    clean = torch.as_tensor(train, dtype=torch.float64)
    run = FinetuneRun("evidence")
    for step in range(cfg.steps + 1):
        if step % cfg.eval_every == 0 or step == cfg.steps:
            rec, run.final_run = scorer(step, p, float(log_sigma.detach()))
            run.history.append(rec)
            if log is not None:
                log({"run": run.name, **rec})
        if step == cfg.steps:
            break
        starts = torch.randint(0, len(clean) - sw.window - 1, (cfg.batch_windows,), generator=gen)
        seg = clean[starts[:, None] + torch.arange(sw.window + 1)]
        seg = seg + sw.noise * torch.randn(seg.shape, generator=gen, dtype=seg.dtype)
        ll_c, _ = leaf_logliks(initial_state(seg[:, 0], p.L), seg[:, 1:], p.A, p.W, p.h, sw.kappa, log_sigma,
                               p.n_pwl)
        loss = -torch.logsumexp(ll_c, -1).mean() / sw.window  # eq. 2.2b, nats per step
        opt.zero_grad()
        loss.backward()
        opt.step()
    run.final, run.log_sigma = p.to(torch.float64), float(log_sigma.detach())
    return run


def itf_control(p0: ALRNNParams, train: np.ndarray, scorer: Scorer, cfg: FinetuneConfig, itf: ITFConfig,
                log: Callable[[dict], None] | None = None) -> FinetuneRun:
    """Control: the same number of plain ITF updates (RAdam, lr ``cfg.lr``) from p0; sigma_x refitted
    with theta frozen before every scoring."""
    model = ALRNN([p0])
    opt = torch.optim.RAdam(model.parameters(), lr=cfg.lr)
    gens = [torch.Generator().manual_seed(cfg.train_seed)]
    clean = torch.as_tensor(train, dtype=model.A.dtype)
    run = FinetuneRun("itf-control")
    step = 0
    while True:
        p = model.member(0)
        rec, run.final_run = scorer(step, p, scorer.fit_sigma(p))
        run.history.append(rec)
        if log is not None:
            log({"run": run.name, **rec})
        if step >= cfg.steps:
            break
        n = min(cfg.eval_every, cfg.steps - step)
        itf_updates(model, opt, None, clean, gens, n, itf)
        step += n
    run.final, run.log_sigma = model.member(0), math.log(rec["sigma_x"])
    return run
