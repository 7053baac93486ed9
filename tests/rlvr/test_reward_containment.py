"""Reward containment that holds for CPU-bound verifiers, and accuracy from the task's own verifier
(issue 18)."""

from __future__ import annotations

import re
import time

import pytest

from rollwise.rlvr.job import run_training
from rollwise.rlvr.rewards import RewardRunner, exact_answer, is_builtin
from rollwise.rlvr.tasks.arithmetic import Add3
from rollwise.rlvr.tasks.mathcheck import MathVerifyReward
from rollwise.runlog import read_jsonl


def gil_holding_reward(prompts, completions, **kwargs):
    """A backtracking regex: one C call that never releases the GIL (about 2^26 steps, several seconds)."""
    re.match(r"(a+)+$", "a" * 26 + "b")
    return [1.0] * len(completions)


def always_one(prompts, completions, **kwargs):
    return [1.0] * len(completions)


def test_default_isolation_stops_a_gil_holding_user_function_at_the_timeout():
    runner = RewardRunner([exact_answer, gil_holding_reward], timeout_s=1.0)
    assert not runner.in_process(0) and runner.in_process(1)
    start = time.monotonic()
    r, m = runner(["p", "q"], ["1", "2"], [False, False], {"answer": ["1", "3"]})
    elapsed = time.monotonic() - start
    assert elapsed < 3.0, f"the 1 s timeout took {elapsed:.1f} s"
    assert m["reward/gil_holding_reward/timeouts"] == 1 and r.tolist() == [1.0, 0.0]


def test_builtin_verifiers_run_in_threads_and_user_functions_in_processes():
    assert is_builtin(exact_answer) and is_builtin(MathVerifyReward()) and is_builtin(Add3().reward_funcs()[0])
    assert not is_builtin(always_one) and not is_builtin(lambda p, c, **k: [0.0] * len(c))
    assert RewardRunner([always_one], isolation="thread").in_process(0) is False
    assert RewardRunner([exact_answer], isolation="process").in_process(0) is True


def test_accuracy_is_the_task_verifiers_not_the_summed_reward():
    runner = RewardRunner([exact_answer, always_one])
    r, m = runner(["p"] * 4, ["1", "2", "3", "4"], [False] * 4, {"answer": ["1", "0", "0", "0"]})
    assert r.tolist() == [2.0, 1.0, 1.0, 1.0]
    assert m["reward/accuracy"] == 0.25


def test_step_accuracy_ignores_a_second_reward_function(small_config, monkeypatch):
    monkeypatch.setattr(Add3, "reward_funcs", lambda self: [exact_answer, always_one])
    cfg = small_config("sft.steps=5", "train.steps=2", "rollout.n=2", "algorithm.estimator=rloo")
    run_training(cfg)
    steps = [rec for rec in read_jsonl(f"{cfg.run.output_dir}/metrics.jsonl") if rec["step"] > 0]
    for rec in steps:
        assert rec["accuracy"] == pytest.approx(rec["reward/exact_answer/mean"])
        assert rec["accuracy"] < 0.5 <= rec["reward"]
