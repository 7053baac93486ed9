"""Policy losses: hand-computed golden values for aggregation, KL kinds, clip branches, dual-clip, IS weights."""

from __future__ import annotations

import math

import pytest
import torch

from rollwise.config import ConfigError
from rollwise.rlvr.losses import (
    AGG_MODES,
    LossConfig,
    aggregate,
    entropy_from_logits,
    kl_penalty,
    policy_loss,
    ppo_clip_loss,
)

VALUES = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 9.0, 9.0, 9.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])  # row 2 fully masked


# ---------------------------------------------------------------- aggregation modes


@pytest.mark.parametrize(("mode", "expected"), [
    ("token-mean", 21 / 5),                    # (1+2+5+6+7) / 5 valid tokens
    ("seq-mean-token-mean", (1.5 + 6.0) / 2),  # per-sequence means 1.5 and 6; the empty row does not count
    ("seq-mean-token-sum", (3 + 18) / 2),      # per-sequence sums 3 and 18
    ("seq-mean-token-sum-norm", 21 / 4),       # total / padded length T = 4 (verl)
])
def test_aggregation_modes_golden(mode: str, expected: float) -> None:
    assert float(aggregate(VALUES, MASK, mode)) == pytest.approx(expected)


def test_sum_norm_uses_max_len_constant() -> None:
    assert float(aggregate(VALUES, MASK, "seq-mean-token-sum-norm", max_len=7)) == pytest.approx(3.0)


def test_unknown_mode_lists_modes() -> None:
    with pytest.raises(ConfigError) as err:
        aggregate(VALUES, MASK, "sum")
    for mode in AGG_MODES:
        assert mode in str(err.value)


def test_aggregation_of_an_all_masked_batch_is_zero() -> None:
    for mode in AGG_MODES:
        assert float(aggregate(VALUES, torch.zeros_like(MASK), mode)) == 0.0


# ---------------------------------------------------------------- KL estimators

LOGP = torch.tensor([[-1.0, -2.0]])
REF = torch.tensor([[-1.5, -1.0]])  # d = logp - ref = [0.5, -1.0]


@pytest.mark.parametrize(("kinds", "expected"), [
    (("k1", "kl"), [0.5, -1.0]),
    (("abs",), [0.5, 1.0]),
    (("k2", "mse"), [0.125, 0.5]),
    (("k3", "low_var_kl"), [math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1 - 1]),  # exp(-d) + d - 1
])
def test_kl_kinds_golden(kinds: tuple[str, ...], expected: list[float]) -> None:
    for kind in kinds:
        torch.testing.assert_close(kl_penalty(LOGP, REF, kind), torch.tensor([expected]))


def test_k3_is_clamped_like_verl() -> None:
    out = kl_penalty(torch.tensor([-30.0, 0.0, 0.0]), torch.tensor([0.0, -30.0, -12.0]), "k3")
    # d = -30: exp(30) clamps to exp(20) -> huge -> 10; d = +30: exp(-20) + 20 - 1 = 19 -> 10; d = 12: 11 -> 10
    torch.testing.assert_close(out, torch.tensor([10.0, 10.0, 10.0]))
    assert torch.isfinite(out).all()


def test_unknown_kl_kind_lists_kinds() -> None:
    with pytest.raises(ConfigError, match="unknown KL estimator 'k4'.*k1.*low_var_kl"):
        kl_penalty(LOGP, REF, "k4")


# ---------------------------------------------------------------- PPO-clip

# four tokens: (A, ratio) = (+1, 1.5) clipped high, (+1, 0.5) not clipped, (-1, 0.5) clipped low, (-1, 1.5) not clipped
ADV = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
RATIO = torch.tensor([[1.5, 0.5, 0.5, 1.5]])
ONES = torch.ones(1, 4)


def clip_case(ratio: torch.Tensor = RATIO, **kwargs) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    logp = ratio.log().requires_grad_(True)
    loss, metrics = ppo_clip_loss(logp, torch.zeros_like(logp), ADV, ONES, **kwargs)
    loss.backward()
    return loss.detach(), metrics, logp.grad


def test_clip_branches_golden_loss_and_metrics() -> None:
    loss, metrics, _ = clip_case()
    # per-token losses: -min(1.5, 1.2) = -1.2; -min(0.5, 0.8) = -0.5; max(0.5, 0.8) = 0.8; max(1.5, 1.2) = 1.5
    assert float(loss) == pytest.approx((-1.2 - 0.5 + 0.8 + 1.5) / 4)
    assert metrics["clip_frac_high"] == pytest.approx(0.25)
    assert metrics["clip_frac_low"] == pytest.approx(0.25)
    assert metrics["dual_clip_frac"] == 0.0
    assert metrics["ratio_mean"] == pytest.approx(1.0)
    assert metrics["ratio_max"] == pytest.approx(1.5)
    k3 = [r - 1 - math.log(r) for r in (1.5, 0.5, 0.5, 1.5)]  # KL(old || new) from samples of old
    assert metrics["approx_kl"] == pytest.approx(sum(k3) / 4, rel=1e-5)


