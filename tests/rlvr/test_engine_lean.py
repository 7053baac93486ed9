"""The lean sampler (engines/lean.py): exact log-probs, the model's distribution, seeds, EOS/truncation/padding."""

import itertools
import math

import pytest
import torch
from scipy import stats

from rollwise.rlvr.compact import compact_for
from rollwise.rlvr.engines import make_engine
from rollwise.rlvr.engines.base import SamplingConfig
from rollwise.rlvr.engines.hf import HFEngine
from rollwise.rlvr.engines.lean import LeanEngine, sample_tokens
from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, response_logprobs, tiny_causal_lm


def _engine(charset=None, kv: int = 2, batch_size: int = 64):
    tok = char_tokenizer(charset)
    cfg = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=kv, intermediate_size=64)
    model = tiny_causal_lm(tok, cfg, seed=1).eval()
    return LeanEngine(model, tok, batch_size=batch_size), tok


def test_registered_and_selectable():
    engine, tok = _engine()
    assert isinstance(make_engine("lean", engine.model, tok), LeanEngine)
    assert isinstance(make_engine("hf", engine.model, tok), HFEngine)


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 1.0), (1.3, 0.8)])
def test_sampled_logprobs_equal_teacher_forced(temperature, top_p):
    engine, _ = _engine()
    prompts = ["1+2=", "123+456=", "7=", "1+2="]
    b = engine.generate(prompts, SamplingConfig(n=5, max_new_tokens=7, temperature=temperature, top_p=top_p), seed=3)
    assert b.size == 20 and b.group_ids.tolist() == [g for g in range(4) for _ in range(5)]
    with torch.no_grad():
        lp, _ = response_logprobs(engine.model, b.prompt_ids, b.prompt_mask, b.response_ids, b.response_mask,
                                  temperature=temperature, compact=False)  # transformers' own forward
    assert ((lp - b.rollout_logprobs) * b.response_mask).abs().max() < 1e-5
    assert (b.rollout_logprobs[b.response_mask == 0] == 0).all()


def test_eos_truncation_and_padding():
    engine, tok = _engine()
    b = engine.generate([f"{i}+{i}=" for i in range(30)], SamplingConfig(n=2, max_new_tokens=4), seed=5)
    eos, pad = tok.eos_token_id, tok.pad_token_id
    assert b.prompt_mask[:, -1].all()  # left padding: every prompt ends with a real token
    for row, mask, trunc, text in zip(b.response_ids.tolist(), b.response_mask.tolist(), b.truncated.tolist(),
                                      b.completions):
        n = int(sum(mask))
        assert mask == [1.0] * n + [0.0] * (len(mask) - n)
        assert row[n:] == [pad] * (len(row) - n)
        assert trunc == (eos not in row[:n])
        assert trunc == (n == b.response_ids.shape[1] and row[n - 1] != eos)
        assert text == tok.decode(row[:n], skip_special_tokens=True)
    assert b.truncated.any() and (~b.truncated).any()


def test_same_tokens_as_hf_engine_when_sampling_is_near_greedy():
    """At a near-zero temperature both engines pick the argmax: same tokens, masks, truncation and text."""
    lean, tok = _engine()
    hf = HFEngine(lean.model, tok)
    prompts = [f"{i}+{2 * i}=" for i in range(12)]
    s = SamplingConfig(n=2, max_new_tokens=6, temperature=1e-4)
    a, b = lean.generate(prompts, s, seed=1), hf.generate(prompts, s, seed=2)
    assert torch.equal(a.prompt_ids, b.prompt_ids) and torch.equal(a.prompt_mask, b.prompt_mask)
    w = max(a.response_ids.shape[1], b.response_ids.shape[1])
    pad = lambda t, v: torch.nn.functional.pad(t, (0, w - t.shape[1]), value=v)  # noqa: E731
    assert torch.equal(pad(a.response_ids, tok.pad_token_id), pad(b.response_ids, tok.pad_token_id))
    assert torch.equal(pad(a.response_mask, 0.0), pad(b.response_mask, 0.0))
    assert torch.equal(a.truncated, b.truncated) and a.completions == b.completions


