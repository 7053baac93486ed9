"""Identity-teacher-forcing (ITF) training with selection by D_stsp, as in the lab's reference
code (DurstewitzLab/ALRNN-DSR; definitions only).

This is the paper's baseline and the pretraining of every later stage. Several seeds train together
as one :class:`~rollwise.dynamics.alrnn.ALRNN` ensemble (independent parameters and batches per seed;
RAdam is element-wise, so this equals separate runs up to float round-off).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from rollwise.dynamics.alrnn import ALRNN, ALRNNConfig, ALRNNParams, free_run, init_params, itf_loss
from rollwise.dynamics.measures import power_spectrum_distance, state_space_divergence


@dataclass(frozen=True)
class ITFConfig:
    """ITF training (defaults: our short CPU run; the lab recipe is 2000 epochs, lr 1e-3 -> 1e-5). Fields marked
    "lab" are the reference code's values."""

    epochs: int = 300  # training epochs
    batches_per_epoch: int = 50  # updates per epoch (lab)
    batch_size: int = 16  # sequences per update (lab)
    seq_len: int = 200  # T~: sequence length (lab)
    tau: int = 16  # forcing interval (lab)
    lr: float = 1e-3  # initial RAdam learning rate (lab)
    lr_final: float = 1e-4  # learning rate reached after ``decay_epochs`` (exponential decay)
    decay_epochs: int = 300  # length of the exponential schedule in epochs
    noise: float = 0.05  # std of fresh Gaussian noise added to every batch (lab)
    eval_every: int = 25  # epochs between D_stsp / D_H evaluations (lab)
    n_gen: int = 100_000  # generated steps for D_stsp (our protocol: 100k vs 100k test)
    n_dh: int = 10_000  # series length for D_H (our protocol: first 10k of each)
    transient: int = 1000  # discarded free-run steps before measuring (lab)


@dataclass
class Evaluation:
    """QoIs of one deterministic free run."""

    d_stsp: float
    d_h: float

    @property
    def failed(self) -> bool:
        return not math.isfinite(self.d_stsp)


@dataclass
class ITFRun:
    """Result for one seed: the best-D_stsp checkpoint and the history of evaluations."""

    seed: int
    best: ALRNNParams
    best_epoch: int
    best_eval: Evaluation
    history: list[dict[str, float]] = field(default_factory=list)


def evaluate(p: ALRNNParams, test: np.ndarray, n_gen: int, n_dh: int, transient: int) -> tuple[Evaluation,
                                                                                                 np.ndarray]:
    """Free-run from the first test point (after ``transient`` steps) and score D_stsp (n_gen vs the
    whole test series) and D_H (first n_dh points of each). Returns the evaluation and the run (n_gen, N)."""
    gen = free_run(p.numpy(), test[0], n_gen, transient, p.n_pwl)
    d_h = power_spectrum_distance(test[:n_dh], gen[:n_dh])
    return Evaluation(state_space_divergence(test, gen), d_h if math.isfinite(d_h) else 1.0), gen


def best_on_grid(history: list[dict[str, float]], every: int) -> dict[str, float] | None:
    """The lowest-D_stsp evaluation among epochs that are multiples of ``every`` (a coarser selection grid
    read from a finer run's history; non-finite D_stsp counts as +inf). None if no epoch is on the grid."""
    on_grid = [h for h in history if h["epoch"] % every == 0]
    if not on_grid:
        return None
    return min(on_grid, key=lambda h: h["d_stsp"] if math.isfinite(h["d_stsp"]) else math.inf)


def sample_batch(train: torch.Tensor, gens: list[torch.Generator], batch: int, seq_len: int, noise: float
                 ) -> torch.Tensor:
    """Random sub-sequences with fresh noise, one generator per ensemble member: -> (E, B, T~, N)."""
    out = []
    for g in gens:
        start = torch.randint(0, train.shape[0] - seq_len + 1, (batch,), generator=g)
        x = train[start[:, None] + torch.arange(seq_len)]
        out.append(x + noise * torch.randn(x.shape, generator=g, dtype=x.dtype))
    return torch.stack(out)


def itf_updates(model: ALRNN, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler | None,
                train: torch.Tensor, gens: list[torch.Generator], n: int, cfg: ITFConfig) -> np.ndarray:
    """Run ``n`` ITF updates on all members; returns their mean losses (E,)."""
    total = torch.zeros(model.n_members, dtype=torch.float64)
    for _ in range(n):
        x = sample_batch(train, gens, cfg.batch_size, cfg.seq_len, cfg.noise).to(model.A.dtype)
        loss = itf_loss(model, x, cfg.tau)
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        if sched is not None:
            sched.step()
        total += loss.detach().double()
    return (total / max(n, 1)).numpy()


def make_optimizer(model: ALRNN, cfg: ITFConfig) -> tuple[torch.optim.Optimizer,
                                                            torch.optim.lr_scheduler.LRScheduler]:
    """The lab's optimiser [REF settings/defaults.json, parsing.jl]: RAdam (betas 0.9/0.999, eps 1e-8, no
    weight decay, no gradient clipping) with lr decaying exponentially from ``cfg.lr`` to ``cfg.lr_final``
    over ``cfg.decay_epochs`` epochs. The lab decays once per epoch; we decay every update by the per-update
    factor (the two differ by less than one epoch's factor, <= 0.8 % for T1)."""
    opt = torch.optim.RAdam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    gamma = (cfg.lr_final / cfg.lr) ** (1.0 / (cfg.decay_epochs * cfg.batches_per_epoch))
    return opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma)


def train_itf(train: np.ndarray, test: np.ndarray, seeds: list[int], model_cfg: ALRNNConfig,
              cfg: ITFConfig, log: Callable[[dict], None] | None = None) -> list[ITFRun]:
    """Train one AL-RNN per seed with ITF and keep each seed's lowest-D_stsp checkpoint (as the lab's reference code).

    train, test: clean z-scored series (T, N). ``log(record)`` receives one dict per evaluation.
    """
    members = [init_params(model_cfg, torch.Generator().manual_seed(s)) for s in seeds]
    gens = [torch.Generator().manual_seed(10_000 + s) for s in seeds]
    model = ALRNN(members)
    opt, sched = make_optimizer(model, cfg)
    train_t = torch.as_tensor(train, dtype=torch.float32)
    runs = [ITFRun(s, m, 0, Evaluation(math.inf, 1.0)) for s, m in zip(seeds, members)]
    for epoch in range(cfg.eval_every, cfg.epochs + 1, cfg.eval_every):
        losses = itf_updates(model, opt, sched, train_t, gens, cfg.eval_every * cfg.batches_per_epoch, cfg)
        for i, run in enumerate(runs):
            p = model.member(i)
            ev, _ = evaluate(p, test, cfg.n_gen, cfg.n_dh, cfg.transient)
            rec = {"seed": run.seed, "epoch": epoch, "itf_loss": float(losses[i]), "d_stsp": ev.d_stsp,
                   "d_h": ev.d_h, "lr": opt.param_groups[0]["lr"]}
            run.history.append(rec)
            if log is not None:
                log(rec)
            if ev.d_stsp < run.best_eval.d_stsp or (run.best_epoch == 0 and not math.isfinite(ev.d_stsp)):
                run.best, run.best_epoch, run.best_eval = copy.deepcopy(p), epoch, ev
    return runs