def test_gradient_is_zero_exactly_on_clipped_tokens() -> None:
    _, _, grad = clip_case()
    # d/dlogp of -A * ratio / 4 = -A * ratio / 4 on unclipped tokens
    torch.testing.assert_close(grad, torch.tensor([[0.0, -0.125, 0.0, 0.375]]))


def test_clip_higher_widens_the_upper_range_only() -> None:
    ratio = torch.tensor([[1.25, 0.5, 0.5, 1.5]])
    loss_sym, m_sym, _ = clip_case(ratio)
    loss_dapo, m_dapo, grad = clip_case(ratio, clip_high=0.28)
    assert float(loss_sym) == pytest.approx((-1.2 - 0.5 + 0.8 + 1.5) / 4)
    assert float(loss_dapo) == pytest.approx((-1.25 - 0.5 + 0.8 + 1.5) / 4)
    assert (m_sym["clip_frac_high"], m_dapo["clip_frac_high"]) == (0.25, 0.0)
    assert float(grad[0, 0]) == pytest.approx(-1.25 / 4)
    _, m_low, _ = clip_case(ratio, clip_low=0.6)  # 0.5 < 1 - 0.6 is false -> no low clipping
    assert m_low["clip_frac_low"] == 0.0


def test_dual_clip_caps_negative_advantage_loss() -> None:
    ratio = torch.tensor([[5.0, 0.5, 2.0, 5.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    logp = ratio.log().requires_grad_(True)
    loss, metrics = ppo_clip_loss(logp, torch.zeros_like(logp), adv, ONES, dual_clip_c=3.0)
    loss.backward()
    loss = loss.detach()
    # (+1, 5): -1.2 clipped; (+1, 0.5): -0.5; (-1, 2): 2 (below c = 3); (-1, 5): min(5, 3) = 3 dual-clipped
    assert float(loss) == pytest.approx((-1.2 - 0.5 + 2.0 + 3.0) / 4)
    assert metrics["dual_clip_frac"] == pytest.approx(0.25)
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -0.125, 0.5, 0.0]]))
    loss_off, _ = ppo_clip_loss(ratio.log(), torch.zeros(1, 4), adv, ONES)
    assert float(loss_off) == pytest.approx((-1.2 - 0.5 + 2.0 + 5.0) / 4)


def test_is_weights_multiply_the_token_loss_and_get_no_gradient() -> None:
    weights = torch.tensor([[2.0, 0.5, 1.0, 0.0]], requires_grad=True)
    logp = RATIO.log().requires_grad_(True)
    loss, _ = ppo_clip_loss(logp, torch.zeros(1, 4), ADV, ONES, is_weights=weights)
    loss.backward()
    loss = loss.detach()
    assert float(loss) == pytest.approx((-1.2 * 2 - 0.5 * 0.5 + 0.8 * 1 + 1.5 * 0) / 4)
    assert weights.grad is None
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -0.0625, 0.0, 0.0]]))


