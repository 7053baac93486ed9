"""Data-parallel RLVR training over ``torch.distributed`` (launched with ``torchrun``; gloo on CPU).

The contract: N ranks with a global batch of P prompts make the same update as one process with P prompts.

- Every rank samples the same global prompt list. The list is cut into ``S`` contiguous *rollout shards*
  (S = world size by default; whole prompt groups stay in one shard) and a rank generates, scores and
  teacher-forces only its own shards, each with its own seed (:func:`shard_seed`). The batch a run draws
  therefore depends on S, not on the world size: one process with ``rollout_shards=S`` draws exactly the
  batch of an S-rank run (this is how the equivalence is tested).
- The shards are all-gathered (:meth:`DataParallel.all_gather`) and concatenated (:func:`concat_batches`),
  so that every rank holds the global batch: estimators that read the whole batch (GRPO groups,
  REINFORCE++ whitening, BASIS cross-fitted baselines) and the rollout correction run identically on
  every rank, and every step metric is the global one.
- Each rank back-propagates only through the rows of its own shards, with each loss term normalised by
  the GLOBAL count of its aggregation mode (:func:`loss_share`); :meth:`DataParallel.sum_gradients` then
  sums the gradients, so clipping and the optimizer step see the single-process gradient.

Only rank 0 writes logs, reports and checkpoints; the trainer (``trainer.py``) does the bookkeeping.

``train.parallel = "fsdp2"`` shards the trained policy instead of replicating it (:func:`shard_model`:
``fully_shard`` per decoder layer and on the root, on a 1-D mesh): parameters, gradients and AdamW state
live in 1/N shards, FSDP2's reduce-scatter SUMS the gradients (the same contract as
:meth:`DataParallel.sum_gradients`), and the full weights are gathered (:func:`full_state_dict`) into a
gradient-free replica after each update, which generates, scores, evaluates and is checkpointed. The
optimizer state is gathered for checkpoints in the index-keyed layout of ``optimizer.state_dict()``
(:func:`full_optimizer_state_dict`), so checkpoints look the same whichever mode wrote them.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from rollwise.config import ConfigError
from rollwise.rlvr.batch import RolloutBatch

#: (B, P) prompt-side fields, LEFT-padded when shards of different widths are concatenated
LEFT_PADDED = ("prompt_ids", "prompt_mask")
#: token-id fields padded with the tokenizer's pad id (every other field is padded with 0)
ID_FIELDS = ("prompt_ids", "response_ids")


@dataclass(frozen=True)
class DataParallel:
    """This process's place in the data-parallel group, and every operation of the step that depends on it.

    With ``world_size`` 1 no method communicates and each one is the single-process no-op (identity), so
    the trainer reads the same with one process or many. ``sharded`` (FSDP2, :meth:`for_training`) keeps
    the trained policy in 1/N shards and a full, gradient-free replica of it for generation and checkpoints.
    """

    rank: int = 0
    world_size: int = 1
    sharded: bool = False

    def for_training(self, parallel: str) -> DataParallel:
        """This group with the trainer's mode: ``fsdp2`` shards the policy under torchrun; one process or
        ``ddp`` replicate it (``train.parallel`` is then ignored)."""
        return replace(self, sharded=self.enabled and parallel == "fsdp2")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes logs, reports and checkpoints."""
        return self.rank == 0

    def local_shards(self, n_shards: int) -> range:
        """The contiguous rollout shards this rank generates (``n_shards`` must be a multiple of the world)."""
        if n_shards < 1 or n_shards % self.world_size:
            raise ConfigError(f"rollout shards={n_shards} must be a positive multiple of the world size "
                              f"{self.world_size}")
        per = n_shards // self.world_size
        return range(self.rank * per, (self.rank + 1) * per)

    def all_gather(self, obj: Any) -> list[Any]:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank (pickled; CPU tensors welcome)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every rank's ``module`` (identical starting points)."""
        if not self.enabled:
            return
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)

    def sum_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """All-reduce (sum) the gradients of ``params`` in one flat buffer.

        A parameter with a gradient on some rank but none on another (e.g. the rank had no rows in this
        mini-batch) gets zeros there; one without a gradient on any rank keeps ``grad = None``, as in a
        single process (AdamW then skips it).
        """
        if not self.enabled:
            return
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32)
        dist.all_reduce(has, op=dist.ReduceOp.MAX)
        live = [p for p, h in zip(params, has.tolist()) if h]
        for p in live:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in live])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in live:
            n = p.grad.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n

    def max_over_ranks(self, value: int) -> int:
        """The largest ``value`` over the ranks."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t)

    def own_rows(self, group_ids: Tensor, n_prompts: int, n_shards: int) -> Tensor:
        """(B,) bool: the rows whose prompt (``group_ids`` (B,), global) lies in this rank's rollout shards;
        every row in a single process."""
        shards = self.local_shards(n_shards)
        lo = shard_bounds(n_prompts, shards.start, n_shards)[0]
        hi = shard_bounds(n_prompts, shards.stop - 1, n_shards)[1]
        return (group_ids >= lo) & (group_ids < hi)

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run on rank 0 alone; its result on every rank."""
        return self.broadcast(fn() if self.is_main else None)

    # ------------------------------------------------------------------ the trained policy's mode
    def shard(self, module: torch.nn.Module) -> None:
        """Shard ``module`` with FSDP2 (:func:`shard_model`) when ``sharded``; otherwise leave it whole."""
        if self.sharded:
            shard_model(module)

    def replica(self, policy: torch.nn.Module) -> torch.nn.Module:
        """The full weights that generate, score, evaluate and are checkpointed: a gradient-free copy of
        ``policy`` when it will be sharded (call before :meth:`shard`), else ``policy`` itself."""
        return copy.deepcopy(policy).requires_grad_(False) if self.sharded else policy

    def refresh_replica(self, policy: torch.nn.Module, replica: torch.nn.Module) -> None:
        """Gather the sharded ``policy``'s updated weights into ``replica`` (a no-op when they are one)."""
        if self.sharded:
            replica.load_state_dict(full_state_dict(policy))

    def backward_passes(self, n: int) -> int:
        """Backward passes this rank runs for its ``n`` micro-batches: FSDP2's collectives live inside the
        passes, so every rank runs the largest count (the extra ones add zero); otherwise ``n``. Under FSDP2
        this is itself a collective: call it before the mini-batch's first pass."""
        return self.max_over_ranks(n) if self.sharded else n

    def reduce_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sum the gradients over the ranks (:meth:`sum_gradients`); FSDP2 has already reduce-scattered them."""
        if not self.sharded:
            self.sum_gradients(params)

    def load_weights(self, policy: torch.nn.Module, state: dict[str, Tensor]) -> None:
        """Load full weights (e.g. a checkpoint's, read by every rank) into ``policy``, sharded or not."""
        if self.sharded:
            load_full_state_dict(policy, state)
        else:
            policy.load_state_dict(state)

    def optimizer_state(self, policy: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """``optimizer.state_dict()``'s layout whichever the mode (under FSDP2 a collective that gathers it)."""
        return full_optimizer_state_dict(policy, optimizer) if self.sharded else optimizer.state_dict()

    def load_optimizer_state(self, policy: torch.nn.Module, optimizer: torch.optim.Optimizer,
                             state: dict[str, Any]) -> None:
        if self.sharded:
            load_full_optimizer_state_dict(policy, optimizer, state)
        else:
            optimizer.load_state_dict(state)

    @property
    def builds_checkpoints(self) -> bool:
        """Whether this rank takes part in building a checkpoint: rank 0, or every rank under FSDP2 (the
        optimizer state is gathered by a collective); only rank 0 writes it."""
        return self.is_main or self.sharded


def current() -> DataParallel:
    """The data-parallel group of this process: the default process group if initialised, else single."""
    if dist.is_available() and dist.is_initialized():
        return DataParallel(rank=dist.get_rank(), world_size=dist.get_world_size())
    return DataParallel()


def default_backend() -> str:
    """``ROLLWISE_DIST_BACKEND`` if set, else gloo: the trainer keeps its tensors on the CPU (nccl needs
    CUDA tensors, so it is only right once the policy lives on a GPU)."""
    return os.environ.get("ROLLWISE_DIST_BACKEND", "gloo")


@contextmanager
def process_group_from_env(backend: str | None = None) -> Iterator[DataParallel]:
    """Join torchrun's group (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) for the block.

    Without ``WORLD_SIZE`` > 1, or when a group already exists (e.g. a test that spawned its ranks), the
    block runs in the existing setting and nothing is created or destroyed.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    created = False
    if world > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group(backend=backend or default_backend(), rank=int(os.environ["RANK"]),
                                world_size=world)
        created = True
    try:
        yield current()
    finally:
        if created:
            dist.destroy_process_group()


# ------------------------------------------------------------------------------------------ FSDP2
def shard_model(module: torch.nn.Module) -> torch.nn.Module:
    """Shard ``module`` in place with FSDP2 over the default group: ``fully_shard`` on every decoder layer
    (the classes in the Hugging Face model's ``_no_split_modules``), then on the root.

    Every rank must hold the same weights first (:meth:`DataParallel.broadcast_parameters`); the
    optimizer must be built afterwards (it sees the sharded ``DTensor`` parameters), and before any
    forward pass: FSDP2 keeps the root's parameters gathered after a forward until the next backward.
    Gradients are SUMMED over the ranks (divide factor 1, sum-only collectives: gloo rejects the default
    ``PREMUL_SUM`` with "Cannot use ReduceOp.PREMUL_SUM with Gloo"); both settings are per FSDP module.
    Every rank must then run the same number of forward and backward passes of ``module``.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    device = next(module.parameters()).device.type
    mesh = init_device_mesh(device, (dist.get_world_size(),))
    blocks = set(getattr(module, "_no_split_modules", None) or ())
    for sub in list(module.modules()):
        if sub is not module and type(sub).__name__ in blocks:
            fully_shard(sub, mesh=mesh)
    fully_shard(module, mesh=mesh)
    for sub in module.modules():
        if isinstance(sub, FSDPModule):
            sub.set_gradient_divide_factor(1.0)
            sub.set_force_sum_reduction_for_comms(True)
    return module


def is_sharded(module: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def full_tensor(t: Tensor) -> Tensor:
    """A ``DTensor``'s full value (a collective), any other tensor as it is."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def full_state_dict(module: torch.nn.Module) -> dict[str, Tensor]:
    """The full (gathered) parameters and buffers of a sharded ``module`` on every rank (a collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True))


def load_full_state_dict(module: torch.nn.Module, state: dict[str, Tensor]) -> None:
    """Load full tensors (e.g. a checkpoint's, read by every rank) into a sharded ``module``."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    # a shallow copy: set_model_state_dict replaces the dict's values with shards
    set_model_state_dict(module, dict(state), options=StateDictOptions(full_state_dict=True))


def full_optimizer_state_dict(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The sharded optimizer's full state on every rank (a collective), keyed like ``optimizer.state_dict()``
    (parameter indices in ``module.named_parameters()`` order, the order the optimizer was given)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    osd = get_optimizer_state_dict(module, optimizer, options=StateDictOptions(full_state_dict=True))
    index = {name: i for i, (name, _) in enumerate(module.named_parameters())}
    return {"state": {index[k]: v for k, v in osd["state"].items()},
            "param_groups": [{**g, "params": [index[k] for k in g["params"]]} for g in osd["param_groups"]]}


def load_full_optimizer_state_dict(module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                                   state: dict[str, Any]) -> None:
    """Load an ``optimizer.state_dict()``-layout state (any mode's checkpoint) into a sharded optimizer."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = [name for name, _ in module.named_parameters()]
    osd = {"state": {names[i]: v for i, v in state["state"].items()},
           "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]}
    set_optimizer_state_dict(module, optimizer, osd, options=StateDictOptions(full_state_dict=True))


def shard_bounds(n_items: int, shard: int, n_shards: int) -> tuple[int, int]:
    """``[lo, hi)`` of contiguous shard ``shard`` of ``n_items`` (prompts); ``n_items`` must divide evenly."""
    if n_items % n_shards:
        raise ConfigError(f"data-parallel training splits each step's {n_items} prompts into {n_shards} equal "
                          f"rollout shards (one per rank), but {n_items} is not divisible by {n_shards}; set "
                          f"train.prompts_per_step to a multiple of {n_shards} (e.g. "
                          f"{max(n_shards, n_items - n_items % n_shards)})")
    per = n_items // n_shards
    return shard * per, (shard + 1) * per


def shard_seed(seed: int, step: int, shard: int, n_shards: int, stream: int = 1) -> int:
    """Seed of one rollout shard's ``stream`` (1: generation; CoDistill's downsampling uses 5); a single shard
    keeps the trainer's historical ``step_seed(seed, step, stream)``."""
    key = [seed, step, stream] if n_shards == 1 else [seed, step, stream, shard, n_shards]
    return int(np.random.default_rng(key).integers(0, 2**63 - 1))


def concat_batches(parts: list[RolloutBatch], pad_id: int) -> RolloutBatch:
    """Concatenate rollout shards along the rows (shard order), padding to common widths.

    Prompt fields (B, P) are left-padded, every other (B, T) tensor (responses, log-probs, masks and
    (B, T) extras such as ``hint_mask``) right-padded; ids with ``pad_id``, everything else with 0.
    Positions come from the attention mask (``models.position_ids_from_mask``), so padding changes no
    log-prob. Lists and ``columns`` are concatenated. One part is returned as it is.
    """
    if len(parts) == 1:
        return parts[0]
    out: dict[str, Any] = {}
    for f in fields(RolloutBatch):
        values = [getattr(p, f.name) for p in parts]
        if f.name == "columns":
            out[f.name] = {k: [x for v in values for x in v[k]] for k in values[0]}
        elif f.name == "extras":
            out[f.name] = {k: _cat([v[k] for v in values], left=False, value=0) for k in values[0]}
        elif isinstance(values[0], list):
            out[f.name] = [x for v in values for x in v]
        elif values[0] is None:
            if any(v is not None for v in values):
                raise ValueError(f"concat_batches: field {f.name} is set in some shards and not in others")
            out[f.name] = None
        else:
            out[f.name] = _cat(values, left=f.name in LEFT_PADDED, value=pad_id if f.name in ID_FIELDS else 0)
    return RolloutBatch(**out)


def _cat(tensors: list[Tensor], left: bool, value: float) -> Tensor:
    if tensors[0].dim() != 2:
        return torch.cat(tensors)
    width = max(t.shape[1] for t in tensors)
    padded = []
    for t in tensors:
        pad = torch.full((t.shape[0], width - t.shape[1]), value, dtype=t.dtype)
        padded.append(torch.cat([pad, t] if left else [t, pad], dim=1))
    return torch.cat(padded)


def loss_share(part_mask: Tensor, whole_mask: Tensor, agg_mode: str) -> float:
    """Weight of a sub-batch's aggregated loss in the aggregate over the whole mini-batch.

    ``aggregate(x[part], part_mask, mode) * loss_share(...)`` summed over a partition of the mini-batch's
    rows (micro-batches, ranks) equals ``aggregate(x, whole_mask, mode)``: the token count of the part over
    the whole's (``token-mean``), its count of sequences with a valid token over the whole's (the
    ``seq-mean-*`` modes), or 1 (``seq-mean-token-sum-norm`` divides by a constant). Masks are (b, T) and
    (B, T); an empty whole gives 0.
    """
    if agg_mode == "seq-mean-token-sum-norm":
        return 1.0
    if agg_mode == "token-mean":
        part, whole = float(part_mask.sum()), float(whole_mask.sum())
    else:
        part, whole = float((part_mask.sum(-1) > 0).sum()), float((whole_mask.sum(-1) > 0).sum())
    return part / whole if whole > 0 else 0.0


def token_share(part_mask: Tensor, whole_mask: Tensor) -> float:
    """Share of the whole's valid tokens (mask > 0) that lie in the part: the weight of token-averaged
    diagnostics such as ``clip_frac_*``, ``approx_kl`` and ``ratio_mean``."""
    whole = int((whole_mask > 0).sum())
    return int((part_mask > 0).sum()) / whole if whole else 0.0


def merge_reward_metrics(parts: list[tuple[int, dict[str, float]]], rewards: Tensor, truncated: Tensor
                         ) -> dict[str, float]:
    """Combine ``RewardRunner`` metrics of several shards (``(rollouts, metrics)`` each) into the batch's.

    ``reward/mean``, ``reward/std`` and ``reward/truncated_frac`` are recomputed from the global (B,)
    ``rewards`` and ``truncated``; ``/errors``, ``/timeouts`` and ``reward/failures`` take the maximum (a
    function that failed in any shard failed this step); a function's ``/mean`` is weighted by its scored
    rollouts, every other value by the shard's rollouts. One shard is returned as it is.
    """
    if len(parts) == 1:
        return parts[0][1]
    keys = list(dict.fromkeys(k for _, m in parts for k in m))
    total = sum(n for n, _ in parts)
    out: dict[str, float] = {}
    for k in keys:
        have = [(n, m) for n, m in parts if k in m]
        if k.endswith(("/errors", "/timeouts")) or k == "reward/failures":
            out[k] = max(m[k] for _, m in have)
        elif k.endswith("/mean") and k.count("/") == 2:
            none_key = k[: -len("mean")] + "none_frac"
            w = [n * (1.0 - m.get(none_key, 0.0)) for n, m in have]
            out[k] = sum(wi * m[k] for wi, (_, m) in zip(w, have)) / sum(w) if sum(w) > 0 else 0.0
        else:
            out[k] = sum(n * m[k] for n, m in have) / max(1, sum(n for n, _ in have))
    out["reward/mean"] = float(rewards.mean()) if total else 0.0
    out["reward/std"] = float(rewards.std(unbiased=False)) if total else 0.0
    out["reward/truncated_frac"] = float(truncated.float().mean()) if total else 0.0
    return out
