"""One training job from a resolved config: build the task and policies, train (under torchrun: data-parallel),
write the report. ``rollwise train`` calls :func:`run_training`; so can a script or a test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollwise.config import to_dict, to_toml
from rollwise.rlvr.policy import build_policy, quiet_transformers
from rollwise.rlvr.run_config import RLVRConfig
from rollwise.rlvr.run_dir import claim_run_dir
from rollwise.runlog import seed_everything, set_threads


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

    quiet_transformers()
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
        from rollwise.rlvr.codistill import build_large_policy, codistill_trainer

        large, _ = build_large_policy(cfg, task, run_dir / "warm_start_large" if dp.is_main else None,
                                      resume=resume, warm_up=dp.is_main)
        trainer = codistill_trainer(cfg, policy, tokenizer, task, large)
    else:
        trainer = Trainer(cfg, policy, tokenizer, task)
    final = trainer.fit(resume=resume)
    summary: dict[str, Any] = {"run_dir": str(run_dir), **final}
    if cfg.run.report and dp.is_main:
        summary["report"] = str(write_run_report(run_dir))
    return summary
