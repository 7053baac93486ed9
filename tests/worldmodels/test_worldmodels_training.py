"""JEPA objective pieces (golden values), determinism, probes on a tiny run."""

import numpy as np
import pytest
import torch
from torch import nn

from rollwise.runlog import seed_everything
from rollwise.worldmodels import env as spring
from rollwise.worldmodels import probes
from rollwise.worldmodels.training import TrainConfig, ema_update, jepa_loss, train
from rollwise.worldmodels.uwm_jepa import UWMJepa

TASK = spring.SpringConfig()


def test_jepa_loss_golden():
    pred = torch.tensor([[3.0, 4.0]])
    tgt = torch.tensor([[0.0, 2.0]])
    assert float(jepa_loss(pred, tgt, normalize=False)) == pytest.approx(9 + 4)
    # normalised: (0.6, 0.8) vs (0, 1) -> 0.36 + 0.04
    assert float(jepa_loss(pred, tgt, normalize=True)) == pytest.approx(0.4)


def test_ema_update_golden():
    online, target = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        online.weight.fill_(1.0)
        target.weight.fill_(0.0)
    ema_update(target, online, tau=0.9)
    assert float(target.weight.detach()) == pytest.approx(0.1)


def short_run(seed: int, objective: str = "cf") -> tuple[list[float], torch.Tensor]:
    seed_everything(seed)
    m = UWMJepa()
    r = train(m, TASK, TrainConfig(steps=15, objective=objective, tf_log_size=50), seed)
    return r.losses, m.h1.detach().clone()


def test_training_is_deterministic():
    a, b, c = short_run(7), short_run(7), short_run(8)
    assert a[0] == b[0]
    torch.testing.assert_close(a[1], b[1], atol=0, rtol=0)
    assert a[0] != c[0]


def test_teacher_forced_objective_runs():
    losses, _ = short_run(7, "tf")
    assert len(losses) == 15 and np.isfinite(losses).all()
    with pytest.raises(ValueError, match="valid"):
        train(UWMJepa(), TASK, TrainConfig(steps=1, objective="bc"), 0)


def test_effective_rank_golden():
    x = np.random.default_rng(0).standard_normal((20_000, 4))
    assert probes.effective_rank(x) == pytest.approx(4.0, abs=0.05)
    assert probes.effective_rank(np.c_[x[:, :1], 1e-9 * x[:, 1:]]) == pytest.approx(1.0, abs=0.01)


def test_probes_on_an_untrained_model():
    seed_everything(0)
    m = UWMJepa()
    pc = probes.ProbeConfig(n_decoder=100, n_eval=100, n_retention_fit=50, n_retention_eval=50,
                            retention_ks=(1, 3), n_context_fit=50, n_context_eval=50)
    hs = probes.hs_distances(m, m, TASK, pc)
    assert hs["base"] == pytest.approx(hs["no-action"], rel=1e-5)
    acc = probes.indicator_accuracy(m, m, TASK, 0, pc)
    assert set(acc) == {"majority", "target", *spring.CONDITIONS}
    ret = probes.retention(m, m, TASK, 0, pc)
    assert set(ret["delta"]) == {1, 3}
    inv = probes.invariants(m, TASK, pc, torch.complex128, n=8)
    assert inv["spectrum_drift"] <= 1e-10 and inv["unitarity_error"] <= 1e-12
