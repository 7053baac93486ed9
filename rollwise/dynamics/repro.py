"""``rollwise repro tf-bayes``: ITF training, curvature table, evidence fine-tuning.

No number of the paper is available (abstract only), so the "paper" column states the paper's
qualitative claim; the thresholds are ours, set by a pilot implementation whose numbers are quoted in the notes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from rollwise.dynamics.alrnn import ALRNNConfig, ALRNNParams, free_run
from rollwise.dynamics.curvature import aggregate, window_information
from rollwise.dynamics.data import LorenzConfig, make_lorenz
from rollwise.dynamics.finetune import FinetuneConfig, FinetuneRun, Scorer, evidence_finetune, itf_control
from rollwise.dynamics.measures import max_lyapunov, prediction_error
from rollwise.dynamics.plots import attractor_plot, scatter_plot
from rollwise.dynamics.switching import SwitchingConfig, make_windows, noisy_windows
from rollwise.dynamics.teacher_forcing import ITFConfig, ITFRun, best_on_grid, train_itf
from rollwise.report import ReproReport, line_plot
from rollwise.runlog import RunLog, seed_everything, set_threads


@dataclass(frozen=True)
class ReproConfig:
    """Everything the experiment needs (defaults: a short ITF run, the curvature table and the fine-tuning)."""

    data: LorenzConfig = field(default_factory=LorenzConfig)
    model: ALRNNConfig = field(default_factory=ALRNNConfig)
    # Deviation from the lab's recipe (every 25 epochs): select among checkpoints every 5 epochs of the same
    # training trajectory; measured: A1 0/3 seeds with 25, 3/3 with 5 (docs/tf_bayes.md).
    itf: ITFConfig = field(default_factory=lambda: ITFConfig(eval_every=5))
    switching: SwitchingConfig = field(default_factory=SwitchingConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    seeds: tuple[int, ...] = (0, 1, 2)  # ITF seeds (trained together as one ensemble)
    n_curv_windows: int = 40  # random held-out windows for the curvature table (C1-C5, C7)
    n_kappa_windows: int = 20  # first windows re-scored at kappa_control (C6)
    kappa_control: float = 20.0  # less ambiguous regime prior (C6)
    curv_seed: int = 11  # RNG seed of the curvature windows
    mode: str = "T1"  # T1 (smoke), T2 (full schedule) or quick (CI); decides which thresholds apply


def quick_config() -> ReproConfig:
    """CI variant (a few minutes at most): short ITF, few windows, short fine-tuning."""
    return ReproConfig(
        itf=ITFConfig(epochs=12, eval_every=6, n_gen=20_000, decay_epochs=300),
        finetune=FinetuneConfig(steps=60, eval_every=30, n_heldout=64, n_fit=64, n_gen=20_000,
                                lyap_steps=3_000),
        seeds=(0,), n_curv_windows=6, n_kappa_windows=3, mode="quick")


def t2_config() -> ReproConfig:
    """Spec T2: 1000 epochs of the lab schedule (lr 1e-3 -> 1e-5 over 2000 epochs), evaluated every 5 epochs
    (the report also reads the lab's 25-epoch grid from the same run)."""
    return ReproConfig(itf=ITFConfig(epochs=1000, lr_final=1e-5, decay_epochs=2000, eval_every=5), mode="T2")


def run(quick: bool = False, out_dir: str | Path = "runs/repro-tf-bayes", seeds: list[int] | None = None
        ) -> ReproReport:
    """The repro contract: T1 (or quick) training, curvature and fine-tuning; returns the report."""
    cfg = quick_config() if quick else ReproConfig()
    if seeds:
        cfg = replace(cfg, seeds=tuple(seeds))
    return run_experiment(cfg, out_dir, command="rollwise repro tf-bayes" + (" --quick" if quick else ""))


def run_experiment(cfg: ReproConfig, out_dir: str | Path, command: str) -> ReproReport:
    set_threads(1)
    seed_everything(cfg.seeds[0])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = RunLog(out)
    log.log({"event": "config", **asdict(cfg)})
    report = ReproReport(name="tf-bayes", command=command,
                         title="Teacher forcing vs marginal likelihood for switching AL-RNNs (Lorenz-63)")
    data = make_lorenz(cfg.data)

    runs = _itf_stage(cfg, data.train, data.test, out, log)
    best = _report_training(report, cfg, runs, data.test, out)
    torch.save(best.best.state_dict(), out / "itf_best.pt")
    p = best.best

    scorer = Scorer(data.train, data.test, cfg.switching, cfg.finetune)
    _report_curvature(report, cfg, p, scorer, data.test, out, log)

    ev_run = evidence_finetune(p, data.train, scorer, cfg.finetune, log=lambda r: log.log({"event": "ft", **r}))
    ctl_run = itf_control(p, data.train, scorer, cfg.finetune, cfg.itf, log=lambda r: log.log({"event": "ft", **r}))
    torch.save(ev_run.final.state_dict(), out / "evidence_finetuned.pt")
    _report_finetune(report, ev_run, ctl_run, out)
    attractor_plot(out / "attractors.png", data.test[: cfg.finetune.n_dh],
                   {"ITF model (before)": free_run(p.numpy(), data.test[0], cfg.finetune.n_dh, cfg.itf.transient,
                                                   p.n_pwl),
                    "evidence fine-tuned": ev_run.final_run, "ITF control": ctl_run.final_run})
    report.figures.append(str(out / "attractors.png"))
    report.notes += _notes(cfg)
    log.close()
    return report


def _itf_stage(cfg: ReproConfig, train: np.ndarray, test: np.ndarray, out: Path, log: RunLog) -> list[ITFRun]:
    """Train (or reload, when ``out/itf_stage.pt`` was written by the same configuration) the ITF models.

    Training is deterministic, so a reload equals a rerun; it lets a run resume after a later stage failed.
    """
    key = repr((cfg.data, cfg.model, cfg.itf, cfg.seeds))
    path = out / "itf_stage.pt"
    if path.exists():
        saved = torch.load(path, weights_only=False)
        if saved["key"] == key:
            log.log({"event": "itf_stage_reloaded", "path": str(path)})
            return saved["runs"]
    runs = train_itf(train, test, list(cfg.seeds), cfg.model, cfg.itf,
                     log=lambda r: log.log({"event": "itf_eval", **r}))
    torch.save({"key": key, "runs": runs}, path)
    return runs


def _report_training(report: ReproReport, cfg: ReproConfig, runs: list[ITFRun], test: np.ndarray, out: Path
                     ) -> ITFRun:
    applies = cfg.mode != "quick"
    why = "" if applies else "quick mode: too short for the T1 thresholds (informational)"
    n_ok = 0
    for r in runs:
        e = r.best_eval
        ok = math.isfinite(e.d_stsp) and e.d_stsp < 8 and e.d_h < 0.3
        n_ok += ok
        report.add(f"A1 seed {r.seed}: best D_stsp / D_H10k (epoch)", f"{e.d_stsp:.2f} / {e.d_h:.3f} ({r.best_epoch})",
                   paper="lab M=20,P=2 model: 3.0 / 0.09 [REF, pilot-measured]",
                   target="D_stsp < 8 and D_H < 0.3, no NaN", passed=ok if applies else None, note=why)
    need = min(2, len(runs))
    report.add("A1 seeds meeting the T1 thresholds", f"{n_ok}/{len(runs)}", target=f">= {need} of {len(runs)}",
               passed=(n_ok >= need) if applies else None, note=why)
    _report_lab_grid(report, cfg, runs, applies)
    best = min(runs, key=lambda r: r.best_eval.d_stsp)
    pn = best.best.to(torch.float64).numpy()
    lyap = max_lyapunov(pn, test[0], best.best.n_pwl)
    report.add(f"A2 max Lyapunov exponent per step (selected seed {best.seed})", lyap,
               paper="Lorenz-63: 0.00906 per step (dt = 0.01)", target="in (0, 0.02): chaotic",
               passed=(0 < lyap < 0.02) if applies else None, note=why)
    if cfg.mode == "T2":
        e = best.best_eval
        report.add(f"A3 (T2) best D_stsp / D_H10k, every {cfg.itf.eval_every} epochs (seed {best.seed}, epoch "
                   f"{best.best_epoch})", f"{e.d_stsp:.2f} / {e.d_h:.3f}", paper="lab model 3.0 / 0.09",
                   target="D_stsp < 4 and D_H < 0.15", passed=e.d_stsp < 4 and e.d_h < 0.15)
        picks = [(r.seed, best_on_grid(r.history, LAB_GRID)) for r in runs] if _finer_than_lab(cfg) else []
        picks = [(s, h) for s, h in picks if h is not None]
        if picks:
            seed, h = min(picks, key=lambda sh: _inf(sh[1]["d_stsp"]))
            report.add(f"A3 (T2) best D_stsp / D_H10k on the lab's {LAB_GRID}-epoch grid (seed {seed}, epoch "
                       f"{h['epoch']})", f"{h['d_stsp']:.2f} / {h['d_h']:.3f}", paper="lab model 3.0 / 0.09",
                       target="D_stsp < 4 and D_H < 0.15", passed=h["d_stsp"] < 4 and h["d_h"] < 0.15)
    report.add("PE_20 of the selected model (z-scored MSE)", prediction_error(pn, test, best.best.n_pwl),
               note="20-step free-run prediction error from 10k test points (informational)")
    report.tables["ITF training (D_stsp 100k vs 100k test, D_H on 10k)"] = [
        {k: h[k] for k in ("seed", "epoch", "itf_loss", "d_stsp", "d_h")} for r in runs for h in r.history]
    series = {f"seed {r.seed}": ([h["epoch"] for h in r.history], [_finite(h["d_stsp"]) for h in r.history])
              for r in runs}
    report.figures.append(str(line_plot(out / "itf_training.png", series, "epoch", "D_stsp (best kept)",
                                        "ITF training: free-run D_stsp")))
    return best


LAB_GRID = 25  # the lab's selection grid: D_stsp every 25 epochs (its reference code)


def _finer_than_lab(cfg: ReproConfig) -> bool:
    return cfg.itf.eval_every < LAB_GRID and LAB_GRID % cfg.itf.eval_every == 0


def _report_lab_grid(report: ReproReport, cfg: ReproConfig, runs: list[ITFRun], applies: bool) -> None:
    """The same training read on the lab's selection grid (every 25 epochs) when the run evaluated on a
    finer grid that contains it: A1 on the lab's grid, beside the finer grid's rows."""
    lab = LAB_GRID
    if not _finer_than_lab(cfg):
        return
    picks = [(r.seed, best_on_grid(r.history, lab)) for r in runs]
    picks = [(s, h) for s, h in picks if h is not None]
    ok = [math.isfinite(h["d_stsp"]) and h["d_stsp"] < 8 and h["d_h"] < 0.3 for _, h in picks]
    for (seed, h), good in zip(picks, ok):
        report.add(f"A1 seed {seed} on the lab's {lab}-epoch grid: best D_stsp / D_H10k (epoch)",
                   f"{h['d_stsp']:.2f} / {h['d_h']:.3f} ({h['epoch']})", target="D_stsp < 8 and D_H < 0.3",
                   passed=good if applies else None,
                   note="same training run, only checkpoints at multiples of 25 epochs [REF selection]")
    need = min(2, len(picks))
    report.add(f"A1 seeds meeting the T1 thresholds on the {lab}-epoch grid", f"{sum(ok)}/{len(picks)}",
               target=f">= {need} of {len(picks)}", passed=(sum(ok) >= need) if applies else None)


def _report_curvature(report: ReproReport, cfg: ReproConfig, p: ALRNNParams, scorer: Scorer, test: np.ndarray,
                      out: Path, log: RunLog) -> None:
    sw = cfg.switching
    log_sigma = scorer.fit_sigma(p)
    noisy, starts = noisy_windows(test, cfg.n_curv_windows, sw.window, sw.noise, cfg.curv_seed)
    z0, x = make_windows(noisy, starts, sw.window, p.L.double())
    rows = [w.summary() for w in window_information(p, z0, x, sw.kappa, log_sigma)]
    k = cfg.n_kappa_windows
    rows_hi = [w.summary() for w in window_information(p, z0[:k], x[:k], cfg.kappa_control, log_sigma)]
    for i, r in enumerate(rows):
        log.log({"event": "curvature", "window": i, "kappa": sw.kappa, **r})
    agg, agg_k, agg_hi = aggregate(rows), aggregate(rows[:k]), aggregate(rows_hi)
    report.tables["Curvature aggregates (block W[:, M-P:], h; float64)"] = [
        {"setting": f"kappa={sw.kappa}, {len(rows)} windows", **agg},
        {"setting": f"kappa={sw.kappa}, first {k} windows", **agg_k},
        {"setting": f"kappa={cfg.kappa_control}, same {k} windows", **agg_hi}]
    report.add("sigma_x fitted (theta frozen)", math.exp(log_sigma), note="pilot: 0.139 (lab model), 0.104")
    report.add("C1 max Louis residual", agg["max_louis_residual"], paper="I_obs = I_com - I_mis (Louis 1982)",
               target="< 1e-8", passed=agg["max_louis_residual"] < 1e-8, note="pilot <= 3e-14")
    report.add("C2 min lambda_min(I_mis) / lambda_max(I_com)", agg["min_rel_lmin_mis"], paper="I_mis is PSD",
               target=">= -1e-8", passed=agg["min_rel_lmin_mis"] >= -1e-8)
    report.add("C3 sum tr I_ITF / sum tr I_obs", agg["ratio_itf_obs"],
               paper="ITF sharper than the marginal likelihood (no number)", target=">= 1.05",
               passed=agg["ratio_itf_obs"] >= 1.05, note="pilot 1.17 (lab model), 1.51 (pilot ITF model)")
    report.add("C4 fraction of windows with tr I_ITF > tr I_obs", agg["frac_itf_above_obs"], target=">= 0.75",
               passed=agg["frac_itf_above_obs"] >= 0.75, note="pilot 0.975, 0.875")
    report.add("C5 Spearman(path entropy, missing fraction)", agg["spearman_entropy_missing"],
               paper="missing information when several paths stay plausible", target=">= 0.3",
               passed=agg["spearman_entropy_missing"] >= 0.3, note="pilot 0.80, 0.50")
    c6 = agg_hi["ratio_itf_obs"] < agg_k["ratio_itf_obs"] and agg_hi["ratio_itf_obs"] < 1.1
    report.add(f"C6 ratio at kappa={cfg.kappa_control} vs {sw.kappa} (same {k} windows)",
               f"{agg_hi['ratio_itf_obs']:.3f} vs {agg_k['ratio_itf_obs']:.3f}",
               paper="no ambiguity -> no missing information", target="lower and < 1.1", passed=c6,
               note="pilot 1.015 vs 1.28")
    report.add("C7 sum tr I_ITF / sum tr I_com", agg["ratio_itf_com"], paper="ITF = complete info of one path",
               target="within 0.05 of 1", passed=abs(agg["ratio_itf_com"] - 1) < 0.05, note="pilot 1.001, 1.016")
    report.add("mean path entropy (nats) / MAP != ITF path", f"{agg['mean_entropy']:.2f} / "
               f"{agg['frac_map_not_itf']:.2f}", note="pilot 0.96 / 0.175 (lab model), 1.26 / 0.225")
    report.figures.append(str(scatter_plot(
        out / "curvature_vs_entropy.png", [r["entropy"] for r in rows], [r["missing_fraction"] for r in rows],
        "path entropy H_W (nats)", "missing fraction tr I_mis / tr I_com",
        f"Missing information vs regime ambiguity (kappa={sw.kappa}, per window)", hline=0.0)))


def _report_finetune(report: ReproReport, ev: FinetuneRun, ctl: FinetuneRun, out: Path) -> None:
    e0, e1, c1 = ev.history[0], ev.history[-1], ctl.history[-1]
    gain_ev = e1["heldout_evidence"] - e0["heldout_evidence"]
    gain_ctl = c1["heldout_evidence"] - ctl.history[0]["heldout_evidence"]
    report.add("E1 held-out evidence gain (nats/step): evidence FT", gain_ev,
               paper="evidence fine-tuning raises held-out evidence", target=">= 0.1", passed=gain_ev >= 0.1,
               note=f"{e0['heldout_evidence']:.3f} -> {e1['heldout_evidence']:.3f}; pilot +0.39/+0.40")
    report.add("E1 held-out evidence gain (nats/step): ITF control", gain_ctl, target="|gain| < 0.05",
               passed=abs(gain_ctl) < 0.05, note="pilot -0.008 / +0.002")
    d_ent = e1["heldout_entropy"] - e0["heldout_entropy"]
    report.add("E2 held-out path entropy change (evidence FT)", d_ent, target="> 0", passed=d_ent > 0,
               note=f"control {c1['heldout_entropy'] - ctl.history[0]['heldout_entropy']:+.3f}; pilot +0.23")
    worse = (e1["d_stsp"] > e0["d_stsp"]) or (e1["d_h"] > e0["d_h"])
    not_better = _inf(e1["d_stsp"]) >= _inf(c1["d_stsp"])
    report.add("E3 D_stsp / D_H: ITF model -> evidence FT (control)",
               f"{e0['d_stsp']:.2f} / {e0['d_h']:.3f} -> {e1['d_stsp']:.2f} / {e1['d_h']:.3f} "
               f"({c1['d_stsp']:.2f} / {c1['d_h']:.3f})",
               paper="dynamics QoIs can degrade under evidence fine-tuning",
               target="FT worse than ITF in D_stsp or D_H, and FT D_stsp >= control's", passed=worse and not_better,
               note="pilot 3.04 -> 13.8 (control 4.30); 6.0 -> NaN (control 9.1)")
    report.add("max Lyapunov exponent: ITF -> evidence FT (control)",
               f"{e0['lyapunov']:.4f} -> {e1['lyapunov']:.4f} ({c1['lyapunov']:.4f})")
    report.tables["Fine-tuning curves (held-out windows; QoIs of the deterministic free run)"] = [
        {"run": r.name, **h} for r in (ev, ctl) for h in r.history]
    for key, label in (("heldout_evidence", "held-out evidence (nats/step)"),
                       ("heldout_entropy", "held-out path entropy (nats)"), ("d_stsp", "D_stsp (gap = diverged free run)"),
                       ("d_h", "D_H (10k)")):
        series = {r.name: ([h["step"] for h in r.history], [_finite(h[key]) for h in r.history]) for r in (ev, ctl)}
        report.figures.append(str(line_plot(out / f"finetune_{key}.png", series, "step", label,
                                            f"Evidence fine-tuning vs ITF control: {label}")))


def _finite(v: float) -> float:
    return v if math.isfinite(v) else math.nan


def _inf(v: float) -> float:
    return v if math.isfinite(v) else math.inf


def _notes(cfg: ReproConfig) -> list[str]:
    return [
        "The paper (arXiv 2604.25904) is available as an abstract only: it gives no numbers. The 'paper' column "
        "states its qualitative claims; thresholds are ours, from a pilot implementation.",
        "The switching augmentation (logistic regime prior with inverse temperature kappa, Gaussian emissions), "
        "the windowed evidence and the fine-tuning protocol are reconstructed, see docs/tf_bayes.md.",
        f"Mode {cfg.mode}: ITF {cfg.itf.epochs} epochs x {cfg.itf.batches_per_epoch} updates, lr {cfg.itf.lr} -> "
        f"{cfg.itf.lr_final} over {cfg.itf.decay_epochs} epochs, D_stsp selection every {cfg.itf.eval_every} "
        f"epochs (the lab: 25), seeds {list(cfg.seeds)}; windows W = "
        f"{cfg.switching.window}, kappa = {cfg.switching.kappa}; fine-tuning {cfg.finetune.steps} steps at lr "
        f"{cfg.finetune.lr}.",
        "D_stsp: 30 bins, generated free run of n_gen steps vs the full 100k test series; D_H on the first 10k "
        "points of each; a diverged free run counts as D_stsp = inf, D_H = 1.",
    ]
