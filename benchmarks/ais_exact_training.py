"""Benchmark: training with the EXACT expected gradient of each rollout correction (docs/ais.md, issue #4).

The sampled benchmark (``quantized_rollout.py``) is too noisy to resolve a 1-point accuracy gap. Here the toy is
enumerable, so every quantity is an exact sum and there is no sampling noise at all:

- every response y = (y_1..y_T) over V tokens is listed (V^T sequences); the policy pi is a tiny random-init
  Qwen2 whose logits are scaled by ``beta``; the reward is 1 iff the token sum is divisible by ``modulus``;
- the behaviour policy mu is the library's ``QuantizedEngine`` copy of the CURRENT trainer weights
  (re-quantized with ``sync_weights`` after every optimizer step, as in real training);
- each arm follows the exact expectation under mu of its estimator,
  g = E_mu[(R - b) sum_t w_t grad log pi(y_t | y_<t)] with b = E_pi[R] (exact), computed as one sum over all
  sequences: ``fp32`` (mu = pi, the exact policy gradient), ``none`` (w = 1), ``token-TIS`` (w_t = min(rho_t, 2)),
  ``seq-IS`` (w = prod_t rho_t, untruncated: equals the fp32 gradient, asserted every step), ``AIS`` and
  ``AIS-flipped`` (w_t = (1 - lambda) + lambda min(rho_t, 2), lambda from POPULATION versions of the library's
  diagnostics fed through ``rollwise.rlvr.correction.mix_coefficient``);
- the same optimizer (Adam, fixed lr) for every arm; the seed only sets the model initialisation; everything is
  deterministic (one torch thread).

Writes ``benchmarks/results/ais_exact_training.{json,md}`` and PNG curves (``--quick``: ``..._quick.*``).
Run: ``rollwise bench ais-exact-training [--quick]`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, bench_parser, pearson, write_results  # noqa: E402

NAME = "ais_exact_training"
ARMS = ("fp32", "none", "token-TIS", "seq-IS", "AIS", "AIS-flipped")
#: AIS arms -> AISConfig fields (everything else at the library's defaults)
AIS_ARMS: dict[str, dict[str, Any]] = {"AIS": {}, "AIS-flipped": {"affordability": "flipped"}}
TIS_CAP = 2.0
SEQ_IS_TOL = 1e-4  # relative error allowed between the seq-IS and the fp32 gradient at the same weights


# ------------------------------------------------------------------------------------------ the toy
class Toy:
    """Every sequence of ``length`` tokens over ``vocab`` tokens, and the tensors to score them in one pass.

    Only the V^(T-1) prefixes are run through the model (a causal model's logits at position t depend on y_<t
    only): row p holds start + y_1..y_{T-1}; sequence n = p * V + v ends with token v. (A plain class, not a
    dataclass: ``rollwise bench`` loads this file without registering it in ``sys.modules``.)
    """

    def __init__(self, vocab: int, length: int, modulus: int, beta: float, hidden: int = 32, layers: int = 2):
        self.vocab, self.length, self.modulus, self.beta, self.hidden, self.layers = (
            vocab, length, modulus, beta, hidden, layers)
        v, t = vocab, length
        self.prefixes = torch.tensor(list(itertools.product(range(v), repeat=t - 1)), dtype=torch.long).reshape(-1, t - 1)
        self.inputs = torch.cat([torch.full((len(self.prefixes), 1), v), self.prefixes], dim=1)  # token V = start
        self.seqs = torch.tensor(list(itertools.product(range(v), repeat=t)), dtype=torch.long)
        self.reward = (self.seqs.sum(-1) % self.modulus == 0).to(torch.float32)
        assert torch.equal(self.seqs[:, : t - 1], self.prefixes.repeat_interleave(v, 0))

    @property
    def n_seqs(self) -> int:
        return self.vocab**self.length

    def model(self, seed: int) -> torch.nn.Module:
        """A random-init tiny Qwen2 (tied embeddings, so ``lm_head`` = the embeddings stays full precision)."""
        from transformers import AutoModelForCausalLM, Qwen2Config

        cfg = Qwen2Config(vocab_size=self.vocab + 1, hidden_size=self.hidden, intermediate_size=2 * self.hidden,
                          num_hidden_layers=self.layers, num_attention_heads=4, num_key_value_heads=4,
                          max_position_embeddings=16, tie_word_embeddings=True)
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()

    def token_logprobs(self, model: torch.nn.Module) -> Tensor:
        """(V^T, T) log-probs of every sequence's tokens under ``model`` with logits scaled by ``beta``."""
        v, t, p = self.vocab, self.length, len(self.prefixes)
        logits = model(input_ids=self.inputs, use_cache=False).logits[:, :, :v] * self.beta
        logp = torch.log_softmax(logits, dim=-1)  # (P, T, V): position t predicts y_{t+1}
        lp_prefix = logp[:, : t - 1].gather(-1, self.prefixes.unsqueeze(-1)).squeeze(-1)  # (P, T-1)
        lp = torch.cat([lp_prefix.unsqueeze(1).expand(p, v, t - 1), logp[:, t - 1].unsqueeze(-1)], dim=-1)
        return lp.reshape(p * v, t)


