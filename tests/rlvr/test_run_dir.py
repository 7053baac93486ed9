"""A run folder belongs to one run (issue 18): refusal of non-empty folders, --overwrite touching only
rollwise's files, pruning of the current run's checkpoints only, leftovers, corrupt-checkpoint fallback,
and one-line errors for missing folders and checkpoints."""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import pytest

from rollwise import cli
from rollwise.errors import CheckpointError, RunDirError
from rollwise.rlvr import checkpoint as ck
from rollwise.rlvr.checkpoint import latest_checkpoint, save_checkpoint
from rollwise.rlvr.job import run_training
from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, load_policy, tiny_causal_lm
from rollwise.rlvr.run_dir import MARKER, claim_run_dir

TINY = ["model.tiny.hidden_size=32", "model.tiny.num_layers=1", "model.tiny.num_heads=2",
        "model.tiny.intermediate_size=64", "sft.steps=3", "train.steps=2", "train.prompts_per_step=4",
        "rollout.n=2", "algorithm.estimator=rloo", "task.params.max_operand=9", "task.params.n_train=60",
        "task.params.n_test=20", "train.eval_prompts=20", "run.threads=1", "run.report=false"]


def _sets(*items: str) -> list[str]:
    return sum((["--set", s] for s in items), [])


def _checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def model_and_tok():
    tok = char_tokenizer()
    return tiny_causal_lm(tok, TinyModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)), tok


def _user_files(run: Path) -> None:
    (run / "plots").mkdir(parents=True)
    (run / "notes.txt").write_text("my notes\n")
    (run / "metrics.jsonl").write_text('{"mine": 1}\n')
    (run / "config.toml").write_text("# my config\n")
    (run / "report.md").write_text("# my report\n")
    (run / "plots" / "reward.png").write_bytes(b"\x89PNG my plot")
    (run / "data").mkdir()
    (run / "data" / "train.jsonl").write_text('{"problem": "1+1", "answer": "2"}\n')


def test_train_refuses_a_folder_with_user_files_and_touches_nothing(tmp_path, capsys):
    run = tmp_path / "r"
    _user_files(run)
    before = _checksums(run)
    assert cli.main(["train", *_sets(*TINY, f"run.output_dir={run}")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not empty" in err and "--overwrite" in err and "Traceback" not in err
    assert _checksums(run) == before


def test_overwrite_changes_only_rollwise_files(tmp_path):
    run = tmp_path / "r"
    _user_files(run)
    before = _checksums(run)
    assert cli.main(["train", "--overwrite", *_sets(*TINY, f"run.output_dir={run}")]) == 0
    after = _checksums(run)
    rollwise_names = {"metrics.jsonl", "config.toml", "report.md"}
    for name, digest in before.items():
        if name in rollwise_names:
            assert after.get(name) != digest, name  # removed or replaced by the new run's file
        else:
            assert after.get(name) == digest, name  # the user's own files are untouched
    assert (run / MARKER).exists() and latest_checkpoint(run).name == "step-000002"


def test_second_run_into_a_run_folder_is_refused_and_overwrite_leaves_only_its_checkpoints(tmp_path):
    run = tmp_path / "r"
    first = [*TINY, f"run.output_dir={run}", "train.steps=4", "train.checkpoint_every=1", "train.keep_checkpoints=2"]
    assert cli.main(["train", *_sets(*first)]) == 0
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-000003", "step-000004"]
    second = [*TINY, f"run.output_dir={run}", "train.steps=2", "train.checkpoint_every=1"]
    assert cli.main(["train", *_sets(*second)]) == 2
    assert cli.main(["train", "--overwrite", *_sets(*second)]) == 0
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-000001", "step-000002"]
    assert latest_checkpoint(run).name == "step-000002"


def test_pruning_deletes_only_the_current_runs_older_checkpoints(tmp_path, model_and_tok):
    model, tok = model_and_tok
    (tmp_path / MARKER).write_text(json.dumps({"run_id": "old"}))
    for step in (16, 20):
        save_checkpoint(tmp_path, step, model, tok, {}, keep=2)
    (tmp_path / MARKER).write_text(json.dumps({"run_id": "new"}))
    for step in (5, 10):
        save_checkpoint(tmp_path, step, model, tok, {}, keep=1)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert names == ["step-000010", "step-000016", "step-000020"]  # new run's step 5 pruned, old run's kept
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step-000010"
    assert latest_checkpoint(tmp_path).name == "step-000010"  # never the other run's newer-numbered folder


def test_pruning_without_run_ids_never_deletes_the_checkpoint_just_written(tmp_path, model_and_tok):
    model, tok = model_and_tok
    for step in (16, 20, 10):  # the 20-step run, then a 10-step run (Python API, no run.json)
        save_checkpoint(tmp_path, step, model, tok, {}, keep=2)
    assert (tmp_path / "checkpoints" / "step-000010").is_dir()
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step-000010"


def test_leftover_tmp_folders_are_removed_at_start(tmp_path, model_and_tok):
    model, tok = model_and_tok
    claim_run_dir(tmp_path / "r")
    save_checkpoint(tmp_path / "r", 1, model, tok, {}, keep=2)
    leftover = tmp_path / "r" / "checkpoints" / ".tmp-step-000002-999"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"x" * 100)
    claim_run_dir(tmp_path / "r", resume=True)
    assert not leftover.exists()


def test_failed_checkpoint_write_cleans_up_and_names_the_checkpoint(tmp_path, model_and_tok, monkeypatch):
    model, tok = model_and_tok

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="step-000003.*No space left"):
        save_checkpoint(tmp_path, 3, model, tok, {}, keep=2)
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


