import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollwise.config import ConfigError
from rollwise.rlvr.tasks import Example, collate_columns, make_task, task_names
from rollwise.rlvr.tasks.arithmetic import carries
from rollwise.rlvr.tasks.countdown import is_solution, parse_expression, solve
from rollwise.rlvr.tasks.make_n import canonical_form, correct_set, evaluate, parse_strict


def score(task, examples, completions, truncated=None):
    f = task.reward_funcs()[0]
    cols = collate_columns(examples)
    truncated = [False] * len(completions) if truncated is None else truncated
    return f(prompts=[e.prompt for e in examples], completions=completions, truncated=truncated, **cols)


# ---- registry -------------------------------------------------------------------------------------------

def test_registry_lists_tasks_and_rejects_unknown_names_and_params():
    assert {"add3", "make_n", "countdown", "dataset"} <= set(task_names())
    with pytest.raises(ConfigError, match="valid choices: add3, column_arith, countdown"):
        make_task("add4")
    with pytest.raises(ConfigError, match=r"task.max_op .*valid parameters: max_operand, n_train"):
        make_task("add3", max_op=3)
    with pytest.raises(ConfigError, match="max_operand"):
        make_task("add3", max_operand=-1)


def test_collate_columns_repeats_per_rollout():
    exs = [Example("1+1=", "2", columns={"a": 1}), Example("2+2=", "4", columns={"a": 2})]
    assert collate_columns(exs, repeat=2) == {"answer": ["2", "2", "4", "4"], "a": [1, 1, 2, 2]}


# ---- add3 -----------------------------------------------------------------------------------------------

def test_add3_pools_are_deterministic_disjoint_and_correct():
    task = make_task("add3", n_train=300, n_test=100, seed=3)
    train, test = task.examples("train"), task.examples("test")
    assert len(train) == 300 and len(test) == 100
    assert {e.prompt for e in train}.isdisjoint({e.prompt for e in test})
    assert train == make_task("add3", n_train=300, n_test=100, seed=3).examples("train")
    assert train != make_task("add3", n_train=300, n_test=100, seed=4).examples("train")
    for e in train + test:
        a, b = map(int, e.prompt[:-1].split("+"))
        assert e.prompt == f"{a}+{b}=" and e.answer == str(a + b) == e.target
        assert 0 <= a <= 999 and 0 <= b <= 999
    with pytest.raises(ValueError, match="split"):
        task.examples("valid")
    assert task.unique_answer


def test_add3_sft_examples_avoid_test_pool():
    task = make_task("add3", max_operand=9, n_train=20, n_test=60, seed=1)
    test = {e.prompt for e in task.examples("test")}
    sft = task.sft_examples(200, seed=0)
    assert len(sft) == 200 and not test & {e.prompt for e in sft}
    assert all(e.target == e.answer for e in sft)
    assert sft == task.sft_examples(200, seed=0)


def test_add3_reward_exact_and_truncation_gives_zero():
    task = make_task("add3", n_train=2, n_test=1)
    ex = Example("12+30=", "42", "42")
    r = score(task, [ex] * 5, ["42", "42", "042", "42 ", "4"], truncated=[False, True, False, False, False])
    assert r == [1.0, 0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="truncated"):
        task.reward_funcs()[0](prompts=["12+30="], completions=["42"], answer=["42"])


def test_carries_golden():
    assert carries(999, 1) == 3 and carries(123, 456) == 0 and carries(15, 5) == 1 and carries(0, 0) == 0


# ---- make_n ---------------------------------------------------------------------------------------------

def test_make_n_grammar_size_and_correct_sets_partition_it():
    strings = ["".join(d) for d in itertools.product("123456789", "+-*", "123456789", "+-*", "123456789")]
    assert len(set(strings)) == 9 ** 3 * 3 ** 2 == 6561
    values = range(-100, 800)
    assert sum(len(correct_set(v)) for v in values) == 6561
    assert correct_set(10)[:3] == sorted(correct_set(10))[:3]


def test_make_n_verifier_rewards_exactly_the_correct_set():
    task = make_task("make_n")
    target = task.examples("train")[0]
    n = int(target.answer)
    everything = ["".join(p) for p in itertools.product("123456789", "+-*", "123456789", "+-*", "123456789")]
    r = score(task, [target] * len(everything), everything)
    rewarded = sorted(s for s, x in zip(everything, r) if x == 1.0)
    assert rewarded == task.correct_set(n) and len(rewarded) >= 8
    # out of grammar: spaces, multi-digit, zero, wrong arity, unary minus, division, truncated
    bad = ["1 + 2*3", "10+1-1", "0+1+9", "1+2", "-1+2+3", "8/2+1", "1+2+3+4"]
    assert score(task, [target] * len(bad), bad) == [0.0] * len(bad)
    good = task.correct_set(n)[0]
    assert score(task, [target, target], [good, good], truncated=[False, True]) == [1.0, 0.0]


def test_make_n_precedence_golden():
    assert evaluate(*parse_strict("2+3*4")) == 14
    assert evaluate(*parse_strict("2*3-4")) == 2
    assert evaluate(*parse_strict("9-8*7")) == -47
    assert evaluate(*parse_strict("2*3*4")) == 24
    assert evaluate(*parse_strict("5-2-1")) == 2
    assert parse_strict("5-2-") is None and parse_strict("5/2-1") is None


