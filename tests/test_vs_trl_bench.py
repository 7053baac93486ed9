"""benchmarks/vs_trl.py: the head-to-head with TRL's GRPOTrainer runs end to end (smoke: --quick)."""

from __future__ import annotations

import json

import pytest

from rollwise.cli import BENCHES, load_benchmark

pytestmark = pytest.mark.integration  # spawned processes, Ray, TRL or a whole quick repro


def test_quick_head_to_head_writes_its_table(tmp_path):
    bench = load_benchmark("vs_trl")
    assert bench.main(["--quick", "--threads", "1", "--out", str(tmp_path / "runs"), "--results", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "vs_trl_quick.json").read_text())
    for side in ("trl", "rollwise"):
        assert result[side]["median_step_s"] > 0 and len(result["raw"][side]) == 1
        assert len(result["raw"][side][0]["step_seconds"]) == 5  # both sides timed every step
    assert result["ratio"] > 0 and result["floor_s"]["compact_fwd_bwd"] > 0
    assert {"generate", "update"} <= set(result["rollwise"]["phases_s"])
    assert "/work/" not in json.dumps(result) and str(tmp_path) not in json.dumps(result)
    md = (tmp_path / "vs_trl_quick.md").read_text()
    assert "| TRL GRPOTrainer |" in md and "| rollwise |" in md


def test_registered_in_cli():
    assert BENCHES["vs-trl"] == "vs_trl.py"
