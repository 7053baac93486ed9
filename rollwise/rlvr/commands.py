"""Implementation of ``rollwise train | sft | eval | report`` (argument parsing lives in rollwise.cli)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from rollwise.config import to_dict, to_toml
from rollwise.errors import RunDirError
from rollwise.rlvr.run_config import RLVRConfig, resolve_config
from rollwise.rlvr.run_dir import claim_run_dir
from rollwise.runlog import seed_everything, set_threads

#: the built-in default job: a tiny model from scratch, warmed up, trained with RL on add3, on CPU
#: (ADD-3 with operands below 100: 3-digit operands need far more SFT than a CPU minute buys; docs/basis.md)
DEFAULT_JOB: dict[str, Any] = {
    "task": {"name": "add3", "params": {"max_operand": 99, "n_train": 4096, "n_test": 512}},
    "sft": {"steps": 800, "lr": 2e-3, "batch_size": 128},
    "rollout": {"n": 4, "max_new_tokens": 6},
    "algorithm": {"estimator": "grpo"},
    "train": {"steps": 100, "prompts_per_step": 32, "lr": 3e-4, "eval_every": 20, "checkpoint_every": 25},
    "run": {"output_dir": "runs/default", "threads": 1},
}


def _quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def build_policy(cfg: RLVRConfig, task, warm_dir: Path | None = None, resume: bool = False,
                 warm_up: bool = True):
    """The starting policy: a hub/local model, or the tiny model (warmed up with SFT when enabled).

    The warm start is saved in ``<run>/warm_start`` and reused by ``--resume``. ``warm_up=False`` skips
    the SFT warm start (data-parallel ranks other than 0, which receive rank 0's weights).
    """
    from rollwise.rlvr.models import char_tokenizer, load_policy, save_policy, tiny_causal_lm
    from rollwise.rlvr.sft import supervised_warm_start

    if cfg.model.name_or_path:
        return load_policy(cfg.model.name_or_path)
    if warm_dir is not None and resume and (warm_dir / "config.json").exists():
        return load_policy(warm_dir)
    tokenizer = char_tokenizer()
    model = tiny_causal_lm(tokenizer, cfg.model.tiny, seed=cfg.model.init_seed)
    if warm_up and cfg.sft.enabled and cfg.sft.steps > 0:
        examples = task.sft_examples(cfg.sft.examples, seed=cfg.train.seed)
        supervised_warm_start(model, tokenizer, [e.prompt for e in examples], [e.target for e in examples],
                              steps=cfg.sft.steps, batch_size=cfg.sft.batch_size, lr=cfg.sft.lr, seed=cfg.train.seed,
                              compact=cfg.model.forward == "compact")
    if warm_dir is not None:
        save_policy(model, tokenizer, warm_dir, tiny=cfg.model.tiny)
    return model, tokenizer


def run_training(cfg: RLVRConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Build everything from ``cfg``, train, write the report; returns a summary dict.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this joins the data-parallel group (``distributed.py``): rank 0
    warms up, writes and reports; the others receive its weights. ``train.rollout_shards`` (0 = the world
    size) sets how many seeded shards each step's rollouts are drawn in: a 1-process run with
    ``train.rollout_shards=N`` draws the same batches, and makes the same updates, as an N-rank run.
    The run folder is claimed first (``run_dir.claim_run_dir``): a fresh run refuses a folder holding
    files unless ``overwrite``, and ``resume`` needs a checkpoint, both before any work.
    """
    from rollwise.rlvr import distributed

    with distributed.process_group_from_env() as dp:
        if dp.enabled and cfg.codistill.enabled:
            from rollwise.rlvr.codistill import check_parallel

            check_parallel(cfg, dp)
        return _train(cfg, resume, dp, overwrite)


def _train(cfg: RLVRConfig, resume: bool, dp: Any, overwrite: bool = False) -> dict[str, Any]:
    from rollwise.report import write_run_report
    from rollwise.rlvr.tasks import make_task
    from rollwise.rlvr.tasks.base import check_prompts_fit
    from rollwise.rlvr.trainer import Trainer

    _quiet_transformers()
    set_threads(cfg.run.threads or None)
    seed_everything(cfg.train.seed)
    run_dir = Path(cfg.run.output_dir)
    task = make_task(cfg.task.name, **cfg.task.params)
    if not cfg.model.name_or_path:  # the tiny model's context is known before any work
        from rollwise.rlvr.models import char_tokenizer

        check_prompts_fit(task, char_tokenizer(), cfg.model.tiny.max_positions)
    if dp.is_main:
        claim_run_dir(run_dir, resume=resume, overwrite=overwrite)
        (run_dir / "config.toml").write_text(to_toml(to_dict(cfg)))
    policy, tokenizer = build_policy(cfg, task, run_dir / "warm_start" if dp.is_main else None, resume=resume,
                                     warm_up=dp.is_main)
    context = getattr(policy.config, "max_position_embeddings", None)
    if cfg.model.name_or_path and context:
        check_prompts_fit(task, tokenizer, context)
    if cfg.codistill.enabled:  # CoDistill-GRPO: a second, large model trained on the small one's rollouts
        from rollwise.rlvr.codistill import CoDistillTrainer, build_large_policy

        large, _ = build_large_policy(cfg, task, run_dir / "warm_start_large" if dp.is_main else None,
                                      resume=resume, warm_up=dp.is_main)
        trainer = CoDistillTrainer(cfg, policy, tokenizer, task, large)
    else:
        trainer = Trainer(cfg, policy, tokenizer, task)
    final = trainer.fit(resume=resume)
    summary: dict[str, Any] = {"run_dir": str(run_dir), **final}
    if cfg.run.report and dp.is_main:
        summary["report"] = str(write_run_report(run_dir))
    return summary


def _cmd_train(args: argparse.Namespace) -> int:
    cfg = resolve_config(args.config, args.set, getattr(args, "algorithm", None), base=DEFAULT_JOB)
    if args.print_config:
        print(to_toml(to_dict(cfg)), end="")
        return 0
    summary = run_training(cfg, resume=args.resume, overwrite=getattr(args, "overwrite", False))
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 prints
        print(json.dumps(summary, indent=2))
        if "report" in summary:
            print(f"report: {summary['report']}")
    return 0


def _cmd_sft(args: argparse.Namespace) -> int:
    from rollwise.rlvr.models import save_policy
    from rollwise.rlvr.tasks import make_task
    from rollwise.rlvr.trainer import Trainer

    cfg = resolve_config(args.config, args.set, base=DEFAULT_JOB)
    if args.print_config:
        print(to_toml(to_dict(cfg)), end="")
        return 0
    _quiet_transformers()
    set_threads(cfg.run.threads or None)
    seed_everything(cfg.train.seed)
    task = make_task(cfg.task.name, **cfg.task.params)
    out = Path(cfg.run.output_dir) / "sft"
    policy, tokenizer = build_policy(cfg, task, out)
    save_policy(policy, tokenizer, out, tiny=cfg.model.tiny)
    ev = Trainer(cfg, policy, tokenizer, task).evaluate()
    print(json.dumps({"model": str(out), **ev}, indent=2))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from rollwise.rlvr.evaluate import evaluate_sampled
    from rollwise.rlvr.models import load_policy
    from rollwise.rlvr.tasks import make_task

    path = Path(args.checkpoint)
    ckpt = eval_checkpoint(path)
    cfg_file = args.config or (str(path / "config.toml") if (path / "config.toml").exists() else None)
    cfg = resolve_config(cfg_file, args.set)
    _quiet_transformers()
    set_threads(cfg.run.threads or None)
    policy, tokenizer = load_policy(ckpt)
    task = make_task(cfg.task.name, **cfg.task.params)
    ks = [int(k) for k in args.k.split(",")]
    result = evaluate_sampled(policy, tokenizer, task, cfg, n=args.n, ks=ks)
    print(json.dumps({"checkpoint": str(ckpt), **result}, indent=2))
    return 0


def eval_checkpoint(path: Path) -> Path:
    """The model folder ``rollwise eval PATH`` evaluates: a run folder's newest intact checkpoint, or
    ``PATH`` itself when it is a model folder. Never the hub: ``PATH`` must exist.

    Raises:
        RunDirError: ``PATH`` does not exist or is a run folder without an intact checkpoint.
    """
    from rollwise.rlvr.checkpoint import latest_checkpoint

    if not path.is_dir():
        raise RunDirError(f"no such run or checkpoint folder {str(path)!r}")
    ckpt = latest_checkpoint(path)
    if ckpt is not None:
        return ckpt
    if (path / "config.json").is_file():
        return path
    if (path / "checkpoints").is_dir() or (path / "metrics.jsonl").exists():
        raise RunDirError(f"run folder {str(path)!r} has no intact checkpoint in {str(path / 'checkpoints')!r}")
    raise RunDirError(f"{str(path)!r} is neither a run folder (with checkpoints/) nor a model folder "
                      f"(with config.json)")


def _cmd_report(args: argparse.Namespace) -> int:
    from rollwise.report import write_run_report

    if not Path(args.run_dir).is_dir():
        raise RunDirError(f"no such run folder {args.run_dir!r}")
    if not (Path(args.run_dir) / "metrics.jsonl").is_file():
        raise RunDirError(f"run folder {args.run_dir!r} has no metrics.jsonl (has a run been trained into it?)")

    print(f"report: {write_run_report(args.run_dir)}")
    return 0


def dispatch(args: argparse.Namespace) -> int:
    """Run ``args.command``; errors are turned into one-line messages by ``rollwise.cli.main``."""
    handlers = {"train": _cmd_train, "sft": _cmd_sft, "eval": _cmd_eval, "report": _cmd_report}
    return handlers[args.command](args)
