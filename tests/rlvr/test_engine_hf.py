import torch

from rollwise.rlvr.engines.base import SamplingConfig
from rollwise.rlvr.engines.hf import HFEngine, response_mask_from_ids
from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, sequence_logprobs, tiny_causal_lm


def _engine():
    tok = char_tokenizer()
    model = tiny_causal_lm(tok, TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64))
    return HFEngine(model, tok, batch_size=16), tok


def test_mask_up_to_first_eos():
    resp = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8]])
    mask, trunc = response_mask_from_ids(resp, eos_id=2)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert trunc.tolist() == [False, True]


def test_generate_shapes_groups_and_logprobs_match_trainer():
    engine, tok = _engine()
    prompts = ["1+2=", "123+456=", "7="]
    b = engine.generate(prompts, SamplingConfig(n=3, max_new_tokens=5), seed=1)
    assert b.size == 9 and b.group_ids.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert b.prompts[3] == "123+456="
    # left padding: every prompt row ends with a real token
    assert b.prompt_mask[:, -1].all()
    # logprobs of the engine equal a teacher-forced pass (same precision) on valid tokens
    ids, mask = b.sequences()
    lp, _ = sequence_logprobs(engine.model, ids, mask, b.response_ids.shape[1])
    assert torch.allclose(lp * b.response_mask, b.rollout_logprobs, atol=1e-4)
    assert (b.rollout_logprobs[b.response_mask == 0] == 0).all()
    # truncated rows have no EOS and a full mask
    for row, trunc, m in zip(b.response_ids, b.truncated, b.response_mask):
        assert bool(trunc) == (tok.eos_token_id not in row.tolist())
        if trunc:
            assert m.sum() == b.response_ids.shape[1]


def test_generation_is_seeded_and_chunking_invariant():
    engine, _ = _engine()
    prompts = [f"{i}+{i}=" for i in range(20)]
    a = engine.generate(prompts, SamplingConfig(n=2, max_new_tokens=4), seed=7)
    b = engine.generate(prompts, SamplingConfig(n=2, max_new_tokens=4), seed=7)
    c = engine.generate(prompts, SamplingConfig(n=2, max_new_tokens=4), seed=8)
    assert torch.equal(a.response_ids, b.response_ids)
    assert not torch.equal(a.response_ids, c.response_ids)
