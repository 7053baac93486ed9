"""AIS and CoDistill on the reasoning testbed (design ``testbed`` of ``rollwise bench quantized-rollout`` and
``rollwise bench codistill``): the registered settings, and the quick variants end to end on the CI bases."""

from __future__ import annotations

import json

import pytest

from rollwise.cli import load_benchmark
from rollwise.rlvr.base_models import BASES


def test_codistill_testbed_bases_share_the_task_and_differ_in_size():
    from rollwise.rlvr.models import char_tokenizer, num_parameters, tiny_causal_lm

    bench = load_benchmark("codistill")
    tok = char_tokenizer()
    for suffix in ("", "-ci"):
        small, large = (BASES[bench.DESIGNS["testbed"][who] + suffix] for who in ("small", "large"))
        assert (small.task, small.task_params) == (large.task, large.task_params)
        assert num_parameters(tiny_causal_lm(tok, large.model)) >= 3 * num_parameters(tiny_causal_lm(tok, small.model))


def test_quantized_rollout_testbed_quick(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the CI base is built into ./runs/base (about a second)
    bench = load_benchmark("quantized_rollout")
    assert bench.parse_args([]).design == "v2"  # the default design is unchanged
    first = "fp32,int8-none,int8-ais,int4-none,int4-tis,int4-mis,int4-ais"  # the first design's arms
    assert bench.main(["--design", "testbed", "--quick", "--speed-reps", "1", "--out", str(tmp_path),
                       "--arms", first]) == 0
    data = json.loads((tmp_path / "quantized_rollout_testbed_quick.json").read_text())
    assert data["command"].startswith("rollwise bench quantized-rollout --design testbed --quick")
    arms = {r["arm"]: r for r in data["arms"]}
    assert set(arms) == {"fp32", "int8-none", "int8-ais", "int4-none", "int4-tis", "int4-mis", "int4-ais"}
    # the mismatch is the engines': kernel noise for fp32, larger for int4 than for int8
    assert arms["fp32"]["abs_delta_first10"] < 1e-4 < arms["int8-none"]["abs_delta_first10"]
    assert arms["int8-none"]["abs_delta_first10"] < arms["int4-none"]["abs_delta_first10"]
    assert arms["int4-ais"]["lambda_first10"] > 0 and arms["fp32"]["ess_first10"] > 0.9999
    lengths = [r for r in data["by_length"] if r["arm"] == "int4-none"]
    assert {r["half"] for r in lengths} == {"first", "second"} and sum(r["sequences"] for r in lengths) == 4 * 4 * 4
    assert [r["model"] for r in data["speed"]] == ["base", "~10x, random init"]
    targets = [c["target"] for c in data["acceptance"]]
    assert "int4 AIS at or above TIS" in targets and "int8 AIS final exact V within 1 point of fp32 (or above)" in targets

    # --reuse takes the seed over from the file instead of training it again: the same tables, its source named
    again = tmp_path / "again"
    assert bench.main(["--design", "testbed", "--quick", "--skip-speed", "--out", str(again),
                       "--reuse", str(tmp_path / "quantized_rollout_testbed_quick.json")]) == 0
    redo = json.loads((again / "quantized_rollout_testbed_quick.json").read_text())
    # the file's 7 arms are taken over, the 2 arms it lacks (AIS with the sequence severity) trained here
    new = {r["arm"]: r for r in redo["arms"] if r["arm"] not in arms}
    assert [r for r in redo["arms"] if r["arm"] in arms] == data["arms"] and set(new) == {"int8-ais-seq", "int4-ais-seq"}
    assert new["int4-ais-seq"]["lambda_first10"] > 0
    assert [r for r in redo["by_length"] if r["arm"] in arms] == data["by_length"]
    redo_targets = [c["target"] for c in redo["acceptance"]]
    assert [c for c in redo["acceptance"] if "sequence severity" not in c["target"]] == [
        c for c in data["acceptance"] if "speedup" not in c["target"]]  # --skip-speed
    assert "int4 AIS (sequence severity) at or above TIS" in redo_targets
    assert set(redo["reused"]) == {"0"} and redo["trained_here"] == {"int8-ais-seq": [0], "int4-ais-seq": [0]}
    md = (again / "quantized_rollout_testbed_quick.md").read_text()
    assert "taken over from" in md and "Trained in this run, not taken over: int4-ais-seq (seed(s) 0)" in md
    with pytest.raises(SystemExit, match="steps = 4 there, 3 here"):
        bench.main(["--design", "testbed", "--quick", "--steps", "3", "--skip-speed", "--out", str(again),
                    "--reuse", str(tmp_path / "quantized_rollout_testbed_quick.json")])


def test_codistill_testbed_quick(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bench = load_benchmark("codistill")
    assert bench.main(["--design", "testbed", "--quick", "--results", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "codistill_testbed_quick.json").read_text())
    assert data["args"]["small_base"] == "column-arith-small-ci" and data["args"]["large_base"] == "column-arith-ci"
    assert data["args"]["lr"] == data["args"]["large_lr"] == 3e-5
    assert set(data["per_seed"]["0"]) == {"warm", "grpo_small", "grpo_large", "cd_a0", "cd_a1", "phases"}
    warm = data["per_seed"]["0"]["warm"]
    assert warm["small_params"] < warm["large_params"] and warm["small_sft_steps"] == 30
    crit = {c["criterion"]: c for c in data["checks"]}
    assert "precondition: large base pass@1 >= 2x small base pass@1" in crit
    assert crit["wall-clock saving per step, whole step (both models) vs GRPO-large step"]["target"] == ">= 0.18"
    assert data["per_seed"]["0"]["cd_a1"]["large_generated_tokens"] == 0

    again = tmp_path / "again"  # --reuse: the seed taken over, the same tables
    assert bench.main(["--design", "testbed", "--quick", "--results", str(again),
                       "--reuse", str(tmp_path / "codistill_testbed_quick.json")]) == 0
    redo = json.loads((again / "codistill_testbed_quick.json").read_text())
    assert (redo["per_seed"], redo["checks"], redo["kl_curves"]) == (data["per_seed"], data["checks"], data["kl_curves"])
    assert set(redo["reused"]) == {"0"}
    with pytest.raises(SystemExit, match="is_mode = 'truncated' there, 'ppo_clip' here"):
        bench.main(["--design", "testbed", "--quick", "--is-mode", "ppo_clip", "--results", str(again),
                    "--reuse", str(tmp_path / "codistill_testbed_quick.json")])


def test_options_of_the_other_design_are_refused(capsys):
    assert load_benchmark("quantized_rollout").main(["--design", "testbed", "--fmt", "int3"]) == 2
    assert "--fmt belong(s) to design v2" in capsys.readouterr().err
    assert load_benchmark("codistill").main(["--design", "testbed", "--small-d", "16"]) == 2
    assert "--small-d belong(s) to the other design" in capsys.readouterr().err
    assert load_benchmark("codistill").main(["--small-base", "column-arith-small"]) == 2