# ------------------------------------------------------------------------------------------ population diagnostics
def population_diagnostics(lp: Tensor, mu_lp: Tensor, reward: Tensor, cap: float = TIS_CAP) -> dict[str, float]:
    """Exact expectations under mu of the library's per-batch diagnostics (correction.py), all detached.

    D = E_mu[mean_t |delta_t|]; ESS ratio = (E_mu W)^2 / E_mu[W^2] with W = exp(sum_t delta) (Kish ratio of the
    sequence weights as B -> inf; also the seq_geo and token variants); V = CV of min(rho, cap) over tokens under
    mu; k3 = E_mu[mean_t (rho - 1 - delta)]; plus accuracy and per-token entropy of pi.
    """
    from rollwise.rlvr.correction import LOG_RATIO_BOUND

    lp, mu_lp = lp.detach().double(), mu_lp.detach().double()
    t = lp.shape[1]
    mu = mu_lp.sum(-1).exp()
    mu = mu / mu.sum()
    pi = lp.sum(-1).exp()
    delta = (lp - mu_lp).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
    rho = delta.exp()
    tok = mu[:, None].expand_as(delta) / t  # token population: each (y, t) has mass mu(y) / T

    def ess(log_w: Tensor, mass: Tensor) -> float:
        w = (log_w - log_w.max()).exp()
        return float((mass * w).sum() ** 2 / (mass.sum() * (mass * w * w).sum()))

    def cv(x: Tensor) -> float:
        m = (tok * x).sum()
        return float(((tok * x * x).sum() - m * m).clamp_min(0).sqrt() / m)

    seq = delta.sum(-1).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
    return {
        "accuracy": float((pi * reward).sum()), "accuracy_mu": float((mu * reward).sum()),
        "entropy": float(-(pi * lp.sum(-1)).sum() / t),
        "abs_delta": float((tok * delta.abs()).sum()),
        "ess_ratio": ess(seq, mu), "ess_seq_geo": ess(delta.mean(-1), mu), "ess_token": ess(delta.flatten(), tok.flatten()),
        "k3_kl": float((tok * (rho - 1 - delta)).sum()),
        "weight_cv": cv(rho), "trunc_weight_cv": cv(rho.clamp(max=cap)),
        "clip_frac": float((tok * (rho > cap).double()).sum()),
    }


def ais_lambda(diag: dict[str, float], params: dict[str, Any]) -> dict[str, float]:
    """lambda of ``AISConfig(**params)`` from population diagnostics, through the library's own maps."""
    from rollwise.rlvr.correction import AISConfig, divergence_severity, mix_coefficient, variance_penalty

    cfg = AISConfig(**params)
    cfg.validate()
    if cfg.variance != "cv" or cfg.combine != "product" or cfg.interp != "linear" or cfg.ema != 0:
        raise ValueError("the exact benchmark implements variance=cv, combine=product, interp=linear, ema=0 only")
    r = {"seq_raw": diag["ess_ratio"], "seq_geo": diag["ess_seq_geo"], "token": diag["ess_token"]}[cfg.ess_weights]
    s, v = divergence_severity(diag["abs_delta"], cfg.tau_d), diag["trunc_weight_cv"]
    return {"lambda": mix_coefficient(s, r, v, cfg), "S": s, "R": r, "V": v, "P": variance_penalty(v, cfg.tau_v)}


# ------------------------------------------------------------------------------------------ exact gradients
def arm_weights(arm: str, delta: Tensor, lam: float = 0.0) -> Tensor:
    """Per-token weights (N, T) of ``arm``'s estimator, from the library's corrections."""
    from rollwise.rlvr.correction import ais_weights, bounded_exp, make_correction

    ones = torch.ones_like(delta)
    if arm in ("fp32", "none"):
        return ones
    if arm == "token-TIS":
        return make_correction("tis", level="token", cap=TIS_CAP).weights(delta, ones)[0]
    if arm == "seq-IS":
        return make_correction("tis", level="sequence", cap=math.inf).weights(delta, ones)[0]
    if arm in AIS_ARMS:
        return ais_weights(bounded_exp(delta).clamp(max=TIS_CAP), lam, "linear")
    raise ValueError(f"unknown arm {arm!r}; valid: {', '.join(ARMS)}")


