import json
import threading
import time

import pytest

from rollwise.rlvr.rewards import RewardRunner
from rollwise.rlvr.tasks import DatasetError, collate_columns, make_task, mathcheck
from rollwise.rlvr.tasks.mathcheck import (
    CheckTimeout,
    MathVerifyReward,
    call_with_deadline,
    check_answer,
    parse_gold,
)

ROWS = [
    {"problem": "What is 6*7?", "answer": "42", "solution": "6*7 = \\boxed{42}", "level": 1},
    {"problem": "Half of one?", "answer": "\\frac{1}{2}", "solution": "\\boxed{\\frac{1}{2}}", "level": 2},
    {"problem": "Root of 2 squared?", "answer": 2, "solution": "\\boxed{2}", "level": 1},
    {"problem": "x if x+1=4?", "answer": "3", "solution": "x = \\boxed{3}", "level": 3},
]


def write_jsonl(path, rows, blank_after=None):
    with open(path, "w") as f:
        for i, r in enumerate(rows):
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
            if blank_after == i:
                f.write("\n")
    return str(path)


def test_jsonl_parquet_and_save_to_disk_load_the_same_examples(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{**r, "answer": str(r["answer"])} for r in ROWS]
    jsonl = write_jsonl(tmp_path / "d.jsonl", rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "folder"))
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
    kw = dict(test_path=jsonl, prompt_template="Q: {prompt} (level {level})", target_column="solution")
    loaded = [make_task("dataset", path=p, hf_split="test", **kw).examples("train")
              for p in [jsonl, str(tmp_path / "d.parquet"), str(tmp_path / "folder"), str(tmp_path / "dd")]]
    assert all(x == loaded[0] for x in loaded)
    ex = loaded[0][1]
    assert ex.prompt == "Q: Half of one? (level 2)" and ex.answer == "\\frac{1}{2}"
    assert ex.target == "\\boxed{\\frac{1}{2}}" and ex.columns["level"] == 2 and "answer" not in ex.columns


def test_split_by_fraction_is_deterministic_and_disjoint(tmp_path):
    rows = [{"problem": f"{i}+0?", "answer": str(i)} for i in range(40)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    task = make_task("dataset", path=path, test_fraction=0.25, seed=1)
    train, test = task.examples("train"), task.examples("test")
    assert len(train) == 30 and len(test) == 10
    assert not {e.prompt for e in train} & {e.prompt for e in test}
    assert test == make_task("dataset", path=path, test_fraction=0.25, seed=1).examples("test")


def test_bad_json_and_missing_column_name_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], '{"problem": "x", "answer": ', ROWS[1]], blank_after=0)
    with pytest.raises(DatasetError, match=r"bad.jsonl, line 3: invalid JSON"):
        make_task("dataset", path=path).examples("train")
    path = write_jsonl(tmp_path / "miss.jsonl", [ROWS[0], ROWS[1], {"problem": "no answer"}])
    with pytest.raises(DatasetError, match=r"miss.jsonl, line 3: missing column 'answer'"):
        make_task("dataset", path=path).examples("train")
    path = write_jsonl(tmp_path / "list.jsonl", [ROWS[0], "[1, 2]"])
    with pytest.raises(DatasetError, match=r"list.jsonl, line 2: expected a JSON object"):
        make_task("dataset", path=path).examples("train")
    with pytest.raises(DatasetError, match="no such file"):
        make_task("dataset", path=str(tmp_path / "nope.jsonl")).examples("train")


def test_unparseable_gold_is_an_error_naming_file_and_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"problem": "p", "answer": "42"}, {"problem": "q", "answer": "not a number at all"}]
    path = write_jsonl(tmp_path / "gold.jsonl", rows, blank_after=0)
    with pytest.raises(DatasetError, match=r"gold.jsonl, line 3: math-verify cannot parse the gold answer"):
        make_task("dataset", path=path).examples("train")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "gold.parquet")
    with pytest.raises(DatasetError, match=r"gold.parquet, row 2: math-verify cannot parse"):
        make_task("dataset", path=str(tmp_path / "gold.parquet")).examples("train")
    assert len(make_task("dataset", path=path, check_gold=False, test_fraction=0.0).examples("train")) == 2


def test_math_verify_reward_scores_parse_failures_zero_and_counts_them(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    task = make_task("dataset", path=path, test_fraction=0.0)
    exs = task.examples("train")
    completions = ["so \\boxed{42}", "The answer is $0.5$", "I cannot tell", "\\boxed{3}"]
    runner = RewardRunner(task.reward_funcs())
    r, m = runner([e.prompt for e in exs], completions, [False, False, False, True], collate_columns(exs))
    assert r.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert m["reward/math_verify/parse_failures"] == 1 and m["reward/math_verify/truncated"] == 1
    assert m["reward/math_verify/errors"] == 0 and m["reward/failures"] == 0
    wrong = check_answer("42", "\\boxed{41}")
    assert not wrong.correct and wrong.status == "ok"
    assert check_answer("not a number", "\\boxed{1}").status == "gold_error"
    assert check_answer("x^2+1", "\\boxed{1+x^2}").correct
    assert parse_gold("\\text{(A)}\\sqrt{2}") and parse_gold("x")


def _slow(x):
    end = time.monotonic() + 30
    while time.monotonic() < end:  # pure-Python busy loop, interruptible by the alarm
        x += 1
    return x


def test_deadline_works_in_main_thread_and_in_other_threads():
    assert threading.current_thread() is threading.main_thread()
    start = time.monotonic()
    with pytest.raises(CheckTimeout):
        call_with_deadline(_slow, 0.2, 0)
    assert call_with_deadline(lambda a: a + 1, 1.0, 1) == 2
    box = {}

    def in_thread():
        t0 = time.monotonic()
        try:
            call_with_deadline(time.sleep, 0.2, 30)
        except CheckTimeout:
            box["timeout"] = time.monotonic() - t0
        box["value"] = call_with_deadline(lambda a: a * 2, 1.0, 21)

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join(10)
    assert box["value"] == 42 and box["timeout"] < 2.0
    assert time.monotonic() - start < 5.0


def test_slow_check_times_out_and_is_counted(monkeypatch):
    monkeypatch.setattr(mathcheck, "_check", lambda gold, completion: _slow(0))
    reward = MathVerifyReward(timeout_s=0.2)
    assert reward(prompts=["p"], completions=["\\boxed{1}"], answer=["1"], truncated=[False]) == [0.0]
    assert reward.pop_metrics()["timeouts"] == 1
    monkeypatch.setattr(mathcheck, "_check", lambda gold, completion: time.sleep(30))  # abandoned thread sleeps
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("r", check_answer("1", "\\boxed{1}", timeout_s=0.2)))
    worker.start()
    worker.join(10)
    assert box["r"].status == "timeout" and not box["r"].correct
