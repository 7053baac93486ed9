"""Maths answer checking with math-verify (``math_verify.parse`` / ``verify``), with a deadline that works
in and out of the main thread.

math-verify's own timeouts use ``signal.alarm`` and fail outside the main thread, so they are switched
off here and replaced by :func:`call_with_deadline`: in the main thread a ``SIGALRM`` interval timer
interrupts the check; in any other thread the check runs in a daemon thread that is abandoned after the
deadline (it keeps running in the background until it returns; Python cannot stop it). Inside a forked
reward worker (``RewardRunner(isolation="process")``) the check is in that process's main thread, so the
timer is used and the worker is killed on the runner's own timeout anyway.

Fail closed: a completion that math-verify cannot parse, a timeout and an error all give reward 0 and are
counted (``reward/math_verify/parse_failures``, ``.../timeouts``, ``.../errors``).
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rollwise.errors import DataError
from rollwise.rlvr.rewards import truncated_flags


class CheckTimeout(BaseException):  # noqa: N818 - BaseException so math-verify's `except Exception` cannot swallow it
    """A check ran past its deadline."""


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns that its timeout is disabled; ours replaces it, so the warning is misleading."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutDisabledWarning())


def call_with_deadline(fn: Callable[..., Any], timeout_s: float, *args: Any) -> Any:
    """``fn(*args)``, raising :class:`CheckTimeout` after ``timeout_s`` seconds (see the module docstring)."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        return _with_alarm(fn, timeout_s, *args)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    worker = threading.Thread(target=target, daemon=True, name="math-check")
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise CheckTimeout(f"check exceeded {timeout_s:g} s (worker thread abandoned)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _with_alarm(fn: Callable[..., Any], timeout_s: float, *args: Any) -> Any:
    def on_alarm(signum: int, frame: Any) -> None:
        raise CheckTimeout(f"check exceeded {timeout_s:g} s")

    start = time.monotonic()
    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return fn(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:  # give an outer timer (e.g. pytest-timeout) back what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(1e-3, old_delay - (time.monotonic() - start)), old_interval)


def _parse(text: str) -> list:
    from math_verify import parse

    return parse(text, parsing_timeout=None)


_LATEX_COMMAND = re.compile(r"\\(?:text|mathrm|textbf|mbox)\{[^}]*\}|\\[A-Za-z]+")
_WORD = re.compile(r"[A-Za-z]{2,}")


def _looks_like_maths(text: str) -> bool:
    """No run of two or more letters outside LaTeX commands: ``$not an answer$`` would otherwise parse as a
    product of symbols (n*o*t*...)."""
    return not _WORD.search(_LATEX_COMMAND.sub(" ", text))


_EMPTY_GROUP = re.compile(r"\{\s*\}")
_DOUBLE_SEPARATOR = re.compile(r"[,;]\s*[,;]")


def malformed_reason(text: str) -> str | None:
    """Why ``text`` cannot be a well-formed mathematical answer (None when no rule objects).

    math-verify reads leniently: ``1,,2`` as 1, ``10^{}`` as 10, and keeps an unparsable ``\\frac{`` as a
    string that an equally broken completion matches. These rules refuse such gold answers up front.
    """
    t = text.strip()
    if not t:
        return "it is empty"
    if t.count("{") != t.count("}"):
        return "its braces { } are unbalanced"
    if t.count("(") + t.count("[") != t.count(")") + t.count("]"):
        return "its brackets ( ) [ ] are unbalanced"
    if _EMPTY_GROUP.search(t.replace("\\{", "").replace("\\}", "")):
        return "it has an empty {} group"
    if _DOUBLE_SEPARATOR.search(t) or t[0] in ",;" or t[-1] in ",;":
        return "it has an empty list element"
    if t[-1] in "+-*/^_=" or t[0] in "*/^_=":
        return "it starts or ends with an operator"
    return None


def has_expression(parsed: list | tuple) -> bool:
    """Whether a math-verify parse found mathematics: its string-only fallback (a list holding just the
    extracted text) compares strings, so ``$\\frac{$`` would match gold ``\\frac{``."""
    return any(not isinstance(x, str) for x in parsed)


@lru_cache(maxsize=65536)
def _parse_gold_cached(text: str) -> tuple:
    reason = malformed_reason(text)
    if reason is not None:
        raise DataError(f"the gold answer {text!r} is not well-formed mathematics: {reason}")
    parsed = _parse(text)
    if not has_expression(parsed) and _looks_like_maths(text):
        parsed = _parse(f"${text}$")
    if not has_expression(parsed):
        raise DataError(f"math-verify cannot parse the gold answer {text!r} as mathematics")
    return tuple(parsed)


def parse_gold(text: str, timeout_s: float = 5.0) -> list:
    """math-verify's parse of a gold answer: tried bare, then as ``$text$`` when it has no plain words (so
    ``x^2+1`` parses but ``not a number`` does not). DataError (a ValueError) when it is malformed (``malformed_reason``)
    or yields no mathematical expression (a string-only fallback does not count); :class:`CheckTimeout`
    past the deadline."""
    return list(call_with_deadline(_parse_gold_cached, timeout_s, str(text)))


@dataclass(frozen=True)
class CheckResult:
    correct: bool
    status: str  # ok | parse_failure | timeout | gold_error | error


def _check(gold: str, completion: str) -> CheckResult:
    from math_verify import verify

    try:
        gold_parsed = list(_parse_gold_cached(gold))
    except ValueError:
        return CheckResult(False, "gold_error")
    pred = _parse(completion)
    if not has_expression(pred):  # nothing, or only math-verify's string fallback
        return CheckResult(False, "parse_failure")
    return CheckResult(bool(verify(gold_parsed, pred, timeout_seconds=None)), "ok")


def check_answer(gold: str, completion: str, timeout_s: float = 5.0) -> CheckResult:
    """Is ``completion``'s final answer (math-verify extraction, boxed first) equal to ``gold``?"""
    try:
        return call_with_deadline(_check, timeout_s, str(gold), completion)
    except CheckTimeout:
        return CheckResult(False, "timeout")
    except Exception:  # noqa: BLE001 - fail closed, counted
        return CheckResult(False, "error")


class MathVerifyReward:
    """TRL-style reward: 1.0 iff math-verify says the completion's answer equals the ``answer`` column and the
    completion is not truncated; parse failures, timeouts and errors give 0 and are counted (``pop_metrics``)."""

    __name__ = "math_verify"
    STATUSES = ("parse_failures", "timeouts", "gold_errors", "errors", "truncated")

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self.counts = dict.fromkeys(self.STATUSES, 0)

    def __call__(self, prompts: list[str], completions: list[str], answer: list[str], **kwargs: Any) -> list[float]:
        truncated = truncated_flags(kwargs, len(completions), self.__name__)
        out = []
        for c, a, t in zip(completions, answer, truncated, strict=True):
            if t:
                self.counts["truncated"] += 1
                out.append(0.0)
                continue
            result = check_answer(a, c, self.timeout_s)
            if result.status != "ok":
                key = {"parse_failure": "parse_failures", "timeout": "timeouts", "gold_error": "gold_errors"}
                self.counts[key.get(result.status, "errors")] += 1
            out.append(float(result.correct))
        return out

    def pop_metrics(self) -> dict[str, float]:
        """Counts since the last call of this method (the runner logs them as reward/math_verify/<key>)."""
        counts, self.counts = self.counts, dict.fromkeys(self.STATUSES, 0)
        return {k: float(v) for k, v in counts.items()}


def final_answer(completion: str) -> str:
    """The content of the last complete ``\\boxed{...}`` (balanced braces), else the stripped completion."""
    start = completion.rfind("\\boxed{")
    while start >= 0:
        depth, i = 0, start + len("\\boxed")
        for j in range(i, len(completion)):
            depth += {"{": 1, "}": -1}.get(completion[j], 0)
            if depth == 0:
                return completion[i + 1:j].strip()
        start = completion.rfind("\\boxed{", 0, start)
    return completion.strip()


class ExactAnswerReward:
    """TRL-style reward for ``gold_mode="string"``: 1.0 iff the completion's :func:`final_answer` equals the
    ``answer`` column exactly (after stripping outer whitespace) and the completion is not truncated.

    No parser and no fallback: a malformed completion matches only a gold that is the same text.
    """

    __name__ = "exact_answer"

    def __init__(self) -> None:
        self.truncated = 0

    def __call__(self, prompts: list[str], completions: list[str], answer: list[str], **kwargs: Any) -> list[float]:
        truncated = truncated_flags(kwargs, len(completions), self.__name__)
        self.truncated += sum(map(bool, truncated))
        return [0.0 if t else float(final_answer(c) == str(a).strip())
                for c, a, t in zip(completions, answer, truncated, strict=True)]

    def pop_metrics(self) -> dict[str, float]:
        counts, self.truncated = {"truncated": float(self.truncated)}, 0
        return counts
