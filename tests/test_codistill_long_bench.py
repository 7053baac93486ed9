"""benchmarks/codistill_long.py: the real-trainer wall-clock cells at fixed response length (issue #6)."""

from __future__ import annotations

import argparse

import pytest

from rollwise.cli import BENCHES, load_benchmark


def _args(tmp_path, steps: int = 2) -> argparse.Namespace:
    return argparse.Namespace(prompts=4, steps=steps, out=str(tmp_path / "runs"), results=str(tmp_path),
                              quick=True, name="", tokens="6", large_layers="1")


def test_cell_runs_both_trainers_at_fixed_length(tmp_path):
    bench = load_benchmark("codistill_long")
    args = _args(tmp_path)
    trainers = bench.cell_trainers(args, seed=0, layers=1, tokens=6)
    assert trainers["cd_a1"].extra.large.policy.config.num_hidden_layers == 1
    res = bench.run_cell(args, trainers, tokens=6)
    for key in ("step_ratio", "pipeline_ratio", "large_ratio", "lean_ratio"):
        assert res[key] > 0
    assert res["large_generated_tokens"] == 0  # CoDistill's large model never decodes
    assert 0 < res["large_scored_rows"] <= 4 * 16  # M = 16 rollouts per prompt, distinct ones scored
    assert res["phases_ms"]["grpo_large"]["generate"] > 0 and res["phases_ms"]["cd_a1"]["large_score"] > 0
    bench.report(args, [0], {"1/6": {0: res}}, 1.0)
    assert "| 1 | 6 |" in (tmp_path / "codistill_long_quick.md").read_text()


def test_cell_refuses_responses_shorter_than_t(tmp_path):
    """The fixed-length guard can fail: with EOS allowed again, a random-init model stops early."""
    bench = load_benchmark("codistill_long")
    args = _args(tmp_path, steps=3)
    trainers = bench.cell_trainers(args, seed=0, layers=1, tokens=40)
    for tr in trainers.values():
        tr.policy.generation_config.min_new_tokens = 0
    with pytest.raises(RuntimeError, match="not all 40 tokens long"):
        bench.run_cell(args, trainers, tokens=40)


def test_registered_in_cli():
    assert BENCHES["codistill-long"] == "codistill_long.py"
