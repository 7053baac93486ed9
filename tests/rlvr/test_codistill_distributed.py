"""Data-parallel CoDistill-GRPO (``train.parallel = "ddp"``): 2 gloo ranks make the same updates of BOTH models
as one process on the same global batch; only rank 0 writes; resume works; FSDP2 is refused clearly.

As in ``test_distributed.py``: the 2-rank runs go through ``job.run_training`` in processes spawned with
torchrun's environment variables, against 1-process references with ``train.rollout_shards=2`` (each shard
generates M rollouts per prompt, is scored by the large model and downsampled to G per prompt on its own).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_distributed import (
    BASE,
    _max_diff,
    _params,
    _stable,
    rank0_metrics_match_reference,
    run_as_rank,
    spawn_with_references,
)

from rollwise.config import ConfigError
from rollwise.rlvr import distributed
from rollwise.rlvr.checkpoint import latest_checkpoint, load_trainer_state
from rollwise.rlvr.codistill import build_large_policy
from rollwise.rlvr.job import run_training
from rollwise.rlvr.models import load_policy
from rollwise.rlvr.policy import build_policy
from rollwise.rlvr.run_config import resolve_config
from rollwise.runlog import read_jsonl

WORLD = 2
#: a 1-layer d=32 small model, a 2-layer d=48 large one, M=6 -> G=4 per prompt
CODISTILL = ["model.tiny.hidden_size=32", "model.tiny.num_layers=1", "model.tiny.num_heads=2",
             "model.tiny.intermediate_size=64", "codistill.large.tiny.hidden_size=48",
             "codistill.large.tiny.num_layers=2", "codistill.large.tiny.num_heads=2",
             "codistill.large.tiny.intermediate_size=96", "codistill.m=6", "codistill.g=4", "rollout.n=6"]
COMBOS = {
    # the large model scores all M rollouts; seq-mean-token-mean (the preset's), 2 mini-batches
    "alpha1": ["codistill.alpha=1", "train.mini_batches=2"],
    # r~ = r: each shard downsamples first and the large model scores only the kept rollouts; PPO-clip on
    # the cross-model ratio, token-mean, micro-batches
    "alpha0": ["codistill.alpha=0", "codistill.large_is_mode=ppo_clip", "algorithm.loss.agg_mode=token-mean",
               "train.micro_batch_size=5"],
    # the large model writes 2 hint tokens per prompt (each rank for its own prompts)
    "hints": ["codistill.alpha=1", "codistill.hint_tokens=2", "codistill.hint_epochs=1"],
}
RESUMED = "alpha1"  # also run as 1 step + resume to 2 steps


def _config(root: Path, name: str, *extra: str):
    # transformers' path (engine and both models' forward): this tests the data-parallel machinery. On the fast
    # path (lean engine, compact forward) the large model ended 3e-5 apart between 1 process and 2 ranks (measured,
    # cause not yet found; the plain DDP test, test_distributed, holds to 1e-5 on the fast path)
    return resolve_config(algorithm="codistill", overrides=[*BASE, "model.forward=hf", "codistill.large.forward=hf", "rollout.engine=hf", *CODISTILL,
                                                            *COMBOS[name.removesuffix("-resumed")],
                                                            *extra, f"run.output_dir={root / name}"])


def _keep_both(trainer, path: Path) -> None:
    torch.save({"small": trainer.policy.state_dict(), "large": trainer.extra.large.policy.state_dict()}, path)


def _worker(rank: int, port: int, root: str) -> None:
    run_as_rank(rank, port, root, _config, COMBOS, RESUMED, _keep_both)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Spawn the 2-rank runs and, meanwhile, run the 1-process references (train.rollout_shards=2)."""
    return spawn_with_references(tmp_path_factory.mktemp("codistill_ddp"), _worker, _config, COMBOS)


def _checkpointed(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Both models of the run's last checkpoint: the small one's folder, the large one in the trainer state."""
    ckpt = latest_checkpoint(run_dir)
    return {"small": load_policy(ckpt)[0].state_dict(), "large": load_trainer_state(ckpt)["large"]["weights"]}


@pytest.mark.integration
@pytest.mark.parametrize("name", list(COMBOS))
def test_two_ranks_equal_one_process_for_both_models(runs, name):
    r0, r1 = (_params(runs / "params" / f"{name}-rank{r}.pt") for r in range(WORLD))
    ref = _checkpointed(runs / "ref" / name)
    cfg = _config(runs, name)
    init = {"small": build_policy(cfg, None, warm_up=False)[0].state_dict(),
            "large": build_large_policy(cfg, None, warm_up=False)[0].state_dict()}
    ours = _checkpointed(runs / name)
    report = []
    for model in ("small", "large"):
        assert _max_diff(r0[model], r1[model]) == 0.0, f"the ranks' {model} parameters must stay identical"
        assert _max_diff(ours[model], r0[model]) == 0.0, f"rank 0's checkpoint holds its {model} model"
        moved = _max_diff(ref[model], init[model])
        assert moved > 1e-3, f"training must move the {model} model (moved {moved:.2e}); the check is vacuous"
        diff = _max_diff(r0[model], ref[model])
        report.append(f"{model} {diff:.2e} (moved {moved:.2e})")
        assert diff < 1e-5, (model, diff)
    print(f"{name}: max |theta_2ranks - theta_1proc|: " + ", ".join(report))
    dist_recs = rank0_metrics_match_reference(runs, name)
    step1 = dist_recs[1]
    assert step1["rollouts"] == 8 * 4 and step1["rollouts_total"] == 8 * 6  # G kept, M generated per prompt
    if name == "hints":
        assert step1["large/generated_tokens"] > 0  # both ranks' hint tokens, counted once
    else:
        assert step1["large/generated_tokens"] == 0
    assert step1["large/candidate_rows"] == 8 * (6 if name != "alpha0" else 4)


@pytest.mark.integration
def test_only_rank_zero_writes_and_resume_continues_exactly(runs):
    writes = [torch.load(runs / "params" / f"writes-rank{r}.pt") for r in range(WORLD)]
    assert writes[1] == [], f"rank 1 wrote {writes[1]}"
    assert writes[0].count("metrics") == len(COMBOS) + 2 and "checkpoint" in writes[0]
    for name in COMBOS:
        assert not (runs / name / "large").exists()  # the large trainer writes nothing of its own
    full = _params(runs / "params" / f"{RESUMED}-rank0.pt")
    for r in range(WORLD):
        resumed = _params(runs / "params" / f"{RESUMED}-resumed-rank{r}.pt")
        for model in ("small", "large"):
            assert _max_diff(resumed[model], full[model]) == 0.0, (r, model)
    a = _stable(read_jsonl(runs / RESUMED / "metrics.jsonl"))
    b = _stable(read_jsonl(runs / f"{RESUMED}-resumed" / "metrics.jsonl"))
    assert [r["step"] for r in b] == [0, 1, 2]
    assert a[2] == b[2]


def test_fsdp2_with_codistill_fails_naming_the_supported_mode(tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "current", lambda: distributed.DataParallel(rank=0, world_size=2))
    cfg = _config(tmp_path, "alpha1", "train.parallel=fsdp2")
    with pytest.raises(ConfigError, match=r"train\.parallel='fsdp2'.*only with train\.parallel='ddp'"):
        run_training(cfg)
    assert not (tmp_path / "alpha1").exists()  # refused before anything is built or written
