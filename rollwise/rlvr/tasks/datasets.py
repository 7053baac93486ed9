"""A maths data set on LOCAL disk as a task: JSONL, parquet or a ``datasets.save_to_disk`` folder, with
configurable prompt/answer columns, an optional prompt template, and math-verify answer checking.

Fail closed at load time: a malformed JSONL row (bad JSON, not an object, a missing column, bytes that are
not UTF-8), an empty file or an empty split, and a gold answer that is not well-formed mathematics are
errors naming the file and the row (the 1-based line for JSONL, the 1-based row for parquet and folders),
never silently skipped. ``gold_mode="string"`` accepts any gold text and then scores a completion 1 only
when its final answer (the last ``\\boxed{}``, else the whole completion) equals the gold exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from rollwise.errors import DataError
from rollwise.rlvr.rewards import RewardFunc
from rollwise.rlvr.tasks.base import Example, Task, check_split, register_task, require
from rollwise.rlvr.tasks.mathcheck import CheckTimeout, ExactAnswerReward, MathVerifyReward, parse_gold

#: how gold answers are read: as mathematics (math-verify, every gold must parse) or as exact strings
GOLD_MODES = ("math", "string")


class DatasetError(DataError):
    """A data-set file or row is unusable; the message names the file and the row."""


@dataclass
class DatasetParams:
    path: str = ""  # training data: a .jsonl/.json (JSON lines) file, a .parquet file or a save_to_disk folder
    test_path: str | None = None  # held-out data; when None, test_fraction of `path` is held out
    test_fraction: float = 0.1  # fraction of `path` held out when test_path is None
    prompt_column: str = "problem"  # column with the question
    answer_column: str = "answer"  # column with the gold answer (checked with math-verify)
    target_column: str | None = None  # optional column with a full solution, used as the SFT target
    prompt_template: str = "{prompt}"  # str.format template; {prompt} is the question, other columns by name
    hf_split: str = "train"  # split to read when a save_to_disk folder holds a DatasetDict
    check_gold: bool = True  # parse every gold answer with math-verify when loading (fail closed)
    gold_mode: str = "math"  # math: math-verify equivalence; string: the final answer must equal the gold exactly
    timeout_s: float = 5.0  # deadline per math-verify parse/check
    seed: int = 0  # seed of the train/test split when test_path is None

    def __post_init__(self) -> None:
        require(bool(self.path), "path", self.path, "must name a local JSONL/parquet file or save_to_disk folder")
        require(0.0 <= self.test_fraction < 1.0, "test_fraction", self.test_fraction, "must be in [0, 1)")
        require(self.timeout_s > 0, "timeout_s", self.timeout_s, "must be > 0")
        require("{prompt}" in self.prompt_template, "prompt_template", self.prompt_template, "must contain {prompt}")
        require(self.gold_mode in GOLD_MODES, "gold_mode", self.gold_mode, f"valid choices: {', '.join(GOLD_MODES)}")


def read_rows(path: str | Path, hf_split: str = "train") -> list[tuple[str, dict[str, Any]]]:
    """Rows of a local data set as (location, row) pairs, e.g. ``("data.jsonl, line 3", {...})``."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: no such file or folder")
    if p.is_dir():
        return _read_folder(p, hf_split)
    if p.suffix in (".jsonl", ".json"):
        return _read_jsonl(p)
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [(f"{p}, row {i}", row) for i, row in enumerate(pq.read_table(p).to_pylist(), 1)]
    raise DatasetError(f"{p}: unsupported file type {p.suffix!r}; use .jsonl, .json (JSON lines), .parquet "
                       "or a datasets.save_to_disk folder")


