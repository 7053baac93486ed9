"""A pool of Ray actors that generate rollouts, each holding a replica of the policy (ARCHITECTURE.md,
"Scaling out").

- At start-up the engine starts Ray (or attaches to a running cluster with ``address``) and creates
  ``num_workers`` actors; each rebuilds the model from ``policy.config`` and the tokenizer.
- ``sync_weights(policy)`` (the trainer calls it after every optimizer step) puts the policy's
  ``state_dict`` into the object store ONCE; every actor loads that one object, and the call returns when all
  actors hold the new weights.
- ``generate`` cuts the expanded prompt list into the chunks :class:`HFEngine` would make, with the same
  per-chunk seeds, runs the chunks on the actors in parallel (chunk ``i`` on actor ``i mod num_workers``)
  and concatenates them in order with the HF engine's own code. For the same seed, weights and
  ``batch_size`` the batch therefore equals :class:`HFEngine`'s, token for token. Parallelism comes from
  the chunks: with ``B`` rollouts per step, ``batch_size = ceil(B / num_workers)`` keeps every actor busy.
- ``fmt`` (optional) makes every actor sample from a low-precision copy (:class:`QuantizedEngine`);
  the returned log-probs are then the copy's, as with ``rollout.engine = "quantized"``.

Ray is imported only when this engine is built; ``import rollwise`` never needs it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rollwise.config import ConfigError
from rollwise.rlvr.batch import RolloutBatch
from rollwise.rlvr.engines.base import RolloutEngine, SamplingConfig
from rollwise.rlvr.engines.hf import HFEngine, chunk_plan, concat_chunks
from rollwise.rlvr.engines.quantized import FORMATS, QuantizedEngine

#: what one chunk returns: prompt ids (b, P), prompt mask (b, P), response ids (b, T), log-probs (b, T)
Chunk = tuple[Tensor, Tensor, Tensor, Tensor]
_KEY = "rollout.engine_params"


@dataclass
class RayEngineConfig:
    """Settings of the Ray engine (``rollout.engine_params``; ``batch_size`` defaults to ``rollout.batch_size``)."""

    num_workers: int = 2  # actors, each with one model replica
    batch_size: int = 512  # rollouts per chunk; chunk i runs on actor i mod num_workers
    address: str | None = None  # attach to a running cluster ("auto", "ray://host:10001"); None: a new local session
    num_cpus_per_worker: float = 1.0  # CPUs Ray reserves for each actor
    torch_threads: int = 1  # torch.set_num_threads inside each actor
    fmt: str | None = None  # None: full precision; else a QuantizedEngine format run inside each actor
    activations: bool = False  # with an FP8 fmt: also round Linear inputs per token (W8A8 emulation)
    startup_timeout_s: float = 300.0  # how long to wait for the actors to come up and load the weights

    def validate(self) -> None:
        """Raise a ConfigError naming the key and the valid values for the first bad setting."""
        _check(isinstance(self.num_workers, int) and self.num_workers >= 1, "num_workers", self.num_workers,
               "an integer >= 1")
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size", self.batch_size,
               "an integer >= 1")
        _check(self.address is None or (isinstance(self.address, str) and self.address != ""), "address",
               self.address, 'None (start Ray here), "auto" or a cluster address such as "ray://host:10001"')
        _check(_is_number(self.num_cpus_per_worker) and self.num_cpus_per_worker > 0, "num_cpus_per_worker",
               self.num_cpus_per_worker, "a number > 0")
        _check(isinstance(self.torch_threads, int) and self.torch_threads >= 1, "torch_threads",
               self.torch_threads, "an integer >= 1")
        _check(self.fmt is None or self.fmt in FORMATS, "fmt", self.fmt, f"none given, or one of {', '.join(FORMATS)}")
        _check(isinstance(self.activations, bool), "activations", self.activations, "true or false")
        _check(_is_number(self.startup_timeout_s) and self.startup_timeout_s > 0, "startup_timeout_s",
               self.startup_timeout_s, "a number of seconds > 0")


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _check(ok: bool, key: str, value: Any, valid: str) -> None:
    if not ok:
        raise ConfigError(f"{_KEY}.{key}={value!r} is not valid for rollout.engine='ray'; expected {valid}")


def ray_engine_config(params: dict[str, Any]) -> RayEngineConfig:
    """Validated config from ``rollout.engine_params``; an unknown key is a ConfigError listing the valid ones."""
    valid = [f.name for f in dataclasses.fields(RayEngineConfig)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"{_KEY}.{unknown[0]} is not a setting of rollout.engine='ray'; valid keys: "
                          f"{', '.join(valid)}")
    cfg = RayEngineConfig(**params)
    cfg.validate()
    return cfg


class RolloutWorker:
    """One model replica. Ray runs it as an actor; it is a plain class, so it also runs in process.

    The model is rebuilt from ``config`` (random weights) and is unusable until :meth:`load_weights`.
    Parameters keep the policy's ``requires_grad`` flags (``frozen`` names those that are off): on CPU the
    flag changes which kernel a Linear uses, and so the last bit of the log-probs (measured: up to 5e-7).
    """

    def __init__(self, config: PretrainedConfig, generation_config: GenerationConfig,
                 tokenizer: PreTrainedTokenizerBase, dtype: torch.dtype, torch_threads: int = 1,
                 fmt: str | None = None, activations: bool = False, frozen: tuple[str, ...] = ()):
        torch.set_num_threads(torch_threads)
        self.model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
        for name, p in self.model.named_parameters():
            p.requires_grad_(name not in frozen)
        self.model.generation_config = generation_config
        self.tokenizer = tokenizer
        self.fmt, self.activations = fmt, activations
        self.engine: HFEngine | None = None

    @torch.no_grad()
    def load_weights(self, state_dict: dict[str, Tensor]) -> bool:
        """Copy ``state_dict`` into the replica (strict) and refresh the quantized copy when ``fmt`` is set."""
        self.model.load_state_dict(state_dict)
        if self.engine is None:
            self.engine = HFEngine(self.model, self.tokenizer) if self.fmt is None else \
                QuantizedEngine(self.model, self.tokenizer, fmt=self.fmt, activations=self.activations)
        else:
            self.engine.sync_weights(self.model)  # HFEngine: same model object; quantized: re-quantize
        return True

    @torch.no_grad()
    def generate_chunk(self, prompts: list[str], sampling: SamplingConfig, seed: int) -> Chunk:
        """One chunk, sampled by the HF engine's own chunk function (so ``seed`` means what it means there)."""
        if self.engine is None:
            raise RuntimeError("RolloutWorker.generate_chunk before load_weights: the replica has no weights yet")
        return self.engine.generate_chunk(prompts, sampling, seed)


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ConfigError("rollout.engine='ray' needs the ray package, which is not installed; "
                          "install it with: pip install 'rollwise[ray]'") from e
    return ray


