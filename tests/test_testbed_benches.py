"""BASIS and UCPO benches on the reasoning testbed: the task option, its cache key, and tiny end-to-end runs on the
CI bases (seconds of training each)."""

from __future__ import annotations

import json

import pytest

from rollwise.cli import load_benchmark


def test_task_option_changes_setting_and_cache_key():
    load_benchmark("value_mse")  # puts benchmarks/ on sys.path
    from basis_setup import Setting, default_lr, testbed_setting

    add3, arith = testbed_setting("add3", max_operand=99, sft_steps=800), testbed_setting("column-arith")
    assert add3 == Setting() and arith.task == "column-arith" and arith.max_new_tokens == 64
    assert add3.tag() != arith.tag() and arith.tag().startswith("column-arith-")
    assert arith.tag() != testbed_setting("column-arith-ci").tag()
    over = arith.overrides()
    assert "task.name=column_arith" in over and "task.params.max_digits=4" in over and "train.lr=3e-05" in over
    assert default_lr("column-arith") == 3e-5


def test_value_mse_on_testbed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bench = load_benchmark("value_mse")
    assert bench.main(["--task", "column-arith-ci", "--checkpoints", "2", "--batches", "3", "--batch-size", "16",
                       "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "value_mse_column_arith_ci.json").read_text())
    assert data["command"].startswith("rollwise bench value-mse --task column-arith-ci")
    assert data["setting"]["task"] == "column-arith-ci" and set(data["mean_v"]) == {"0", "2"}
    assert (tmp_path / "runs" / "basis-bench").exists()


def test_policy_on_testbed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bench = load_benchmark("policy_compare")
    assert bench.main(["--task", "column-arith-ci", "--seeds", "0", "--steps", "2", "--prompts", "8",
                       "--eval-every", "1", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "policy_compare_column_arith_ci.json").read_text())
    assert "--task column-arith-ci" in data["command"]

    # a second seed run on its own, then both merged by --reuse: nothing retrained, the same per-seed curves
    seed1 = tmp_path / "s1"
    common = ["--task", "column-arith-ci", "--steps", "2", "--prompts", "8", "--eval-every", "1"]
    assert bench.main([*common, "--seeds", "1", "--out", str(seed1)]) == 0
    both = tmp_path / "both"
    files = f"{tmp_path / 'policy_compare_column_arith_ci.json'},{seed1 / 'policy_compare_column_arith_ci.json'}"
    assert bench.main([*common, "--seeds", "0,1", "--out", str(both), "--reuse", files]) == 0
    merged = json.loads((both / "policy_compare_column_arith_ci.json").read_text())
    one = json.loads((seed1 / "policy_compare_column_arith_ci.json").read_text())
    assert merged["runs"] == {"0": data["runs"]["0"], "1": one["runs"]["1"]} and set(merged["reused"]) == {"0", "1"}
    with pytest.raises(SystemExit, match="prompts"):
        bench.main(["--task", "column-arith-ci", "--steps", "2", "--prompts", "4", "--eval-every", "1",
                    "--seeds", "0", "--out", str(both), "--reuse", files])

    # --reference: BASIS alone trained longer (4 steps), REINFORCE++ and GRPO-8 taken from the file as recorded
    longer = tmp_path / "longer"
    first = str(tmp_path / "policy_compare_column_arith_ci.json")
    assert bench.main([*common, "--seeds", "0", "--methods", "basis", "--n1-steps", "4", "--out", str(longer),
                       "--reference", first]) == 0
    ref = json.loads((longer / "policy_compare_column_arith_ci.json").read_text())
    basis, rpp, grpo = "BASIS (n=1)", "REINFORCE++ (n=1)", "GRPO (n=8)"
    assert ref["runs"]["0"][rpp] == data["runs"]["0"][rpp] and ref["runs"]["0"][grpo] == data["runs"]["0"][grpo]
    assert ref["runs"]["0"][basis]["step"] == [0, 1, 2, 3, 4]
    assert ref["runs"]["0"][basis]["acc"][:3] == data["runs"]["0"][basis]["acc"]  # same pi_0, seed and batches
    assert {r["method"]: r["steps run"] for r in ref["summary"]} == {rpp: 2, basis: 4, grpo: 2}
    assert set(ref["reference"]) == {"0"} and "--reference" in ref["command"]
    with pytest.raises(SystemExit, match="prompts"):
        bench.main(["--task", "column-arith-ci", "--steps", "2", "--prompts", "4", "--eval-every", "1", "--seeds",
                    "0", "--methods", "basis", "--out", str(longer), "--reference", first])
    with pytest.raises(SystemExit, match="needs --methods"):
        bench.main([*common, "--seeds", "0", "--out", str(longer), "--reference", first])
    with pytest.raises(SystemExit, match=r"seed 1 of \['REINFORCE"):
        bench.main([*common, "--seeds", "1", "--methods", "basis", "--out", str(longer), "--reference", first])


def test_diversity_testbed_design(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bench = load_benchmark("diversity")
    assert bench.main(["--quick", "--design", "testbed", "--steps", "2", "--methods", "UCPO tau=0.5 seq-logp",
                       "--out", str(tmp_path), "--runs", str(tmp_path / "runs")]) == 0
    data = json.loads((tmp_path / "diversity_testbed_quick.json").read_text())
    assert data["design"] == "testbed" and set(data["means"]) == {"GRPO", "UCPO tau=0.5 seq-logp"}
    assert data["lr"] == 3e-5 and "task.name=countdown_steps" in data["setup"]

    # --reuse: the seed is taken over (NaN metrics included), and a file of another method set is refused
    first = str(tmp_path / "diversity_testbed_quick.json")
    again = tmp_path / "again"
    assert bench.main(["--quick", "--design", "testbed", "--steps", "2", "--methods", "UCPO tau=0.5 seq-logp",
                       "--out", str(again), "--runs", str(tmp_path / "runs"), "--reuse", first]) == 0
    redo = json.loads((again / "diversity_testbed_quick.json").read_text())
    assert (redo["per_seed"], redo["means"]) == (data["per_seed"], data["means"]) and set(redo["reused"]) == {"0"}
    with pytest.raises(SystemExit, match="methods"):
        bench.main(["--quick", "--design", "testbed", "--steps", "2", "--out", str(again), "--reuse", first])
