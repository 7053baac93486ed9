"""Verifiable tasks: ADD-3 (``add3``), MakeN (``make_n``), Countdown (``countdown``), Reverse (``reverse``),
the reasoning testbed (``column_arith``, ``countdown_steps``: written-out steps) and maths data sets on local
disk (``dataset``). Build one with ``make_task(name, **params)``.

A new task needs only the names re-exported here: subclass :class:`Task`, return :class:`Example` pools,
decorate it with :func:`register_task`, and use it from the CLI with ``rollwise train --import my_tasks``
(docs/rlvr.md, "How to add a task").
"""

from rollwise.rlvr.rewards import RewardFunc, exact_answer
from rollwise.rlvr.tasks.arithmetic import Add3, Add3Params
from rollwise.rlvr.tasks.base import (
    TASKS,
    Example,
    Task,
    check_split,
    collate_columns,
    make_task,
    register_task,
    require,
    task_names,
)
from rollwise.rlvr.tasks.column_arith import ColumnArith, ColumnArithParams
from rollwise.rlvr.tasks.countdown import Countdown, CountdownParams
from rollwise.rlvr.tasks.countdown_steps import CountdownSteps, CountdownStepsParams
from rollwise.rlvr.tasks.datasets import DatasetError, DatasetParams, MathDataset
from rollwise.rlvr.tasks.make_n import MakeN, MakeNParams, canonical_form, correct_set
from rollwise.rlvr.tasks.reverse import Reverse, ReverseParams

__all__ = [
    # what a task author needs (docs/rlvr.md, "How to add a task")
    "Task", "Example", "register_task", "require", "check_split", "collate_columns", "RewardFunc", "exact_answer",
    # finding and building registered tasks
    "TASKS", "make_task", "task_names",
    # the built-in tasks, their parameters and helpers
    "Add3", "Add3Params", "ColumnArith", "ColumnArithParams", "Countdown", "CountdownParams", "CountdownSteps",
    "CountdownStepsParams", "DatasetError", "DatasetParams", "MathDataset", "MakeN", "MakeNParams",
    "canonical_form", "correct_set", "Reverse", "ReverseParams",
]
