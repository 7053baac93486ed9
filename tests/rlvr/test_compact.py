"""The compact forward (rlvr/compact.py) against transformers' forward: logits, log-probs and gradients."""

import pytest
import torch

from rollwise.rlvr.compact import CompactLM, compact_for, compact_support
from rollwise.rlvr.models import (
    TinyModelConfig,
    char_tokenizer,
    encode_prompts,
    position_ids_from_mask,
    response_logprobs,
    sequence_logprobs,
    tiny_causal_lm,
)

PROMPTS = ["12+345=", "9+9=", "123+456=", "9+9=", "7="]  # repeated and differently long prompts


def _model(arch: str = "qwen2", kv: int = 2):
    tok = char_tokenizer()
    cfg = TinyModelConfig(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=kv, intermediate_size=96, arch=arch)
    return tiny_causal_lm(tok, cfg, seed=3), tok


def _batch(tok, t: int = 5, seed: int = 0):
    pid, pm = encode_prompts(tok, PROMPTS)
    gen = torch.Generator().manual_seed(seed)
    resp = torch.randint(4, 60, (len(PROMPTS), t), generator=gen)
    mask = torch.ones(len(PROMPTS), t)
    mask[1, 3:] = 0  # a shorter response, right-padded
    resp[1, 3:] = tok.pad_token_id
    return pid, pm, resp, mask


@pytest.mark.parametrize("arch,kv", [("qwen2", 2), ("qwen2", 4), ("llama", 2)])
def test_logits_equal_hf(arch, kv):
    model, tok = _model(arch, kv)
    pid, pm, resp, _ = _batch(tok)
    ids = torch.cat([pid, resp], 1)
    mask = torch.cat([pm, torch.ones_like(resp)], 1)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
        ours = CompactLM(model).response_logits(pid, pm, resp)
    want = ref[:, pid.shape[1] - 1 : -1]  # the logits that predict each response token
    assert ours.shape == want.shape
    assert (ours - want).abs().max() < 1e-5


def test_response_logprobs_and_gradients_equal_hf():
    model, tok = _model()
    pid, pm, resp, rmask = _batch(tok)
    model.train()
    lp_hf, ent_hf = response_logprobs(model, pid, pm, resp, rmask, temperature=0.7, with_entropy=True, compact=False)
    ((lp_hf * rmask).sum() + (ent_hf * rmask).sum()).backward()
    g_hf = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    lp, ent = response_logprobs(model, pid, pm, resp, rmask, temperature=0.7, with_entropy=True, compact=True)
    ((lp * rmask).sum() + (ent * rmask).sum()).backward()
    assert ((lp - lp_hf) * rmask).abs().max() < 1e-5
    assert ((ent - ent_hf) * rmask).abs().max() < 1e-5
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, g_hf[name], atol=1e-5, rtol=1e-4), name


def test_trailing_padding_columns_are_zero_and_not_needed():
    model, tok = _model()
    pid, pm, resp, rmask = _batch(tok, t=5)
    wide = torch.cat([resp, torch.zeros(len(PROMPTS), 3, dtype=torch.long)], 1)
    wide_mask = torch.cat([rmask, torch.zeros(len(PROMPTS), 3)], 1)
    with torch.no_grad():
        a, _ = response_logprobs(model, pid, pm, resp, rmask)
        b, _ = response_logprobs(model, pid, pm, wide, wide_mask)
    assert torch.equal(b[:, :5], a) and (b[:, 5:] == 0).all()


def test_sees_parameter_updates_without_grad():
    """The fused weights are cached under no_grad; an in-place optimizer step must invalidate them."""
    model, tok = _model()
    pid, pm, resp, _ = _batch(tok)
    lm = compact_for(model)
    with torch.no_grad():
        before = lm.response_logits(pid, pm, resp)
        for p in model.parameters():
            p.add_(0.01)
        after = lm.response_logits(pid, pm, resp)
        ids = torch.cat([pid, resp], 1)
        mask = torch.ones_like(ids)
        mask[:, : pid.shape[1]] = pm
        ref = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
    assert not torch.allclose(before, after)
    assert (after - ref[:, pid.shape[1] - 1 : -1]).abs().max() < 1e-5


def test_unsupported_models_are_reported():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50))
    assert "gpt2" in compact_support(model)
    assert compact_for(model) is None
    with pytest.raises(ValueError, match="compact forward cannot run"):
        CompactLM(model)


@pytest.mark.parametrize("change,reason", [({"mlp_bias": True}, "MLP biases"), ({"attention_dropout": 0.1}, "dropout"),
                                           ({"use_sliding_window": True}, "sliding")])
def test_configurations_it_does_not_compute_are_refused(change, reason):
    model, _ = _model("llama" if "mlp_bias" in change else "qwen2")
    for key, value in change.items():
        setattr(model.config, key, value)
    assert reason in compact_support(model)


def test_response_logprobs_falls_back_for_unsupported_models():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=99)).eval()
    tok = char_tokenizer()
    pid, pm, resp, rmask = _batch(tok)
    with torch.no_grad():
        a, _ = response_logprobs(model, pid, pm, resp, rmask, compact=True)
        ids, mask = torch.cat([pid, resp], 1), torch.cat([pm, rmask.long()], 1)
        b, _ = sequence_logprobs(model, ids, mask, resp.shape[1])
    assert torch.equal(a, b)


def test_the_cache_does_not_keep_models_alive():
    import gc
    import weakref

    model, tok = _model()
    assert compact_for(model) is compact_for(model)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("repeat", [1, 4])  # 1: one pass over whole sequences; 4: each distinct prompt run once
def test_both_paths_give_hf_logprobs_and_gradients(repeat):
    model, tok = _model()
    pid, pm, resp, rmask = _batch(tok)
    pid, pm = pid.repeat_interleave(repeat, 0), pm.repeat_interleave(repeat, 0)
    gen = torch.Generator().manual_seed(1)
    resp = torch.randint(4, 60, (pid.shape[0], 6), generator=gen)
    rmask = torch.ones_like(resp, dtype=torch.float)
    model.train()
    grads = []
    for compact in (False, True):
        model.zero_grad(set_to_none=True)
        lp, _ = response_logprobs(model, pid, pm, resp, rmask, compact=compact)
        lp.sum().backward()
        grads.append((lp.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (ref, g_ref), (ours, g_ours) = grads
    assert (ours - ref).abs().max() < 1e-5
    for name in g_ref:
        assert torch.allclose(g_ours[name], g_ref[name], atol=1e-5, rtol=1e-4), name


def test_repeated_prompts_are_picked_without_index_put_in_the_backward():
    """Rows that share a prompt pick its keys, values and last hidden state with index_select, whose backward
    (index_add_) sums the repeated rows in a fixed order. ``x[rows]`` backpropagates through
    index_put_(accumulate=True), which on CPU with several threads adds with atomics in a run-dependent order:
    the default job (all cores) then differed between runs from its second RL step on."""
    model, tok = _model()
    pid, pm = encode_prompts(tok, [p for p in PROMPTS[:3] for _ in range(4)])  # 4 rollouts per prompt
    resp = torch.randint(4, 60, (12, 5), generator=torch.Generator().manual_seed(0))
    logp, _ = response_logprobs(model, pid, pm, resp, torch.ones(12, 5))
    seen, stack = set(), [logp.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack += [n for n, _ in node.next_functions]
    names = {type(n).__name__ for n in seen}
    assert "IndexSelectBackward0" in names  # the repeated-prompt path ran
    assert not any(n.startswith(("IndexBackward", "IndexPutBackward")) for n in names), names
