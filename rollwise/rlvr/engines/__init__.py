"""Rollout engines. The core ships the transformers engine; others are imported only when chosen."""

from __future__ import annotations

from rollwise.registry import Registry
from rollwise.rlvr.engines.base import RolloutEngine, SamplingConfig

__all__ = ["RolloutEngine", "SamplingConfig", "make_engine", "ENGINES"]

#: engine name -> "module:Class"; optional engines are imported lazily so the core never needs them.
ENGINES: Registry[str] = Registry("rollout engine", key="rollout.engine")
ENGINES.add("lean", "rollwise.rlvr.engines.lean:LeanEngine")
ENGINES.add("hf", "rollwise.rlvr.engines.hf:HFEngine")
ENGINES.add("quantized", "rollwise.rlvr.engines.quantized:QuantizedEngine")
ENGINES.add("ray", "rollwise.rlvr.engines.ray:RayEngine")
ENGINES.add("vllm", "rollwise.rlvr.engines.vllm:VLLMEngine")


def make_engine(name: str, policy, tokenizer, **params) -> RolloutEngine:
    """Build the engine called ``name`` around ``policy`` (a ConfigError lists the valid names)."""
    import importlib
    import importlib.util

    from rollwise.config import ConfigError

    module, cls = ENGINES[name].split(":")
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"rollout.engine={name!r} is planned but not implemented in this version of rollwise; "
                          f"available now: hf, quantized, ray")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"rollout.engine={name!r} needs an optional dependency that is missing ({e}); "
                          f"install the matching extra, e.g. pip install 'rollwise[{name}]'") from e
    return getattr(mod, cls)(policy, tokenizer, **params)
