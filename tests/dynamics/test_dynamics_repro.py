"""End-to-end: the quick repro learns and shows the key effects; same seed -> same numbers."""

import json

import numpy as np
import pytest
import torch

from rollwise.dynamics.alrnn import ALRNN, ALRNNConfig, init_params, itf_loss
from rollwise.dynamics.data import make_lorenz
from rollwise.dynamics.finetune import FinetuneConfig, Scorer, evidence_finetune
from rollwise.dynamics.repro import run
from rollwise.dynamics.switching import SwitchingConfig
from rollwise.dynamics.teacher_forcing import ITFConfig, sample_batch, train_itf

pytestmark = pytest.mark.integration  # spawned processes, Ray, TRL or a whole quick repro


def test_quick_repro_learns_and_shows_key_effects(tmp_path):
    report = run(quick=True, out_dir=tmp_path)
    rows = {r.name: r for r in report.rows}
    hist = report.tables["ITF training (D_stsp 100k vs 100k test, D_H on 10k)"]
    # learning happened: the ITF loss fell far below the untrained model's
    data = make_lorenz()
    untrained = ALRNN([init_params(ALRNNConfig(), torch.Generator().manual_seed(0))])
    x = sample_batch(torch.as_tensor(data.train, dtype=torch.float32), [torch.Generator().manual_seed(0)], 16,
                     200, 0.05)
    assert hist[-1]["itf_loss"] < 0.3 * float(itf_loss(untrained, x, 16))
    assert rows["C1 max Louis residual"].passed
    assert rows["C2 min lambda_min(I_mis) / lambda_max(I_com)"].passed
    assert rows["E1 held-out evidence gain (nats/step): evidence FT"].ours > 0.1
    assert (tmp_path / "attractors.png").exists() and all(
        (tmp_path / f).exists() or tmp_path.joinpath(f).exists() for f in report.figures)
    md = report.write(tmp_path)
    assert md.exists() and json.loads((tmp_path / "result.json").read_text())["name"] == "tf-bayes"


def test_same_seed_same_numbers():
    data = make_lorenz()
    cfg = ITFConfig(epochs=2, eval_every=1, batches_per_epoch=5, n_gen=2000, n_dh=1000, transient=100)

    def once():
        runs = train_itf(data.train, data.test, [3], ALRNNConfig(), cfg)
        ft = FinetuneConfig(steps=4, eval_every=2, n_heldout=16, n_fit=16, n_gen=2000, n_dh=1000, transient=100,
                            lyap_steps=200)
        scorer = Scorer(data.train, data.test, SwitchingConfig(), ft)
        fr = evidence_finetune(runs[0].best, data.train, scorer, ft)
        return [h["itf_loss"] for h in runs[0].history] + [h["heldout_evidence"] for h in fr.history]

    np.testing.assert_array_equal(once(), once())
