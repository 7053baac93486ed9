"""UCPO estimators: the unit tests 1-8 of ucpo.md 3.2, golden values, registry use and the tabular bandit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rollwise.cli import load_benchmark
from rollwise.config import ConfigError
from rollwise.rlvr.advantages import (
    centred_surprisal_advantages,
    correct_set_diagnostics,
    grpo_advantages,
    make_estimator,
    ucpo_advantages,
)
from rollwise.rlvr.advantages.ucpo import inverse_q_weights, sequence_scores, subgroup_log_q
from rollwise.rlvr.batch import RolloutBatch


def mask_of(lengths: list[int], T: int | None = None) -> torch.Tensor:
    T = T or max(lengths)
    return (torch.arange(T) < torch.tensor(lengths)[:, None]).float()


def old_lp_with_scores(scores: list[float], lengths: list[int], T: int | None = None) -> torch.Tensor:
    """Per-token log-probs whose per-token mean is ``scores[i]`` (spread unevenly over the tokens)."""
    mask = mask_of(lengths, T)
    ramp = torch.arange(mask.shape[1], dtype=torch.float32) * 0.1
    lp = torch.tensor(scores)[:, None] + ramp - (ramp * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True)
    return lp * mask


def per_seq(adv: torch.Tensor) -> torch.Tensor:
    return adv[:, 0]


# a mixed group of 5 (3 correct with distinct q), a group with 1 correct, an all-correct and an all-wrong group
REWARDS = [1, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0]
GROUPS = [0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3]
LENGTHS = [3, 5, 2, 4, 6, 3, 3, 2, 4, 5, 5, 5, 2, 3, 4]
SCORES = [-0.2, -1.0, -0.5, -2.0, -0.3, -0.4, -0.1, -0.7, -0.9, -0.1, -0.5, -1.5, -0.2, -0.3, -2.0]


def inputs(rewards=REWARDS, groups=GROUPS, lengths=LENGTHS, scores=SCORES):
    r = torch.tensor(rewards, dtype=torch.float32)
    mask = mask_of(lengths)
    return r, old_lp_with_scores(scores, lengths), mask, torch.tensor(groups)


def test_sequence_scores_are_length_normalised_and_detached() -> None:
    r, lp, mask, g = inputs()
    torch.testing.assert_close(sequence_scores(lp, mask), torch.tensor(SCORES), atol=1e-6, rtol=0)
    sums = (lp * mask).sum(1)
    torch.testing.assert_close(sequence_scores(lp, mask, length_norm=False), sums)


def test_golden_values_of_one_group() -> None:
    """Hand computation of ucpo.md 1.3 for group 0 (rewards 1 1 0 1 0, scores -0.2 -1.0 . -2.0 .)."""
    r, lp, mask, g = inputs()
    tau = 0.5
    s = np.array([-0.2, -1.0, -2.0])
    q = np.exp(s) / np.exp(s).sum()
    t = (1 / q) / (1 / q).sum()
    w = (1 - tau) / 3 + tau * t
    a_base = (1 - 0.6) / math.sqrt(0.3)  # mean 3/5, Bessel std sqrt(0.3)
    expected = a_base * 3 * w
    adv = per_seq(ucpo_advantages(r, lp, mask, g, tau=tau))
    torch.testing.assert_close(adv[[0, 1, 3]], torch.tensor(expected, dtype=torch.float32), atol=1e-5, rtol=0)
    a_wrong = -0.6 / math.sqrt(0.3)
    torch.testing.assert_close(adv[[2, 4]], torch.tensor([a_wrong, a_wrong]), atol=1e-5, rtol=0)


def test_1_tau_zero_equals_grpo() -> None:
    r, lp, mask, g = inputs()
    torch.testing.assert_close(ucpo_advantages(r, lp, mask, g, tau=0.0), grpo_advantages(r, g, mask), atol=1e-6,
                               rtol=0)
    batch = RolloutBatch(prompt_ids=torch.zeros(15, 1, dtype=torch.long), prompt_mask=torch.ones(15, 1),
                         response_ids=torch.zeros(mask.shape, dtype=torch.long), response_mask=mask,
                         rollout_logprobs=lp, group_ids=g, truncated=torch.zeros(15, dtype=torch.bool), rewards=r,
                         old_logprobs=lp)
    torch.testing.assert_close(make_estimator("ucpo", tau=0.0)(batch), make_estimator("grpo")(batch), atol=1e-6,
                               rtol=0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(-6.0, 0.0), st.integers(1, 7)), min_size=2, max_size=9),
       st.floats(0.0, 1.0))
def test_2_correct_set_advantage_sum_is_preserved(rows, tau) -> None:
    rewards = [float(c) for c, _, _ in rows]
    scores = [s for _, s, _ in rows]
    lengths = [n for _, _, n in rows]
    r, lp, mask, g = inputs(rewards, [0] * len(rows), lengths, scores)
    new = per_seq(ucpo_advantages(r, lp, mask, g, tau=tau)).double()
    old = per_seq(grpo_advantages(r, g, mask)).double()
    c = r > 0
    assert abs(float(new[c].sum() - old[c].sum())) <= 1e-6 * max(1.0, float(old[c].abs().sum()))
    torch.testing.assert_close(new[~c], old[~c])  # test 6: incorrect advantages unchanged (alpha = 0)


def test_3_equal_q_gives_weight_one() -> None:
    log_q = torch.log(torch.full((4,), 0.25))
    member = torch.ones(4, dtype=torch.bool)
    for tau in (0.0, 0.3, 1.0):
        torch.testing.assert_close(inverse_q_weights(log_q, member, torch.zeros(4, dtype=torch.long), tau),
                                   torch.ones(4))
    r, lp, mask, g = inputs([1, 1, 0, 1], [0] * 4, [3, 5, 2, 4], [-0.7] * 4)
    torch.testing.assert_close(ucpo_advantages(r, lp, mask, g, tau=0.8), grpo_advantages(r, g, mask), atol=1e-6,
                               rtol=0)


def test_4_lower_q_gives_strictly_larger_advantage() -> None:
    r, lp, mask, g = inputs()
    for tau in (0.1, 0.5, 1.0):
        adv = per_seq(ucpo_advantages(r, lp, mask, g, tau=tau))
        # group 0 correct rows 0, 1, 3 have scores -0.2 > -1.0 > -2.0, i.e. q decreasing
        assert adv[0] < adv[1] < adv[3]
        assert adv[0] > 0  # still reinforced: weights stay positive for tau <= 1


def test_5_small_and_all_correct_groups_unchanged() -> None:
    r, lp, mask, g = inputs()
    adv = per_seq(ucpo_advantages(r, lp, mask, g, tau=0.7))
    ref = per_seq(grpo_advantages(r, g, mask))
    rows = [i for i, gid in enumerate(GROUPS) if gid != 0]  # group 1: one correct; 2: all correct; 3: none
    torch.testing.assert_close(adv[rows], ref[rows], atol=0, rtol=0)


def test_6_incorrect_unchanged_with_alpha_zero_and_penalised_with_alpha() -> None:
    r, lp, mask, g = inputs()
    ref = per_seq(grpo_advantages(r, g, mask))
    wrong = r == 0
    torch.testing.assert_close(per_seq(ucpo_advantages(r, lp, mask, g, tau=0.5))[wrong], ref[wrong])
    sharp = per_seq(ucpo_advantages(r, lp, mask, g, tau=0.5, alpha=0.5))
    assert torch.all(sharp[wrong] <= ref[wrong] + 1e-7)
    # group 3 (all wrong, scores -0.2 -0.3 -2.0): only the rare row 14 has surprisal above H(q)
    assert sharp[14] < ref[14] and sharp[12] == ref[12]


def test_7_q_uses_length_normalised_old_logprobs_without_gradient() -> None:
    r, lp, mask, g = inputs()
    lp = lp.clone().requires_grad_(True)
    adv = ucpo_advantages(r, lp, mask, g, tau=0.5)
    assert not adv.requires_grad
    # same per-token mean, different lengths and sums: advantages depend only on the mean
    r2, lp2, mask2, g2 = inputs(lengths=[7, 2, 2, 6, 6, 3, 3, 2, 4, 5, 5, 5, 2, 3, 4])
    torch.testing.assert_close(per_seq(ucpo_advantages(r2, lp2, mask2, g2, tau=0.5)), per_seq(adv.detach()))
    # the un-normalised variant differs (row 1: length 5, row 3: length 4 reorder the sums)
    raw = per_seq(ucpo_advantages(r, lp.detach(), mask, g, tau=0.5, length_norm=False))
    assert not torch.allclose(raw, per_seq(adv.detach()))


def test_8_divgrpo_bonus_sums_to_zero_over_correct_set() -> None:
    """The bonus tau (-log q_i - H(q)) is centred under q: sum_{i in S} q_i bonus_i = 0 (its plain sum over
    the samples is not 0 unless q is uniform, so the spec's "sums to 0" is read as the q-weighted sum)."""
    r, lp, mask, g = inputs()
    ref = per_seq(grpo_advantages(r, g, mask))
    for length_norm in (False, True):
        adv = per_seq(centred_surprisal_advantages(r, lp, mask, g, tau=0.3, length_norm=length_norm))
        bonus = adv - ref
        log_q, _, _ = subgroup_log_q(sequence_scores(lp, mask, length_norm), r > 0, g)
        for gid in (0, 2):  # mixed and all-correct groups are both acted on
            rows = [i for i, x in enumerate(GROUPS) if x == gid and REWARDS[i] == 1]
            assert abs(float((log_q[rows].exp() * bonus[rows]).sum())) < 1e-5
            assert float(bonus[rows].abs().max()) > 1e-3
        torch.testing.assert_close(bonus[r == 0], torch.zeros(int((r == 0).sum())))


def test_subgroup_log_q_and_diagnostics() -> None:
    r, lp, mask, g = inputs()
    s = sequence_scores(lp, mask)
    log_q, ent, size = subgroup_log_q(s, r > 0, g)
    q0 = torch.softmax(torch.tensor([-0.2, -1.0, -2.0]), 0)
    torch.testing.assert_close(log_q[[0, 1, 3]].exp(), q0, atol=1e-6, rtol=0)
    assert size.tolist() == [3] * 5 + [1] * 4 + [3] * 3 + [0] * 3
    torch.testing.assert_close(ent[0], -(q0 * q0.log()).sum(), atol=1e-6, rtol=0)
    d = correct_set_diagnostics(r, lp, mask, g)
    assert d["ucpo/groups_active"] == 0.5 and d["ucpo/n_correct"] == 3.0
    assert 0 < d["ucpo/Hq_norm"] < 1 and d["ucpo/max_q"] > 1 / 3


def test_registry_reads_old_logprobs_and_validates() -> None:
    est = make_estimator("ucpo", tau=0.5)
    assert "old_logprobs" in est.fields_read() and "old_logprobs" in make_estimator("divgrpo").fields_read()
    r, lp, mask, g = inputs()
    batch = RolloutBatch(prompt_ids=torch.zeros(15, 1, dtype=torch.long), prompt_mask=torch.ones(15, 1),
                         response_ids=torch.zeros(mask.shape, dtype=torch.long), response_mask=mask,
                         rollout_logprobs=lp, group_ids=g, truncated=torch.zeros(15, dtype=torch.bool), rewards=r)
    with pytest.raises(ValueError, match="old_logprobs"):
        est(batch)
    for bad in ({"tau": 1.5}, {"tau": -0.1}, {"alpha": -1.0}, {"q_floor": 0.0}):
        with pytest.raises(ConfigError):
            make_estimator("ucpo", **bad)
    with pytest.raises(ConfigError, match="rollout"):
        est.validate(1)


# ----------------------------------------------------------------------------- tabular bandit (ucpo.md 3.2)

def _bandit_module():
    return load_benchmark("diversity_bandit")


def test_tabular_bandit_ucpo_keeps_accuracy_and_raises_diversity() -> None:
    """ucpo.md 3.2: at step 600, UCPO tau=0.5 accuracy >= 0.92, H_norm >= GRPO + 0.1, distinct-64 >= 1.5x
    GRPO (means over seeds 0-2), and H_norm / distinct-64 increase monotonically in tau in {0, 0.2, 0.5, 1}."""
    bandit = _bandit_module()
    table = bandit.bandit_table([None, 0.2, 0.5, 1.0], [0, 1, 2])
    mean = {m: {k: float(np.mean(v)) for k, v in row.items()} for m, row in table.items()}
    grpo, ucpo = mean["GRPO"], mean["UCPO tau=0.5"]
    assert ucpo["accuracy"] >= 0.92, mean
    assert ucpo["h_norm"] >= grpo["h_norm"] + 0.1, mean
    assert ucpo["distinct"] >= 1.5 * grpo["distinct"], mean
    order = ["GRPO", "UCPO tau=0.2", "UCPO tau=0.5", "UCPO tau=1"]  # GRPO is tau = 0 (test 1)
    for key in ("h_norm", "distinct"):
        values = [mean[m][key] for m in order]
        assert values == sorted(values), (key, values)
