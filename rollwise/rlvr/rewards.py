"""Reward functions (the TRL contract) and the runner that calls them with failures contained.

A reward function is a plain callable::

    f(prompts: list[str], completions: list[str], **kwargs) -> list[float | None]

called with keywords only. ``kwargs`` are the data-set columns, one value per completion (e.g.
``answer=[...]``), plus ``truncated: list[bool]``, True when the completion hit the length limit without
EOS. Verifiers must give 0 to truncated completions (PITFALLS: a decoded completion cut off by the length
limit can look correct). ``None`` means "not scorable" and counts as 0 in the weighted sum.

A function may also define ``pop_metrics() -> dict[str, float]``; the runner calls it after each call (in
the same worker) and logs the values as ``reward/<name>/<key>`` (e.g. math-verify parse failures).

Containment (:class:`RewardRunner`): a function that raises, hangs past ``timeout_s`` or returns the wrong
number of values does not stop training. Its values count as 0 for that call, the failure is counted in
the metrics, and a warning naming the function and the error is logged the first time that function fails.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

RewardFunc = Callable[..., Sequence[float | None]]
ISOLATIONS = ("auto", "thread", "process")


def is_builtin(f: RewardFunc) -> bool:
    """Whether ``f`` is one of rollwise's own verifiers (a function or an instance of a class defined in a
    ``rollwise.`` module); ``isolation="auto"`` runs these in threads and every other function in a process."""
    module = getattr(f, "__module__", None) if callable(f) and hasattr(f, "__code__") else type(f).__module__
    return bool(module) and (module == "rollwise" or module.startswith("rollwise."))


def truncated_flags(kwargs: Mapping[str, Any], n: int, fname: str) -> list[bool]:
    """The ``truncated`` column as a list of bools; fails closed when it is missing or has the wrong length."""
    flags = kwargs.get("truncated")
    if flags is None:
        raise ValueError(f"reward function {fname} needs the truncated=[...] column (True where the completion "
                         "hit the length limit without EOS); RewardRunner passes it, other callers must too")
    flags = [bool(t) for t in (flags.tolist() if isinstance(flags, Tensor) else flags)]
    if len(flags) != n:
        raise ValueError(f"reward function {fname}: truncated has {len(flags)} values for {n} completions")
    return flags


def exact_answer(prompts: list[str], completions: list[str], answer: Sequence[str], **kwargs: Any) -> list[float]:
    """1.0 iff the completion equals ``answer`` exactly and ended with EOS (not truncated), else 0.0."""
    truncated = truncated_flags(kwargs, len(completions), "exact_answer")
    return [float(not t and c == str(a)) for c, a, t in zip(completions, answer, truncated, strict=True)]


def func_name(f: RewardFunc) -> str:
    """The name a reward function is logged under: ``__name__``, else its class name."""
    return getattr(f, "__name__", None) or type(f).__name__


def _validate(values: Any, n: int, fname: str) -> list[float | None]:
    """Check one function's output: n values, each None or a finite real; NaN reads as None (as in TRL)."""
    if isinstance(values, Tensor):
        values = values.tolist()
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) and not hasattr(values, "__len__"):
        raise TypeError(f"reward function {fname} returned {type(values).__name__}, expected a list of {n} floats")
    values = list(values)
    if len(values) != n:
        raise ValueError(f"reward function {fname} returned {len(values)} values for {n} completions")
    out: list[float | None] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        x = float(v)
        if math.isnan(x):
            out.append(None)
        elif math.isinf(x):
            raise ValueError(f"reward function {fname} returned {x} for completion {i}")
        else:
            out.append(x)
    return out


def _pop_metrics(f: RewardFunc) -> dict[str, float]:
    pop = getattr(f, "pop_metrics", None)
    return {k: float(v) for k, v in pop().items()} if callable(pop) else {}


def _call(f: RewardFunc, fname: str, prompts: list[str], completions: list[str], kwargs: dict[str, Any]
          ) -> tuple[str, list[float | None] | str, dict[str, float]]:
    """Run and validate one function: ('ok', values, metrics) or ('error', message, {})."""
    try:
        values = _validate(f(prompts=prompts, completions=completions, **kwargs), len(completions), fname)
        return "ok", values, _pop_metrics(f)
    except BaseException as e:  # noqa: BLE001 - containment is the point
        return "error", f"{type(e).__name__}: {e}", {}


