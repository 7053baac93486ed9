"""``run.tensorboard``: RunLog mirrors every numeric step metric into tensorboard event files."""

import sys

import pytest

from rollwise.config import ConfigError
from rollwise.runlog import RunLog, read_jsonl


def _scalars(tb_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_runlog_writes_the_same_scalars_to_jsonl_and_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")  # in the dev extra, so CI runs this
    log = RunLog(tmp_path, tensorboard=True)
    for step in (1, 2, 3):
        log.log({"step": step, "reward": 0.25 * step, "note": "text is skipped"})
    log.log({"event": "no step: jsonl only", "reward": 9.0})
    log.close()
    got = _scalars(tmp_path / "tb")
    assert set(got) == {"reward"}
    assert got["reward"] == [(1, 0.25), (2, 0.5), (3, 0.75)]
    assert [r["reward"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [0.25, 0.5, 0.75, 9.0]


def test_training_with_tensorboard_logs_every_step(small_tb_config):
    pytest.importorskip("tensorboard")
    from rollwise.rlvr.job import run_training

    cfg = small_tb_config
    run_training(cfg)
    got = _scalars(cfg.run.output_dir + "/tb")
    assert [s for s, _ in got["reward"]] == [1, 2]
    assert "loss" in got and "time/step" in got


def test_missing_tensorboard_is_a_config_error_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    with pytest.raises(ConfigError, match=r"run\.tensorboard.*rollwise\[tensorboard\]"):
        RunLog(tmp_path, tensorboard=True)


@pytest.fixture
def small_tb_config(tmp_path):
    from rollwise.rlvr.run_config import resolve_config

    return resolve_config(base={
        "model": {"tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64}},
        "task": {"name": "add3", "params": {"max_operand": 9, "n_train": 60, "n_test": 20}},
        "sft": {"enabled": False},
        "rollout": {"n": 4, "max_new_tokens": 4},
        "train": {"steps": 2, "prompts_per_step": 4, "eval_every": 0, "eval_prompts": 8, "checkpoint_every": 0},
        "run": {"output_dir": str(tmp_path / "run"), "threads": 1, "report": False, "tensorboard": True},
    })
