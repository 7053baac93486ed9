"""Probes of a trained world model (the paper's evaluation): indicator decoder, blind-rollout retention,
held-out context probe, HS-distance battery, and the UWM invariant diagnostics.

All probes are frozen-feature linear readouts fit with scikit-learn. "Target" latents come from the EMA
target encoder on the whole window (o_{t+K} masked); "blind" latents from the online encoder on the
context followed by the predictor.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from rollwise.worldmodels import density
from rollwise.worldmodels import env as spring
from rollwise.worldmodels.training import to_long
from rollwise.worldmodels.uwm_jepa import UWMJepa


@dataclass
class ProbeConfig:
    """Probe protocol: sizes from the paper's released data, regularisers reconstructed."""

    n_decoder: int = 1000  # indicator decoder-fit windows (released)
    n_eval: int = 500  # indicator evaluation windows (released)
    eval_seed: int = 2026  # the eval set is shared by all models and seeds (reconstructed)
    decoder_seed_offset: int = 1000  # decoder-fit RNG seed = offset + model seed (reconstructed)
    logistic_c: float = 1000.0  # inverse L2 strength of the logistic decoder (λ ≈ 1e-3) (reconstructed)
    ridge_alpha: float = 1e-2  # ridge strength of the R² probes (reconstructed)
    retention_ks: tuple[int, ...] = (1, 3, 5, 10, 20)  # blind horizons (paper)
    n_retention_fit: int = 1000  # probe-fit windows for retention (reconstructed)
    n_retention_eval: int = 500  # eval windows for retention (reconstructed)
    n_context_fit: int = 1000  # context-probe fit windows (reconstructed)
    n_context_eval: int = 1000  # context-probe eval windows [data: n_eval = 1000]
    invariant_steps: int = 30  # blind steps for the invariant diagnostics (paper)


@torch.no_grad()
def target_states(target: nn.Module, w: spring.Windows) -> torch.Tensor:
    """Target-encoder latents of whole windows (last token masked): (B, ...)."""
    return target.encode(to_long(w.tokens), to_long(w.actions))


@torch.no_grad()
def blind_states(model: nn.Module, task: spring.SpringConfig, w: spring.Windows, actions: np.ndarray
                 ) -> torch.Tensor:
    """Online encoder on the context, then the predictor under ``actions`` (B, k)."""
    tok, act = spring.context(task, w)
    return model.rollout(model.encode(to_long(tok), to_long(act)), to_long(actions))


