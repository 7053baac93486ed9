"""Data-parallel training (``rollwise/rlvr/distributed.py``): 2 gloo ranks make the same updates as one
process on the same global batch; only rank 0 writes; resume works; bad shard counts fail clearly.

The 2-rank runs go through ``job.run_training`` (the ``rollwise train`` path) in processes spawned
with the torchrun environment variables; the 1-process references draw the same rollouts with
``train.rollout_shards=2`` (see the module docstring of ``distributed.py``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from rlvr_small_config import SMALL

from rollwise.config import ConfigError
from rollwise.rlvr import distributed
from rollwise.rlvr.batch import RolloutBatch
from rollwise.rlvr.checkpoint import latest_checkpoint
from rollwise.rlvr.job import run_training
from rollwise.rlvr.losses import AGG_MODES, aggregate
from rollwise.rlvr.models import load_policy
from rollwise.rlvr.policy import build_policy
from rollwise.rlvr.run_config import resolve_config
from rollwise.runlog import read_jsonl

WORLD = 2
VOLATILE = ("time/", "wall", "tokens_per_s")
#: the brief's tiny setting: no SFT, 2 steps, 8 prompts x 4 rollouts; a dense reward so that a random
#: policy gets non-zero advantages
BASE = [*SMALL, "sft.enabled=false", "train.steps=2", "train.prompts_per_step=8", "rollout.n=4", "train.lr=1e-3",
        "train.eval_prompts=32"]
COMBOS = {
    "grpo-token": ["algorithm.estimator=grpo", "algorithm.loss.agg_mode=token-mean", "train.mini_batches=2"],
    "grpo-seq": ["algorithm.estimator=grpo", "algorithm.loss.agg_mode=seq-mean-token-mean",
                 "train.micro_batch_size=6"],
    "rpp-token": ["algorithm.estimator=reinforce_pp", "algorithm.loss.agg_mode=token-mean"],
    "rpp-seq": ["algorithm.estimator=reinforce_pp", "algorithm.loss.agg_mode=seq-mean-token-sum",
                "train.mini_batches=2"],
    # cross-batch baselines: one rollout per prompt, offline stage on rank 0 only
    "basis": ["algorithm.estimator=basis", "rollout.n=1", "algorithm.estimator_params.offline_rollouts=2",
              "algorithm.estimator_params.folds=4"],
}
RESUMED = "grpo-token"  # also run as 1 step + resume to 2 steps


def _digits(prompts, completions, **kw):
    """A dense reward (share of digit characters) that varies between a random policy's completions."""
    return [sum(ch.isdigit() for ch in c) / 5 for c in completions]


def _patch_reward(mpatch: pytest.MonkeyPatch | None = None) -> None:
    """Add the dense ``_digits`` reward to Add3; with ``mpatch`` the change is undone when its context ends
    (the test process), without it it lasts (a spawned rank)."""
    from rollwise.rlvr.tasks.arithmetic import Add3

    if not getattr(Add3, "_dense_for_test", False):
        base = Add3.reward_funcs
        if mpatch is None:
            Add3.reward_funcs = lambda self: [*base(self), _digits]
            Add3._dense_for_test = True
        else:
            mpatch.setattr(Add3, "reward_funcs", lambda self: [*base(self), _digits])
            mpatch.setattr(Add3, "_dense_for_test", True, raising=False)


def join_as_rank(rank: int, port: int) -> None:
    """In a spawned rank: torchrun's environment variables, 1 torch thread, the dense test reward."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank), ROLLWISE_NO_PROGRESS="1")
    torch.set_num_threads(1)
    _patch_reward()


def rank0_metrics_match_reference(runs: Path, name: str) -> list[dict]:
    """Rank 0 logged each step once, with the 1-process reference's keys and values (rel 1e-4, time keys
    excluded); returns rank 0's records."""
    dist_recs = _stable(read_jsonl(runs / name / "metrics.jsonl"))
    ref_recs = _stable(read_jsonl(runs / "ref" / name / "metrics.jsonl"))
    assert [r["step"] for r in dist_recs] == [0, 1, 2], "rank 0 alone logs each step once"
    assert [r.keys() for r in dist_recs] == [r.keys() for r in ref_recs]
    for a, b in zip(dist_recs, ref_recs):
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5), (name, a["step"], k)
    return dist_recs


def _config(root: Path, name: str, *extra: str):
    return resolve_config(overrides=[*BASE, *COMBOS[name.removesuffix("-resumed")], *extra,
                                     f"run.output_dir={root / name}"])


