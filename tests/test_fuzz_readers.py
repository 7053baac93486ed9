"""Property-based tests (hypothesis) over the config loader, the TOML and JSONL readers and the maths answer
checker (issue 18): no input makes them fail with anything but rollwise's own error types."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollwise.config import load_toml
from rollwise.errors import RollwiseError
from rollwise.rlvr.run_config import RLVRConfig, resolve_config
from rollwise.rlvr.tasks.mathcheck import CheckResult, CheckTimeout, check_answer, parse_gold
from rollwise.runlog import read_jsonl

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: dotted keys of every setting (tables excluded), plus a few that do not exist
KEYS = sorted({f"{s}.{k}" for s, sec in RLVRConfig().__dict__.items() for k in vars(sec)
               if not isinstance(getattr(sec, k), dict) and not hasattr(getattr(sec, k), "__dataclass_fields__")}
              - {"task.name", "model.name_or_path", "rollout.engine"}) + ["train.stepz", "nope", "a.b.c", "train"]

SCALAR_TEXT = st.one_of(
    st.integers(-10**30, 10**30).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["true", "false", "nan", "inf", "-inf", "[]", "[1, 2]", "{a = 1}", "''", '"x"', "0x1F",
                     "1e400", "-0", "[[[]]]", "{", "\"unterminated", "1979-05-27"]),
    st.text(max_size=12))


@FAST
@given(st.lists(st.tuples(st.sampled_from(KEYS), SCALAR_TEXT), max_size=4))
def test_config_overrides_fail_only_with_rollwise_errors(pairs):
    try:
        cfg = resolve_config(overrides=[f"{k}={v}" for k, v in pairs])
    except RollwiseError:
        return
    cfg.validate()  # whatever loads is valid


@FAST
@given(st.lists(st.text(max_size=20), max_size=4))
def test_arbitrary_override_strings_fail_only_with_rollwise_errors(items):
    try:
        resolve_config(overrides=items)
    except RollwiseError:
        pass


@FAST
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.lists(st.tuples(st.sampled_from(["[train]", "[rollout]", "[task]", "[x.y]", ""]),
                                    st.sampled_from(KEYS), SCALAR_TEXT), max_size=5).map(
                     lambda rows: "\n".join(f"{t}\n{k.split('.')[-1]} = {v}" for t, k, v in rows).encode())))
def test_toml_config_files_fail_only_with_rollwise_errors(data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.toml"
        path.write_bytes(data)
        try:
            load_toml(path)
            resolve_config(str(path))
        except RollwiseError:
            pass


JSON_LINES = st.lists(st.one_of(
    st.binary(max_size=40), st.sampled_from([b'{"step": 1}', b"[1]", b"{", b"", b"  ", b'"s"', b"[" * 2000,
                                             b'{"a": NaN}', b'{"\\ud800": 1}', b"\xff\xfe"]),
    st.text(max_size=40).map(str.encode)), max_size=6)


@FAST
@given(JSON_LINES, st.booleans())
def test_metrics_jsonl_reader_fails_only_with_rollwise_errors(lines, torn_tail):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "metrics.jsonl"
        path.write_bytes(b"\n".join(lines))
        try:
            records = read_jsonl(path, torn_tail=torn_tail)
        except RollwiseError:
            return
        assert all(isinstance(r, dict) for r in records)


@FAST
@given(JSON_LINES)
def test_dataset_jsonl_reader_fails_only_with_rollwise_errors(lines):
    from rollwise.rlvr.tasks import make_task

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data.jsonl"
        path.write_bytes(b"\n".join(lines))
        try:
            make_task("dataset", path=str(path), check_gold=False, test_fraction=0.5).examples("train")
        except RollwiseError:
            pass


MATHS = st.one_of(
    st.text(alphabet="0123456789+-*/^()[]{},.=\\$ abcfrxsqtpi_", max_size=24),
    st.sampled_from(["\\frac{", "\\frac{}{}", "1,,2", "\\boxed{", "$$", "\\sqrt{}", "10^{}", "\\frac{1}{2}",
                     "\\boxed{\\frac{}{}}", "x^2+1", "\\infty", "(1,2)", "\\text{(A)}"]),
    st.text(max_size=16))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MATHS, MATHS)
def test_math_answer_checker_never_raises_and_malformed_never_scores(gold, completion):
    result = check_answer(gold, completion, timeout_s=2.0)
    assert isinstance(result, CheckResult)
    try:
        parse_gold(gold, timeout_s=2.0)
    except (RollwiseError, CheckTimeout):
        assert not result.correct  # a gold that does not parse never scores
