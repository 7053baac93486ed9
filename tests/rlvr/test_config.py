import pytest

from rollwise.config import ConfigError, apply_overrides, from_dict, parse_override, to_dict, to_toml
from rollwise.rlvr.run_config import RLVRConfig, resolve_config


def test_defaults_validate():
    cfg = resolve_config()
    assert cfg.task.name == "add3"


def test_unknown_key_names_key_and_choices():
    with pytest.raises(ConfigError) as e:
        resolve_config(overrides=["train.stepz=5"])
    msg = str(e.value)
    assert "train.stepz" in msg and "steps" in msg and "prompts_per_step" in msg


def test_unknown_section():
    with pytest.raises(ConfigError, match="trian"):
        resolve_config(overrides=["trian.steps=5"])


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError, match=r"train.steps must be an integer, got 'many'"):
        resolve_config(overrides=["train.steps=many"])


def test_bad_choice_lists_valid_choices():
    with pytest.raises(ConfigError) as e:
        resolve_config(overrides=["algorithm.loss.agg_mode=mean"])
    assert "token-mean" in str(e.value) and "seq-mean-token-sum-norm" in str(e.value)


def test_unknown_estimator_lists_registry():
    with pytest.raises(ConfigError) as e:
        resolve_config(overrides=["algorithm.estimator=ppo2"])
    assert "grpo" in str(e.value) and "reinforce_pp" in str(e.value)


def test_grpo_with_one_rollout_is_config_error():
    with pytest.raises(ConfigError, match="rollout"):
        resolve_config(overrides=["algorithm.estimator=grpo", "rollout.n=1"])


def test_override_parsing_types():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=0.5") == (["a"], 0.5)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=hello") == (["a"], "hello")
    assert parse_override('a="x=y"') == (["a"], "x=y")
    assert apply_overrides({}, ["x.y.z=1"]) == {"x": {"y": {"z": 1}}}


def test_toml_roundtrip(tmp_path):
    cfg = resolve_config(overrides=["train.steps=7", "rollout.n=4", "algorithm.estimator=grpo"])
    path = tmp_path / "c.toml"
    path.write_text(to_toml(to_dict(cfg)))
    again = resolve_config(str(path))
    assert to_dict(again) == to_dict(cfg)


def test_from_dict_rejects_table_for_scalar():
    with pytest.raises(ConfigError, match="train.steps"):
        from_dict(RLVRConfig, {"train": {"steps": {"a": 1}}})


def test_missing_config_file():
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config("/nonexistent/x.toml")


def test_switching_task_drops_the_default_jobs_task_params():
    from rollwise.rlvr.commands import DEFAULT_JOB

    cfg = resolve_config(overrides=["task.name=make_n"], base=DEFAULT_JOB)
    assert cfg.task.name == "make_n" and "max_operand" not in cfg.task.params
    kept = resolve_config(overrides=["task.params.n_test=100"], base=DEFAULT_JOB)
    assert kept.task.params == {"max_operand": 99, "n_train": 4096, "n_test": 100}


def test_shipped_config_files_validate():
    from pathlib import Path

    from rollwise.rlvr.commands import DEFAULT_JOB

    files = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))
    assert files
    for f in files:
        resolve_config(str(f), base=DEFAULT_JOB)


def test_a_partial_nested_table_keeps_that_fields_own_defaults():
    """``codistill.large`` defaults to a 4-layer model; setting one of its keys must not reset the others."""
    from rollwise.rlvr.run_config import resolve_config

    default = resolve_config().codistill.large
    changed = resolve_config(overrides=["codistill.large.forward=hf"]).codistill.large
    assert changed.forward == "hf" and changed.tiny == default.tiny and default.tiny.num_layers == 4
