"""benchmarks/default_job.py: the default job on both paths, in fresh processes (smoke: --quick)."""

from __future__ import annotations

import json
import tomllib

import pytest

from rollwise.cli import BENCHES, load_benchmark

pytestmark = pytest.mark.integration  # spawned processes, Ray, TRL or a whole quick repro


def test_quick_runs_both_paths_and_reports_the_speedup(tmp_path):
    bench = load_benchmark("default_job")
    assert bench.main(["--quick", "--out", str(tmp_path / "runs"), "--results", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "default_job_quick.json").read_text())
    assert set(result["runs"]) == {"fast", "hf", "fast-1t", "hf-1t"} and result["speedup"] > 0
    assert len(result["speedups"]) == 4
    for runs in result["runs"].values():
        assert len(runs) == 1 and 0 <= runs[0]["acc_warm"] <= 1 and [s for s, _ in runs[0]["evals"]] == [0, 2, 4]
    for path in ("fast", "hf", "fast-1t", "hf-1t"):  # each arm really ran with its own settings
        cfg = tomllib.loads((tmp_path / "runs" / f"{path}-0" / "config.toml").read_text())
        fast = path.startswith("fast")
        assert (cfg["rollout"]["engine"], cfg["model"]["forward"], cfg["train"]["reuse_logprobs"]) == \
            (("lean", "compact", True) if fast else ("hf", "hf", False))
        assert cfg["sft"]["forward"] == "hf"  # the warm start is transformers' on every arm (the default)
        assert cfg["run"]["threads"] == (1 if path.endswith("-1t") else 0)  # 0: all cores, the default job's


def test_registered_in_cli():
    assert BENCHES["default-job"] == "default_job.py"


def test_sft_step_bench_quick(tmp_path):
    bench = load_benchmark("sft_step")
    assert BENCHES["sft-step"] == "sft_step.py"
    assert bench.main(["--quick", "--threads", "1", "--results", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "sft_step_quick.json").read_text())
    assert set(result["median_step_s"]) == {"hf", "compact"} and result["ratio_hf_over_compact"] > 0
    assert all(len(t) == 3 for t in result["times"].values())
