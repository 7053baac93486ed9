"""Data sets fail closed (issue 18): malformed gold answers, empty or too-small splits, non-UTF-8 bytes and
prompts longer than the model's context are errors naming the file and line; ``gold_mode="string"``
compares exactly, with no fallback a malformed completion can match."""

from __future__ import annotations

import json

import pytest

from rollwise import cli
from rollwise.errors import DataError
from rollwise.rlvr.models import char_tokenizer
from rollwise.rlvr.rewards import RewardRunner
from rollwise.rlvr.tasks import DatasetError, collate_columns, make_task
from rollwise.rlvr.tasks.base import check_prompts_fit
from rollwise.rlvr.tasks.mathcheck import ExactAnswerReward, check_answer, final_answer

GOOD = [{"problem": f"What is {i}+1?", "answer": str(i + 1)} for i in range(20)]


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("gold", ["\\frac{", "1,,2", "\\frac{}{}", "10^{}", "3+", ",1"])
def test_malformed_gold_is_an_error_naming_file_and_line(tmp_path, gold):
    path = write(tmp_path / "d.jsonl", [*GOOD[:3], {"problem": "p", "answer": gold}])
    with pytest.raises(DatasetError, match=r"d.jsonl, line 4: math-verify cannot parse the gold answer"):
        make_task("dataset", path=path).examples("train")


@pytest.mark.parametrize(("gold", "completion"), [("\\frac{", "$\\frac{$"), ("\\frac{}{}", "\\boxed{\\frac{}{}}"),
                                                  ("1,,2", "\\boxed{1}"), ("\\frac{", "\\boxed{\\frac{}")])
def test_malformed_gold_never_scores_even_unchecked(gold, completion):
    result = check_answer(gold, completion)
    assert not result.correct and result.status == "gold_error"


def test_string_only_completion_parse_is_a_parse_failure():
    assert check_answer("\\frac{1}{2}", "$\\frac{$").status == "parse_failure"
    assert check_answer("\\frac{1}{2}", "\\boxed{\\frac{1}{2}}").correct


def test_gold_mode_string_compares_the_final_answer_exactly(tmp_path):
    rows = [{"problem": "Colour?", "answer": "blue"}, {"problem": "Broken?", "answer": "\\frac{"},
            {"problem": "Half?", "answer": "\\frac{1}{2}"}] * 4
    path = write(tmp_path / "s.jsonl", rows)
    with pytest.raises(DatasetError, match="gold_mode='string'"):
        make_task("dataset", path=path, test_fraction=0.25).examples("train")
    task = make_task("dataset", path=path, gold_mode="string", test_path=path)
    exs = task.examples("train")[:3]
    assert [e.answer for e in exs] == ["blue", "\\frac{", "\\frac{1}{2}"]
    runner = RewardRunner(task.reward_funcs())
    cases = [(["\\boxed{blue}", "$\\frac{$", "\\boxed{0.5}"], [1.0, 0.0, 0.0]),
             (["blue ", "\\boxed{\\frac{", "so \\boxed{\\frac{1}{2}}"], [1.0, 0.0, 1.0]),
             (["Blue", "\\frac{", "1/2"], [0.0, 1.0, 0.0])]
    for completions, expected in cases:
        r, _ = runner([e.prompt for e in exs], completions, [False] * 3, collate_columns(exs))
        assert r.tolist() == expected, completions
    assert ExactAnswerReward()(["p"], ["\\boxed{blue}"], ["blue"], truncated=[True]) == [0.0]
    assert final_answer("\\boxed{a} and \\boxed{b") == "a"
    with pytest.raises(Exception, match="gold_mode"):
        make_task("dataset", path=path, gold_mode="fuzzy")
    assert "DataError" in {c.__name__ for c in DatasetError.__mro__}


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_data_set_is_an_error(tmp_path, content):
    (tmp_path / "e.jsonl").write_text(content)
    with pytest.raises(DatasetError, match=r"e.jsonl: no rows"):
        make_task("dataset", path=str(tmp_path / "e.jsonl")).examples("train")


def test_too_small_data_set_leaves_no_test_split_and_is_an_error(tmp_path):
    path = write(tmp_path / "four.jsonl", GOOD[:4])
    with pytest.raises(DatasetError, match=r"4 rows with task.params.test_fraction=0.1 leave an empty test split"):
        make_task("dataset", path=path).examples("train")
    assert len(make_task("dataset", path=path, test_fraction=0.25).examples("test")) == 1


def test_non_utf8_byte_names_file_and_line(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"problem": "a", "answer": "1"}\n{"problem": "caf\xe9", "answer": "2"}\n')
    with pytest.raises(DatasetError, match=r"latin.jsonl, line 2: not UTF-8 text \(byte 0xe9"):
        make_task("dataset", path=str(path)).examples("train")


@pytest.mark.parametrize("length", [2000, 1_000_000])
def test_prompt_longer_than_the_context_names_file_line_and_limit(tmp_path, length):
    path = write(tmp_path / "long.jsonl", [*GOOD[:9], {"problem": "x" * length, "answer": "1"}])
    task = make_task("dataset", path=path, test_path=write(tmp_path / "t.jsonl", GOOD[:2]))
    with pytest.raises(DataError, match=r"long.jsonl, line 10: the prompt is .* context of 64 positions"):
        check_prompts_fit(task, char_tokenizer(), 64)
    check_prompts_fit(make_task("dataset", path=write(tmp_path / "ok.jsonl", GOOD)), char_tokenizer(), 64)


def test_train_refuses_a_long_prompt_before_any_work(tmp_path, capsys, monkeypatch):
    import rollwise.rlvr.sft as sft

    def no_sft(*args, **kwargs):
        raise AssertionError("work started before the data check")

    monkeypatch.setattr(sft, "supervised_warm_start", no_sft)
    path = write(tmp_path / "long.jsonl", [*GOOD, {"problem": "y" * 2000, "answer": "1"}])
    argv = ["train", "--set", "task.name=dataset", "--set", f"task.params.path='{path}'", "--set",
            "sft.enabled=false", "--set", f"run.output_dir='{tmp_path / 'run'}'"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "long.jsonl, line 21" in err and "64 positions" in err
    assert not (tmp_path / "run").exists()


def test_empty_test_split_of_any_task_is_refused():
    from rollwise.errors import DataError

    with pytest.raises(DataError, match="test split is empty"):
        check_prompts_fit(make_task("add3", n_test=0), char_tokenizer(), 64)