@torch.no_grad()
def features(model: nn.Module, states: torch.Tensor) -> np.ndarray:
    return model.probe_features(states).double().numpy()


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float):
    """Standardise, then L2-regularised logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(x, y)


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float):
    return make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x, y)


def indicator_accuracy(model: nn.Module, target: nn.Module, task: spring.SpringConfig, seed: int,
                       cfg: ProbeConfig) -> dict[str, float]:
    """Linear indicator decoder fit on target latents of the decoder set, applied unchanged to target and
    blind-rollout latents of the eval set under every action condition. Keys: 'target',
    the six conditions, 'majority'."""
    fit_w = spring.sample_windows(task, np.random.default_rng(cfg.decoder_seed_offset + seed), cfg.n_decoder)
    eval_w = spring.sample_windows(task, np.random.default_rng(cfg.eval_seed), cfg.n_eval)
    dec = fit_logistic(features(target, target_states(target, fit_w)), fit_w.labels, cfg.logistic_c)
    y = eval_w.labels
    out = {"majority": float(max(y.mean(), 1 - y.mean())),
           "target": float(dec.score(features(target, target_states(target, eval_w)), y))}
    rng = np.random.default_rng(cfg.eval_seed + 1)
    for cond in spring.CONDITIONS:
        acts = spring.condition_actions(task, eval_w, cond, rng)
        out[cond] = float(dec.score(features(model, blind_states(model, task, eval_w, acts)), y))
    return out


@torch.no_grad()
def hs_distances(model: UWMJepa, target: UWMJepa, task: spring.SpringConfig, cfg: ProbeConfig
                 ) -> dict[str, float]:
    """Mean HS distance ‖Tr_E ρ̂ − Tr_E ρ⁺‖_F between the blind prediction under each condition and the
    target latent of the true future (paper's action-perturbation battery). 'base' sets H1 := 0."""
    w = spring.sample_windows(task, np.random.default_rng(cfg.eval_seed), cfg.n_eval)
    ref = model.reduced(target_states(target, w))
    rng = np.random.default_rng(cfg.eval_seed + 2)
    out = {}
    for cond in spring.CONDITIONS:
        pred = model.reduced(blind_states(model, task, w, spring.condition_actions(task, w, cond, rng)))
        out[cond] = float(torch.linalg.norm(pred - ref, dim=(-2, -1)).mean())
    base = copy.deepcopy(model)  # base dynamics: the same encoded state, predictor with H1 := 0
    base.h1.zero_()
    tok, act = spring.context(task, w)
    rho = model.encode(to_long(tok), to_long(act))
    pred = model.reduced(base.rollout(rho, to_long(spring.future_actions(task, w))))
    out["base"] = float(torch.linalg.norm(pred - ref, dim=(-2, -1)).mean())
    return out


def _sub_window(task: spring.SpringConfig, w: spring.Windows, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens/actions of o_0..o_{t+k} with o_{t+k} masked (as in training): (B, t+k+1), (B, t+k)."""
    end = task.t + k + 1
    tok = w.tokens[:, :end].copy()
    tok[:, -1] = task.mask_token
    return tok, w.actions[:, : end - 1]


@torch.no_grad()
def retention(model: nn.Module, target: nn.Module, task: spring.SpringConfig, seed: int, cfg: ProbeConfig
              ) -> dict[str, dict[int, float]]:
    """Blind-rollout retention (the paper's retention probe): for each k a ridge probe latent -> v_{t+k} is fit on *teacher*
    latents E_ξ(o≤t+k) and applied to teacher latents and to blind latents P_k(E_θ(o≤t)) of held-out windows.

    Blind uses the action-free predictor (a = 0, the paper's protocol) and, for reference, the true actions.
    Returns {'teacher', 'blind', 'delta', 'blind_true_actions'} -> {k: R²}.
    """
    long_task = spring.with_horizon(task, max(cfg.retention_ks))
    fit_w = spring.sample_windows(long_task, np.random.default_rng(cfg.decoder_seed_offset + seed + 7),
                                  cfg.n_retention_fit)
    ev_w = spring.sample_windows(long_task, np.random.default_rng(cfg.eval_seed + 3), cfg.n_retention_eval)
    out: dict[str, dict[int, float]] = {"teacher": {}, "blind": {}, "delta": {}, "blind_true_actions": {}}
    for k in cfg.retention_ks:
        fit_x = features(target, target.encode(*map(to_long, _sub_window(task, fit_w, k))))
        probe = fit_ridge(fit_x, fit_w.v[:, task.t + k], cfg.ridge_alpha)
        y = ev_w.v[:, task.t + k]
        teach = features(target, target.encode(*map(to_long, _sub_window(task, ev_w, k))))
        zero = np.full((len(ev_w), k), spring.NO_ACTION)
        true = ev_w.actions[:, task.t: task.t + k]
        blind = features(model, blind_states(model, task, ev_w, zero))
        blind_true = features(model, blind_states(model, task, ev_w, true))
        out["teacher"][k] = float(r2_score(y, probe.predict(teach)))
        out["blind"][k] = float(r2_score(y, probe.predict(blind)))
        out["blind_true_actions"][k] = float(r2_score(y, probe.predict(blind_true)))
        out["delta"][k] = out["teacher"][k] - out["blind"][k]
    return out


def effective_rank(x: np.ndarray) -> float:
    """exp(entropy) of the normalised covariance spectrum of features x (N, F) (collapse diagnostic)."""
    lam = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False)), 0, None)
    p = lam / lam.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


@torch.no_grad()
def context_probe(model: nn.Module, task: spring.SpringConfig, seed: int, cfg: ProbeConfig) -> dict[str, float]:
    """Held-out context probe (paper Fig. 4): frozen online encoder on the context, ridge probe for the
    hidden next-step velocity v_{t+1}; fit and eval windows are disjoint trajectories (own RNG seeds)."""
    fit_w = spring.sample_windows(task, np.random.default_rng(cfg.decoder_seed_offset + seed + 11),
                                  cfg.n_context_fit)
    ev_w = spring.sample_windows(task, np.random.default_rng(cfg.eval_seed + 4), cfg.n_context_eval)

    def ctx_features(w: spring.Windows) -> np.ndarray:
        tok, act = spring.context(task, w)
        return features(model, model.encode(to_long(tok), to_long(act)))

    x_fit = ctx_features(fit_w)
    probe = fit_ridge(x_fit, fit_w.v[:, task.t + 1], cfg.ridge_alpha)
    r2 = r2_score(ev_w.v[:, task.t + 1], probe.predict(ctx_features(ev_w)))
    return {"r2": float(r2), "effective_rank": effective_rank(x_fit)}


def context_probe_ceiling(task: spring.SpringConfig, seed: int, cfg: ProbeConfig) -> float:
    """Reference for the context probe: the same ridge probe on the raw context (bin-centre positions of the
    visible tokens and the action values). The dynamics are linear, so this is close to the best linear
    readout any encoder could offer."""
    def raw(w: spring.Windows) -> np.ndarray:
        tok, act = spring.context(task, w)
        vis = tok[:, :: task.obs_stride]
        pos = (vis + 0.5) / task.n_bins * 2 * task.x_range - task.x_range
        return np.c_[pos, spring.ACTION_VALUES[act]]

    fit_w = spring.sample_windows(task, np.random.default_rng(cfg.decoder_seed_offset + seed + 11),
                                  cfg.n_context_fit)
    ev_w = spring.sample_windows(task, np.random.default_rng(cfg.eval_seed + 4), cfg.n_context_eval)
    probe = fit_ridge(raw(fit_w), fit_w.v[:, task.t + 1], cfg.ridge_alpha)
    return float(r2_score(ev_w.v[:, task.t + 1], probe.predict(raw(ev_w))))


@torch.no_grad()
def invariants(model: UWMJepa, task: spring.SpringConfig, cfg: ProbeConfig, dtype: torch.dtype = torch.complex128,
               n: int = 64) -> dict[str, float]:
    """Drift of the joint spectrum, purity and entropy over ``invariant_steps`` blind random-action steps,
    starting from encoded states, computed in ``dtype``; plus the reduced purity before/after and
    ‖UU† − I‖_max (paper's invariants table)."""
    m = copy.deepcopy(model)
    m.cfg = dataclasses.replace(m.cfg, dtype=dtype)
    w = spring.sample_windows(task, np.random.default_rng(cfg.eval_seed + 5), n)
    tok, act = spring.context(task, w)
    rho0 = m.encode(to_long(tok), to_long(act))
    acts = np.random.default_rng(cfg.eval_seed + 6).integers(0, spring.N_ACTIONS, (n, cfg.invariant_steps))
    rho = m.rollout(rho0, to_long(acts))
    u = m.unitaries()
    eye = torch.eye(u.shape[-1], dtype=u.dtype)
    return {
        "spectrum_drift": float((density.eigenvalues(rho) - density.eigenvalues(rho0)).abs().max()),
        "purity_drift": float((density.purity(rho) - density.purity(rho0)).abs().max()),
        "entropy_drift": float((density.entropy(rho) - density.entropy(rho0)).abs().max()),
        "trace_error": float((density.trace(rho) - 1).abs().max()),
        "unitarity_error": float((u @ density.dagger(u) - eye).abs().max()),
        "purity": float(density.purity(rho0).mean()),
        "entropy": float(density.entropy(rho0).mean()),
        "reduced_purity_start": float(density.purity(m.reduced(rho0)).mean()),
        "reduced_purity_end": float(density.purity(m.reduced(rho)).mean()),
    }
