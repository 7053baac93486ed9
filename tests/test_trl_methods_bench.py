"""benchmarks/trl_methods.py: TRL + BASIS (n=1) vs TRL + GRPO (n=8), both arms on a tiny model."""

from __future__ import annotations

import argparse

import pytest
import torch

pytest.importorskip("trl")

from rollwise.cli import BENCHES, load_benchmark  # noqa: E402
from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, tiny_causal_lm  # noqa: E402
from rollwise.rlvr.tasks import make_task  # noqa: E402


def test_both_arms_run_count_rollouts_and_summarise(tmp_path):
    torch.set_num_threads(1)
    bench = load_benchmark("trl_methods")
    args = argparse.Namespace(steps=2, rollouts_per_step=16, train_prompts=16, test_prompts=8, offline_rollouts=2,
                              lr=1e-4, eval_every=1, seeds="0", out=str(tmp_path))
    tok = char_tokenizer()
    torch.manual_seed(0)
    policy0 = tiny_causal_lm(tok, TinyModelConfig())
    task = make_task("add3", max_operand=9, n_train=16, n_test=8)
    runs = {0: {arm: bench.run_arm(arm, 0, args, policy0, tok, task) for arm in bench.ARMS}}
    basis, grpo = runs[0]["TRL + BASIS (n=1)"], runs[0]["TRL + GRPO (n=8)"]
    assert basis["step"] == grpo["step"] == [0, 1, 2]
    assert basis["offline_rollouts"] == 16 * 2 and grpo["offline_rollouts"] == 0
    assert basis["rollouts"] == [0, 16 + 32, 32 + 32] and grpo["rollouts"] == [0, 16, 32]
    assert basis["acc"][0] == grpo["acc"][0]  # the same pi_0
    assert all(w >= 0 for w in basis["wall"]) and basis["wall_total"] > 0
    payload, md = bench.summarise(runs, [0], args, 1.0)
    assert [r["arm"] for r in payload["summary"]] == list(bench.ARMS)
    assert "| TRL + BASIS (n=1) | 16 |" in md and "| TRL + GRPO (n=8) | 2 |" in md


def test_registered_in_cli():
    assert BENCHES["trl-methods"] == "trl_methods.py"
