"""A task defined outside the package, registered by a module the CLI imports (``rollwise train --import``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rollwise.config import ConfigError
from rollwise.plugins import import_module
from rollwise.rlvr.commands import DEFAULT_JOB

REPO = Path(__file__).resolve().parents[2]

#: everything a task author needs comes from ``rollwise.rlvr.tasks``
MY_TASKS = '''
from dataclasses import dataclass

from rollwise.rlvr.tasks import Example, Task, check_split, exact_answer, register_task, require


@dataclass
class DoubleParams:
    n_train: int = 40
    n_test: int = 10

    def __post_init__(self):
        require(self.n_train + self.n_test <= 50, "n_train+n_test", self.n_train + self.n_test, "must be <= 50")


@register_task
class Double(Task):
    """x+x= -> 2x; exactly one correct completion."""

    name = "double"
    unique_answer = True
    params_cls = DoubleParams

    def _example(self, x):
        return Example(prompt=f"{x}+{x}=", answer=str(2 * x), target=str(2 * x))

    def examples(self, split):
        check_split(split)
        p = self.params
        xs = range(p.n_train) if split == "train" else range(p.n_train, p.n_train + p.n_test)
        return [self._example(x) for x in xs]

    def reward_funcs(self):
        return [exact_answer]

    def sft_examples(self, n, seed):
        return [self._example(i % self.params.n_train) for i in range(n)]
'''


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "ROLLWISE_NO_PROGRESS": "1"}
    return subprocess.run([sys.executable, "-m", "rollwise.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.integration
def test_train_imports_a_task_module_and_trains_on_its_task(tmp_path):
    (tmp_path / "my_tasks.py").write_text(MY_TASKS)
    small = ["model.tiny.hidden_size=32", "model.tiny.num_layers=1", "model.tiny.num_heads=2",
             "model.tiny.intermediate_size=64", "sft.steps=5", "sft.examples=64", "train.steps=2",
             "train.prompts_per_step=4", "train.eval_prompts=8", "rollout.max_new_tokens=3", "run.report=false",
             "run.threads=1", "rollout.engine=hf", "run.output_dir=run"]
    sets = [a for s in ["task.name=double", "task.params={n_train = 40, n_test = 10}", *small] for a in ("--set", s)]
    out = _cli(tmp_path, "train", "--import", "my_tasks", *sets)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout[out.stdout.index("{"):out.stdout.rindex("}") + 1])
    assert 0.0 <= summary["eval/exact_accuracy"] <= 1.0
    recs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    n = DEFAULT_JOB["rollout"]["n"]  # the default job's rollouts per prompt
    assert [r["step"] for r in recs] == [0, 1, 2] and recs[-1]["rollouts"] == 4 * n  # prompts x rollout.n
    # a path to the file works too; without the import the task is unknown and the valid names are listed
    ok = _cli(tmp_path, "train", "--import", str(tmp_path / "my_tasks.py"), "--set", "task.name=double",
              "--print-config")
    assert ok.returncode == 0 and 'name = "double"' in ok.stdout, ok.stderr[-2000:]
    missing = _cli(tmp_path, "train", "--set", "task.name=double", "--print-config")
    assert missing.returncode == 2 and "task.name='double' is not a known task; valid choices: add3" in missing.stderr


def test_a_missing_module_is_a_one_line_config_error(tmp_path):
    with pytest.raises(ConfigError, match="--import no_such_tasks_module: no module named"):
        import_module("no_such_tasks_module")
    with pytest.raises(ConfigError, match="no such file"):
        import_module(str(tmp_path / "absent.py"))
