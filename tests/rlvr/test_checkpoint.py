import torch

from rollwise.rlvr.checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint
from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, tiny_causal_lm


def test_atomic_checkpoints_keep_latest_and_prune(tmp_path):
    tok = char_tokenizer()
    model = tiny_causal_lm(tok, TinyModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32))
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, tok, {"x": step}, keep=2)
    dirs = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert dirs == ["step-000002", "step-000003"]
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt.name == "step-000003"
    state = load_trainer_state(ckpt)
    assert state["x"] == 3 and state["step"] == 3 and "rng" in state


def test_half_written_checkpoint_is_ignored(tmp_path):
    tok = char_tokenizer()
    model = tiny_causal_lm(tok, TinyModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32))
    save_checkpoint(tmp_path, 5, model, tok, {}, keep=2)
    # a crash mid-write leaves only a temporary folder; the pointer still names step 5
    (tmp_path / "checkpoints" / ".tmp-step-000010-1").mkdir()
    (tmp_path / "checkpoints" / "step-000010").mkdir()  # no trainer_state: incomplete
    (tmp_path / "checkpoints" / "latest").write_text("step-000010")
    assert latest_checkpoint(tmp_path).name == "step-000005"
    torch.manual_seed(0)