def _child(conn: Any, f: RewardFunc, fname: str, prompts: list[str], completions: list[str],
           kwargs: dict[str, Any]) -> None:
    conn.send(_call(f, fname, prompts, completions, kwargs))
    conn.close()


@dataclass
class _Outcome:
    values: list[float | None] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    timed_out: bool = False


class RewardRunner:
    """Call several reward functions on a batch and combine them: ``r = sum_f w_f * f(...)``.

    Args:
        funcs: TRL-style reward functions (see the module docstring).
        weights: one weight per function (default 1.0 each).
        timeout_s: wall-clock limit per call, shared by all functions (they run concurrently).
        isolation: ``"thread"``: each function runs in a daemon thread; after the timeout it is abandoned
            and KEEPS RUNNING in the background (Python cannot stop a thread), so a function that never
            returns leaks one thread per call, and one that holds the GIL (a long C call such as a
            backtracking regex) delays the timeout itself until it returns. ``"process"``: each function
            runs in a forked worker process that is killed on timeout (nothing leaks; the function must not
            rely on state it mutates, and its arguments are copied by fork, its results sent back by pipe;
            a fork costs tens of ms per call on a process holding a model). ``"auto"`` (the default):
            rollwise's own verifiers (``is_builtin``) in threads, every other function in a process.

    The first function is the task's own verifier: ``reward/accuracy`` is the fraction of completions it
    scores 1 (a failed call counts 0), whatever the other functions add to the summed reward.

    Failures (an exception, a timeout, a wrong number of values, a non-finite value other than NaN)
    make that function's values 0 for the whole call and are counted in ``reward/<name>/errors`` or
    ``reward/<name>/timeouts`` and in ``reward/failures``.
    """

    def __init__(self, funcs: Sequence[RewardFunc], weights: Sequence[float] | None = None,
                 timeout_s: float = 10.0, isolation: str = "auto") -> None:
        if not funcs:
            raise ValueError("RewardRunner needs at least one reward function")
        if weights is not None and len(weights) != len(funcs):
            raise ValueError(f"RewardRunner got {len(weights)} weights for {len(funcs)} reward functions")
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation={isolation!r} is not valid; valid choices: {', '.join(ISOLATIONS)}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s={timeout_s!r} must be > 0")
        self.funcs = list(funcs)
        self.weights = [1.0] * len(funcs) if weights is None else [float(w) for w in weights]
        self.timeout_s = float(timeout_s)
        self.isolation = isolation
        self.names = self._unique_names()
        self._warned: set[str] = set()

    def _unique_names(self) -> list[str]:
        names: list[str] = []
        for f in self.funcs:
            base, k = func_name(f), 2
            name = base
            while name in names:
                name, k = f"{base}_{k}", k + 1
            names.append(name)
        return names

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], truncated: Sequence[bool] | Tensor,
                 columns: Mapping[str, Sequence[Any]] | None = None) -> tuple[Tensor, dict[str, float]]:
        """Score a batch.

        Args:
            prompts, completions: (B,) strings, one prompt per completion.
            truncated: (B,) bools, True where generation stopped at the length limit without EOS.
            columns: data-set columns, each a list of B values, passed as keyword arguments.
        Returns:
            rewards (B,) float32, the weighted sum (None and failed functions count as 0), and metrics:
            ``reward/<name>/{mean,none_frac,errors,timeouts}`` per function (mean over its non-None values),
            any ``pop_metrics`` values, ``reward/failures`` (functions that failed in this call),
            ``reward/mean``, ``reward/std`` and ``reward/truncated_frac``.
        """
        prompts, completions = list(prompts), list(completions)
        n = len(completions)
        flags = truncated.tolist() if isinstance(truncated, Tensor) else list(truncated)
        kwargs: dict[str, Any] = {k: list(v) for k, v in (columns or {}).items()}
        for key, col in [("prompts", prompts), ("truncated", flags), *kwargs.items()]:
            if len(col) != n:
                raise ValueError(f"RewardRunner: {key} has {len(col)} values for {n} completions")
        kwargs["truncated"] = [bool(t) for t in flags]
        deadline = time.monotonic() + self.timeout_s
        pending = [(self._start_process if self.in_process(i) else self._start_thread)(i, prompts, completions, kwargs)
                   for i in range(len(self.funcs))]
        outcomes = [collect(deadline) for collect in pending]
        rewards, metrics = self._combine(outcomes, n)
        metrics["reward/truncated_frac"] = sum(kwargs["truncated"]) / n if n else 0.0
        return rewards, metrics

    def in_process(self, i: int) -> bool:
        """Whether function ``i`` runs in a forked process (else in a thread); see ``isolation``."""
        return self.isolation == "process" or (self.isolation == "auto" and not is_builtin(self.funcs[i]))

    def _start_thread(self, i: int, prompts: list[str], completions: list[str], kwargs: dict[str, Any]
                      ) -> Callable[[float], _Outcome]:
        """Start function ``i`` in a daemon thread; returns ``collect(deadline) -> _Outcome``."""
        result: list[tuple] = []
        t = threading.Thread(target=lambda: result.append(_call(self.funcs[i], self.names[i], prompts, completions,
                                                                kwargs)), daemon=True, name=f"reward-{self.names[i]}")
        t.start()

        def collect(deadline: float) -> _Outcome:
            t.join(max(0.0, deadline - time.monotonic()))
            return _Outcome(timed_out=True) if t.is_alive() else self._outcome(result[0] if result else None)

        return collect

    def _start_process(self, i: int, prompts: list[str], completions: list[str], kwargs: dict[str, Any]
                       ) -> Callable[[float], _Outcome]:
        """Start function ``i`` in a forked worker; returns ``collect(deadline) -> _Outcome`` (kills it late)."""
        ctx = mp.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_child, args=(send, self.funcs[i], self.names[i], prompts, completions, kwargs),
                        daemon=True, name=f"reward-{self.names[i]}")
        p.start()
        send.close()

        def collect(deadline: float) -> _Outcome:
            try:
                if recv.poll(max(0.0, deadline - time.monotonic())):
                    try:
                        return self._outcome(recv.recv())
                    except EOFError:
                        p.join(1.0)
                        return _Outcome(error=f"worker process died without a result (exit code {p.exitcode})")
                p.kill()
                return _Outcome(timed_out=True)
            finally:
                p.join(1.0)
                recv.close()

        return collect

    @staticmethod
    def _outcome(result: tuple | None) -> _Outcome:
        if result is None:
            return _Outcome(error="the worker finished without a result")
        status, payload, metrics = result
        return _Outcome(values=payload, metrics=metrics) if status == "ok" else _Outcome(error=payload)

    def _combine(self, outcomes: list[_Outcome], n: int) -> tuple[Tensor, dict[str, float]]:
        total = torch.zeros(n, dtype=torch.float32)
        metrics: dict[str, float] = {}
        failures = 0
        for name, w, out in zip(self.names, self.weights, outcomes):
            failed = out.values is None
            if failed:
                failures += 1
                self._warn(name, f"timed out after {self.timeout_s:g} s" if out.timed_out else out.error)
            values = [None] * n if failed else out.values
            scored = [v for v in values if v is not None]
            total += w * torch.tensor([0.0 if v is None else v for v in values], dtype=torch.float32)
            metrics[f"reward/{name}/mean"] = sum(scored) / len(scored) if scored else 0.0
            metrics[f"reward/{name}/none_frac"] = 0.0 if failed or n == 0 else 1.0 - len(scored) / n
            metrics[f"reward/{name}/errors"] = float(failed and not out.timed_out)
            metrics[f"reward/{name}/timeouts"] = float(out.timed_out)
            metrics.update({f"reward/{name}/{k}": v for k, v in out.metrics.items()})
        first = outcomes[0].values if outcomes else None
        metrics["reward/accuracy"] = (sum(v is not None and v >= 1.0 - 1e-6 for v in first) / n) if first and n else 0.0
        metrics["reward/failures"] = float(failures)
        metrics["reward/mean"] = float(total.mean()) if n else 0.0
        metrics["reward/std"] = float(total.std(unbiased=False)) if n else 0.0
        return total, metrics

    def _warn(self, name: str, what: str | None) -> None:
        if name in self._warned:
            return
        self._warned.add(name)
        log.warning("reward function %s failed (%s); its values count as 0 for this batch. Later failures of "
                    "this function are counted in reward/%s/errors and reward/%s/timeouts without a warning",
                    name, what, name, name)