def exact_gradients(toy: Toy, model: torch.nn.Module, mu_model: torch.nn.Module | None, arms: list[str],
                    lambdas: dict[str, float] | None = None) -> tuple[dict[str, Tensor], dict[str, float]]:
    """Exact expected gradient (ascent direction, flat) of each estimator in ``arms`` at ``model``'s weights.

    ``fp32`` is the on-policy gradient sum_y pi(y) (R - b) grad log pi(y); the others are
    sum_y mu(y) (R - b) sum_t w_t grad log pi(y_t | y_<t), mu from ``mu_model`` (None: mu = pi).
    ``lambdas[arm]`` overrides an AIS arm's lambda (default: from the population diagnostics).
    Returns the gradients and the population diagnostics (with ``lambda/<arm>`` etc. for the AIS arms).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    lp = toy.token_logprobs(model)
    with torch.no_grad():
        mu_lp = lp.detach().clone() if mu_model is None else toy.token_logprobs(mu_model)
    diag = population_diagnostics(lp, mu_lp, toy.reward)
    for arm, ais_params in AIS_ARMS.items():
        if arm in arms:
            a = ais_lambda(diag, ais_params)
            if lambdas and arm in lambdas:
                a["lambda"] = lambdas[arm]
            diag.update({f"{k}/{arm}": v for k, v in a.items()})
    pi_seq = lp.detach().sum(-1).exp()
    mu_seq = mu_lp.sum(-1).exp()
    b = float((pi_seq * toy.reward).sum())
    delta = lp.detach() - mu_lp
    grads = {}
    for i, arm in enumerate(arms):
        q = pi_seq if arm == "fp32" else mu_seq
        w = arm_weights(arm, delta, diag.get(f"lambda/{arm}", 0.0))
        coef = (q * (toy.reward - b))[:, None] * w  # detached: the weights re-weight, they are not differentiated
        g = torch.autograd.grad((coef * lp).sum(), params, retain_graph=i < len(arms) - 1)
        grads[arm] = torch.cat([x.flatten() for x in g])
    return grads, diag


def rel_err(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


# ------------------------------------------------------------------------------------------ training
def train_arm(toy: Toy, arm: str, seed: int, fmt: str, steps: int, lr: float, optimizer: str = "adam",
              bias_every: int = 1, log: bool = False) -> list[dict[str, float]]:
    """``steps`` exact-gradient steps of one arm; one record per step (before the update) and a final one.

    The fp32 gradient at the arm's weights (for ``rel_bias``) costs a second backward pass, so it is computed
    every ``bias_every`` steps and at the last update, and at every step for ``seq-IS``, whose equality with it
    is asserted.
    """
    from rollwise.rlvr.engines.quantized import QuantizedEngine

    model = toy.model(seed)
    engine = None if arm == "fp32" else QuantizedEngine(model, None, fmt=fmt)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr))
    records = []
    t0 = time.perf_counter()
    for step in range(steps + 1):
        if step == steps:  # final evaluation only
            with torch.no_grad():
                lp = toy.token_logprobs(model)
                mu_lp = lp if engine is None else toy.token_logprobs(engine.model)
            records.append({"step": step, **population_diagnostics(lp, mu_lp, toy.reward)})
            if arm in AIS_ARMS:
                records[-1].update({f"ais/{k}": v for k, v in ais_lambda(records[-1], AIS_ARMS[arm]).items()})
            break
        with_ref = arm != "fp32" and (arm == "seq-IS" or step % bias_every == 0 or step == steps - 1)
        wanted = [arm, "fp32"] if with_ref else [arm]
        grads, diag = exact_gradients(toy, model, None if engine is None else engine.model, wanted)
        g = grads[arm]
        rec = {"step": step, **{k: v for k, v in diag.items() if "/" not in k},
               "grad_norm": float(g.norm())}
        if arm in AIS_ARMS:
            rec.update({f"ais/{k}": diag[f"{k}/{arm}"] for k in ("lambda", "S", "R", "V", "P")})
        if with_ref:
            rec["rel_bias"] = rel_err(g, grads["fp32"])
            rec["cos_to_fp32"] = float(g @ grads["fp32"] / (g.norm() * grads["fp32"].norm()).clamp_min(1e-30))
        if arm == "seq-IS" and not rec["rel_bias"] < SEQ_IS_TOL:
            raise AssertionError(f"seq-IS gradient differs from the fp32 gradient at step {step}: "
                                 f"relative error {rec['rel_bias']:.2e} >= {SEQ_IS_TOL}")
        records.append(rec)
        opt.zero_grad(set_to_none=True)
        offset = 0
        for p in params:  # descend on -J: p.grad = -g
            n = p.numel()
            p.grad = -g[offset:offset + n].view_as(p).clone()
            offset += n
        opt.step()
        if engine is not None:
            engine.sync_weights(model)  # mu = quantized copy of the NEW weights
    if log:
        print(f"  {fmt if engine is not None else '-':9s} seed {seed} {arm:12s} acc {records[0]['accuracy']:.4f} -> {records[-1]['accuracy']:.4f} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
    return records


# ------------------------------------------------------------------------------------------ summary
Runs = dict[str, dict[str, dict[int, list[dict[str, float]]]]]  # fmt -> arm -> seed -> records


def _window(records: list[dict], key: str, first: bool, frac: float = 0.1) -> float:
    """Mean of ``key`` over the first / last ``frac`` of the update steps (records that have it)."""
    n = len(records) - 1  # the last record is the final evaluation
    k = max(1, int(round(frac * n)))
    part = records[:k] if first else records[n - k:n]
    vals = [r[key] for r in part if key in r]
    return statistics.fmean(vals) if vals else float("nan")


def _corr(records: list[dict], a: str, b: str) -> float:
    """Pearson correlation over training steps of two logged metrics."""
    pairs = [(r[a], r[b]) for r in records[:-1] if a in r and b in r]
    return pearson(*map(list, zip(*pairs))) if pairs else float("nan")


def _acc_at(records: list[dict], step: int) -> float:
    return next(r["accuracy"] for r in records if r["step"] == step)


def checkpoints(steps: int) -> list[int]:
    return sorted({s for s in (steps // 8, steps // 4, steps // 2, steps) if s > 0})


def summarise(runs: Runs, steps: int) -> dict[str, list[dict[str, Any]]]:
    """Tables: mean per arm, per arm and seed, AIS comparison, mismatch trends, accuracy at checkpoints."""
    per_seed, compare, trends, ckpt = [], [], [], []
    marks = checkpoints(steps)
    for fmt, by_arm in runs.items():
        fp32 = by_arm["fp32"]
        for arm, by_seed in by_arm.items():
            for seed, rec in by_seed.items():
                final, ref = rec[-1]["accuracy"], fp32[seed][-1]["accuracy"]
                row = {"fmt": fmt, "arm": arm, "seed": seed, "acc_start": rec[0]["accuracy"], "acc_final": final,
                       "diff_to_fp32_pts": 100 * (final - ref), "within_1pt": abs(final - ref) <= 0.01,
                       "entropy_start": rec[0]["entropy"], "entropy_final": rec[-1]["entropy"]}
                if arm != "fp32":
                    gaps = [(100 * (r["accuracy"] - f["accuracy"]), r["step"]) for r, f in zip(rec, fp32[seed])]
                    worst = max(gaps, key=lambda g: abs(g[0]))
                    row.update({"max_abs_diff_pts": abs(worst[0]), "signed_at_max": worst[0], "step_at_max": worst[1],
                                "rel_bias_first10": _window(rec, "rel_bias", True),
                                "rel_bias_last10": _window(rec, "rel_bias", False),
                                "cos_min": min((r["cos_to_fp32"] for r in rec if "cos_to_fp32" in r),
                                               default=float("nan"))})
                per_seed.append(row)
                ckpt.append({"fmt": fmt, "arm": arm, "seed": seed,
                             **{f"acc@{m}": _acc_at(rec, m) for m in marks},
                             **({f"diff@{m}_pts": 100 * (_acc_at(rec, m) - _acc_at(fp32[seed], m)) for m in marks}
                                if arm != "fp32" else {})})
                if arm == "fp32":
                    continue
                trends.append({
                    "fmt": fmt, "arm": arm, "seed": seed,
                    "entropy_first10": _window(rec, "entropy", True), "entropy_last10": _window(rec, "entropy", False),
                    "D_first10": _window(rec, "abs_delta", True), "D_last10": _window(rec, "abs_delta", False),
                    "ess_first10": _window(rec, "ess_ratio", True), "ess_last10": _window(rec, "ess_ratio", False),
                    "k3_first10": _window(rec, "k3_kl", True), "k3_last10": _window(rec, "k3_kl", False),
                    "corr_D_entropy": _corr(rec, "abs_delta", "entropy"),
                    "corr_ess_entropy": _corr(rec, "ess_ratio", "entropy"),
                })
        for arm in AIS_ARMS:
            for seed, rec in by_arm.get(arm, {}).items():
                acc, ref = rec[-1]["accuracy"], fp32[seed][-1]["accuracy"]
                tis, none = by_arm.get("token-TIS", {}).get(seed), by_arm.get("none", {}).get(seed)
                first, last = _window(rec, "ais/lambda", True), _window(rec, "ais/lambda", False)
                compare.append({
                    "fmt": fmt, "arm": arm, "seed": seed, "acc": acc, "fp32": ref,
                    "minus_fp32_pts": 100 * (acc - ref), "within_1pt_of_fp32": abs(acc - ref) <= 0.01,
                    "minus_TIS_pts": 100 * (acc - tis[-1]["accuracy"]) if tis else float("nan"),
                    "minus_none_pts": 100 * (acc - none[-1]["accuracy"]) if none else float("nan"),
                    "lambda_first10": first, "lambda_last10": last,
                    "lambda_trend": "rises" if last > first else "falls" if last < first else "flat",
                    "S_first10": _window(rec, "ais/S", True), "S_last10": _window(rec, "ais/S", False),
                    "R_first10": _window(rec, "ais/R", True), "R_last10": _window(rec, "ais/R", False),
                    "P_first10": _window(rec, "ais/P", True), "P_last10": _window(rec, "ais/P", False),
                    "corr_lambda_entropy": _corr(rec, "ais/lambda", "entropy"),
                })
    table = []
    keys = sorted({(r["fmt"], r["arm"]) for r in per_seed}, key=lambda k: (k[0], ARMS.index(k[1])))
    for fmt, arm in keys:
        rs = [r for r in per_seed if (r["fmt"], r["arm"]) == (fmt, arm)]
        row = {"fmt": fmt, "arm": arm, **{f"seed{r['seed']}": r["acc_final"] for r in rs},
               "mean": statistics.fmean(r["acc_final"] for r in rs),
               "mean_diff_to_fp32_pts": statistics.fmean(r["diff_to_fp32_pts"] for r in rs),
               "seeds_within_1pt": f"{sum(r['within_1pt'] for r in rs)}/{len(rs)}"}
        if arm != "fp32":
            row["rel_bias_first10"] = statistics.fmean(r["rel_bias_first10"] for r in rs)
            row["rel_bias_last10"] = statistics.fmean(r["rel_bias_last10"] for r in rs)
        table.append(row)
    return {"table": table, "per_seed": per_seed, "compare": compare, "trends": trends, "checkpoints": ckpt}


CURVES = {  # key -> (label, arms plotted)
    "accuracy": ("exact accuracy E_pi[R]", ARMS),
    "entropy": ("entropy of pi per token", ARMS),
    "ais/lambda": ("AIS lambda", tuple(AIS_ARMS)),
    "ess_ratio": ("sequence ESS ratio under mu", ARMS[1:]),
    "abs_delta": ("mean |delta| under mu (D)", ARMS[1:]),
    "rel_bias": ("||g - grad J|| / ||grad J||", ARMS[1:]),
}
CURVE_KEYS = ("accuracy", "accuracy_mu", "entropy", "abs_delta", "ess_ratio", "k3_kl", "trunc_weight_cv",
              "grad_norm", "rel_bias", "cos_to_fp32", "ais/lambda", "ais/S", "ais/R", "ais/P")


def _mean_curve(by_seed: dict[int, list[dict]], key: str) -> tuple[list[float], list[float]]:
    recs = list(by_seed.values())
    xs = [r["step"] for r in recs[0] if key in r]
    ys = [statistics.fmean(next(x[key] for x in rec if x["step"] == s) for rec in recs) for s in xs]
    return xs, ys


def plots(runs: Runs, out: Path, stem: str) -> list[str]:
    from rollwise.report import line_plot

    figures = []
    for fmt, by_arm in runs.items():
        prefix = stem if len(runs) == 1 else f"{stem}_{fmt}"
        for key, (label, arms) in CURVES.items():
            series = {a: _mean_curve(by_arm[a], key) for a in arms if a in by_arm}
            series = {a: xy for a, xy in series.items() if xy[0]}
            if series:
                name = f"{prefix}_{key.replace('/', '_')}.png"
                line_plot(out / name, series, "step", label, title=f"{fmt}: {label} (mean over seeds)",
                          logy=key in ("rel_bias", "abs_delta"))
                figures.append(name)
        ref = _mean_curve(by_arm["fp32"], "accuracy")[1]
        diff = {a: (xs, [100 * (y - r) for y, r in zip(ys, ref)]) for a in ARMS[1:] if a in by_arm
                for xs, ys in [_mean_curve(by_arm[a], "accuracy")]}
        if diff:
            name = f"{prefix}_accuracy_minus_fp32.png"
            line_plot(out / name, diff, "step", "E_pi[R] - fp32's (points)",
                      title=f"{fmt}: accuracy minus fp32 (mean over seeds)")
            figures.append(name)
        gap = {a: (xs, [1.0 - y for y in ys]) for a in ARMS if a in by_arm
               for xs, ys in [_mean_curve(by_arm[a], "accuracy")]}
        name = f"{prefix}_error.png"
        line_plot(out / name, gap, "step", "1 - E_pi[R] (log scale)", title=f"{fmt}: error rate (mean over seeds)",
                  logy=True)
        figures.append(name)
    return figures


def compact_curves(runs: Runs, steps: int) -> dict[str, Any]:
    """Curves for the JSON: columns per (fmt, arm, seed), every ``steps // 100``-th step and the last."""
    every = max(1, steps // 100)
    out: dict[str, Any] = {}
    for fmt, by_arm in runs.items():
        for arm, by_seed in by_arm.items():
            for seed, rec in by_seed.items():
                keep = [r for r in rec if r["step"] % every == 0 or r["step"] == steps]
                out[f"{fmt}/{arm}/{seed}"] = {
                    k: [[r["step"], float(f"{r[k]:.6g}")] for r in keep if k in r]
                    for k in CURVE_KEYS if any(k in r for r in keep)}
    return out


def _span(vals: list[float], digits: int = 3) -> str:
    return f"{min(vals):+.{digits}f} .. {max(vals):+.{digits}f}"


def summary_lines(p: dict[str, Any]) -> list[str]:
    """Plain statements of what was measured (no thresholds), one block per format."""
    lines = []
    for fmt in p["settings"]["fmts"]:
        rows = [r for r in p["per_seed"] if r["fmt"] == fmt]
        n = len({r["seed"] for r in rows})
        lines.append(f"- **{fmt}**:")
        for arm in ARMS[1:]:
            rs = [r for r in rows if r["arm"] == arm]
            if not rs:
                continue
            d = [r["diff_to_fp32_pts"] for r in rs]
            worst = max(rs, key=lambda r: r["max_abs_diff_pts"])
            lines.append(f"  - {arm}: final minus fp32 {_span(d)} points per seed, below fp32 in "
                         f"{sum(x < 0 for x in d)}/{n} seeds, within 1 point in {sum(r['within_1pt'] for r in rs)}/{n}; "
                         f"largest gap at any step {worst['signed_at_max']:+.3f} points (seed {worst['seed']}, step "
                         f"{worst['step_at_max']}); rel. gradient bias {statistics.fmean(r['rel_bias_first10'] for r in rs):.2e}"
                         f" (first 10%) -> {statistics.fmean(r['rel_bias_last10'] for r in rs):.2e} (last 10%).")
        for arm in AIS_ARMS:
            cs = [c for c in p["compare"] if c["fmt"] == fmt and c["arm"] == arm]
            if not cs:
                continue
            lines.append(f"  - {arm} minus token-TIS {_span([c['minus_TIS_pts'] for c in cs])} points, minus none "
                         f"{_span([c['minus_none_pts'] for c in cs])}; lambda "
                         f"{statistics.fmean(c['lambda_first10'] for c in cs):.3f} (first 10%) -> "
                         f"{statistics.fmean(c['lambda_last10'] for c in cs):.4f} (last 10%), falls in "
                         f"{sum(c['lambda_trend'] == 'falls' for c in cs)}/{len(cs)} seeds; corr(lambda, entropy) "
                         f"{_span([c['corr_lambda_entropy'] for c in cs], 2)}.")
        ts = [t for t in p["trends"] if t["fmt"] == fmt and t["arm"] == "none"]
        if ts:
            def m(k: str, ts: list[dict] = ts) -> float:
                return statistics.fmean(t[k] for t in ts)

            lines.append(f"  - uncorrected arm as pi sharpens (entropy {m('entropy_first10'):.2f} -> "
                         f"{m('entropy_last10'):.2f} nats/token): D {m('D_first10'):.4f} -> {m('D_last10'):.4f}, ESS "
                         f"{m('ess_first10'):.4f} -> {m('ess_last10'):.4f}, k3 {m('k3_first10'):.2e} -> "
                         f"{m('k3_last10'):.2e}; corr(D, entropy) {_span([t['corr_D_entropy'] for t in ts], 2)}, "
                         f"corr(ESS, entropy) {_span([t['corr_ess_entropy'] for t in ts], 2)}.")
    return lines


def markdown(p: dict[str, Any]) -> str:
    from rollwise.report import markdown_table

    s, toy, c = p["settings"], p["toy"], p["checks"]
    lines = [
        "# Exact-gradient training with quantized rollouts: fp32 vs uncorrected vs TIS vs AIS", "",
        f"Command: `{p['command']}`", "",
        f"Wall-clock {p['seconds']:.0f} s on a shared 2-core CPU, 1 torch thread. No sampling anywhere: every "
        "number is an exact sum over all sequences, and the same command gives the same numbers.", "",
        "## Design", "",
        f"- Enumerable toy: V = {toy['vocab']} tokens, T = {toy['length']}, all {toy['n_seqs']} sequences listed; "
        f"reward 1 iff the token sum is divisible by {toy['modulus']} (base rate {toy['base_rate']:.3f}); policy "
        f"pi = a random-init Qwen2 (d = {toy['hidden']}, {toy['layers']} layers, 4 heads, tied embeddings) with "
        f"logits scaled by beta = {toy['beta']}; the seed sets the model initialisation and nothing else.",
        f"- Behaviour policy mu = the library's `QuantizedEngine(policy, fmt={'/'.join(s['fmts'])})` copy (every "
        "Linear but the tied lm_head fake-quantized), re-quantized from the trainer's weights after every step.",
        "- Each arm follows the exact expectation under mu of its estimator, g = sum_y q(y) (R(y) - b) sum_t w_t "
        "grad log pi(y_t | y_<t) with b = E_pi[R] exact: `fp32` q = pi, w = 1 (the exact policy gradient, mu = pi); "
        "`none` q = mu, w = 1; `token-TIS` w_t = min(rho_t, 2); `seq-IS` w = prod_t rho_t untruncated (asserted "
        f"equal to the fp32 gradient at its weights, relative error < {SEQ_IS_TOL:g}, at every step); `AIS` / "
        "`AIS-flipped` w_t = (1 - lambda) + lambda min(rho_t, 2) with the library's `AISConfig()` / "
        "`AISConfig(affordability=\"flipped\")`, so g_AIS = (1 - lambda) g_none + lambda g_TIS exactly.",
        "- lambda from POPULATION diagnostics under mu fed through the library's `divergence_severity` and "
        "`mix_coefficient` (rollwise/rlvr/correction.py, unchanged): D = E_mu[mean_t |delta_t|], R = (E_mu W)^2 / "
        "E_mu[W^2], W = exp(sum_t delta) (a batch's Kish ratio as B -> inf), V = CV of min(rho, 2) over tokens "
        "under mu; delta = log pi - log mu.",
        f"- Optimizer: {s['optimizer']}, lr {s['lr']}, {s['steps']} steps, the same for every arm; seeds "
        f"{s['seeds']}. Accuracy = exact E_pi[R] of the trainer's weights. first10/last10 = mean over the first / "
        "last 10% of the update steps. rel_bias = ||g_arm - grad J|| / ||grad J|| at the arm's own weights (every "
        f"{s['bias_every']} steps; every step for seq-IS).",
        "",
        "## Measured (computed from the tables below)", "", *summary_lines(p), "",
        "## Final exact accuracy", "", markdown_table(p["table"]), "",
        "## Accuracy during training (and difference to fp32 in points)", "", markdown_table(p["checkpoints"]), "",
        "## AIS vs fp32 / token-TIS / uncorrected, and lambda's trend", "", markdown_table(p["compare"]), "",
        "## Mismatch as the policy sharpens (first 10% -> last 10% of steps)", "", markdown_table(p["trends"]), "",
        "## Per arm and seed", "", markdown_table(p["per_seed"]), "",
        "## Checks", "",
        f"- seq-IS vs fp32 gradient at the same weights: max relative error {c['seq_is_max_rel_err']:.2e} over all "
        f"steps, seeds and formats (asserted < {SEQ_IS_TOL:g} every step); |final accuracy seq-IS - fp32| max "
        f"{c['seq_is_max_final_acc_diff']:.2e}.", "",
    ]
    lines += [f"![{Path(f).stem}]({f})" for f in p["figures"]]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ main
DEFAULT_FMT = "int4"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = bench_parser("rollwise bench ais-exact-training", quick="V=6, T=4, one seed, 40 steps (smoke run)",
                     seeds=None, seeds_help="comma-separated model-init seeds (default 0,1,2; quick 0)",
                     description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per arm (default 300; quick 40)")
    p.add_argument("--fmt", default=DEFAULT_FMT,
                   help="comma-separated rollout formats (engines/quantized.py); results are named after them "
                        "unless the default")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (all arms)")
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {', '.join(ARMS)} "
                                                          "(fp32 always runs)")
    p.add_argument("--bias-every", type=int, default=10, help="steps between rel_bias measurements")
    p.add_argument("--out", default=str(RESULTS), help="folder for the json/md/png results")
    toy = p.add_argument_group("the toy (class Toy): every sequence of T tokens over V, enumerated")
    toy.add_argument("--vocab", type=int, default=None, help="tokens V (default 8; quick 6)")
    toy.add_argument("--length", type=int, default=4, help="response length T")
    toy.add_argument("--modulus", type=int, default=7, help="reward 1 iff the token sum is divisible by this")
    toy.add_argument("--beta", type=float, default=4.0, help="inverse temperature on the logits")
    toy.add_argument("--hidden", type=int, default=32, help="model width d")
    toy.add_argument("--layers", type=int, default=2, help="transformer layers")
    args = p.parse_args(argv)
    args.steps = args.steps if args.steps is not None else (40 if args.quick else 300)
    args.seeds = args.seeds if args.seeds is not None else ("0" if args.quick else "0,1,2")
    args.vocab = args.vocab if args.vocab is not None else (6 if args.quick else 8)
    return args


def result_name(args: argparse.Namespace) -> str:
    """``ais_exact_training`` (+ ``_<fmts>`` unless the default format) (+ ``_quick``)."""
    fmts = "" if args.fmt == DEFAULT_FMT else "_" + args.fmt.replace(",", "-")
    return NAME + fmts + ("_quick" if args.quick else "")


def run(args: argparse.Namespace, log: bool = True) -> Runs:
    """Train every arm for every format and seed; the fp32 arm (independent of the format) runs once."""
    toy = Toy(args.vocab, args.length, args.modulus, args.beta, args.hidden, args.layers)
    seeds = [int(x) for x in str(args.seeds).split(",")]
    arms = ["fp32", *[a for a in args.arms.split(",") if a and a != "fp32"]]
    fp32 = {s: train_arm(toy, "fp32", s, "none", args.steps, args.lr, args.optimizer, log=log) for s in seeds}
    runs: Runs = {}
    for fmt in args.fmt.split(","):
        runs[fmt] = {"fp32": fp32}
        for arm in arms[1:]:
            runs[fmt][arm] = {s: train_arm(toy, arm, s, fmt, args.steps, args.lr, args.optimizer,
                                           args.bias_every, log=log) for s in seeds}
    return runs


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    unknown = [a for a in args.arms.split(",") if a and a not in ARMS]
    if unknown:
        print(f"unknown arm(s) {unknown}; valid: {', '.join(ARMS)}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    toy = Toy(args.vocab, args.length, args.modulus, args.beta, args.hidden, args.layers)
    print(f"toy V={toy.vocab} T={toy.length} ({toy.n_seqs} sequences), {args.steps} steps, seeds {args.seeds}, "
          f"fmt {args.fmt}", flush=True)
    runs = run(args)
    stem, out = result_name(args), Path(args.out)
    figures = plots(runs, out, stem)
    seq_is = [(s, rec) for by_arm in runs.values() for s, rec in by_arm.get("seq-IS", {}).items()]
    checks = {
        "seq_is_max_rel_err": max((r["rel_bias"] for _, rec in seq_is for r in rec if "rel_bias" in r),
                                  default=float("nan")),
        "seq_is_max_final_acc_diff": max((abs(rec[-1]["accuracy"] - runs[next(iter(runs))]["fp32"][s][-1]["accuracy"])
                                          for s, rec in seq_is), default=float("nan")),
    }
    payload = {
        "command": " ".join(["rollwise bench ais-exact-training", *argv]),
        "seconds": time.perf_counter() - t0,
        "settings": {**vars(args), "fmts": args.fmt.split(",")},
        "toy": {"vocab": toy.vocab, "length": toy.length, "n_seqs": toy.n_seqs, "modulus": toy.modulus,
                "base_rate": float(toy.reward.mean()), "beta": toy.beta, "hidden": toy.hidden, "layers": toy.layers},
        **summarise(runs, args.steps), "checks": checks, "figures": figures,
        "curves": compact_curves(runs, args.steps),
    }
    md = write_results(stem, payload, markdown(payload), out)
    print(f"wrote {md} ({payload['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