def _read_jsonl(p: Path) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    with p.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DatasetError(f"{p}, line {lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                                   f"{e.start + 1})") from e
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as e:
                msg = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
                raise DatasetError(f"{p}, line {lineno}: invalid JSON ({msg})") from e
            if not isinstance(row, dict):
                raise DatasetError(f"{p}, line {lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append((f"{p}, line {lineno}", row))
    return rows


def _read_folder(p: Path, hf_split: str) -> list[tuple[str, dict[str, Any]]]:
    import datasets

    ds = datasets.load_from_disk(str(p))
    if isinstance(ds, datasets.DatasetDict):
        if hf_split not in ds:
            raise DatasetError(f"{p}: split {hf_split!r} not found; available: {', '.join(ds)}")
        ds = ds[hf_split]
    return [(f"{p}, row {i}", dict(row)) for i, row in enumerate(ds, 1)]


@register_task
class MathDataset(Task):
    """Questions and gold answers from local files; reward = math-verify equivalence of the final answer."""

    name = "dataset"
    unique_answer = False
    params_cls = DatasetParams
    params: DatasetParams

    def __init__(self, params: DatasetParams | None = None) -> None:
        super().__init__(params)
        #: prompt -> "file, line N" of its first row (for errors about the row)
        self.locations: dict[str, str] = {}

    def _load(self, path: str) -> list[Example]:
        p = self.params
        out = []
        rows = read_rows(path, p.hf_split)
        if not rows:
            raise DatasetError(f"{path}: no rows (the file is empty or holds only blank lines)")
        for where, row in rows:
            for col in (p.prompt_column, p.answer_column, p.target_column):
                if col is not None and (col not in row or row[col] is None):
                    raise DatasetError(f"{where}: missing column {col!r}; the row has: {', '.join(row)}")
            answer = str(row[p.answer_column])
            if p.check_gold and p.gold_mode == "math":
                self._check_gold(answer, where)
            try:
                prompt = p.prompt_template.format(**{**row, "prompt": row[p.prompt_column]})
            except (KeyError, IndexError) as e:
                raise DatasetError(f"{where}: prompt_template {p.prompt_template!r} needs column {e}") from e
            extra = {k: v for k, v in row.items() if k not in (p.prompt_column, p.answer_column, "answer")}
            target = None if p.target_column is None else str(row[p.target_column])
            out.append(Example(prompt=prompt, answer=answer, target=target, columns=extra))
            self.locations.setdefault(prompt, where)
        return out

    def _check_gold(self, answer: str, where: str) -> None:
        try:
            parse_gold(answer, self.params.timeout_s)
        except CheckTimeout as e:
            raise DatasetError(f"{where}: parsing gold answer {answer!r} with math-verify timed out") from e
        except ValueError as e:
            raise DatasetError(f"{where}: math-verify cannot parse the gold answer {answer!r} in column "
                               f"{self.params.answer_column!r} ({e}); fix or remove this row, or set "
                               f"task.params.gold_mode='string' to compare answers as exact strings") from e

    @cached_property
    def _pools(self) -> tuple[list[Example], list[Example]]:
        p = self.params
        rows = self._load(p.path)
        if p.test_path is not None:
            return rows, self._load(p.test_path)
        order = np.random.default_rng(p.seed).permutation(len(rows))
        n_test = int(round(p.test_fraction * len(rows)))
        if p.test_fraction > 0 and n_test == 0:
            raise DatasetError(f"{p.path}: {len(rows)} rows with task.params.test_fraction={p.test_fraction} leave "
                               f"an empty test split; add rows, raise test_fraction or set test_path")
        if n_test >= len(rows):
            raise DatasetError(f"{p.path}: {len(rows)} rows with task.params.test_fraction={p.test_fraction} leave "
                               f"no training rows")
        cut = len(rows) - n_test
        return [rows[i] for i in sorted(order[:cut])], [rows[i] for i in sorted(order[cut:])]

    def examples(self, split: str) -> list[Example]:
        check_split(split)
        train, test = self._pools
        return train if split == "train" else test

    def reward_funcs(self) -> list[RewardFunc]:
        if self.params.gold_mode == "string":
            return [ExactAnswerReward()]
        return [MathVerifyReward(self.params.timeout_s)]

    def where(self, example: Example) -> str:
        """The file and line (or row) an example was read from."""
        return self.locations.get(example.prompt, f"data set {self.params.path}")

    def sft_examples(self, n: int, seed: int) -> list[Example]:
        """``n`` training rows (with replacement) that carry a ``target_column`` solution."""
        train = [ex for ex in self.examples("train") if ex.target is not None]
        if not train:
            raise DatasetError(f"{self.params.path}: the SFT warm start needs task.params.target_column naming a "
                               f"column with solutions, or sft.enabled=false")
        idx = np.random.default_rng([seed, 4]).integers(0, len(train), size=n)
        return [train[i] for i in idx.tolist()]