def _connect(ray, cfg: RayEngineConfig) -> bool:
    """Start Ray here (CPUs bounded by what the workers ask for) or attach to ``cfg.address``.

    Returns True when this call started or attached Ray, False when a session was already open.
    """
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if cfg.address is not None:
        ray.init(address=cfg.address, **quiet)
    else:
        num_cpus = max(1, math.ceil(cfg.num_workers * cfg.num_cpus_per_worker))
        # "local": a new session even when RAY_ADDRESS or another session on this machine would be found
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
    return True


class RayEngine(RolloutEngine):
    """Rollouts on ``num_workers`` Ray actors; same tokens and log-probs as :class:`HFEngine` for a seed.

    Args:
        policy: the trainer's model; its ``config``, ``generation_config``, dtype and weights are sent.
        tokenizer: its tokenizer (sent to every actor).
        **params: the fields of :class:`RayEngineConfig` (``rollout.engine_params``).
    """

    def __init__(self, policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, **params: Any):
        self.cfg = ray_engine_config(params)
        self.tokenizer = tokenizer
        self.workers: list[Any] = []
        self._ray = _import_ray()
        self.started_ray = _connect(self._ray, self.cfg)
        actor = self._ray.remote(RolloutWorker).options(num_cpus=self.cfg.num_cpus_per_worker)
        frozen = tuple(n for n, p in policy.named_parameters() if not p.requires_grad)
        self.workers = [actor.remote(policy.config, policy.generation_config, tokenizer, policy.dtype,
                                     self.cfg.torch_threads, self.cfg.fmt, self.cfg.activations, frozen)
                        for _ in range(self.cfg.num_workers)]
        try:
            self._push(policy, timeout=self.cfg.startup_timeout_s)
        except BaseException:
            self.close()  # never leave pending actors holding (or waiting for) CPUs
            raise

    @property
    def batch_size(self) -> int:
        return self.cfg.batch_size

    def _push(self, policy: torch.nn.Module, timeout: float | None) -> None:
        """One ``ray.put`` of the weights, loaded by every actor; returns when all have loaded them."""
        state = {k: v.detach().cpu() for k, v in policy.state_dict().items()}
        ref = self._ray.put(state)
        pending = [w.load_weights.remote(ref) for w in self.workers]
        try:
            self._ray.get(pending, timeout=timeout)
        except self._ray.exceptions.GetTimeoutError as e:
            cpus = self._ray.available_resources().get("CPU", 0.0)
            raise RuntimeError(
                f"ray engine: {self.cfg.num_workers} workers did not load the weights within {timeout:.0f} s "
                f"({_KEY}.startup_timeout_s); each asks for num_cpus_per_worker={self.cfg.num_cpus_per_worker} "
                f"CPUs and the cluster has {cpus:g} free") from e

    def sync_weights(self, policy: torch.nn.Module) -> None:
        self._push(policy, timeout=None)

    def generate(self, prompts: list[str], sampling: SamplingConfig, seed: int) -> RolloutBatch:
        expanded = [p for p in prompts for _ in range(sampling.n)]
        group_ids = torch.arange(len(prompts)).repeat_interleave(sampling.n)
        # a plain SamplingConfig travels to the actors (the trainer's RolloutSection carries engine settings)
        plain = SamplingConfig(**{f.name: getattr(sampling, f.name) for f in dataclasses.fields(SamplingConfig)})
        futures = [self.workers[i % len(self.workers)].generate_chunk.remote(expanded[a:b], plain, chunk_seed)
                   for i, (a, b, chunk_seed) in enumerate(chunk_plan(len(expanded), self.batch_size, seed))]
        return concat_chunks(self._ray.get(futures), expanded, group_ids, self.tokenizer)

    def close(self) -> None:
        """Kill the actors (the Ray session itself stays up until the process exits or ``ray.shutdown``)."""
        workers, self.workers = self.workers, []
        if workers and self._ray.is_initialized():
            for w in workers:
                self._ray.kill(w)

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: Ray may already be gone
            pass