def test_seeded_runs_are_bitwise_repeatable_and_chunking_invariant():
    engine, tok = _engine()
    prompts = [f"{i}+{i}=" for i in range(10)]
    s = SamplingConfig(n=3, max_new_tokens=5)
    a, b, c = (engine.generate(prompts, s, seed=k) for k in (7, 7, 8))
    assert torch.equal(a.response_ids, b.response_ids) and torch.equal(a.rollout_logprobs, b.rollout_logprobs)
    assert not torch.equal(a.response_ids, c.response_ids)


def test_stops_when_every_row_has_ended(monkeypatch):
    """Once every row has sampled EOS the loop ends: the batch is as wide as the longest response."""
    engine, tok = _engine()
    lm = compact_for(engine.model)
    plain = lm.logits
    calls = []

    def eos_after_two(hidden):
        out = plain(hidden)
        calls.append(1)
        if len(calls) >= 3:  # the third logits call (two tokens sampled): force EOS in every row
            out[:, tok.eos_token_id] += 1e4
        return out

    monkeypatch.setattr(lm, "logits", eos_after_two)
    b = engine.generate(["1+1=", "22+3="], SamplingConfig(n=4, max_new_tokens=50), seed=0)
    assert len(calls) <= 3 and b.response_ids.shape[1] <= 3
    assert (~b.truncated).all()


def _exact_distribution(model, tok, prompt: str, t_max: int) -> dict[tuple[int, ...], float]:
    """Every possible response (token tuple, EOS included when sampled) and its exact probability."""
    vocab = list(range(len(tok)))
    eos = tok.eos_token_id
    seqs = []
    for length in range(1, t_max + 1):
        for seq in itertools.product(vocab, repeat=length):
            if eos in seq[:-1] or (length < t_max and seq[-1] != eos):
                continue  # EOS ends a response; a shorter one must end with EOS
            seqs.append(seq)
    from rollwise.rlvr.models import encode_prompts

    pid, pm = encode_prompts(tok, [prompt] * len(seqs))
    resp = torch.tensor([list(s) + [tok.pad_token_id] * (t_max - len(s)) for s in seqs])
    mask = torch.tensor([[1.0] * len(s) + [0.0] * (t_max - len(s)) for s in seqs])
    with torch.no_grad():
        lp, _ = response_logprobs(model, pid, pm, resp, mask, compact=False)
    probs = (lp * mask).sum(-1).exp()
    assert abs(float(probs.sum()) - 1.0) < 1e-4
    return dict(zip(seqs, probs.tolist()))


def test_samples_follow_the_model_distribution():
    """Chi-square goodness of fit over an enumerable output space (6 tokens, up to 2 new tokens)."""
    engine, tok = _engine(charset=["a", "b"], kv=4)
    with torch.no_grad():  # sharpen the random model a little so that probabilities differ
        engine.model.lm_head.weight.mul_(8.0)
    exact = _exact_distribution(engine.model, tok, "ab", 2)
    b = engine.generate(["ab"], SamplingConfig(n=6000, max_new_tokens=2), seed=11)
    counts = dict.fromkeys(exact, 0)
    for row, mask in zip(b.response_ids.tolist(), b.response_mask.tolist()):
        counts[tuple(row[: int(sum(mask))])] += 1
    keys = [k for k in exact if exact[k] * 6000 >= 5]  # pool rare outcomes into one cell
    obs = [counts[k] for k in keys] + [6000 - sum(counts[k] for k in keys)]
    exp = [exact[k] * 6000 for k in keys] + [6000 * (1 - sum(exact[k] for k in keys))]
    assert len(keys) >= 5
    assert stats.chisquare(obs, exp).pvalue > 1e-3
    assert math.isclose(sum(exp), 6000, rel_tol=1e-4)


def test_top_p_keeps_the_smallest_nucleus():
    logprobs = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_tokens(logprobs, 0.75, gen) for _ in range(2000)]).flatten()
    assert set(draws.tolist()) == {0, 1}  # 0.5 + 0.3 >= 0.75: tokens 2 and 3 are outside
    draws = torch.stack([sample_tokens(logprobs, 0.45, gen) for _ in range(200)]).flatten()
    assert set(draws.tolist()) == {0}
