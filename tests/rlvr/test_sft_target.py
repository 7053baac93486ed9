"""``sft.target_accuracy``: the warm start stops at the first check whose exact accuracy reaches the target."""

import json

import pytest
from rlvr_small_config import SMALL

from rollwise.config import ConfigError
from rollwise.rlvr.evaluate import exact_success_prob
from rollwise.rlvr.policy import build_policy
from rollwise.rlvr.run_config import resolve_config
from rollwise.rlvr.tasks import make_task


def _build(tmp_path, *overrides):
    cfg = resolve_config(overrides=[*SMALL, "sft.check_every=20", "sft.check_prompts=64", *overrides])
    task = make_task(cfg.task.name, **cfg.task.params)
    model, tok = build_policy(cfg, task, tmp_path / "warm_start")
    return cfg, task, model, tok, json.loads((tmp_path / "warm_start" / "sft.json").read_text())


def test_target_stops_at_first_check_that_reaches_it(tmp_path):
    # without a target: no check, all steps run
    cfg, task, _, _, full = _build(tmp_path / "full")
    assert full["steps"] == cfg.sft.steps and full["checks"] == []
    # a target the small model passes before its last step (measured: about 0.04 after 120 steps)
    cfg, task, model, tok, info = _build(tmp_path / "t", "sft.target_accuracy=0.02")
    checks = info["checks"]
    assert checks, "no accuracy check ran"
    assert info["steps"] == checks[-1][0] < cfg.sft.steps
    assert checks[-1][1] >= 0.02 and all(acc < 0.02 for _, acc in checks[:-1])
    assert [s for s, _ in checks] == list(range(20, info["steps"] + 1, 20))
    # the recorded accuracy is the saved model's, on the first check_prompts training prompts
    ex = task.examples("train")[:64]
    acc = float(exact_success_prob(model, tok, [e.prompt for e in ex], [e.target for e in ex], compact=True).mean())
    assert acc == pytest.approx(checks[-1][1], abs=1e-4)


def test_unreachable_target_runs_all_steps(tmp_path):
    cfg, _, _, _, info = _build(tmp_path, "sft.target_accuracy=1.0", "sft.steps=60")
    assert info["steps"] == 60 and len(info["checks"]) == 3 and all(acc < 1.0 for _, acc in info["checks"])


def test_target_needs_unique_answer_task(tmp_path):
    cfg = resolve_config(overrides=["task.name=make_n", "sft.target_accuracy=0.5", "model.tiny.hidden_size=32",
                                    "model.tiny.intermediate_size=64", "sft.steps=5", "run.threads=1"])
    with pytest.raises(ConfigError, match="sft.target_accuracy=0.5 needs a task with a unique answer"):
        build_policy(cfg, make_task(cfg.task.name, **cfg.task.params))


def test_target_range_is_checked():
    with pytest.raises(ConfigError, match="sft.target_accuracy"):
        resolve_config(overrides=["sft.target_accuracy=1.5"])
