"""FSDP2 training (``train.parallel = "fsdp2"``, ``distributed.shard_model``): 2 gloo ranks with sharded
parameters and optimizer state make the same updates as one process on the same global batch; rank 0
checkpoints the full weights in the usual format; resume works; a bad value of the flag fails clearly.

As in ``test_distributed.py``: the 2-rank runs go through ``job.run_training`` in processes spawned
with torchrun's environment variables, against 1-process references with ``train.rollout_shards=2``.
"""

from __future__ import annotations

import os
import subprocess
import sys
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
from rollwise.rlvr.models import load_policy
from rollwise.rlvr.policy import build_policy
from rollwise.rlvr.run_config import resolve_config
from rollwise.runlog import read_jsonl

WORLD = 2
COMBOS = {
    # 2 mini-batches of micro-batches of 4: the ranks' rows per mini-batch differ, so the rank with fewer
    # micro-batches runs zero-gradient passes (``microbatch.zero_backward``) to keep FSDP2's collectives
    # aligned
    "grpo-token-micro": ["algorithm.estimator=grpo", "algorithm.loss.agg_mode=token-mean",
                         "train.mini_batches=2", "train.micro_batch_size=4"],
    # a KL term: the (unsharded) reference policy scores each rank's shard
    "rpp-seq-kl": ["algorithm.estimator=reinforce_pp", "algorithm.loss.agg_mode=seq-mean-token-sum",
                   "algorithm.loss.kl_coef=0.1"],
    # the offline stage runs on rank 0 alone (it must not touch the sharded policy)
    "basis": ["algorithm.estimator=basis", "rollout.n=1", "algorithm.estimator_params.offline_rollouts=2",
              "algorithm.estimator_params.folds=4"],
}
RESUMED = "grpo-token-micro"  # also run as 1 step + resume to 2 steps
FSDP = "train.parallel=fsdp2"


def _config(root: Path, name: str, *extra: str):
    # transformers' forward on both sides: the sharded policy cannot run the compact forward (it falls back), so
    # with model.forward=compact the 1-process reference would use another kernel than the 2 ranks (1.6e-5 apart)
    return resolve_config(overrides=[*BASE, "model.forward=hf", *COMBOS[name.removesuffix("-resumed")], *extra,
                                     f"run.output_dir={root / name}"])


def _keep_gathered(trainer, path: Path) -> None:
    """The gathered parameters (a collective: both ranks) and this rank's shard sizes."""
    assert distributed.is_sharded(trainer.policy) and trainer.dp.sharded
    full = distributed.full_state_dict(trainer.policy)
    torch.save(full, path)
    local = {"params": sum(p.to_local().numel() for p in trainer.policy.parameters()),
             # lm_head.weight is tied to embed_tokens.weight: one parameter
             "full": sum(v.numel() for k, v in full.items() if k != "lm_head.weight"),
             "adam": sum(s["exp_avg"].to_local().numel() for s in trainer.optimizer.state.values())}
    torch.save(local, path.with_name(path.name.replace("-rank", "-sizes-rank")))