def test_ratio_one_gives_minus_mean_advantage_under_token_mean() -> None:
    adv = torch.tensor([[0.3, -1.2, 2.0], [0.7, 5.0, -4.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    logp = torch.randn(2, 3)
    loss, metrics = ppo_clip_loss(logp, logp.clone(), adv, mask)
    assert float(loss) == pytest.approx(-(0.3 - 1.2 + 2.0 + 0.7) / 4)
    assert metrics["ratio_mean"] == metrics["ratio_max"] == 1.0
    assert metrics["approx_kl"] == 0.0
    assert metrics["clip_frac_low"] == metrics["clip_frac_high"] == 0.0


def test_aggregation_mode_passes_through() -> None:
    adv = torch.tensor([[1.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    logp = torch.zeros(2, 3)
    expected = {"token-mean": -4 / 3, "seq-mean-token-mean": -1.5, "seq-mean-token-sum": -2.0,
                "seq-mean-token-sum-norm": -4 / 3}
    for mode, value in expected.items():
        loss, _ = ppo_clip_loss(logp, logp, adv, mask, agg_mode=mode)
        assert float(loss) == pytest.approx(value), mode
    loss, _ = ppo_clip_loss(logp, logp, adv, mask, agg_mode="seq-mean-token-sum-norm", max_len=8)
    assert float(loss) == pytest.approx(-0.5)


def test_huge_log_ratio_is_clamped_before_exp() -> None:
    logp = torch.tensor([[100.0, -100.0]], requires_grad=True)
    loss, metrics = ppo_clip_loss(logp, torch.zeros(1, 2), torch.tensor([[-1.0, 1.0]]), torch.ones(1, 2))
    loss.backward()
    loss = loss.detach()
    assert math.isfinite(float(loss)) and all(math.isfinite(v) for v in metrics.values())
    assert metrics["ratio_max"] == pytest.approx(math.exp(20.0), rel=1e-4)
    assert torch.isfinite(logp.grad).all()


@pytest.mark.parametrize("kwargs", [{"clip_low": 1.0}, {"clip_low": -0.1}, {"clip_high": -0.1},
                                    {"dual_clip_c": 1.0}])
def test_invalid_clip_settings(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        ppo_clip_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2), **kwargs)


# ---------------------------------------------------------------- entropy


def test_entropy_golden_and_stable() -> None:
    logits = torch.tensor([[[0.0] * 5, [1000.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -math.inf, -math.inf, -math.inf]]])
    ent = entropy_from_logits(logits)
    torch.testing.assert_close(ent, torch.tensor([[math.log(5), 0.0, math.log(2)]]))
    z = torch.randn(3, 4, 7, dtype=torch.float64)
    p = z.softmax(-1)
    torch.testing.assert_close(entropy_from_logits(z), -(p * p.log()).sum(-1))
    z = logits.clone().requires_grad_(True)
    entropy_from_logits(z).sum().backward()
    assert torch.isfinite(z.grad).all()


# ---------------------------------------------------------------- policy_loss and LossConfig


def test_policy_loss_combines_terms() -> None:
    torch.manual_seed(0)
    old = torch.randn(2, 3)
    logp = (old + 0.1 * torch.randn(2, 3)).requires_grad_(True)
    ref = old + 0.2 * torch.randn(2, 3)
    adv = torch.randn(2, 3)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    ent = torch.rand(2, 3)
    cfg = LossConfig(kl_coef=0.1, kl_kind="k3", entropy_coef=0.01, agg_mode="seq-mean-token-mean")
    total, metrics = policy_loss(logp, old, adv, mask, cfg, ref_logprobs=ref, entropy=ent)
    pg, _ = ppo_clip_loss(logp, old, adv, mask, agg_mode="seq-mean-token-mean")
    kl = aggregate(kl_penalty(logp, ref, "k3"), mask, "seq-mean-token-mean")
    h = aggregate(ent, mask, "seq-mean-token-mean")
    expected = (pg + 0.1 * kl - 0.01 * h).item()
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["pg_loss"] == pytest.approx(pg.item())
    assert metrics["kl_loss"] == pytest.approx(kl.item())
    assert metrics["entropy"] == pytest.approx(h.item())
    assert metrics["loss"] == pytest.approx(total.item())
    assert {"clip_frac_low", "clip_frac_high", "dual_clip_frac", "approx_kl", "ratio_mean", "ratio_max"} <= set(metrics)
    total.backward()
    assert torch.isfinite(logp.grad).all()


def test_policy_loss_logs_kl_and_entropy_without_adding_them_when_coefs_are_zero() -> None:
    logp, adv, mask = torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2)
    total, metrics = policy_loss(logp, logp, adv, mask, LossConfig(), ref_logprobs=logp - 1.0,
                                 entropy=torch.ones(1, 2))
    assert float(total) == pytest.approx(-1.0)
    assert metrics["kl_loss"] > 0 and metrics["entropy"] == 1.0
    _, metrics = policy_loss(logp, logp, adv, mask, LossConfig())
    assert "kl_loss" not in metrics and "entropy" not in metrics


def test_policy_loss_requires_inputs_of_active_terms() -> None:
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="ref_logprobs"):
        policy_loss(x, x, x, x + 1, LossConfig(kl_coef=0.1))
    with pytest.raises(ValueError, match="entropy"):
        policy_loss(x, x, x, x + 1, LossConfig(entropy_coef=0.1))


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"clip_low": 1.5}, "clip_low"), ({"clip_high": -1.0}, "clip_high"), ({"dual_clip_c": 0.5}, "dual_clip_c"),
    ({"agg_mode": "mean"}, "agg_mode"), ({"kl_kind": "k5"}, "kl_kind"), ({"kl_coef": -0.1}, "kl_coef"),
    ({"entropy_coef": -1.0}, "entropy_coef"), ({"max_len": 0}, "max_len"), ({"max_len": 2.5}, "max_len"),
])
def test_loss_config_validation_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        LossConfig(**kwargs)


def test_loss_config_error_lists_choices() -> None:
    with pytest.raises(ConfigError) as err:
        LossConfig(agg_mode="mean")
    assert all(mode in str(err.value) for mode in AGG_MODES)
