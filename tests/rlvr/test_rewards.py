import logging
import multiprocessing
import time

import pytest
import torch

from rollwise.rlvr.rewards import RewardRunner, exact_answer


def length_reward(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]


def raising_reward(prompts, completions, **kwargs):
    raise RuntimeError("verifier bug")


def hanging_reward(prompts, completions, **kwargs):
    time.sleep(60)
    return [1.0] * len(completions)


def short_reward(prompts, completions, **kwargs):
    return [1.0] * (len(completions) - 1)


def none_reward(prompts, completions, **kwargs):
    return [None if c == "?" else 1.0 for c in completions]


class CountingReward:
    __name__ = "counting"

    def __init__(self):
        self.calls = 0

    def __call__(self, prompts, completions, **kwargs):
        self.calls += 1
        return [0.5] * len(completions)

    def pop_metrics(self):
        return {"calls": self.calls}


PROMPTS = ["1+1=", "2+2=", "3+3="]
COMPLETIONS = ["2", "44", "6"]
COLUMNS = {"answer": ["2", "4", "6"]}


def test_weights_combine_and_columns_and_truncated_reach_functions():
    runner = RewardRunner([exact_answer, length_reward], weights=[2.0, 0.5])
    r, m = runner(PROMPTS, COMPLETIONS, [False, False, True], COLUMNS)
    assert r.dtype == torch.float32 and r.shape == (3,)
    assert r.tolist() == pytest.approx([2.0 + 0.5, 0.0 + 1.0, 0.0 + 0.5])  # third is truncated
    assert m["reward/exact_answer/mean"] == pytest.approx(1 / 3)
    assert m["reward/failures"] == 0 and m["reward/exact_answer/errors"] == 0
    assert m["reward/mean"] == pytest.approx(r.mean().item())
    assert m["reward/truncated_frac"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_raising_and_hanging_functions_are_contained(isolation, caplog):
    runner = RewardRunner([exact_answer, raising_reward, hanging_reward, length_reward], timeout_s=0.5,
                          isolation=isolation)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="rollwise.rlvr.rewards"):
        r, m = runner(PROMPTS, COMPLETIONS, torch.tensor([False, False, False]), COLUMNS)
        r2, m2 = runner(PROMPTS, COMPLETIONS, [False] * 3, COLUMNS)
    assert time.monotonic() - start < 10.0
    assert r.tolist() == pytest.approx([1.0 + 1, 0.0 + 2, 1.0 + 1]) and r2.tolist() == r.tolist()
    assert m["reward/raising_reward/errors"] == 1 and m["reward/raising_reward/timeouts"] == 0
    assert m["reward/hanging_reward/timeouts"] == 1 and m["reward/hanging_reward/errors"] == 0
    assert m["reward/failures"] == 2 and m2["reward/failures"] == 2
    assert m["reward/exact_answer/errors"] == 0 and m["reward/length_reward/timeouts"] == 0
    warnings = [rec.getMessage() for rec in caplog.records]
    assert sum("raising_reward" in w and "verifier bug" in w for w in warnings) == 1  # once per function
    assert sum("hanging_reward" in w and "timed out" in w for w in warnings) == 1
    if isolation == "process":  # the hung worker was killed, not left behind
        assert not [p for p in multiprocessing.active_children() if p.name.startswith("reward-")]


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_wrong_length_is_an_error(isolation, caplog):
    runner = RewardRunner([short_reward, exact_answer], isolation=isolation)
    with caplog.at_level(logging.WARNING, logger="rollwise.rlvr.rewards"):
        r, m = runner(PROMPTS, COMPLETIONS, [False] * 3, COLUMNS)
    assert r.tolist() == [1.0, 0.0, 1.0]
    assert m["reward/short_reward/errors"] == 1 and m["reward/failures"] == 1
    assert any("returned 2 values for 3 completions" in rec.getMessage() for rec in caplog.records)


def test_none_counts_as_zero_and_is_reported():
    r, m = RewardRunner([none_reward])(["p"] * 4, ["a", "?", "b", "?"], [False] * 4, {})
    assert r.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert m["reward/none_reward/none_frac"] == 0.5 and m["reward/none_reward/mean"] == 1.0


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_extra_metrics_and_unique_names(isolation):
    runner = RewardRunner([CountingReward(), CountingReward()], isolation=isolation)
    assert runner.names == ["counting", "counting_2"]
    r, m = runner(PROMPTS, COMPLETIONS, [False] * 3, COLUMNS)
    assert r.tolist() == [1.0, 1.0, 1.0] and m["reward/counting/calls"] == 1 and m["reward/counting_2/calls"] == 1


def test_runner_rejects_bad_arguments():
    with pytest.raises(ValueError, match="weights"):
        RewardRunner([exact_answer], weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="isolation"):
        RewardRunner([exact_answer], isolation="fiber")
    with pytest.raises(ValueError, match="answer has 2 values for 3"):
        RewardRunner([exact_answer])(PROMPTS, COMPLETIONS, [False] * 3, {"answer": ["1", "2"]})