def _worker(rank: int, port: int, root: str) -> None:
    """One rank: every combination with FSDP2, then a resumed run; zero-gradient passes are counted."""
    import rollwise.rlvr.trainer as tr

    zero_passes, zero_backward, update = [], tr.zero_backward, tr.Trainer.update

    def update_counting_zero_passes(self, batch, step):
        def counted_zero_backward(policy, mb, temperature):
            zero_passes.append(Path(self.run_dir).name)
            return zero_backward(policy, mb, temperature)

        tr.zero_backward = counted_zero_backward
        try:
            return update(self, batch, step)
        finally:
            tr.zero_backward = zero_backward

    tr.Trainer.update = update_counting_zero_passes
    run_as_rank(rank, port, root, _config, COMBOS, RESUMED, _keep_gathered, FSDP)
    torch.save(zero_passes, Path(root) / "params" / f"zero-passes-rank{rank}.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Spawn the 2-rank FSDP2 runs and, meanwhile, the 1-process references (train.rollout_shards=2)."""
    return spawn_with_references(tmp_path_factory.mktemp("fsdp"), _worker, _config, COMBOS)


@pytest.mark.integration
@pytest.mark.parametrize("name", list(COMBOS))
def test_fsdp2_two_ranks_equal_one_process_on_the_same_global_batch(runs, name):
    r0, r1 = (_params(runs / "params" / f"{name}-rank{r}.pt") for r in range(WORLD))
    assert _max_diff(r0, r1) == 0.0, "both ranks gather the same full parameters"
    ref = load_policy(latest_checkpoint(runs / "ref" / name))[0].state_dict()
    init, _ = build_policy(_config(runs, name), None, warm_up=False)
    moved = _max_diff(ref, init.state_dict())
    assert moved > 1e-3, f"training must move the parameters (moved {moved:.2e}); the check would be vacuous"
    diff = _max_diff(r0, ref)
    zero = [torch.load(runs / "params" / f"zero-passes-rank{r}.pt").count(name) for r in range(WORLD)]
    if name == "grpo-token-micro":
        assert sum(zero) > 0, "the uneven micro-batch counts (and their zero-gradient passes) went untested"
    print(f"{name}: max |theta_fsdp2 - theta_1proc| = {diff:.2e} (parameters moved {moved:.2e}; "
          f"zero-gradient passes per rank {zero})")
    assert diff < 1e-5
    rank0_metrics_match_reference(runs, name)


@pytest.mark.integration
def test_parameters_and_optimizer_state_are_sharded(runs):
    for r in range(WORLD):
        sizes = torch.load(runs / "params" / f"{RESUMED}-sizes-rank{r}.pt")
        # dim-0 shards of 2: each rank holds about half of every parameter and of AdamW's moments
        assert sizes["full"] / 2 - 200 <= sizes["params"] <= sizes["full"] / 2 + 200, sizes
        assert sizes["adam"] == sizes["params"], sizes


@pytest.mark.integration
def test_rank_zero_checkpoints_the_full_weights_and_resume_continues(runs):
    writes = [torch.load(runs / "params" / f"writes-rank{r}.pt") for r in range(WORLD)]
    assert writes[1] == [], f"rank 1 wrote {writes[1]}"
    assert writes[0].count("checkpoint") == len(COMBOS) + 2
    for name in COMBOS:  # the usual HF folder, loaded in one process, holds the gathered parameters exactly
        ckpt = latest_checkpoint(runs / name)
        assert ckpt.name == "step-000002" and (ckpt / "model.safetensors").exists()
        loaded = load_policy(ckpt)[0].state_dict()
        assert _max_diff(loaded, _params(runs / "params" / f"{name}-rank0.pt")) == 0.0, name
    # the optimizer state is full and index-keyed, like a 1-process checkpoint's
    ours = load_trainer_state(latest_checkpoint(runs / RESUMED))["optimizer"]
    ref = load_trainer_state(latest_checkpoint(runs / "ref" / RESUMED))["optimizer"]
    assert ours["state"].keys() == ref["state"].keys()
    assert [g["params"] for g in ours["param_groups"]] == [g["params"] for g in ref["param_groups"]]
    moments = [(ours["state"][i]["exp_avg"], ref["state"][i]["exp_avg"]) for i in ref["state"]]
    assert all(a.shape == b.shape for a, b in moments)
    adam = max(float((a - b).abs().max()) for a, b in moments)
    print(f"{RESUMED}: AdamW exp_avg in the checkpoints, FSDP2 vs 1 process: max diff {adam:.2e}")
    assert adam < 1e-5
    # 1 step, then --resume to 2 steps, ends where the uninterrupted FSDP2 run ends
    resumed = _params(runs / "params" / f"{RESUMED}-resumed-rank0.pt")
    diff = _max_diff(resumed, _params(runs / "params" / f"{RESUMED}-rank0.pt"))
    print(f"resumed vs uninterrupted FSDP2: max |delta theta| = {diff:.2e}")
    assert diff == 0.0
    a = _stable(read_jsonl(runs / RESUMED / "metrics.jsonl"))
    b = _stable(read_jsonl(runs / f"{RESUMED}-resumed" / "metrics.jsonl"))
    assert [r["step"] for r in b] == [0, 1, 2] and a[2] == b[2]


def test_a_bad_parallel_value_names_the_key_and_the_choices():
    message = r"train\.parallel='zero3' is not valid; valid choices: 'ddp', 'fsdp2'"
    with pytest.raises(ConfigError, match=message):
        resolve_config(overrides=["train.parallel=zero3"])


@pytest.mark.slow  # torchrun start-up and imports dominate (20-30 s on the busy 2-core machine)
def test_torchrun_trains_with_fsdp2(tmp_path):
    """The documented command end to end: ``torchrun -m rollwise.cli train --set train.parallel=fsdp2``."""
    torchrun = Path(sys.executable).with_name("torchrun")
    sets = [*BASE, *COMBOS[RESUMED], FSDP, f"run.output_dir={tmp_path / 'run'}", "run.report=true"]
    cmd = [str(torchrun), "--standalone", f"--nproc_per_node={WORLD}", "-m", "rollwise.cli", "train"]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "ROLLWISE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count('"run_dir"') == 1, out.stdout
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [0, 1, 2]
    assert (tmp_path / "run" / "report.md").exists()
    assert latest_checkpoint(tmp_path / "run").name == "step-000002"
