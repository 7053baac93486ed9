"""The reasoning testbed's tasks: column arithmetic with a scratchpad and Countdown with written steps.

Verifiers are checked on adversarial completions (answer only, wrong reasoning with a right answer,
truncated), the enumerated correct sets against the verifier, and V(x) (exact, teacher-forced) against
sampling from a small trained policy.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from rollwise.config import ConfigError
from rollwise.rlvr.evaluate import exact_conditional_entropy, exact_success_prob, sampled_success_prob
from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, tiny_causal_lm
from rollwise.rlvr.sft import supervised_warm_start
from rollwise.rlvr.tasks import make_task
from rollwise.rlvr.tasks.column_arith import ColumnVerifier, canonical_trace, column_steps
from rollwise.rlvr.tasks.countdown_steps import CountdownStepsVerifier, replay, solutions


def _arith(completions, a, b, op, check="trace", truncated=None):
    n = len(completions)
    return ColumnVerifier(check)([""] * n, completions, a=[a] * n, b=[b] * n, op=[op] * n,
                                 truncated=truncated or [False] * n)


# ----------------------------------------------------------------------------- column arithmetic

def test_column_steps_golden():
    assert canonical_trace(472, 389, "+") == "2+9+0=11;7+8+1=16;4+3+1=8;ans:861"
    assert canonical_trace(503, 78, "-") == "13-8-0=5;10-7-1=2;5-0-1=4;ans:425"
    assert column_steps(999, 1, "+") == (["9+1+0=10", "9+0+1=10", "9+0+1=10"], 3)
    assert canonical_trace(999, 1, "+").endswith("ans:1000")
    assert canonical_trace(100, 100, "-") == "0-0-0=0;0-0-0=0;1-1-0=0;ans:0"
    with pytest.raises(ValueError, match="negative"):
        column_steps(1, 2, "-")


def test_column_steps_are_right_on_random_problems():
    rng = random.Random(0)
    for _ in range(500):
        a, b, op = rng.randint(0, 10**6), rng.randint(0, 10**6), rng.choice("+-")
        a, b = (max(a, b), min(a, b)) if op == "-" else (a, b)
        trace = canonical_trace(a, b, op)
        assert trace.endswith(f"ans:{a + b if op == '+' else a - b}")
        assert _arith([trace], a, b, op) == [1.0]
        assert _arith([trace], a, b, op, check="answer") == [1.0]


@pytest.mark.parametrize("check", ["trace", "answer"])
def test_column_verifier_adversarial(check):
    a, b, op = 472, 389, "+"
    good = canonical_trace(a, b, op)
    wrong_work = "2+9+0=12;7+8+1=16;4+3+1=8;ans:861"  # a wrong column, then the right answer
    cases = {
        "answer only": "ans:861", "bare number": "861", "wrong answer": good.replace("ans:861", "ans:862"),
        "missing column": "2+9+0=11;7+8+1=16;ans:861", "extra column": "0+0+0=0;" + good,
        "leading zero answer": good.replace("ans:861", "ans:0861"), "trailing junk": good + ";",
        "space": good.replace(";", "; "), "empty": "", "wrong op": good.replace("+", "-"),
    }
    for name, text in cases.items():
        assert _arith([text], a, b, op, check) == [0.0], name
    assert _arith([good], a, b, op, check, truncated=[True]) == [0.0]  # truncated: never rewarded
    assert _arith([wrong_work], a, b, op, check) == [1.0 if check == "answer" else 0.0]


def test_column_verifier_needs_truncated_column():
    with pytest.raises(ValueError, match="truncated"):
        ColumnVerifier()(["p"], ["ans:1"], a=[1], b=[0], op=["+"])


def test_column_arith_pools_and_params():
    task = make_task("column_arith", n_train=300, n_test=50, min_digits=2, max_digits=4)
    train, test = task.examples("train"), task.examples("test")
    key = lambda e: (e.columns["a"], e.columns["b"], e.columns["op"])  # noqa: E731
    assert len(train) == 300 and len(test) == 50 and not {key(e) for e in train} & {key(e) for e in test}
    assert train == make_task("column_arith", n_train=300, n_test=50, min_digits=2, max_digits=4).examples("train")
    assert {e.prompt.split("=")[0].count(" ") for e in train} == {0, 2}  # both phrasings in use
    for e in train[:50]:
        assert e.target == canonical_trace(e.columns["a"], e.columns["b"], e.columns["op"])
        assert 2 <= e.columns["digits"] <= 4 and 0 <= e.columns["carries"] <= e.columns["digits"]
    sft = task.sft_examples(200, seed=1)
    assert not {key(e) for e in sft} & {key(e) for e in test}
    assert task.unique_answer and not make_task("column_arith", check="answer").unique_answer
    with pytest.raises(ConfigError, match="task.check"):
        make_task("column_arith", check="steps")
    with pytest.raises(ConfigError, match="min_digits"):
        make_task("column_arith", min_digits=5, max_digits=3)


# ----------------------------------------------------------------------------- countdown with steps

def _cd(completions, numbers, target, truncated=None):
    n = len(completions)
    return CountdownStepsVerifier()([""] * n, completions, answer=[str(target)] * n, numbers=[numbers] * n,
                                    truncated=truncated or [False] * n)


def test_countdown_steps_verifier_adversarial():
    nums, target = [3, 5, 7, 9], 31
    good = "9-5=4:3 4 7;4*7=28:3 28;28+3=31"
    assert _cd([good], nums, target) == [1.0]
    cases = {
        "answer only": "31", "expression only": "(9-5)*7+3",
        "wrong reasoning, right answer": "9-5=4:3 4 7;4*7=27:3 27;27+4=31",
        "number not given": "9-5=4:3 4 7;4*8=32:3 32;32-1=31",
        "number used twice": "9-5=4:3 4 7;4*7=28:3 28;28+3=31;3-3=0",
        "number left over": "9-5=4:3 4 7;4*7=28:3 28",
        "wrong bookkeeping": "9-5=4:3 7 4;4*7=28:3 28;28+3=31",
        "bookkeeping missing": "9-5=4;4*7=28;28+3=31", "bookkeeping after last": good + ":31",
        "wrong target": "9-5=4:3 4 7;4*7=28:3 28;28-3=25", "zero result": "3-3=0:0 5 9",
        "fraction": "9/5=1:1 3 7;1*7=7:3 7;7*3=21", "spaces": good.replace("=", " = "), "empty": "",
    }
    for name, text in cases.items():
        assert _cd([text], nums, target) == [0.0], name
    assert _cd([good], nums, target, truncated=[True]) == [0.0]
    assert replay("1" * 300, nums) is None


def test_countdown_solutions_are_exactly_the_rewarded_set():
    """Every enumerated solution is rewarded, and random edits of solutions are rewarded only when they are
    themselves in the enumerated set (fail closed: the set is exact)."""
    rng = random.Random(0)
    task = make_task("countdown_steps", n_train=30, n_test=5)
    for ex in task.examples("train")[:15]:
        nums, target = ex.columns["numbers"], int(ex.answer)
        sols = solutions(nums, target)
        assert len(sols) == ex.columns["n_solutions"] >= 1 and len(set(sols)) == len(sols)
        assert _cd(sols, nums, target) == [1.0] * len(sols)
        alphabet = "0123456789+-*/=:; "
        for s in rng.sample(sols, min(5, len(sols))):
            for _ in range(40):
                i = rng.randrange(len(s))
                edit = s[:i] + rng.choice(alphabet) + s[i + 1 :]
                assert _cd([edit], nums, target) == [float(edit in set(sols))]


def test_countdown_solutions_golden_small():
    # 2 + 3 = 5 and 3 + 2 = 5: two rewarded orders; 6 = 2 * 3 and 3 * 2
    assert solutions([2, 3], 5) == ["2+3=5", "3+2=5"]
    assert solutions([2, 3], 6) == ["2*3=6", "3*2=6"]
    assert solutions([2, 3], 1) == ["3-2=1"]
    assert solutions([2, 4], 2) == ["4-2=2", "4/2=2"]
    assert solutions([2, 3], 7) == []


def test_countdown_steps_pools():
    task = make_task("countdown_steps", n_train=200, n_test=40)
    train, test = task.examples("train"), task.examples("test")
    key = lambda e: (tuple(sorted(e.columns["numbers"])), e.answer)  # noqa: E731
    assert not {key(e) for e in train} & {key(e) for e in test}
    assert all(10 <= int(e.answer) <= 99 and e.target in task.correct_set(e) for e in train)
    sft = task.sft_examples(100, seed=0)
    assert len({e.target for e in sft}) > 90 and not {key(e) for e in sft} & {key(e) for e in test}
    with pytest.raises(ConfigError, match="n_numbers"):
        make_task("countdown_steps", n_numbers=7)


# ----------------------------------------------------------------------------- V(x)

def _overfit(task, examples, steps: int = 150):
    torch.manual_seed(0)
    tok = char_tokenizer()
    model = tiny_causal_lm(tok, TinyModelConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                                                 max_positions=96))
    supervised_warm_start(model, tok, [e.prompt for e in examples], [e.target for e in examples], steps=steps,
                          batch_size=16, lr=3e-3, seed=0)
    return model, tok


def test_exact_value_matches_sampling_column_arith():
    """Under check='trace' V(x) = pi(trace|x) (teacher-forced) is the probability of reward 1: it agrees with
    800 samples per prompt within 4 standard errors; under check='answer' pi(trace|x) is a lower bound."""
    task = make_task("column_arith", n_train=6, n_test=2, min_digits=2, max_digits=2, phrasings=1)
    ex = task.examples("train")[:4]
    model, tok = _overfit(task, ex, steps=100)
    v = exact_success_prob(model, tok, [e.prompt for e in ex], [e.target for e in ex]).double()
    mc, se = sampled_success_prob(model, tok, task, ex, n=800, max_new_tokens=40, seed=3)
    assert ((v > 0.05) & (v < 0.95)).any(), v  # a non-trivial check
    assert ((mc - v).abs() <= 4 * se + 0.01).all(), (v, mc, se)
    answer_task = make_task("column_arith", n_train=6, n_test=2, min_digits=2, max_digits=2, phrasings=1,
                            check="answer")
    mc_answer, se_answer = sampled_success_prob(model, tok, answer_task, ex, n=800, max_new_tokens=40, seed=3)
    assert (mc_answer >= v - 4 * se_answer - 0.01).all()


def test_exact_value_matches_sampling_countdown_steps():
    """V(x) = sum over the enumerated rewarded set of pi(y|x) agrees with sampling."""
    task = make_task("countdown_steps", n_train=4, n_test=1, max_number=6)
    ex = task.examples("train")[:3]
    model, tok = _overfit(task, [dataclasses.replace(e, target=y) for e in ex for y in task.correct_set(e)],
                          steps=150)
    mass = torch.tensor([d["mass"] for d in exact_conditional_entropy(
        model, tok, [e.prompt for e in ex], [task.correct_set(e) for e in ex])], dtype=torch.float64)
    mc, se = sampled_success_prob(model, tok, task, ex, n=600, max_new_tokens=60, seed=5)
    assert (mass > 0.05).any(), mass
    assert ((mc - mass).abs() <= 4 * se + 0.01).all(), (mass, mc, se)
