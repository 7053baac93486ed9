"""T0 unit tests: AL-RNN step, Jacobian, identity teacher forcing (spec tf_bayes.md 5.2)."""

import numpy as np
import torch

from rollwise.dynamics.alrnn import (
    ALRNN,
    ALRNNConfig,
    alrnn_step,
    force,
    free_run,
    gated_step,
    init_params,
    itf_loss,
    itf_rollout,
    jacobian,
    regime,
)


def _model(seed=0, scale=0.3, dtype=torch.float64):
    p = init_params(ALRNNConfig(), torch.Generator().manual_seed(seed)).to(dtype)
    g = torch.Generator().manual_seed(seed + 100)
    p.W = p.W + scale * torch.randn(p.W.shape, generator=g, dtype=dtype)
    p.h = scale * torch.randn(p.h.shape, generator=g, dtype=dtype)
    return p


def test_step_equals_gated_linear_step():
    p = _model()
    z = torch.randn(50, 20, dtype=torch.float64)
    want = gated_step(z, regime(z, p.n_pwl), p.A, p.W, p.h)
    torch.testing.assert_close(alrnn_step(z, p.A, p.W, p.h, p.n_pwl), want, rtol=0, atol=1e-12)
    # a different regime gives a different map (the gate matters)
    assert not torch.allclose(gated_step(z, 1 - regime(z, p.n_pwl), p.A, p.W, p.h), want)


def test_step_hand_computed():
    A = torch.tensor([0.5, 0.9])
    W = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    h = torch.tensor([0.1, -0.1])
    z = torch.tensor([1.0, -3.0])  # M = 2, P = 1: relu(-3) = 0
    torch.testing.assert_close(alrnn_step(z, A, W, h, 1), torch.tensor([0.5 + 0.1, -2.7 + 2.0 - 0.1]))


def test_jacobian_equals_autograd():
    p = _model(1)
    for z in torch.randn(5, 20, dtype=torch.float64):
        auto = torch.autograd.functional.jacobian(lambda v: alrnn_step(v, p.A, p.W, p.h, p.n_pwl), z)
        torch.testing.assert_close(jacobian(z, p.A, p.W, p.n_pwl), auto, rtol=0, atol=1e-12)


def test_force_replaces_readout_and_blocks_gradient():
    z = torch.randn(4, 20, requires_grad=True)
    x = torch.randn(4, 3, requires_grad=True)
    out = force(z, x)
    torch.testing.assert_close(out[:, :3], x)
    torch.testing.assert_close(out[:, 3:], z[:, 3:])
    out.sum().backward()
    assert torch.all(z.grad[:, :3] == 0) and torch.all(z.grad[:, 3:] == 1)


def test_itf_changes_only_readout_units_at_forcing_times():
    model = ALRNN([_model(2, dtype=torch.float32)])
    x = torch.randn(1, 2, 40, 3)
    tau = 8
    _, states = itf_rollout(model, x, tau, return_states=True)
    for k in range(1, 40):
        z_free = model.step(states[:, :, k - 1])
        if k % tau == 0:
            torch.testing.assert_close(states[:, :, k, :3], x[:, :, k])
            torch.testing.assert_close(states[:, :, k, 3:], z_free[..., 3:])
        else:
            torch.testing.assert_close(states[:, :, k], z_free)


def test_itf_no_gradient_through_replaced_values():
    """After forcing time tau the rollout continues from [x_tau; hidden]: the model's own read-out values
    at tau get no gradient from later predictions."""
    model = ALRNN([_model(3, dtype=torch.float64)])
    x = torch.randn(1, 1, 20, 3, dtype=torch.float64)
    tau = 5
    _, states = itf_rollout(model, x, tau, return_states=True)
    z_pre = model.step(states[:, :, tau - 1]).detach().requires_grad_(True)  # z_tau before forcing
    z = force(z_pre, x[:, :, tau])
    later = []
    for _ in range(tau):
        z = model.step(z)
        later.append(z[..., :3])
    torch.stack(later).pow(2).sum().backward()
    assert torch.all(z_pre.grad[..., :3] == 0)
    assert z_pre.grad[..., 3:].abs().sum() > 0  # hidden units still pass gradient across forcing


def test_no_forcing_equals_free_run():
    p = _model(4, scale=0.05)
    model = ALRNN([p])
    x = torch.randn(1, 1, 30, 3, dtype=torch.float64)
    preds = itf_rollout(model, x, tau=0)
    ref = free_run(p.numpy(), x[0, 0, 0].numpy(), 29, 0, p.n_pwl)
    np.testing.assert_allclose(preds[0, 0].detach().numpy(), ref, atol=1e-10)


def test_itf_loss_gradient_reaches_hidden_units_across_forcing():
    model = ALRNN([_model(5, dtype=torch.float64)])
    x = torch.randn(1, 2, 40, 3, dtype=torch.float64)
    itf_loss(model, x, tau=4).sum().backward()
    assert torch.isfinite(model.W.grad).all() and model.L.grad.abs().sum() > 0


def test_ensemble_members_are_independent():
    p0, p1 = _model(6, dtype=torch.float32), _model(7, dtype=torch.float32)
    x = torch.randn(1, 3, 25, 3)
    both = itf_loss(ALRNN([p0, p1]), torch.cat([x, x]), 4)
    torch.testing.assert_close(both[1:], itf_loss(ALRNN([p1]), x, 4))
