"""benchmarks/testbed_properties.py: the quick variant end to end on the CI bases, and its measures."""

from __future__ import annotations

import json

import numpy as np

from rollwise.cli import BENCHES, load_benchmark


def test_registered():
    assert BENCHES["testbed-properties"] == "testbed_properties.py"


def test_correlations_and_spread_golden():
    bench = load_benchmark("testbed_properties")
    v0 = np.array([0.1, 0.2, 0.3, 0.4])
    c = bench.correlations(v0, np.array([0.2, 0.4, 0.6, 0.9]))
    assert c["spearman"] == 1.0 and 0.99 < c["pearson"] < 1.0 and abs(c["mean_abs_change"] - 0.275) < 1e-12
    assert bench.correlations(v0, v0[::-1].copy())["spearman"] == -1.0
    s = bench.spread(np.array([0.0, 0.5, 1.0, 0.06]))
    assert s["frac_in_[0.05,0.95]"] == 0.5 and s["median"] == 0.28


def test_quick_run_writes_results(tmp_path):
    bench = load_benchmark("testbed_properties")
    assert bench.main(["--quick", "--root", str(tmp_path / "base"), "--out", str(tmp_path), "--cache",
                       str(tmp_path / "rows")]) == 0
    data = json.loads((tmp_path / "testbed_properties_quick.json").read_text())
    rows = {r["testbed"]: r for r in data["rows"]}
    assert set(rows) == {"column-arith-ci", "countdown-steps-ci"}
    for r in rows.values():
        assert set(r["stability"]) == {"2", "4"} and r["rollouts"]["samples_per_prompt"] == 4
        assert 0 <= r["rollouts"]["mixed_group_frac"] <= 1 and r["rollouts"]["mean_len"] > 0
    assert rows["countdown-steps-ci"]["answers"]["min_size_C(x)"] >= 1
    assert set(rows["column-arith-ci"]["V0_by_digits"]) <= {"2", "3"}
    assert "## Targets" in (tmp_path / "testbed_properties_quick.md").read_text()


def test_degenerate_base_skips_the_vacuous_stability_verdict():
    """With no reward signal RL does not move the policy, so corr(V_0, V_t) = 1 would pass vacuously."""
    bench = load_benchmark("testbed_properties")
    row = {"testbed": "x", "V0": {"mean": 1e-7, "q90": 1e-6}, "stability": {},
           "rollouts": {"mixed_group_frac": 0.0, "mean_len": 40.0}}
    assert bench.degenerate(row)
    verdict = bench.verdicts([row], 300)[0]
    assert verdict["corr >= 0.9"] == "n/a" and verdict["corr(V_0, V_300)"].startswith("not run")
    assert not bench.degenerate({**row, "rollouts": {"mixed_group_frac": 0.2, "mean_len": 40.0}})
    assert not bench.degenerate({**row, "V0": {"mean": 0.3, "q90": 0.6}})
