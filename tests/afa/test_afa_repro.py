"""End-to-end: the --quick repro learns the non-myopic strategy on CUBE-NM (NM-PPG), GDFS and REINFORCE do not."""

from pathlib import Path

import pytest

from rollwise.afa.repro import run

pytestmark = pytest.mark.integration  # spawned processes, Ray, TRL or a whole quick repro


def test_quick_repro_learns_non_myopic_strategy(tmp_path: Path):
    report = run(quick=True, out_dir=tmp_path)
    rows = {r.name: r for r in report.rows}
    for key in ("AC1 CUBE-NM AUC(NM-PPG) - AUC(GDFS), mean", "AC2 CUBE-NM mean AUC(NM-PPG)",
                "AC3 context group in first 2 acquisitions, NM-PPG",
                "AC4 CUBE-NM AUC(NM-PPG) - AUC(REINFORCE), equal epochs", "AC7 random on CUBE-NM, AUC"):
        assert rows[key].passed, (key, rows[key].ours)
    assert all(Path(f).exists() for f in report.figures) and len(report.figures) >= 3
    assert report.write(tmp_path).exists()
