"""End to end: the --quick repro trains both models and UWM learns the indicator (learning happened)."""

from pathlib import Path

import pytest

from rollwise.worldmodels import repro

pytestmark = pytest.mark.integration  # spawned processes, Ray, TRL or a whole quick repro


def test_quick_repro(tmp_path):
    report = repro.run(quick=True, out_dir=tmp_path)
    rows = {r.name: r for r in report.rows}
    assert rows["UWM-CF acc correct (quick gate)"].passed  # ≥ majority + 0.10 after 800 steps
    uwm = float(rows["UWM-CF acc correct"].ours.split()[0])
    lstm = float(rows["LSTM-CF acc correct"].ours.split()[0])
    assert uwm > lstm
    assert rows["params LSTM-JEPA (h=12)"].passed and rows["param mismatch (P_U - P_L)/P_L, abs"].passed
    assert rows["invariant drift, 30 blind steps (complex128)"].passed
    assert all(Path(f).exists() for f in report.figures) and len(report.figures) == 3
    assert report.write(tmp_path).exists()
