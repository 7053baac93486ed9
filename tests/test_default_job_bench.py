"""benchmarks/default_job.py: the default job on both paths, in fresh processes (smoke: --quick)."""

from __future__ import annotations

import json
import tomllib

import pytest

from rollwise.cli import BENCHES, load_benchmark

pytestmark = pytest.mark.integration  # spawned processes, Ray, TRL or a whole quick repro


def test_quick_runs_every_arm_and_reports_the_speedups(tmp_path):
    bench = load_benchmark("default_job")
    assert bench.main(["--quick", "--out", str(tmp_path / "runs"), "--results", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "default_job_quick.json").read_text())
    assert set(result["runs"]) == {"now", "previous", "previous-hf", "before"} and result["speedup"] > 0
    assert len(result["speedups"]) == 4
    for runs in result["runs"].values():
        assert len(runs) == 1 and 0 <= runs[0]["acc_warm"] <= 1 and [s for s, _ in runs[0]["evals"]] == [0, 2, 4]
    for arm in result["runs"]:  # each arm really ran with its own settings
        cfg = tomllib.loads((tmp_path / "runs" / f"{arm}-0" / "config.toml").read_text())
        fast = arm in ("now", "previous")
        assert (cfg["rollout"]["engine"], cfg["model"]["forward"], cfg["train"]["reuse_logprobs"]) == \
            (("lean", "compact", True) if fast else ("hf", "hf", False))
        layers, sft_forward, n = (3, "compact", 8) if arm == "now" else (2, "hf", 4)
        assert (cfg["model"]["tiny"]["num_layers"], cfg["sft"]["forward"], cfg["rollout"]["n"]) == (layers, sft_forward, n)
        assert cfg["run"]["threads"] == (1 if arm == "before" else 0)  # 0: all cores, the default job's


def test_previous_default_job_overrides_restore_the_job_as_it_was():
    """PREVIOUS_DEFAULT_JOB applied to DEFAULT_JOB gives, setting by setting, the default job before 2026-12-08."""
    from rollwise.config import to_dict
    from rollwise.rlvr.commands import DEFAULT_JOB, PREVIOUS_DEFAULT_JOB
    from rollwise.rlvr.run_config import resolve_config

    was = {"task": {"name": "add3", "params": {"max_operand": 99, "n_train": 4096, "n_test": 512}},
           "sft": {"steps": 800, "lr": 2e-3, "batch_size": 128},
           "rollout": {"n": 4, "max_new_tokens": 6}, "algorithm": {"estimator": "grpo"},
           "train": {"steps": 100, "prompts_per_step": 32, "lr": 3e-4, "eval_every": 20, "checkpoint_every": 25},
           "run": {"output_dir": "runs/default", "threads": 0}}
    assert to_dict(resolve_config(overrides=PREVIOUS_DEFAULT_JOB, base=DEFAULT_JOB)) == \
        to_dict(resolve_config(base=was))
    assert to_dict(resolve_config(base=DEFAULT_JOB)) != to_dict(resolve_config(base=was))


def test_registered_in_cli():
    assert BENCHES["default-job"] == "default_job.py"


def test_sft_step_bench_quick(tmp_path):
    bench = load_benchmark("sft_step")
    assert BENCHES["sft-step"] == "sft_step.py"
    assert bench.main(["--quick", "--threads", "1", "--results", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "sft_step_quick.json").read_text())
    assert set(result["median_step_s"]) == {"hf", "compact"} and result["ratio_hf_over_compact"] > 0
    assert all(len(t) == 3 for t in result["times"].values())
