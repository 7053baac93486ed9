"""benchmarks/decode_vs_score.py: the CoDistill cost-model arithmetic (issue #6), on hand-made numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollwise.cli import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    return load_benchmark("decode_vs_score")


def test_cost_model_hand_computed():
    bench = _bench()
    # large: gen(G)=100, score(G)=50, update(G)=150, score(M)=100; small: gen(M)=20, score(M)=5, update(G)=10
    res = bench.cost_model(gen_l_g=100, score_l_g=50, update_l_g=150, score_l_m=100,
                           gen_s_m=20, score_s_m=5, update_s_g=10)
    # step: GRPO 100+50+150 = 300; CoDistill 20+5+100+10+150 = 285 -> 5% saving
    assert res["step"]["grpo"] == pytest.approx(300.0)
    assert res["step"]["codistill"] == pytest.approx(285.0)
    assert res["step"]["saving_pct"] == pytest.approx(5.0)
    # pipeline (spec 2.2): GRPO 100+150 = 250; CoDistill 20+100+150 = 270 -> -8% (slower)
    assert res["pipeline"]["grpo"] == pytest.approx(250.0)
    assert res["pipeline"]["codistill"] == pytest.approx(270.0)
    assert res["pipeline"]["saving_pct"] == pytest.approx(-8.0)
    # large-only: GRPO 300; CoDistill 100+150 = 250 -> 16.67%
    assert res["large"]["saving_pct"] == pytest.approx(100.0 / 6.0)


def test_cost_model_paper_regime_and_cells():
    bench = _bench()
    # decoding dominating (the paper's regime): gen_L = 10x score_L, the small model nearly free
    res = bench.cost_model(gen_l_g=1000, score_l_g=100, update_l_g=300, score_l_m=200,
                           gen_s_m=50, score_s_m=5, update_s_g=5)
    assert res["step"]["saving_pct"] == pytest.approx(100.0 * (1 - 560 / 1400))
    assert res["step"]["saving_pct"] >= bench.TARGET_SAVING
    # the cell lookup uses G rows = 16 x 8 and M rows = 16 x 16
    cells = {("L", 128, 4): {"decode": 100, "score": 50, "update": 150},
             ("L", 256, 4): {"decode": 180, "score": 100, "update": 290},
             ("S", 128, 4): {"decode": 15, "score": 3, "update": 10},
             ("S", 256, 4): {"decode": 20, "score": 5, "update": 18}}
    from_cells = bench.cost_model_from_cells(cells, "L", "S", 4)
    assert from_cells == bench.cost_model(100, 50, 150, 100, 20, 5, 10)


def test_report_writes_results_from_measured_cells(tmp_path):
    """The report on hand-made medians (the measuring ``main --quick`` takes over 5 s, so it is not run here)."""
    import argparse
    import json

    bench = _bench()
    measured = {}
    for (name, rows), (dec, sc, upd) in {("small", 128): (15, 3, 10), ("small", 256): (20, 5, 18),
                                         ("large_v2", 128): (100, 50, 150), ("large_v2", 256): (180, 100, 290)
                                         }.items():
        measured[(name, rows, 4)] = {"decode": dec, "score": sc, "update": upd, "optimizer_step": 1.0,
                                     "decode_over_score": dec / sc, "update_over_score": upd / sc, "reps": 1}
    args = argparse.Namespace(quick=True, reps=1, threads=1, out=str(tmp_path), models=None, tokens=None, name=None)
    assert bench.report(args, ("small", "large_v2"), (4,), 1, {"small": 1, "large_v2": 2}, measured, 1.0, 6) == 0
    data = json.loads((tmp_path / "decode_vs_score_quick.json").read_text())
    assert data["cost_model"]["large_v2/T=4"]["step"]["saving_pct"] == pytest.approx(5.0)
    md = (tmp_path / "decode_vs_score_quick.md").read_text()
    assert "reaching the issue's 10%**: large_v2 T=4 large-only saving (16.7%)." in md


def test_registered_in_cli():
    from rollwise.cli import BENCHES

    assert BENCHES["decode-vs-score"] == "decode_vs_score.py"
    assert (ROOT / "benchmarks" / BENCHES["decode-vs-score"]).exists()