def run_as_rank(rank: int, port: int, root: str, config, combos, resumed: str, keep, *extra: str) -> None:
    """One spawned rank: every combination in ``combos`` through ``run_training`` (as under torchrun), then
    ``resumed`` as 1 step + a resume to 2, with ``extra`` overrides. Checkpoint and metrics-log writes are
    counted (``params/writes-rank<r>.pt``); after each fit ``keep(trainer, path)`` saves what the tests compare
    to ``params/<run>-rank<r>.pt``."""
    join_as_rank(rank, port)
    import rollwise.rlvr.trainer as tr

    root_p, writes = Path(root), []
    save, runlog, fit = tr.save_checkpoint, tr.RunLog, tr.Trainer.fit

    def counted_save(*a, **k):
        writes.append("checkpoint")
        return save(*a, **k)

    class CountedLog(runlog):
        def __init__(self, *a, **k):
            writes.append("metrics")
            super().__init__(*a, **k)

    def fit_and_keep(self, resume=False):
        out = fit(self, resume)
        keep(self, root_p / "params" / f"{Path(self.run_dir).name}-rank{rank}.pt")
        return out

    tr.save_checkpoint, tr.RunLog, tr.Trainer.fit = counted_save, CountedLog, fit_and_keep
    with distributed.process_group_from_env():  # one group for every run below
        for name in combos:
            run_training(config(root_p, name, *extra))
        run_training(config(root_p, f"{resumed}-resumed", *extra, "train.steps=1"))
        run_training(config(root_p, f"{resumed}-resumed", *extra), resume=True)
    torch.save(writes, root_p / "params" / f"writes-rank{rank}.pt")


def _keep_policy(trainer, path: Path) -> None:
    torch.save(trainer.policy.state_dict(), path)


