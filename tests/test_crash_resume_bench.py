"""``rollwise bench crash-resume``: registration, and (slow) a short kill -9 loop that must pass."""

from __future__ import annotations

import json

import pytest

from rollwise import cli


def test_crash_resume_is_registered_and_compares_metrics_without_timings():
    assert cli.BENCHES["crash-resume"] == "crash_resume.py"
    mod = cli.load_benchmark("crash_resume")
    a = [{"step": 1, "reward": 0.5, "wall": 1.0, "time/step": 0.2}]
    b = [{"step": 1, "reward": 0.5, "wall": 9.0, "time/step": 0.7}]
    assert mod.stable(a) == mod.stable(b)
    assert mod.stable(a) != mod.stable([{"step": 1, "reward": 0.25}])
    assert set(mod.MODES) == {"any", "training", "in-write"}


@pytest.mark.slow
def test_short_crash_loop_resumes_to_the_uninterrupted_run(tmp_path):
    mod = cli.load_benchmark("crash_resume")
    rc = mod.main(["--kills", "3", "--steps", "3", "--out", str(tmp_path / "runs"), "--results", str(tmp_path)])
    result = json.loads((tmp_path / "crash_resume.json").read_text())
    assert rc == 0 and result["passed"] and result["kills"] == 3
