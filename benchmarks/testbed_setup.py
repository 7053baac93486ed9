"""Shared set-up of the reasoning-testbed benchmarks: which base model, and the RL settings the comparisons
use (registered in docs/testbed.md, docs/basis.md and docs/ucpo.md before any method run).

A testbed run starts from a base built by ``rollwise base build`` (cached under ``runs/base``) and trains
with the lean sampler and the compact forward (same maths as the transformers path, faster on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TestbedRL:
    """The RL setting of one testbed: the comparisons' learning rate, batch and response limit."""

    base: str  # base model name (rollwise.rlvr.base_models.BASES)
    preset: str  # the reference algorithm of the stability measurement (reinforce_pp or grpo)
    prompts: int  # prompts per step
    lr: float  # AdamW learning rate of every method compared on this testbed
    max_new_tokens: int  # response limit (longest trace + EOS fits)


TESTBEDS: dict[str, TestbedRL] = {
    "column-arith": TestbedRL("column-arith", "reinforce_pp", prompts=64, lr=3e-5, max_new_tokens=64),
    "countdown-steps": TestbedRL("countdown-steps", "grpo", prompts=16, lr=3e-5, max_new_tokens=64),
    "column-arith-2m": TestbedRL("column-arith-2m", "reinforce_pp", prompts=64, lr=3e-5, max_new_tokens=64),
    "column-arith-ci": TestbedRL("column-arith-ci", "reinforce_pp", prompts=8, lr=3e-5, max_new_tokens=40),
    "countdown-steps-ci": TestbedRL("countdown-steps-ci", "grpo", prompts=4, lr=3e-5, max_new_tokens=64),
}


def testbed(name: str) -> TestbedRL:
    if name not in TESTBEDS:
        raise SystemExit(f"unknown testbed {name!r}; valid choices: {', '.join(sorted(TESTBEDS))}")
    return TESTBEDS[name]


def shape_overrides(prefix: str, model: Any) -> list[str]:
    """Config overrides that give the tiny-model section ``prefix`` (``model.tiny``, ``codistill.large.tiny``) the
    shape of ``model`` (a base's ``TinyModelConfig``)."""
    return [f"{prefix}.{k}={getattr(model, k)}" for k in ("hidden_size", "num_layers", "num_heads",
                                                           "intermediate_size", "max_positions", "arch")]


def spec_overrides(spec: Any, max_new_tokens: int) -> list[str]:
    """Config overrides that describe a base's task and model (``spec``: its ``BaseSpec``; the policy itself is
    loaded, not built), sampled at temperature 1 by the lean engine with at most ``max_new_tokens``."""
    return [f"task.name={spec.task}", f"rollout.max_new_tokens={max_new_tokens}", "sft.enabled=false",
            "rollout.engine=lean", "model.forward=compact", "rollout.top_p=1.0", "rollout.temperature=1.0",
            *shape_overrides("model.tiny", spec.model),
            "train.eval_every=0", "train.checkpoint_every=0", "run.report=false",
            *[f"task.params.{k}={v}" for k, v in spec.task_params.items()]]


def base_overrides(tb: TestbedRL) -> list[str]:
    """Config overrides that describe the testbed's base (:func:`spec_overrides` of its spec)."""
    from rollwise.rlvr.base_models import get_spec

    return spec_overrides(get_spec(tb.base), tb.max_new_tokens)


def rl_config(tb: TestbedRL, preset: str | None, extra: list[str] | None = None):
    """The resolved RLVRConfig of a testbed run: base, then ``preset``, the testbed's lr and batch, ``extra``."""
    from rollwise.rlvr.run_config import resolve_config

    return resolve_config(overrides=[*base_overrides(tb), f"train.lr={tb.lr}", f"train.prompts_per_step={tb.prompts}",
                                     *(extra or [])], algorithm=preset)


def load_base(tb: TestbedRL, root: str = "runs/base") -> tuple[Any, Any, Any, dict[str, Any]]:
    """(policy, tokenizer, task, build.json) of the testbed's base, built first when not cached."""
    import json

    from rollwise.rlvr.base_models import base_dir, load

    policy, tokenizer, task = load(tb.base, root)
    return policy, tokenizer, task, json.loads((base_dir(tb.base, root) / "build.json").read_text())
