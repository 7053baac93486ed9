"""Diversity metrics of rlvr.evaluate (ucpo.md 3.1) and a small deterministic UCPO run on MakeN."""

from __future__ import annotations

import math

import pytest
import torch

from rollwise.rlvr.evaluate import (
    conditional_entropy,
    distinct_correct,
    equation_distinct_ratio,
    evaluate_diversity,
    exact_conditional_entropy,
    exact_success_prob,
)
from rollwise.rlvr.job import run_training
from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, tiny_causal_lm
from rollwise.rlvr.policy import build_policy
from rollwise.rlvr.run_config import resolve_config
from rollwise.rlvr.tasks import make_task
from rollwise.rlvr.tasks.make_n import canonical_form
from rollwise.runlog import read_jsonl


def test_distinct_correct_counts_unique_correct_strings() -> None:
    samples = ["1+2+3", "3+2+1", "1+2+3", "9-3", "1+2+3", "2*3"]
    ok = [True, True, True, False, True, True]
    assert distinct_correct(samples, ok) == 3
    assert distinct_correct(samples, [False] * 6) == 0
    with pytest.raises(ValueError):
        distinct_correct(samples, ok[:3])


def test_equation_ratio_merges_commutative_forms() -> None:
    samples = ["1+2+3", "3+2+1", "2*3", "3*2", "9-3", "8-2"]
    ok = [True] * 6
    # canonical forms: 1+2+3 (x2), 2*3 (x2), 9-3, 8-2 -> 4 distinct of 6
    assert equation_distinct_ratio(samples, ok, canonical_form) == pytest.approx(4 / 6)
    assert math.isnan(equation_distinct_ratio(samples, [False] * 6, canonical_form))
    assert equation_distinct_ratio(["4*3-2+1"], [True], canonical_form) == 1.0


def test_conditional_entropy_golden_values() -> None:
    uniform = conditional_entropy(torch.log(torch.full((8,), 0.05)))
    assert uniform["h_norm"] == pytest.approx(1.0) and uniform["mass"] == pytest.approx(0.4)
    assert uniform["max_share"] == pytest.approx(1 / 8)
    p = torch.tensor([0.5, 0.25, 0.125, 0.125]) * 0.8
    got = conditional_entropy(p.log())
    h = -(0.5 * math.log(0.5) + 0.25 * math.log(0.25) + 2 * 0.125 * math.log(0.125))
    assert got["entropy"] == pytest.approx(h) and got["h_norm"] == pytest.approx(h / math.log(4))
    assert got["mass"] == pytest.approx(0.8) and got["max_share"] == pytest.approx(0.5)
    assert math.isnan(conditional_entropy(torch.tensor([-1.0]))["h_norm"])


def test_exact_conditional_entropy_scores_every_correct_string() -> None:
    tok = char_tokenizer()
    model = tiny_causal_lm(tok, TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64))
    task = make_task("make_n", ops="+-")
    examples = task.examples("test")[:3]
    sets = [task.correct_set(e.columns["target"]) for e in examples]
    got = exact_conditional_entropy(model, tok, [e.prompt for e in examples], sets, batch_size=7)
    for e, cs, d in zip(examples, sets, got):
        v = exact_success_prob(model, tok, [e.prompt] * len(cs), cs)
        assert d["mass"] == pytest.approx(float(v.sum()), rel=1e-5)
        assert d["max_share"] == pytest.approx(float(v.max() / v.sum()), rel=1e-5)
        assert 0.0 < d["h_norm"] <= 1.0
    with pytest.raises(ValueError, match="empty"):
        exact_conditional_entropy(model, tok, ["x"], [[]])


SMALL = [
    "task.name=make_n", "task.params.ops=+-", "model.tiny.hidden_size=32", "model.tiny.num_layers=1",
    "model.tiny.num_heads=2", "model.tiny.intermediate_size=64", "sft.steps=40", "sft.batch_size=64",
    "sft.lr=3e-3", "sft.examples=2000", "rollout.max_new_tokens=6", "rollout.n=4", "train.prompts_per_step=8",
    "train.steps=3", "train.lr=1e-3", "train.eval_every=0", "train.checkpoint_every=0", "run.report=false",
    "run.threads=1",
]


def test_evaluate_diversity_metrics_are_consistent(tmp_path) -> None:
    cfg = resolve_config(overrides=[*SMALL, f"run.output_dir={tmp_path}"], algorithm="ucpo")
    task = make_task(cfg.task.name, **cfg.task.params)
    policy, tok = build_policy(cfg, task)
    ev = evaluate_diversity(policy, tok, task, cfg, n=16, ks=(1, 4, 16), max_prompts=4)
    assert set(ev) >= {"pass@1", "pass@4", "pass@16", "distinct_correct@16", "equation_ratio", "exact_pass@1",
                       "h_norm", "max_share"}
    assert 0 <= ev["pass@1"] <= ev["pass@4"] <= ev["pass@16"] <= 1
    assert 0 <= ev["distinct_correct@16"] <= 16 and 0 < ev["h_norm"] <= 1
    assert 0 < ev["exact_pass@1"] < 1


def test_ucpo_preset_trains_on_make_n_deterministically(tmp_path) -> None:
    runs = []
    for name in ("a", "b"):
        cfg = resolve_config(overrides=[*SMALL, f"run.output_dir={tmp_path / name}",
                                        "algorithm.estimator_params.tau=0.5"], algorithm="ucpo")
        assert cfg.algorithm.estimator == "ucpo" and cfg.rollout.n == 4 and cfg.algorithm.loss.dual_clip_c == 3.0
        run_training(cfg)
        recs = read_jsonl(tmp_path / name / "metrics.jsonl")
        runs.append([{k: v for k, v in r.items() if not k.startswith(("time/", "wall", "tokens_per_s"))}
                     for r in recs])
    assert runs[0] == runs[1]
    assert len(runs[0]) == 4 and all(math.isfinite(r["loss"]) for r in runs[0][1:])


def test_make_n_lex_ranking_is_sorted_zipf_and_default_unchanged() -> None:
    lex = make_task("make_n", sft_rank="lex", sft_zipf=1.0)
    n = lex.targets("train")[0]
    cs = lex.correct_set(n)
    dist = lex.sft_distribution(n)
    probs = [dist[c] for c in cs]  # correct_set is sorted: rank r = position r
    assert probs == sorted(probs, reverse=True) and probs[0] / probs[-1] == pytest.approx(len(cs))
    assert probs[0] == pytest.approx(1.0 / sum(1.0 / r for r in range(1, len(cs) + 1)))
    rnd = make_task("make_n", sft_zipf=1.0).sft_distribution(n)
    assert rnd == make_task("make_n", sft_zipf=1.0, sft_rank="random").sft_distribution(n)
    assert [rnd[c] for c in cs] != probs
    with pytest.raises(Exception, match="sft_rank"):
        make_task("make_n", sft_rank="alphabetical")
