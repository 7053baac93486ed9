"""Shared set-up of the BASIS benchmarks (value_mse.py, policy_compare.py): the task, pi_0 and its cache.

pi_0 is the tiny default model warmed up with SFT; it is built once per setting and cached under
``runs/basis-bench/`` (not committed), so both benchmarks score the same initial policy. Cached artefacts are
named by ``cache_key``: the task and a hash of every config value that changes them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE = Path("runs/basis-bench")


@dataclass(frozen=True)
class Setting:
    """The task and warm start shared by the benchmarks (see docs/basis.md for why these values)."""

    max_operand: int = 99  # ADD-3's operand range; 999 needs far more SFT than this CPU allows (docs)
    n_train: int = 4096  # RL training prompts (our plan)
    n_test: int = 512  # held-out prompts (our plan)
    sft_steps: int = 800  # SFT steps of pi_0 (exact test accuracy 0.336, E[V(1-V)] 0.19)
    sft_lr: float = 2e-3  # SFT Adam learning rate
    sft_batch: int = 128  # SFT batch size
    max_new_tokens: int = 6  # >= len(answer) + EOS
    task: str = "add3"  # add3 (the fields above), or a reasoning testbed of testbed_setup.TESTBEDS (its base)

    def overrides(self) -> list[str]:
        if self.task != "add3":  # a testbed: its base's task and model; the comparisons' learning rate
            from testbed_setup import base_overrides, testbed

            tb = testbed(self.task)
            return [*base_overrides(tb), f"train.lr={tb.lr}"]
        from _common import HF_PATH

        return [f"task.params.max_operand={self.max_operand}", f"task.params.n_train={self.n_train}",
                f"task.params.n_test={self.n_test}", f"sft.steps={self.sft_steps}", f"sft.lr={self.sft_lr}",
                f"sft.batch_size={self.sft_batch}", f"rollout.max_new_tokens={self.max_new_tokens}",
                "train.eval_every=0", "train.checkpoint_every=0", "run.report=false",
                *HF_PATH]  # ADD-3's committed results were measured on transformers' path

    def tag(self) -> str:
        if self.task != "add3":  # the base's key covers its task, model and SFT settings
            from testbed_setup import testbed

            from rollwise.rlvr.base_models import get_spec

            return f"{self.task}-{get_spec(testbed(self.task).base).key()}"
        return f"op{self.max_operand}-sft{self.sft_steps}-lr{self.sft_lr:g}-b{self.sft_batch}"


def testbed_setting(task: str, **add3: int) -> Setting:
    """The Setting of ``--task``: ADD-3 with the given fields, or a testbed (its response limit included)."""
    if task == "add3":
        return Setting(**add3)
    from testbed_setup import testbed

    return Setting(task=task, max_new_tokens=testbed(task).max_new_tokens)


def task_defaults(args: Any, stem: str) -> None:
    """Fill ``args.lr`` (ADD-3's 1e-4, or the learning rate registered for the testbed) and ``args.name``
    (``<stem>[_<testbed>][_quick]``: a quick run never overwrites the full results) when not given."""
    if args.lr is None:
        args.lr = default_lr(args.task)
    suffix = "" if args.task == "add3" else "_" + args.task.replace("-", "_")
    args.name = args.name or (stem + suffix + ("_quick" if args.quick else ""))


def default_lr(task: str) -> float:
    """The RL learning rate of ``--task``: ADD-3's 1e-4, or the one registered for the testbed's comparisons
    (docs/basis.md)."""
    if task == "add3":
        return 1e-4
    from testbed_setup import testbed

    return testbed(task).lr


def task_label(task: str) -> str:
    """``--task`` as the results' titles name it."""
    return "ADD-3" if task == "add3" else f"the {task} testbed"


def task_line(task: str, setting: Setting) -> str:
    """What pi_0 and the training pool are, for a results header."""
    if task == "add3":
        return (f"Task: ADD-3 with operands in [0, {setting.max_operand}], {setting.n_train} training prompts; pi_0 = "
                f"tiny model after {setting.sft_steps} SFT steps.")
    return f"Task and pi_0: the `{task}` base (`rollwise base build {task}`; docs/testbed.md) and its training pool."


def config(setting: Setting, algorithm: str | None, extra: list[str] | None = None):
    """The resolved RLVRConfig of one run: setting, then the ``algorithm`` preset, then ``extra``."""
    from rollwise.rlvr.run_config import resolve_config

    return resolve_config(overrides=setting.overrides() + list(extra or []), algorithm=algorithm)


#: the config keys that determine pi_0 (the SFT warm start also draws with train.seed)
PI0_KEYS = ("model", "task", "sft", "train.seed")
#: and, on top, the offline prior of BASIS (Stage O rolls pi_0 out with the rollout and estimator settings)
PRIOR_KEYS = (*PI0_KEYS, "rollout", "algorithm.estimator", "algorithm.estimator_params")


def cache_key(cfg: Any, keys: tuple[str, ...]) -> str:
    """``<task>-<hash>``: names a cached artefact by every config value in ``keys`` (dotted paths), so a run
    with another task, model, warm start or prior setting never reuses it."""
    import hashlib
    import json

    from rollwise.config import to_dict

    data = to_dict(cfg)
    picked = {}
    for key in keys:
        value: Any = data
        for part in key.split("."):
            value = value[part]
        picked[key] = value
    digest = hashlib.sha256(json.dumps(picked, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{cfg.task.name}-{digest}"


def initial_policy(setting: Setting):
    """(policy, tokenizer, task) at pi_0, built with SFT on the first call and loaded from the cache after."""
    if setting.task != "add3":
        from testbed_setup import load_base, testbed

        return load_base(testbed(setting.task))[:3]
    from rollwise.rlvr.models import load_policy
    from rollwise.rlvr.policy import build_policy
    from rollwise.rlvr.tasks import make_task
    from rollwise.runlog import seed_everything

    cfg = config(setting, None)
    task = make_task(cfg.task.name, **cfg.task.params)
    warm = CACHE / f"pi0-{cache_key(cfg, PI0_KEYS)}"
    if (warm / "config.json").exists():
        policy, tokenizer = load_policy(warm)
    else:
        seed_everything(cfg.train.seed)
        policy, tokenizer = build_policy(cfg, task, warm)
    return policy, tokenizer, task


def fresh_copy(policy: Any) -> Any:
    return copy.deepcopy(policy)
