"""Generator checks of the spring task (spec §5.3 unit tests)."""

import numpy as np
import pytest

from rollwise.worldmodels import env as spring

TASK = spring.SpringConfig()


@pytest.fixture(scope="module")
def windows() -> spring.Windows:
    return spring.sample_windows(TASK, np.random.default_rng(0), 20_000)


def test_label_balance(windows):
    assert 0.45 <= windows.labels.mean() <= 0.55


def test_tokens_masking_and_range(windows):
    tok = windows.tokens
    assert tok.min() >= 0 and tok.max() <= 16 and TASK.vocab_size == 17
    assert (tok[:, -1] == TASK.mask_token).all()  # o_{t+K} always MASK
    hidden = (np.arange(TASK.length) % 3) != 0
    assert (tok[:, hidden] == TASK.mask_token).all()
    assert (tok[:, ~hidden][:, :-1] < TASK.mask_token).all()  # visible steps carry a position bin
    assert windows.actions.shape == (20_000, TASK.length - 1)


def test_oracle_calibration(windows):
    rng = np.random.default_rng(1)
    correct = spring.oracle_accuracy(TASK, windows, spring.future_actions(TASK, windows))
    wrong = spring.oracle_accuracy(TASK, windows, spring.condition_actions(TASK, windows, "wrong", rng))
    assert correct >= 0.97
    assert 0.75 <= wrong <= 0.90


def test_semi_implicit_euler_golden():
    x, v = spring.step(TASK, np.array([1.0]), np.array([0.5]), np.array([2.0]), np.array([1.0]))
    v_new = 0.5 + 0.1 * (-1.0 - 0.05 + 3.0) + 0.02
    assert v[0] == pytest.approx(v_new) and x[0] == pytest.approx(1.0 + 0.1 * v_new)


def test_counterfactual_keeps_context_and_uses_new_actions():
    rng = np.random.default_rng(2)
    w = spring.sample_windows(TASK, rng, 64)
    fut = np.zeros((64, TASK.horizon), dtype=np.int64)
    cf = spring.counterfactual(TASK, w, rng, future=fut)
    t = TASK.t
    np.testing.assert_array_equal(cf.tokens[:, : t + 1], w.tokens[:, : t + 1])
    np.testing.assert_array_equal(cf.x[:, : t + 1], w.x[:, : t + 1])
    np.testing.assert_array_equal(cf.actions[:, t:], fut)
    np.testing.assert_array_equal(cf.actions[:, :t], w.actions[:, :t])
    assert not np.allclose(cf.v[:, -1], w.v[:, -1])


def test_action_conditions():
    rng = np.random.default_rng(3)
    w = spring.sample_windows(TASK, rng, 32)
    a = spring.future_actions(TASK, w)
    assert (spring.condition_actions(TASK, w, "no-action", rng) == spring.NO_ACTION).all()
    np.testing.assert_array_equal(spring.condition_actions(TASK, w, "reversed", rng), a[:, ::-1])
    neg = spring.condition_actions(TASK, w, "negated", rng)
    np.testing.assert_array_equal(spring.ACTION_VALUES[neg], -spring.ACTION_VALUES[a])
    shuf = spring.condition_actions(TASK, w, "shuffled", rng)
    assert sorted(map(tuple, shuf)) == sorted(map(tuple, a))  # a permutation of whole sequences
    with pytest.raises(ValueError, match="valid"):
        spring.condition_actions(TASK, w, "sideways", rng)


def test_teacher_log_is_fixed():
    log = spring.TeacherLog.collect(TASK, np.random.default_rng(4), 10)
    b = log.batch(np.random.default_rng(5), 50)
    rows = {tuple(r) for r in log.windows.actions}
    assert all(tuple(r) in rows for r in b.actions)
