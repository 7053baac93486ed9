"""ITF training recipe (spec tf_bayes.md 1.3, 5.2) and checkpoint selection on the lab's grid."""

import math

import pytest
import torch

from rollwise.dynamics.alrnn import ALRNN, ALRNNConfig, init_params
from rollwise.dynamics.data import make_lorenz
from rollwise.dynamics.repro import ReproConfig, _report_lab_grid, t2_config
from rollwise.dynamics.teacher_forcing import ITFConfig, ITFRun, best_on_grid, make_optimizer, train_itf
from rollwise.report import ReproReport


def _history(d_stsp, every=5):
    return [{"epoch": every * (i + 1), "d_stsp": v, "d_h": 0.1 + i / 100} for i, v in enumerate(d_stsp)]


def test_best_on_grid_reads_only_multiples_of_the_grid():
    # epochs 5..50; the global best (2.0 at 20) is off the 25-grid; NaN/inf count as +inf
    hist = _history([16.3, 9.0, 7.0, 2.0, 8.5, 16.3, 3.0, 4.0, 5.0, math.nan])
    assert best_on_grid(hist, 5)["epoch"] == 20
    assert best_on_grid(hist, 25)["epoch"] == 25 and best_on_grid(hist, 25)["d_stsp"] == 8.5
    assert best_on_grid(hist, 10)["epoch"] == 20
    assert best_on_grid(hist, 60) is None
    # a grid where every checkpoint failed still returns one (the first)
    assert best_on_grid(_history([math.inf, math.nan]), 5)["epoch"] == 5


def test_report_shows_a1_on_the_lab_grid_beside_the_fine_grid():
    p = init_params(ALRNNConfig(), torch.Generator().manual_seed(0))
    runs = [ITFRun(0, p, 0, None, _history([16.3, 2.5, 16.3, 16.3, 9.0])),   # 25-grid: 9.0 -> miss
            ITFRun(1, p, 0, None, _history([16.3, 16.3, 16.3, 16.3, 7.5])),  # 25-grid: 7.5 -> pass
            ITFRun(2, p, 0, None, _history([6.0, 16.3, 16.3, 16.3, 16.3]))]  # 25-grid: 16.3 -> miss
    report = ReproReport(name="t", title="t", command="c")
    _report_lab_grid(report, ReproConfig(), runs, applies=True)
    rows = {r.name: r for r in report.rows}
    assert rows["A1 seed 0 on the lab's 25-epoch grid: best D_stsp / D_H10k (epoch)"].ours == "9.00 / 0.140 (25)"
    assert [r.passed for r in report.rows[:3]] == [False, True, False]
    assert rows["A1 seeds meeting the T1 thresholds on the 25-epoch grid"].passed is False
    # a run evaluated on the lab grid itself adds nothing
    report2 = ReproReport(name="t", title="t", command="c")
    _report_lab_grid(report2, ReproConfig(itf=ITFConfig(eval_every=25)), runs, applies=True)
    assert report2.rows == []


def test_optimizer_is_the_lab_radam_with_exponential_decay():
    cfg = ITFConfig(lr=1e-3, lr_final=1e-5, decay_epochs=4, batches_per_epoch=5)
    model = ALRNN([init_params(ALRNNConfig(), torch.Generator().manual_seed(0))])
    opt, sched = make_optimizer(model, cfg)
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.RAdam)
    assert group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8 and group["weight_decay"] == 0
    for _ in range(20):  # decay_epochs * batches_per_epoch updates (no gradients: parameters stay)
        opt.step()
        sched.step()
    assert group["lr"] == pytest.approx(1e-5, rel=1e-9)


def test_training_follows_the_schedule_and_spec_recipe():
    assert (ITFConfig().batch_size, ITFConfig().seq_len, ITFConfig().tau, ITFConfig().batches_per_epoch,
            ITFConfig().noise, ITFConfig().lr) == (16, 200, 16, 50, 0.05, 1e-3)
    t2 = t2_config().itf
    assert (t2.epochs, t2.lr_final, t2.decay_epochs, t2.eval_every) == (1000, 1e-5, 2000, 5)
    data = make_lorenz()
    cfg = ITFConfig(epochs=2, eval_every=1, batches_per_epoch=3, lr=1e-3, lr_final=1e-4, decay_epochs=4,
                    n_gen=1000, n_dh=500, transient=10)
    run = train_itf(data.train, data.test, [0], ALRNNConfig(), cfg)[0]
    want = [1e-3 * 0.1 ** (k * 3 / 12) for k in (1, 2)]  # lr after 3 and 6 of 12 decay updates
    assert [h["lr"] for h in run.history] == pytest.approx(want, rel=1e-6)