def _worker(rank: int, port: int, root: str) -> None:
    run_as_rank(rank, port, root, _config, COMBOS, RESUMED, _keep_policy)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_with_references(root: Path, worker, config, combos) -> Path:
    """Spawn ``worker(rank, port, root)`` on WORLD ranks and, meanwhile, run the 1-process reference of every
    name in ``combos`` (``config(root / "ref", name, "train.rollout_shards=2")``); returns ``root``."""
    (root / "params").mkdir()
    (root / "ref").mkdir()
    ctx = mp.spawn(worker, args=(_free_port(), str(root)), nprocs=WORLD, join=False)
    with pytest.MonkeyPatch.context() as mpatch:
        mpatch.setenv("ROLLWISE_NO_PROGRESS", "1")
        _patch_reward(mpatch)  # undone when the references are done
        for name in combos:
            run_training(config(root / "ref", name, f"train.rollout_shards={WORLD}"))
    while not ctx.join():
        pass
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Spawn the 2-rank runs and, meanwhile, run the 1-process references (train.rollout_shards=2)."""
    return spawn_with_references(tmp_path_factory.mktemp("ddp"), _worker, _config, COMBOS)


def _params(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _stable(records):
    return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in records]


@pytest.mark.integration
@pytest.mark.parametrize("name", list(COMBOS))
def test_two_ranks_equal_one_process_on_the_same_global_batch(runs, name):
    r0, r1 = (_params(runs / "params" / f"{name}-rank{r}.pt") for r in range(WORLD))
    assert _max_diff(r0, r1) == 0.0, "the ranks' parameters must stay identical"
    ref, _ = load_policy(latest_checkpoint(runs / "ref" / name))
    ref_params = ref.state_dict()
    init, _ = build_policy(_config(runs, name), None, warm_up=False)
    moved = _max_diff(ref_params, init.state_dict())
    assert moved > 1e-3, f"training must move the parameters (moved {moved:.2e}); the check would be vacuous"
    diff = _max_diff(r0, ref_params)
    print(f"{name}: max |theta_2ranks - theta_1proc| = {diff:.2e} (parameters moved {moved:.2e})")
    assert diff < 1e-5
    rank0_metrics_match_reference(runs, name)


@pytest.mark.integration
def test_only_rank_zero_writes_and_resume_continues_exactly(runs):
    writes = [torch.load(runs / "params" / f"writes-rank{r}.pt") for r in range(WORLD)]
    assert writes[1] == [], f"rank 1 wrote {writes[1]}"
    assert writes[0].count("metrics") == len(COMBOS) + 2 and "checkpoint" in writes[0]
    ckpts = runs / "grpo-token" / "checkpoints"
    assert [p.name for p in ckpts.iterdir() if p.name.startswith(".tmp")] == []
    resumed = runs / f"{RESUMED}-resumed"
    full = _params(runs / "params" / f"{RESUMED}-rank0.pt")
    for r in range(WORLD):
        assert _max_diff(_params(runs / "params" / f"{RESUMED}-resumed-rank{r}.pt"), full) == 0.0
    a = _stable(read_jsonl(runs / RESUMED / "metrics.jsonl"))
    b = _stable(read_jsonl(resumed / "metrics.jsonl"))
    assert [r["step"] for r in b] == [0, 1, 2]
    assert a[2] == b[2]


def test_prompts_not_divisible_by_world_size_fail_with_a_clear_message(small_config, monkeypatch):
    monkeypatch.setattr(distributed, "current", lambda: distributed.DataParallel(rank=0, world_size=3))
    cfg = small_config("sft.enabled=false", "train.prompts_per_step=8")
    with pytest.raises(ConfigError, match="8 is not divisible by 3.*train.prompts_per_step"):
        run_training(cfg)


# ------------------------------------------------------------------------------------------ unit tests
@pytest.mark.parametrize("mode", AGG_MODES)
def test_loss_shares_of_a_partition_sum_to_the_whole_aggregate(mode):
    g = torch.Generator().manual_seed(0)
    values = torch.randn(10, 7, generator=g)
    mask = (torch.rand(10, 7, generator=g) > 0.3).float()
    mask[3] = 0.0  # a fully masked row (e.g. rejected by rollout correction)
    whole = aggregate(values, mask, mode, max_len=7)
    parts = [torch.tensor([0, 5, 3]), torch.tensor([1, 2]), torch.tensor([4, 6, 7, 8, 9])]
    total = sum(aggregate(values[i], mask[i], mode, max_len=7) * distributed.loss_share(mask[i], mask, mode)
                for i in parts)
    assert float(total) == pytest.approx(float(whole), rel=1e-6)
    assert distributed.loss_share(mask, mask, mode) == 1.0


def _shard(width_p: int, width_t: int, rows: int, pad: int = 9) -> RolloutBatch:
    ones = torch.ones(rows, width_t)
    return RolloutBatch(prompt_ids=torch.full((rows, width_p), 1), prompt_mask=torch.ones(rows, width_p),
                        response_ids=torch.full((rows, width_t), 2), response_mask=ones,
                        rollout_logprobs=-ones, group_ids=torch.arange(rows), truncated=torch.zeros(rows, dtype=bool),
                        prompts=["p"] * rows, completions=["c"] * rows, columns={"answer": list(range(rows))},
                        rewards=torch.ones(rows), extras={"hint_mask": ones})


def test_concat_batches_pads_prompts_left_and_responses_right():
    out = distributed.concat_batches([_shard(2, 3, 1), _shard(3, 1, 2)], pad_id=9)
    assert out.prompt_ids.tolist() == [[9, 1, 1], [1, 1, 1], [1, 1, 1]]
    assert out.prompt_mask.tolist() == [[0, 1, 1], [1, 1, 1], [1, 1, 1]]
    assert out.response_ids.tolist() == [[2, 2, 2], [2, 9, 9], [2, 9, 9]]
    assert out.response_mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 0, 0]]
    assert out.rollout_logprobs.tolist() == [[-1, -1, -1], [-1, 0, 0], [-1, 0, 0]]
    assert out.extras["hint_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 0, 0]]
    assert out.columns == {"answer": [0, 0, 1]} and out.prompts == ["p"] * 3 and out.old_logprobs is None


def test_reward_metrics_of_shards_merge_to_the_global_ones():
    parts = [(2, {"reward/f/mean": 1.0, "reward/f/none_frac": 0.5, "reward/f/errors": 0.0, "reward/failures": 0.0,
                  "reward/mean": 0.5}),
             (2, {"reward/f/mean": 0.25, "reward/f/none_frac": 0.0, "reward/f/errors": 1.0, "reward/failures": 1.0,
                  "reward/mean": 0.125})]
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.0])
    out = distributed.merge_reward_metrics(parts, rewards, torch.tensor([False, True, False, False]))
    assert out["reward/f/mean"] == pytest.approx((1.0 * 1 + 0.25 * 2) / 3)  # weighted by scored rollouts
    assert out["reward/f/none_frac"] == 0.25 and out["reward/f/errors"] == 1.0 and out["reward/failures"] == 1.0
    assert out["reward/mean"] == 0.375 and out["reward/truncated_frac"] == 0.25


@pytest.mark.slow  # 20-25 s on the busy 2-core machine (torchrun start-up and imports dominate)
def test_torchrun_runs_the_cli_and_only_rank_zero_prints(tmp_path):
    """The documented command end to end: ``torchrun -m rollwise.cli train`` with two gloo ranks."""
    torchrun = Path(sys.executable).with_name("torchrun")
    sets = [*BASE, *COMBOS["grpo-token"], f"run.output_dir={tmp_path / 'run'}", "run.report=true"]
    cmd = [str(torchrun), "--standalone", f"--nproc_per_node={WORLD}", "-m", "rollwise.cli", "train"]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "ROLLWISE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count('"run_dir"') == 1, out.stdout  # one summary: rank 0's
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [0, 1, 2]
    assert (tmp_path / "run" / "report.md").exists()
    assert latest_checkpoint(tmp_path / "run").name == "step-000002"


def test_micro_batches_accumulate_to_the_whole_mini_batch_gradient(small_config, monkeypatch):
    """One process: micro-batches weighted by their global token share give the whole mini-batch's update."""
    from rollwise.rlvr.tasks.arithmetic import Add3

    base = Add3.reward_funcs
    monkeypatch.setattr(Add3, "reward_funcs", lambda self: [*base(self), _digits])
    params = []
    for micro in (0, 5):
        cfg = small_config(*BASE[len(SMALL):], *COMBOS["grpo-token"], f"train.micro_batch_size={micro}",
                           name=f"micro{micro}")
        run_training(cfg)
        params.append(load_policy(latest_checkpoint(cfg.run.output_dir))[0].state_dict())
    print(f"micro-batches of 5 vs whole mini-batches: max |delta theta| = {_max_diff(*params):.2e}")
    assert _max_diff(*params) < 1e-5
