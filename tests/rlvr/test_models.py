import json

import pytest
import torch

from rollwise.rlvr.models import (
    TinyModelConfig,
    char_tokenizer,
    encode_completions,
    load_policy,
    save_policy,
    tiny_causal_lm,
)


def test_char_tokenizer_roundtrip_and_specials():
    tok = char_tokenizer()
    assert len(tok) == 99
    ids = tok("12+3=")["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == 6
    assert tok.decode(ids, skip_special_tokens=True) == "12+3="
    c_ids, c_mask = encode_completions(tok, ["15", "7"])
    assert c_ids[0].tolist()[-1] == tok.eos_token_id and c_mask[1].tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_tiny_model_save_load_roundtrip(tmp_path, arch):
    tok = char_tokenizer()
    cfg = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, arch=arch)
    model = tiny_causal_lm(tok, cfg, seed=3)
    save_policy(model, tok, tmp_path / "m", tiny=cfg)
    model2, tok2 = load_policy(tmp_path / "m")
    assert len(tok2) == len(tok) and tok2("9=")["input_ids"] == tok("9=")["input_ids"]
    x = torch.tensor([[1, 10, 20, 30]])
    assert torch.allclose(model(x).logits, model2(x).logits)
    assert json.loads((tmp_path / "m" / "rollwise_model.json").read_text())["char_tokenizer"] is True


def test_load_policy_offline_hub_id_is_clear(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        load_policy("some-org/some-model-that-is-not-here")
