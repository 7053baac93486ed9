"""rollwise's tasks and verifiers inside the REAL TRL (trl 1.16.0, CPU): data set, rewards, a GRPOTrainer run."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

pytest.importorskip("trl")

from transformers import GenerationConfig  # noqa: E402
from trl import GRPOConfig  # noqa: E402

from rollwise.rlvr.integrations import trl as rt  # noqa: E402
from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, tiny_causal_lm  # noqa: E402
from rollwise.rlvr.rewards import exact_answer, func_name  # noqa: E402
from rollwise.rlvr.sft import supervised_warm_start  # noqa: E402
from rollwise.rlvr.tasks import Add3, collate_columns, make_task  # noqa: E402

pytestmark = pytest.mark.integration  # spawned processes, Ray, TRL or a whole quick repro

torch.set_num_threads(1)
TASKS = {"add3": dict(n_train=8, n_test=4), "countdown": dict(n_train=8, n_test=4), "make_n": {},
         "reverse": dict(n_train=8, n_test=4)}


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


def trl_kwargs(rows, repeat):
    """The keyword columns GRPOTrainer._calculate_rewards builds: every column but prompt, one value per completion."""
    keys = [k for k in rows[0] if k not in ("prompt", "completion", "completion_ids")]
    return {k: [row[k] for row in rows for _ in range(repeat)] for k in keys}


def ids_of(tok, text, eos):
    """completion_ids as TRL passes them: the generated ids, cut after the first EOS."""
    return tok(text, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if eos else [])


@pytest.mark.parametrize("name", sorted(TASKS))
def test_dataset_and_rewards_match_rollwise(name, tok):
    task = make_task(name, **TASKS[name])
    examples = task.examples("test")[:4]
    ds = rt.task_dataset(task, "test")
    assert ds.column_names == ["prompt", *collate_columns(examples)]
    rows = [ds[i] for i in range(len(examples))]
    assert [r["prompt"] for r in rows] == [ex.prompt for ex in examples]
    # per example: its correct target (finished), the same target cut off by the length limit, a wrong answer
    completions = [c for ex in examples for c in (ex.target, ex.target, ex.target + "0")]
    eos = [True, False, True] * len(examples)
    completion_ids = [ids_of(tok, c, e) for c, e in zip(completions, eos)]
    assert tok.batch_decode(completion_ids, skip_special_tokens=True) == completions  # EOS is gone after decoding
    prompts = [ex.prompt for ex in examples for _ in range(3)]
    trl_fns, own_fns = rt.reward_funcs(task, tok), task.reward_funcs()
    assert [f.__name__ for f in trl_fns] == [func_name(f) for f in own_fns]
    for trl_fn, own in zip(trl_fns, own_fns, strict=True):
        got = trl_fn(prompts=prompts, completions=completions, completion_ids=completion_ids,
                     **trl_kwargs(rows, 3), trainer_state=None, log_extra=lambda *a: None, log_metric=lambda *a: None)
        want = own(prompts=prompts, completions=completions, truncated=[not e for e in eos],
                   **collate_columns(examples, repeat=3))
        assert got == want
    got = trl_fns[0](prompts=prompts, completions=completions, completion_ids=completion_ids, **trl_kwargs(rows, 3))
    assert got[0::3] == [1.0] * len(examples)  # the verifier accepts the targets...
    assert got[1::3] == [0.0] * len(examples)  # ...but not when truncated
    assert got[2::3] == [0.0] * len(examples)


def test_truncated_correct_completion_scores_zero(tok):
    task = make_task("add3", **TASKS["add3"])
    fn = rt.reward_funcs(task, tok)[0]
    assert fn.__name__ == "exact_answer"
    ids = [ids_of(tok, "579", True), ids_of(tok, "579", False), []]
    assert tok.batch_decode(ids[:2], skip_special_tokens=True) == ["579", "579"]
    assert fn.truncated(ids) == [False, True, True]
    values = fn(prompts=["123+456="] * 3, completions=["579", "579", ""], completion_ids=ids, answer=["579"] * 3)
    assert values == [1.0, 0.0, 0.0]
    # a truncated column from elsewhere (e.g. a rollout_func) can only add truncation
    values = fn(prompts=["123+456="] * 2, completions=["579"] * 2, completion_ids=ids[:2], answer=["579"] * 2,
                truncated=[True, False])
    assert values == [0.0, 0.0]


def test_fails_closed_without_truncation_info_and_on_messages(tok):
    fn = rt.reward_funcs("add3", tok)[0]
    with pytest.raises(ValueError, match="neither completion_ids nor truncated"):
        fn(prompts=["1+2="], completions=["3"], answer=["3"])
    assert fn(prompts=["1+2="], completions=["3"], answer=["3"], truncated=[False]) == [1.0]
    with pytest.raises(TypeError, match="conversational"):
        fn(prompts=[[{"role": "user", "content": "1+2="}]], completions=[[{"role": "assistant", "content": "3"}]],
           completion_ids=[[5, 2]], answer=["3"])


def test_eos_ids_follow_the_generation_config(tok, tmp_path):
    gen = GenerationConfig(eos_token_id=[tok.eos_token_id, 7])
    assert rt.eos_token_ids(tok) == [tok.eos_token_id]
    assert rt.eos_token_ids(tok, gen) == [tok.eos_token_id, 7]
    gen.save_pretrained(tmp_path)
    assert rt.eos_token_ids(tok, str(tmp_path)) == [tok.eos_token_id, 7]
    assert rt.eos_token_ids(tok, str(tmp_path / "none")) == [tok.eos_token_id]
    fn = rt.reward_funcs("add3", tok, gen)[0]
    assert fn.truncated([[5, 7], [5, tok.eos_token_id], [5, 6]]) == [False, False, True]


def test_pop_metrics_go_to_log_metric():
    def scored(prompts, completions, **kwargs):
        return [float(not t) for t in kwargs["truncated"]]

    scored.pop_metrics = lambda: {"parse_failures": 2}
    fn = rt.TRLReward(scored, [2])
    logged = []
    assert fn(prompts=["p", "p"], completions=["a", "b"], completion_ids=[[4, 2], [4]],
              log_metric=lambda k, v: logged.append((k, v))) == [1.0, 0.0]
    assert dict(logged) == {"reward/scored/errors": 0.0, "reward/scored/timeouts": 0.0,
                            "reward/scored/parse_failures": 2.0}


def test_a_verifier_that_raises_or_hangs_is_contained_and_counted():
    """rollwise's containment under TRL: the call scores 0, TRL's step goes on, the failure is logged."""
    import time

    def broken(prompts, completions, **kwargs):
        raise RuntimeError("verifier bug")

    def hangs(prompts, completions, **kwargs):
        time.sleep(5)
        return [1.0] * len(completions)

    for func, key in ((broken, "errors"), (hangs, "timeouts")):
        logged = {}
        fn = rt.TRLReward(func, [2], timeout_s=0.3)
        values = fn(prompts=["p", "p"], completions=["a", "b"], completion_ids=[[4, 2], [4, 2]],
                    log_metric=lambda k, v, d=logged: d.__setitem__(k, v))
        assert values == [0.0, 0.0]
        assert logged[f"reward/{func.__name__}/{key}"] == 1.0


def test_import_is_lazy_and_names_the_install(monkeypatch):
    code = ("import sys, rollwise, rollwise.rlvr.integrations.trl as t; t.task_dataset('add3', 'test'); "
            "assert 'trl' not in sys.modules, 'trl imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    monkeypatch.setitem(sys.modules, "trl", None)
    with pytest.raises(ImportError, match="pip install"):
        rt.reward_funcs("add3", char_tokenizer())


def test_grpo_trainer_runs_on_add3(tok, tmp_path, monkeypatch):
    calls = []

    def spy(prompts, completions, **kwargs):
        values = exact_answer(prompts, completions, **kwargs)
        calls.append((completions, kwargs["answer"], kwargs["truncated"], values))
        return values

    spy.__name__ = "exact_answer"
    monkeypatch.setattr(Add3, "reward_funcs", lambda self: [spy])
    task = make_task("add3", max_operand=9, n_train=16, n_test=4)
    model = tiny_causal_lm(tok, TinyModelConfig())
    sft = task.sft_examples(256, seed=0)  # a short warm start, so that rewards vary within a group
    supervised_warm_start(model, tok, [e.prompt for e in sft], [e.target for e in sft], steps=60, batch_size=32,
                          lr=3e-3, seed=0)
    # 2 new tokens: a sum >= 10 has no room for its EOS, so a correct-looking "1x" is always truncated
    args = GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=2, learning_rate=1e-4, bf16=False, activation_checkpointing=False,
                      use_vllm=False, report_to=[], logging_steps=1, save_strategy="no", seed=0, use_cpu=True)
    trainer = rt.grpo_trainer(task, model, tok, args)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logs) == 3 and len(calls) == 3
    assert any(h["grad_norm"] > 0 for h in logs)
    for h, (completions, _, truncated, values) in zip(logs, calls):
        assert len(completions) == 8
        assert h["rewards/exact_answer/mean"] == pytest.approx(sum(values) / 8)
        assert h["completions/clipped_ratio"] == pytest.approx(sum(truncated) / 8)  # TRL's own count agrees
        assert all(t for c, t in zip(completions, truncated) if len(c) == 2)
    seen = [(c, a, t, v) for cs, as_, ts, vs in calls for c, a, t, v in zip(cs, as_, ts, vs)]
    assert any(c == a and t and v == 0.0 for c, a, t, v in seen)  # the pitfall happened and scored 0
    assert any(v == 1.0 for *_, v in seen)
