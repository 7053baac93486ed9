"""The BASIS benchmarks' cache key (benchmarks/basis_setup.py) names the task and every setting of pi_0 / the prior."""

import sys
from pathlib import Path

from rollwise.rlvr.run_config import resolve_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from basis_setup import PI0_KEYS, PRIOR_KEYS, cache_key  # noqa: E402


def _cfg(*overrides: str):
    return resolve_config(overrides=list(overrides), algorithm="basis")


def test_pi0_key_changes_with_the_task_and_every_warm_start_setting_only():
    base = cache_key(_cfg(), PI0_KEYS)
    assert base.startswith("add3-")
    for other in ("task.name=countdown", "task.params.n_train=100", "sft.steps=7", "sft.lr=0.01", "train.seed=3",
                  "model.tiny.hidden_size=32", "model.init_seed=2"):
        assert cache_key(_cfg(other), PI0_KEYS) != base, other
    for same in ("train.lr=0.5", "rollout.temperature=0.7", "algorithm.estimator_params.offline_rollouts=4"):
        assert cache_key(_cfg(same), PI0_KEYS) == base, same


def test_prior_key_also_changes_with_the_rollout_and_estimator_settings():
    base = cache_key(_cfg(), PRIOR_KEYS)
    assert cache_key(_cfg("task.name=countdown"), PRIOR_KEYS) != base  # another task never reuses ADD-3's prior
    for other in ("algorithm.estimator_params.offline_rollouts=4", "rollout.temperature=0.7", "sft.steps=7"):
        assert cache_key(_cfg(other), PRIOR_KEYS) != base, other
    assert cache_key(_cfg("train.lr=0.5"), PRIOR_KEYS) == base
