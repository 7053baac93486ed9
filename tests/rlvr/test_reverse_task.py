"""The ``reverse`` task (rollwise/rlvr/tasks/reverse.py): golden transformations, pools, verifier, noisy SFT."""

from __future__ import annotations

import numpy as np
import pytest

from rollwise.config import ConfigError
from rollwise.rlvr.rewards import exact_answer
from rollwise.rlvr.tasks import make_task, task_names
from rollwise.rlvr.tasks.reverse import transform


def test_reverse_is_registered_and_validates_params():
    assert "reverse" in task_names()
    with pytest.raises(ConfigError, match="task.op='rot13' is invalid"):
        make_task("reverse", op="rot13")
    with pytest.raises(ConfigError, match="sft_noise"):
        make_task("reverse", sft_noise=1.0)
    with pytest.raises(ConfigError, match="n_train"):
        make_task("reverse", length=2, alphabet="ab", n_train=3, n_test=2)


def test_transform_golden():
    assert transform("abcz", "reverse") == "zcba"
    assert transform("abcz", "copy") == "abcz"
    assert transform("dbca", "sort") == "abcd"


@pytest.mark.parametrize("op", ["reverse", "copy", "sort"])
def test_pools_are_deterministic_disjoint_and_answers_correct(op):
    task = make_task("reverse", op=op, n_train=200, n_test=50, seed=3)
    train, test = task.examples("train"), task.examples("test")
    assert (len(train), len(test)) == (200, 50)
    assert not {e.prompt for e in train} & {e.prompt for e in test}
    assert train == make_task("reverse", op=op, n_train=200, n_test=50, seed=3).examples("train")
    assert train != make_task("reverse", op=op, n_train=200, n_test=50, seed=4).examples("train")
    for e in train[:20]:
        text = e.prompt[:-1]
        assert e.prompt.endswith("=") and len(text) == 16 and set(text) <= set("abcdefghijklmnopqrstuvwxyz")
        assert e.answer == e.target == transform(text, op)


def test_reward_is_whole_sequence_exact_match_and_zero_when_truncated():
    task = make_task("reverse", n_train=4, n_test=1)
    (f,) = task.reward_funcs()
    assert f is exact_answer
    e = task.examples("train")[0]
    one_wrong = ("a" if e.answer[5] != "a" else "b").join((e.answer[:5], e.answer[6:]))
    got = f([e.prompt] * 4, [e.answer, one_wrong, e.answer[:-1], e.answer], answer=[e.answer] * 4,
            truncated=[False, False, False, True])
    assert got == [1.0, 0.0, 0.0, 0.0]


def test_sft_noise_flips_each_letter_with_the_given_rate_and_avoids_the_test_pool():
    task = make_task("reverse", op="copy", sft_noise=0.13, n_train=100, n_test=100)
    ex = task.sft_examples(3000, seed=0)
    flips = np.array([[a != b for a, b in zip(e.answer, e.target, strict=True)] for e in ex])
    assert abs(flips.mean() - 0.13) < 0.01  # 48000 letters: std of the rate ~0.0015
    assert all(set(e.target) <= set(task.params.alphabet) and len(e.target) == 16 for e in ex)
    test = {e.prompt for e in task.examples("test")}
    assert not test & {e.prompt for e in ex}
    clean = make_task("reverse", op="copy", sft_noise=0.0).sft_examples(50, seed=0)
    assert all(e.target == e.answer for e in clean)
    assert [e.target for e in task.sft_examples(50, seed=1)] == [e.target for e in task.sft_examples(50, seed=1)]