@pytest.mark.parametrize("damage", ["model.safetensors", "trainer_state.pt"])
def test_corrupt_latest_checkpoint_falls_back_with_a_warning(tmp_path, model_and_tok, damage):
    model, tok = model_and_tok
    claim_run_dir(tmp_path)
    for step in (1, 2):
        save_checkpoint(tmp_path, step, model, tok, {"x": step}, keep=3)
    target = tmp_path / "checkpoints" / "step-000002" / damage
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="step-000002.*corrupt"):
        assert latest_checkpoint(tmp_path).name == "step-000001"


def test_resume_without_a_checkpoint_fails_before_the_warm_start(small_config, monkeypatch):
    import rollwise.rlvr.sft as sft

    def no_sft(*args, **kwargs):
        raise AssertionError("the SFT warm start ran before the resume check")

    monkeypatch.setattr(sft, "supervised_warm_start", no_sft)
    cfg = small_config("train.steps=2")
    with pytest.raises(RunDirError, match="no run folder"):
        run_training(cfg, resume=True)
    Path(cfg.run.output_dir).mkdir()
    with pytest.raises(RunDirError, match="no complete checkpoint"):
        run_training(cfg, resume=True)


def test_eval_and_report_on_missing_folders_are_one_line_errors_without_network(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    for argv in (["eval", "runs/typo"], ["report", "runs/typo"], ["eval", str(tmp_path / "runs")],
                 ["train", "--resume", "--set", "run.output_dir=runs/typo"]):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert "runs" in err, err


def test_load_policy_never_asks_the_hub_for_a_local_looking_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for name in ("runs/typo", "./model", str(tmp_path / "nope"), "a/b/c"):
        with pytest.raises(CheckpointError, match="no such model folder"):
            load_policy(name)


def test_eval_of_a_corrupt_only_checkpoint_is_a_one_line_error(tmp_path, model_and_tok, capsys):
    model, tok = model_and_tok
    save_checkpoint(tmp_path, 1, model, tok, {}, keep=2)
    (tmp_path / "checkpoints" / "step-000001" / "model.safetensors").write_bytes(b"not safetensors")
    capsys.readouterr()  # drop save_pretrained's progress bar
    with pytest.warns(UserWarning):
        assert cli.main(["eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no intact checkpoint" in err and len(err.splitlines()) == 1
    with pytest.raises(CheckpointError, match="unreadable"):
        load_policy(tmp_path / "checkpoints" / "step-000001")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(RunDirError):
        cli.main(["report", str(tmp_path / "nope"), "--debug"])


def test_torn_last_metrics_line_is_dropped_on_resume(tmp_path):
    from rollwise.errors import DataError
    from rollwise.runlog import RunLog, read_jsonl

    log = RunLog(tmp_path)
    for step in range(3):
        log.log({"step": step})
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "rew')  # killed mid-append
    with pytest.raises(DataError, match="metrics.jsonl:4"):
        read_jsonl(tmp_path / "metrics.jsonl")
    log.truncate_after(2)
    assert read_jsonl(tmp_path / "metrics.jsonl") == [{"step": 0}, {"step": 1}, {"step": 2}]


def test_resume_on_a_corrupt_only_checkpoint_is_one_warning_line_and_one_error_line(tmp_path, model_and_tok):
    import subprocess
    import sys

    model, tok = model_and_tok
    run = tmp_path / "r"
    claim_run_dir(run)
    save_checkpoint(run, 1, model, tok, {}, keep=2)
    (run / "checkpoints" / "step-000001" / "trainer_state.pt").write_bytes(b"torn")
    out = subprocess.run([sys.executable, "-m", "rollwise.cli", "train", "--resume", "--set", f"run.output_dir={run}"],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 2, out.stderr
    assert lines[0].startswith("rollwise: warning: checkpoint") and "corrupt" in lines[0]
    assert lines[1].startswith("rollwise train: error: --resume: no complete checkpoint")
