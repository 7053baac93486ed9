"""Verifiable tasks: ADD-3 (``add3``), MakeN (``make_n``), Countdown (``countdown``), Reverse (``reverse``),
the reasoning testbed (``column_arith``, ``countdown_steps``: written-out steps) and maths data sets on local
disk (``dataset``). Build one with ``make_task(name, **params)``."""

from rollwise.rlvr.tasks.arithmetic import Add3, Add3Params
from rollwise.rlvr.tasks.base import Example, Task, collate_columns, make_task, register_task, task_names
from rollwise.rlvr.tasks.column_arith import ColumnArith, ColumnArithParams
from rollwise.rlvr.tasks.countdown import Countdown, CountdownParams
from rollwise.rlvr.tasks.countdown_steps import CountdownSteps, CountdownStepsParams
from rollwise.rlvr.tasks.datasets import DatasetError, DatasetParams, MathDataset
from rollwise.rlvr.tasks.make_n import MakeN, MakeNParams, canonical_form, correct_set
from rollwise.rlvr.tasks.reverse import Reverse, ReverseParams

__all__ = [
    "Add3", "Add3Params", "ColumnArith", "ColumnArithParams", "Countdown", "CountdownParams", "CountdownSteps",
    "CountdownStepsParams", "DatasetError", "DatasetParams", "Example", "MakeN",
    "MakeNParams", "MathDataset", "Reverse", "ReverseParams", "Task", "canonical_form", "collate_columns",
    "correct_set", "make_task", "register_task", "task_names",
]
