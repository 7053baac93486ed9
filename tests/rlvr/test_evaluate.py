import copy
import itertools
import math
from types import SimpleNamespace

import pytest
import torch

from rollwise.rlvr.evaluate import (
    evaluate_sampled,
    exact_success_prob,
    maj_at_k,
    majority_vote,
    mean_at_k,
    mean_pass_at_k,
    pass_at_k,
)
from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, tiny_causal_lm
from rollwise.rlvr.tasks import make_task


@pytest.mark.parametrize("n", range(1, 8))
def test_pass_at_k_matches_brute_force_over_subsets(n):
    for c in range(n + 1):
        samples = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))
            brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)
            assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_at_k_edges_and_errors():
    assert pass_at_k(64, 0, 64) == 0.0 and pass_at_k(64, 1, 64) == 1.0 and pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert 0.0 < pass_at_k(2000, 1, 10) < 1.0  # stable for large n
    with pytest.raises(ValueError, match="k=5 > n=4"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 0)


def test_mean_pass_at_k():
    correct = [[True, False, False, False], [False] * 4, [True] * 4]
    assert mean_pass_at_k(correct, 1) == pytest.approx((0.25 + 0 + 1) / 3)
    assert mean_pass_at_k(correct, 4) == pytest.approx(2 / 3)


def test_maj_at_k_tie_breaking_and_abstentions():
    assert majority_vote(["a", "b", "b", "a"]) == "a"  # tie -> first occurrence
    assert majority_vote([None, "b", None, None]) == "b"  # None abstains
    assert majority_vote([None, None]) is None
    answers = [["1", "2", "2", "9"], ["5", None, "3", "3"], [None, None, "7", "7"]]
    assert maj_at_k(answers, ["2", "3", "7"], k=4) == 1.0
    assert maj_at_k(answers, ["2", "3", "7"], k=1) == 0.0  # first samples: "1", "5", abstain
    assert maj_at_k(answers, ["1", "5", "7"], k=2) == pytest.approx(2 / 3)  # tie "1"/"2" -> "1"
    with pytest.raises(ValueError, match="k=5"):
        maj_at_k(answers, ["2", "3", "7"], k=5)


def test_mean_at_k():
    assert mean_at_k([[1, 0, 1, 1], [0, 0, 0, 1]], 2) == pytest.approx(0.25)
    assert mean_at_k([[1, 0, 1, 1], [0, 0, 0, 1]], 4) == pytest.approx(0.5)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread, especially on a shared machine."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    tok = char_tokenizer()
    model = tiny_causal_lm(tok, TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                                                max_positions=32), seed=0)
    with torch.no_grad():  # sharpen the random model so probabilities are not all ~1/99
        model.get_output_embeddings().weight.mul_(8.0)
    return model, tok


def manual_success_prob(model, tok, prompt, completion, temperature):
    """prod_t softmax(logits/T)[y_t] by an explicit loop over prefixes, no padding."""
    ids = tok(prompt, add_special_tokens=True)["input_ids"]
    target = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    logp = 0.0
    with torch.no_grad():
        for y in target:
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1] / temperature
            logp += torch.log_softmax(logits.double(), -1)[y].item()
            ids = ids + [y]
    return math.exp(logp)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_exact_success_prob_equals_stepwise_product(tiny, temperature):
    model, tok = tiny
    prompts = ["12+3=", "999+999=", "7="]
    completions = ["15", "1998", "3*4-5"]
    v = exact_success_prob(model, tok, prompts, completions, temperature=temperature, batch_size=2)
    manual = [manual_success_prob(model, tok, p, c, temperature) for p, c in zip(prompts, completions)]
    assert v.shape == (3,) and v.dtype == torch.float32
    assert v.tolist() == pytest.approx(manual, rel=1e-4)
    logv = exact_success_prob(model, tok, prompts, completions, temperature=temperature, log=True)
    assert logv.exp().tolist() == pytest.approx(v.tolist(), rel=1e-5)


def test_exact_success_prob_rejects_right_padding(tiny):
    model, tok = tiny
    tok = copy.deepcopy(tok)
    tok.padding_side = "right"
    with pytest.raises(ValueError, match="pad on the left"):
        exact_success_prob(model, tok, ["1+1="], ["2"])


def fit_one(model, tok, prompt, completion, until=0.3):
    """A few SFT steps on one (prompt, completion) until V is moderate: a forced easy target."""
    ids = tok([prompt], return_tensors="pt")["input_ids"]
    target = torch.tensor([tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]])
    seq = torch.cat([ids, target], dim=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(200):
        v = exact_success_prob(model, tok, [prompt], [completion]).item()
        if v > until:
            break
        model.train()
        logits = model(input_ids=seq).logits[0, ids.shape[1] - 1 : -1]
        loss = torch.nn.functional.cross_entropy(logits, target[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return v, ids, target


def test_exact_success_prob_matches_sampling(tiny):
    """Monte-Carlo check: ancestral sampling at T=1 returns the completion then EOS with probability V."""
    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    v, ids, target = fit_one(model, tok, "5+4=", "9")
    assert 0.3 < v < 0.98  # the check has power
    n = 4000
    with torch.no_grad():
        out = model.generate(ids.repeat(n, 1), attention_mask=torch.ones_like(ids).repeat(n, 1), do_sample=True,
                             top_k=0, top_p=1.0, temperature=1.0, max_new_tokens=3,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    new = out[:, ids.shape[1]:]
    hits = ((new[:, 0] == target[0, 0]) & (new[:, 1] == tok.eos_token_id)).float().mean().item()
    assert abs(hits - v) < 4 * math.sqrt(v * (1 - v) / n)


def test_evaluate_sampled_agrees_with_exact_value(tiny):
    task = make_task("add3", max_operand=3, n_train=2, n_test=1, seed=0)
    ex = task.examples("test")[0]
    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    v, _, _ = fit_one(model, tok, ex.prompt, ex.answer)
    rollout = SimpleNamespace(engine="hf", engine_params={}, batch_size=512, temperature=1.0, top_p=1.0,
                              max_new_tokens=4)
    cfg = SimpleNamespace(rollout=rollout, task=SimpleNamespace(reward_timeout_s=10.0, reward_isolation="thread"))
    n = 400
    out = evaluate_sampled(model, tok, task, cfg, n=n, ks=(1, 4, 400), seed=0)
    assert out["eval/exact_accuracy"] == pytest.approx(v, rel=1e-5)
    assert abs(out["eval/pass@1"] - v) < 4 * math.sqrt(v * (1 - v) / n)
    assert out["eval/pass@1"] <= out["eval/pass@4"] <= out["eval/pass@400"] == 1.0
    assert out["eval/reward_failures"] == 0 and out["eval/prompts"] == 1
    with pytest.raises(ValueError, match="k must be in"):
        evaluate_sampled(model, tok, task, cfg, n=4, ks=(8,))
