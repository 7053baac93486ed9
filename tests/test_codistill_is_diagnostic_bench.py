"""benchmarks/codistill_is_diagnostic.py: the per-token gradient coefficients of the large model's updates."""

from __future__ import annotations

import torch

from rollwise.cli import BENCHES, load_benchmark
from rollwise.rlvr.losses import LossConfig, policy_loss


def _case():
    # tokens: (A > 0, w 2.0) (A > 0, w 0.5) (A < 0, w 5.0) (A < 0, w 0.5) (A < 0, w 1.1), one padded token
    w = torch.tensor([[2.0, 0.5, 5.0, 0.5, 1.1, 1.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, -1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    return w, adv, mask


def test_coefficients_hand_computed():
    bench = load_benchmark("codistill_is_diagnostic")
    w, adv, mask = _case()
    def close(got, want):
        return torch.allclose(got, torch.tensor([want]))

    assert close(bench.coefficients(w, adv, mask, "truncated", c=2.0), [2.0, 0.5, -2.0, -0.5, -1.1, 0.0])
    # PPO-clip: A > 0 and w > 1.2 clipped; A < 0 and w < 0.8 clipped; A < 0 and w = 5 keeps weight 5
    assert close(bench.coefficients(w, adv, mask, "ppo_clip"), [0.0, 0.5, -5.0, 0.0, -1.1, 0.0])
    # dual-clip c = 3 caps the A < 0, w = 5 token (its loss is the constant -3 A: no gradient)
    assert close(bench.coefficients(w, adv, mask, "ppo_dual"), [0.0, 0.5, 0.0, 0.0, -1.1, 0.0])


def test_ppo_coefficients_equal_the_loss_gradient():
    """The coefficient is -d(per-token loss)/d(log pi_theta) of rollwise's own PPO loss at ratio = w."""
    bench = load_benchmark("codistill_is_diagnostic")
    w, adv, mask = _case()
    for arm, dual in (("ppo_clip", None), ("ppo_dual", 3.0)):
        logp = torch.zeros_like(w, requires_grad=True)
        loss, _ = policy_loss(logp, -w.log(), adv, mask, LossConfig(agg_mode="seq-mean-token-sum", dual_clip_c=dual))
        loss.backward()
        assert torch.allclose(-logp.grad, bench.coefficients(w, adv, mask, arm)), arm


def test_registered_in_cli():
    assert BENCHES["codistill-is-diagnostic"] == "codistill_is_diagnostic.py"
