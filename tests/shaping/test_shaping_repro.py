"""End to end: the --quick repro learns the chain with EXPLORS and not without shaping; runs are deterministic."""

import json

import numpy as np
import pytest

from rollwise.shaping import repro
from rollwise.shaping.config import ExplorsConfig
from rollwise.shaping.training import run_method

pytestmark = pytest.mark.integration  # spawned processes, Ray, TRL or a whole quick repro


def test_same_seed_same_numbers_tabular():
    cfg = ExplorsConfig(episodes=400, eval_every=50)
    a, b = (run_method("chain", "explors", cfg, seed=3) for _ in range(2))
    assert a.returns == b.returns and a.first_success == b.first_success
    c = run_method("room", "lirpg", cfg, seed=3)
    d = run_method("room", "lirpg", cfg, seed=3)
    assert c.returns == d.returns


def test_same_seed_same_numbers_neural():
    cfg = ExplorsConfig.neural(episodes=30, eval_every=10, reward_period=5, learned_off_episodes=10, hidden=32)
    a, b = (run_method("linek", "explors", cfg, seed=1) for _ in range(2))
    assert a.returns == b.returns
    s1, s2 = (run_method("linek", "sors", cfg, seed=1) for _ in range(2))
    assert s1.returns == s2.returns


def test_quick_repro_explors_learns_chain_and_orig_does_not(tmp_path):
    report = repro.run(quick=True, out_dir=tmp_path)
    explors = next(r for r in report.rows if r.name.startswith("A-EX-1 Chain EXPLORS"))
    orig = next(r for r in report.rows if r.name.startswith("A-EX-1 Chain Orig"))
    gap = next(r for r in report.rows if r.name.startswith("A-EX-2"))
    assert explors.ours >= 8 and explors.passed
    assert orig.ours <= 0.5 and orig.passed
    assert gap.ours >= 3
    for fig in report.figures:
        assert (tmp_path / fig.split("/")[-1]).exists()
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert {c["method"] for c in curves} == {"orig", "explob", "selfrs", "explors", "sors"}
    report.write(tmp_path)
    payload = json.loads((tmp_path / "result.json").read_text())
    assert payload["name"] == "explors" and len(payload["rows"]) == 3


@pytest.mark.slow
def test_full_repro_acceptance(tmp_path):
    report = repro.run(quick=False, out_dir=tmp_path)
    assert all(r.passed is not False for r in report.rows), report.to_markdown()
    assert np.isfinite([r.ours for r in report.rows if isinstance(r.ours, float)]).all()
