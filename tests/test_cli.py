from rollwise import cli


def test_print_config_is_toml_of_the_default_job(capsys):
    assert cli.main(["train", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "[task]" in out and 'name = "add3"' in out and "max_operand = 99" in out


def test_bad_key_exits_2_with_key_and_choices(capsys):
    assert cli.main(["train", "--set", "train.stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "train.stepz" in err and "prompts_per_step" in err


def test_unknown_repro_and_bench_list_choices(capsys):
    assert cli.main(["repro", "nope"]) == 2
    assert "uwm-jepa" in capsys.readouterr().err
    assert cli.main(["bench", "nope"]) == 2
    assert "throughput" in capsys.readouterr().err


def test_eval_and_report_on_a_tiny_run(tmp_path, capsys):
    run = tmp_path / "r"
    small = ["model.tiny.hidden_size=32", "model.tiny.num_layers=1", "model.tiny.num_heads=2",
             "model.tiny.intermediate_size=64", "sft.steps=5", "train.steps=2", "train.prompts_per_step=4",
             "rollout.n=2", "algorithm.estimator=rloo", "task.params.max_operand=9", "task.params.n_train=60",
             "task.params.n_test=20", "train.eval_prompts=20", "run.threads=1", f"run.output_dir={run}"]
    assert cli.main(["train", *sum((["--set", s] for s in small), [])]) == 0
    assert (run / "report.md").exists() and (run / "plots" / "reward_vs_step.png").exists()
    capsys.readouterr()
    assert cli.main(["eval", str(run), "--n", "4", "--k", "1,4"]) == 0
    out = capsys.readouterr().out
    assert '"eval/pass@4"' in out and '"eval/maj@4"' in out and '"eval/exact_accuracy"' in out
    assert cli.main(["report", str(run)]) == 0
