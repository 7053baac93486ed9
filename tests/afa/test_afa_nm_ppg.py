"""NM-PPG unit tests of spec 5.3: discrete ST forward, exact budgets, pathwise credit, tau -> 0, SNR, stopping."""

import dataclasses

import pytest
import torch

from rollwise.afa.data import load
from rollwise.afa.env import AcquisitionEnv, MaskedMLP, hard_rollout, policy_chooser
from rollwise.afa.gradient_snr import snr
from rollwise.afa.nm_ppg import (
    NMPPGConfig,
    make_policy,
    relaxed_rollout,
    straight_through_sample,
    train_nm_ppg,
)
from rollwise.afa.schedule import ScheduleConfig
from rollwise.afa.soft_budget import survival_objective


@pytest.fixture(scope="module")
def small():
    d = load("cube_nm", seed=0, n=400)
    torch.manual_seed(0)
    f = MaskedMLP(d.n_features, d.n_classes)
    return d, f, AcquisitionEnv(d)


def test_straight_through_is_one_hot_forward_with_soft_gradient():
    torch.manual_seed(0)
    logits = torch.randn(5, 7, requires_grad=True)
    y, y_hard = straight_through_sample(logits, tau=0.5)
    assert torch.equal(y.detach(), y_hard)
    (y * torch.arange(7.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_st_rollout_forward_is_discrete_no_rebuy_and_cost_matches(small):
    d, f, env = small
    cfg = NMPPGConfig(horizon=6)
    torch.manual_seed(1)
    pol = make_policy(d, cfg)
    r = relaxed_rollout(env, pol, f, d.x["train"][:64], d.y["train"][:64], tau=1.0, cfg=cfg)
    for t, s in enumerate(r.masks, start=1):
        s = s.detach()
        assert torch.all((s == 0) | (s == 1))
        assert torch.all(s.sum(1) == t)  # one new group per step, never acquired twice
        m = env.mask(s)
        assert torch.all((m == 0) | (m == 1))
    assert torch.allclose(r.cost.detach(), r.masks[-1].detach() @ d.costs)


def test_hard_budget_gives_exactly_b_acquisitions_and_respects_costs(small):
    d, f, env = small
    pol = make_policy(d, NMPPGConfig())
    for b in (1, 3, 5):
        roll = hard_rollout(env, policy_chooser(pol), f, d.x["test"], d.y["test"], T=10, budget=float(b))
        assert torch.all((roll.order >= 0).sum(1) == b)
        assert torch.all(roll.cost[-1] == b)
    env.costs = torch.linspace(0.5, 2.0, d.n_groups)
    roll = hard_rollout(env, policy_chooser(pol), f, d.x["test"], d.y["test"], T=10, budget=3.0)
    assert torch.all(roll.cost[-1] <= 3.0 + 1e-6)
    env.costs = d.costs


def test_pathwise_credit_nonzero_and_zero_when_myopic(small):
    d, f, env = small
    for myopic in (False, True):
        cfg = NMPPGConfig(horizon=5, myopic=myopic)
        torch.manual_seed(2)
        pol = make_policy(d, cfg)
        r = relaxed_rollout(env, pol, f, d.x["train"][:64], d.y["train"][:64], tau=1.0, cfg=cfg)
        (g,) = torch.autograd.grad(r.terminal.mean(), r.first_logits, allow_unused=True)
        if myopic:
            assert g is None or torch.all(g == 0)
        else:
            assert g is not None and g.abs().sum() > 0


def test_soft_rollout_equals_st_forward_as_tau_goes_to_zero(small):
    d, f, env = small
    outs = {}
    for mode in ("st", "soft"):
        cfg = NMPPGConfig(horizon=4, rollout=mode)
        torch.manual_seed(3)
        pol = make_policy(d, cfg)
        torch.manual_seed(4)
        r = relaxed_rollout(env, pol, f, d.x["train"][:32], d.y["train"][:32], tau=1e-6, cfg=cfg)
        outs[mode] = (torch.stack(r.masks).detach(), r.terminal.detach())
    assert torch.allclose(outs["st"][0], outs["soft"][0], atol=1e-5)
    assert torch.allclose(outs["st"][1], outs["soft"][1], atol=1e-4)


def test_snr_golden_value():
    g = torch.tensor([[1.0, 0.0], [3.0, 0.0]])  # mean (2, 0); deviations of norm 1
    assert snr(g) == pytest.approx(2.0)


def test_survival_objective_golden_value():
    q = torch.tensor([[0.5], [0.2], [0.0]])  # last row is forced to 1
    loss = torch.tensor([[2.0], [1.0], [0.5]])
    cost = torch.tensor([[0.0], [1.0], [2.0]])
    # P(stop) = 0.5, 0.5*0.2 = 0.1, 0.4; values (loss + 0.1 cost) = 2.0, 1.1, 0.7
    expected = 0.5 * 2.0 + 0.1 * 1.1 + 0.4 * 0.7
    assert float(survival_objective(q, loss, cost, 0.1)) == pytest.approx(expected)


def test_training_is_deterministic_on_cpu():
    d = load("cube", seed=0, n=500)
    torch.manual_seed(0)
    f = MaskedMLP(d.n_features, d.n_classes)
    cfg = NMPPGConfig(horizon=3, schedule=ScheduleConfig(n_stages=2, epochs_per_stage=1))
    hists = []
    for _ in range(2):
        torch.manual_seed(7)
        hists.append(train_nm_ppg(d, f, dataclasses.replace(cfg)).history)
    assert hists[0] == hists[1]
