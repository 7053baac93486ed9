"""Every setting is checked at load, before any work (issue 18): ranges, names and combinations, each
error naming the key, the value and what is allowed; the SFT warm start never runs first."""

from __future__ import annotations

import pytest

from rollwise import cli
from rollwise.config import ConfigError
from rollwise.rlvr.run_config import resolve_config

BAD = [
    ("train.lr=-1e-4", "train.lr=-0.0001", "> 0"),
    ("train.lr=nan", "train.lr=nan", "finite"),
    ("sft.lr=0", "sft.lr=0.0", "> 0"),
    ("train.checkpoint_every=-1", "train.checkpoint_every=-1", ">= 0"),
    ("train.eval_every=-2", "train.eval_every=-2", ">= 0"),
    ("train.eval_prompts=0", "train.eval_prompts=0", ">= 1"),
    ("sft.steps=-5", "sft.steps=-5", ">= 0"),
    ("sft.batch_size=0", "sft.batch_size=0", ">= 1"),
    ("rollout.batch_size=0", "rollout.batch_size=0", ">= 1"),
    ("train.prompts_per_step=0", "train.prompts_per_step=0", ">= 1"),
    ("train.keep_checkpoints=-1", "train.keep_checkpoints=-1", ">= 0"),
    ("train.max_grad_norm=-1.0", "train.max_grad_norm=-1.0", ">= 0"),
    ("task.reward_timeout_s=0", "task.reward_timeout_s=0.0", "> 0"),
    ("algorithm.loss.clip_low=1.5", "algorithm.loss.clip_low=1.5", "[0, 1)"),
    ("algorithm.loss.dual_clip_c=0.5", "algorithm.loss.dual_clip_c=0.5", "> 1"),
    ("model.tiny.num_heads=3", "model.tiny.hidden_size=128", "divisible by model.tiny.num_heads=3"),
    ("algorithm.correction=tiss", "algorithm.correction='tiss'", "valid choices"),
    ("rollout.engine=vlm", "rollout.engine='vlm'", "valid choices"),
    ("run.output_dir=' '", "run.output_dir=' '", "non-empty"),
    ("task.params.max_operand='x'", "task.params.max_operand must be an integer", "'x'"),
    ("task.params.n_test=1.5", "task.params.n_test must be an integer", "1.5"),
]


@pytest.mark.parametrize(("override", "named", "allowed"), BAD)
def test_bad_setting_is_refused_at_load_naming_key_value_and_allowed(override, named, allowed):
    with pytest.raises(ConfigError) as info:
        resolve_config(overrides=[override])
    assert named in str(info.value) and allowed in str(info.value), str(info.value)


@pytest.mark.parametrize("override", ["algorithm.correction=tiss", "train.lr=-1", "sft.steps=-1"])
def test_cli_refuses_before_the_warm_start(override, tmp_path, capsys, monkeypatch):
    import rollwise.rlvr.sft as sft

    def no_sft(*args, **kwargs):
        raise AssertionError("the SFT warm start ran before validation")

    monkeypatch.setattr(sft, "supervised_warm_start", no_sft)
    assert cli.main(["train", "--set", override, "--set", f"run.output_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and override.split("=")[0] in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_defaults_and_shipped_configs_are_valid():
    from pathlib import Path

    resolve_config()
    for path in sorted(Path(__file__).resolve().parents[2].glob("configs/*.toml")):
        resolve_config(str(path))