def test_make_n_targets_split_and_min_correct():
    task = make_task("make_n", seed=0)
    train, test = task.targets("train"), task.targets("test")
    assert not set(train) & set(test)
    assert abs(len(test) / (len(train) + len(test)) - 0.2) < 0.02
    assert all(len(correct_set(n)) >= 8 for n in train + test)
    assert train == make_task("make_n", seed=0).targets("train")
    four = make_task("make_n", n_operands=4, min_target=0, max_target=50)
    assert all(0 <= n <= 50 for n in four.targets("train"))
    assert len(four.correct_set(24)) > 100 and all(len(s) == 7 for s in four.correct_set(24))


def test_make_n_canonical_form():
    assert canonical_form("4*3-2+1") == "1+3*4-2" == canonical_form("1+4*3-2") == canonical_form("3*4+1-2")
    assert canonical_form("2*3*1") == "1*2*3"
    assert canonical_form("9-2-1") == canonical_form("9-1-2") != canonical_form("9-1+2")
    assert canonical_form("1+2*3") != canonical_form("2+1*3")
    with pytest.raises(ValueError):
        canonical_form("1/2")
    # canonical forms preserve the value and group the correct set into fewer classes
    cs = correct_set(24)
    assert len({canonical_form(s) for s in cs}) < len(cs)


def test_make_n_sft_is_skewed_and_zipf_zero_is_uniform():
    task = make_task("make_n", sft_zipf=1.0)
    n = task.targets("train")[0]
    dist = task.sft_distribution(n)
    assert set(dist) == set(task.correct_set(n)) and abs(sum(dist.values()) - 1) < 1e-9
    probs = sorted(dist.values(), reverse=True)
    assert probs[0] / probs[-1] == pytest.approx(len(probs))  # Zipf s=1: rank 1 vs rank |C|
    flat = make_task("make_n", sft_zipf=0.0).sft_distribution(n)
    assert max(flat.values()) == pytest.approx(min(flat.values()))
    sft = task.sft_examples(500, seed=0)
    test = set(task.targets("test"))
    assert all(int(e.answer) not in test and e.target in task.correct_set(int(e.answer)) for e in sft)
    assert sft == task.sft_examples(500, seed=0)


# ---- countdown ------------------------------------------------------------------------------------------

def test_countdown_parser_golden_and_safety():
    assert parse_expression("(1+2)*3/4") == (pytest.approx(9 / 4), [1, 2, 3, 4])
    assert parse_expression("8/(3-8/3)")[0] == 24
    assert parse_expression("10-2-3")[0] == 5 and parse_expression("16/4/2")[0] == 2
    for bad in ["", "1//2", "2**3", "1/0", "01+2", "-1+2", "(1+2", "1+2)", "__import__('os')", "1e3", "1+" * 200]:
        assert parse_expression(bad) is None, bad
    assert parse_expression("1 + 2")[0] == 3
    assert parse_expression("2*3", ops="+-") is None


def test_countdown_solutions_and_number_use():
    assert is_solution("(5-2)*7+3", [3, 5, 7, 2], 24)
    assert not is_solution("5*3+7", [3, 5, 7, 2], 22)  # 2 unused
    assert is_solution("5*3+7", [3, 5, 7, 2], 22, use_all=False)
    assert not is_solution("5*5-1", [5, 1, 2, 3], 24, use_all=False)  # 5 used twice
    sols = solve([3, 8, 8, 3], 24)
    assert sols == ["8/(3-8/3)"]
    assert solve([1, 1, 1, 1], 24) == []
    assert all(is_solution(s, [3, 5, 7, 2], 24) for s in solve([3, 5, 7, 2], 24))


def test_countdown_pools_solvable_disjoint_and_verifier():
    task = make_task("countdown", n_train=60, n_test=20, seed=0)
    train, test = task.examples("train"), task.examples("test")
    key = lambda e: (tuple(sorted(e.columns["numbers"])), e.answer)  # noqa: E731
    assert len(train) == 60 and len(test) == 20 and not {key(e) for e in train} & {key(e) for e in test}
    assert all(10 <= int(e.answer) <= 99 and len(e.columns["numbers"]) == 4 for e in train + test)
    assert score(task, train, [e.target for e in train]) == [1.0] * 60
    assert score(task, train[:1], [train[0].target], truncated=[True]) == [0.0]
    assert score(task, train[:2], ["1+", "hello"]) == [0.0, 0.0]
    sft = task.sft_examples(30, seed=0)
    assert {key(e) for e in sft}.isdisjoint({key(e) for e in test})
    assert score(task, sft, [e.target for e in sft]) == [1.0] * 30
    assert task.examples("train") == make_task("countdown", n_train=60, n_test=20, seed=0).examples("train")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=3, max_size=3), st.integers(0, 30))
def test_countdown_solver_agrees_with_verifier(nums, target):
    sols = solve(nums, target, use_all=False)
    assert all(is_solution(s, nums, target, use_all=False) for s in sols)
    # completeness in the small case: brute force over ordered pairs/triples with both groupings
    ops = "+-*/"
    exprs = [str(a) for a in nums]
    for a, b in itertools.permutations(nums, 2):
        exprs += [f"{a}{o}{b}" for o in ops]
    for a, b, c in itertools.permutations(nums, 3):
        exprs += [f"({a}{o}{b}){p}{c}" for o in ops for p in ops] + [f"{a}{o}({b}{p}{c})" for o in ops for p in ops]
    assert bool(sols) == any(is_solution(e, nums, target, use_all=False) for e in exprs)
