"""The starting policy of a run: a hub/local model, or the tiny from-scratch model with its SFT warm start."""

from __future__ import annotations

import json
from pathlib import Path

from rollwise.rlvr.run_config import RLVRConfig


def quiet_transformers() -> None:
    """Silence transformers' logging and download progress bars (the CLI's own output stays readable)."""
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
    summary = None
    if warm_up and cfg.sft.enabled and cfg.sft.steps > 0:
        examples = task.sft_examples(cfg.sft.examples, seed=cfg.train.seed)
        reached = _accuracy_target(cfg, task, model, tokenizer)
        losses = supervised_warm_start(model, tokenizer, [e.prompt for e in examples], [e.target for e in examples],
                                       steps=cfg.sft.steps, batch_size=cfg.sft.batch_size, lr=cfg.sft.lr,
                                       seed=cfg.train.seed, compact=cfg.sft.forward == "compact",
                                       stop=reached, check_every=cfg.sft.check_every)
        summary = {"steps": len(losses), "max_steps": cfg.sft.steps, "target_accuracy": cfg.sft.target_accuracy,
                   "checks": reached.history if reached else []}
    if warm_dir is not None:
        save_policy(model, tokenizer, warm_dir, tiny=cfg.model.tiny)
        if summary is not None:
            (warm_dir / "sft.json").write_text(json.dumps(summary) + "\n")
    return model, tokenizer


def _accuracy_target(cfg: RLVRConfig, task, model, tokenizer):
    """The warm start's ``sft.AccuracyTarget`` on the first ``sft.check_prompts`` training prompts (never the test
    pool); None when ``sft.target_accuracy`` is 0."""
    from rollwise.config import ConfigError
    from rollwise.rlvr.sft import AccuracyTarget

    target = cfg.sft.target_accuracy
    if not target:
        return None
    if not task.unique_answer:
        raise ConfigError(f"sft.target_accuracy={target} needs a task with a unique answer per prompt (its "
                          f"accuracy is computed exactly); task {cfg.task.name!r} has several: set it to 0")
    check = task.examples("train")[: cfg.sft.check_prompts]
    return AccuracyTarget(model, tokenizer, [e.prompt for e in check], [e.target or e.answer for e in check], target)
