"""The configuration of an RLVR run: one typed dataclass per section, validated at start-up.

``rollwise train --print-config`` prints the resolved config as TOML; any field can be set from a TOML
file (``--config``) or a dotted override (``--set train.steps=50``).
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from rollwise.config import ConfigError, apply_overrides, from_dict, load_toml, merge, to_dict
from rollwise.rlvr.engines.base import SamplingConfig
from rollwise.rlvr.models import TinyModelConfig


@dataclass
class ModelSection:
    name_or_path: str = ""  # local folder or hub id; empty = build the tiny model from scratch
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)  # size of the from-scratch model
    init_seed: int = 0  # seed of the from-scratch initialisation
    forward: Literal["compact", "hf"] = "compact"  # teacher-forced passes: compact Llama/Qwen2 forward or transformers'


@dataclass
class TaskSection:
    name: str = "add3"  # add3 | make_n | countdown | reverse | dataset (see rollwise.rlvr.tasks)
    params: dict[str, Any] = field(default_factory=dict)  # task parameters, e.g. {max_operand = 999}
    reward_timeout_s: float = 10.0  # a reward function slower than this is contained and counted
    reward_isolation: Literal["auto", "thread", "process"] = "auto"  # auto: rollwise's verifiers in threads, others in a process


@dataclass
class SFTSection:
    enabled: bool = True  # supervised warm start before RL (only for from-scratch models by default)
    steps: int = 400  # optimizer steps
    batch_size: int = 128  # sequences per step
    lr: float = 1e-3  # Adam learning rate
    examples: int = 20000  # size of the warm-start pool drawn from the task
    # transformers' forward keeps a warm start (pi_0) bit for bit what it was before the compact forward existed;
    # "compact" skips the last layer's work on prompt positions (no loss there), takes 1.24-1.36x less time per
    # step (rollwise bench sft-step), and gives the same log-probs and gradients to float32 rounding. The built-in default job sets it
    forward: Literal["compact", "hf"] = "hf"  # forward of the warm start
    # stop the warm start once the exact expected accuracy on ``check_prompts`` training prompts reaches this
    # (checked every ``check_every`` steps; unique-answer tasks only); 0 runs all ``steps``. The tiny model's
    # accuracy jumps at a step that varies by seed, so a fixed step count gave a pi_0 from 0.12 to 0.75 (the
    # previous default job, seeds 0-2); a target gives comparable starting points (the default job uses 0.3)
    target_accuracy: float = 0.0
    check_every: int = 50  # steps between accuracy checks (with target_accuracy)
    check_prompts: int = 256  # training prompts the check scores (never the test pool)


@dataclass
class RolloutSection(SamplingConfig):
    engine: str = "lean"  # lean | hf | quantized | ray | vllm
    engine_params: dict[str, Any] = field(default_factory=dict)  # engine-specific settings
    batch_size: int = 512  # sequences per generate call


@dataclass
class LossSection:
    clip_low: float = 0.2  # PPO ratio lower clip range (1 - clip_low)
    clip_high: float = 0.2  # PPO ratio upper clip range (1 + clip_high); DAPO's clip-higher uses 0.28
    dual_clip_c: float | None = None  # dual-clip constant c > 1 for negative advantages (None = off)
    agg_mode: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"] = \
        "token-mean"  # loss aggregation
    kl_coef: float = 0.0  # KL-to-reference coefficient in the loss (0 = no reference model)
    kl_kind: Literal["k1", "k2", "k3", "abs"] = "k3"  # KL estimator
    entropy_coef: float = 0.0  # entropy bonus coefficient (entropy is always logged)


@dataclass
class AlgorithmSection:
    estimator: str = "reinforce_pp"  # advantage estimator (registry name)
    estimator_params: dict[str, Any] = field(default_factory=dict)  # its parameters (KL-in-reward: kl_coef)
    correction: str = "none"  # rollout/train mismatch correction (registry name)
    correction_params: dict[str, Any] = field(default_factory=dict)  # its parameters
    loss: LossSection = field(default_factory=LossSection)


@dataclass
class TrainSection:
    steps: int = 100  # RL steps (one rollout batch each)
    prompts_per_step: int = 64  # prompts per step; rollouts per step = prompts x rollout.n
    ppo_epochs: int = 1  # passes over each rollout batch
    reuse_logprobs: bool = True  # one on-policy update: old log-probs from the update's forward (no extra pass)
    mini_batches: int = 1  # optimizer steps per epoch
    micro_batch_size: int = 0  # gradient accumulation chunk in sequences (0 = whole mini-batch)
    rollout_shards: int = 0  # seeded rollout shards per step (0 = world size); 1 process with N = an N-rank run's batches
    parallel: Literal["ddp", "fsdp2"] = "ddp"  # under torchrun: replicate the policy or shard it (FSDP2)
    lr: float = 1e-4  # AdamW learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"  # decay after warm-up
    warmup_steps: int = 0  # linear warm-up steps
    max_grad_norm: float = 1.0  # gradient clipping (0 = off)
    seed: int = 0  # seeds prompts, sampling and everything else
    eval_every: int = 20  # steps between evaluations (0 = only at the end)
    eval_prompts: int = 512  # test prompts used per evaluation
    checkpoint_every: int = 50  # steps between checkpoints (0 = only at the end)
    keep_checkpoints: int = 2  # most recent checkpoints kept

    def lr_factor(self, step: int) -> float:
        """The learning-rate multiplier after ``step`` scheduler steps: linear warm-up, then the schedule."""
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        frac = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        if self.lr_schedule == "linear":
            return max(0.0, 1.0 - frac)
        if self.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))
        return 1.0


@dataclass
class RunSection:
    output_dir: str = "runs/default"  # everything of the run goes here
    threads: int = 0  # torch threads (0 = all cores)
    tensorboard: bool = False  # also write tensorboard scalars (needs the tensorboard extra)
    report: bool = True  # write the Markdown report with plots at the end


# ---- CoDistill-GRPO (docs/codistill.md) -------------------------------------------------------------------
@dataclass
class CoDistillSection:
    enabled: bool = False  # train a large model alongside on the small (= model.*) model's rollouts
    large: ModelSection = field(default_factory=lambda: ModelSection(tiny=TinyModelConfig(
        hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512)))  # the large model (same tokenizer)
    large_sft_steps: int = -1  # SFT steps of the large model's warm start (-1 = sft.steps)
    large_lr: float = 0.0  # AdamW learning rate of the large model (0 = train.lr)
    m: int = 16  # rollouts generated per prompt by the small model (the paper's M is not known; maybe 14)
    g: int = 8  # rollouts kept per prompt for both updates (the paper's Table 4 as the RESD reproduction reads it)
    alpha: float = 1.0  # weight of the KD reward in r~ = r + alpha * r_KD (the paper: 1 main, 2 ablation)
    kd_adv_norm: Literal["mean", "mean_std"] = "mean_std"  # small model's A~ normalisation (inferred)
    large_adv_norm: Literal["mean", "mean_std"] = "mean_std"  # large model's A^ on verifier reward (inferred)
    downsample: Literal["maxvar", "random", "none"] = "maxvar"  # M -> G rule (maxvar = PODS, inferred)
    large_is_mode: Literal["ppo_clip", "truncated"] = "truncated"  # cross-model IS (ppo_clip = paper)
    is_clip_c: float = 2.0  # truncation bound c of the truncated weights min(w, c)
    hint_tokens: int = 0  # tokens of the large model's hint prefix (paper T = 50; 0 = off)
    hint_epochs: int = 1  # epochs (passes over the train prompts) that use hints (paper: first only)
    mask_hints_small: bool = True  # leave hint tokens out of the small model's loss (inferred)


@dataclass
class RLVRConfig:
    model: ModelSection = field(default_factory=ModelSection)
    task: TaskSection = field(default_factory=TaskSection)
    sft: SFTSection = field(default_factory=SFTSection)
    rollout: RolloutSection = field(default_factory=RolloutSection)
    algorithm: AlgorithmSection = field(default_factory=AlgorithmSection)
    train: TrainSection = field(default_factory=TrainSection)
    run: RunSection = field(default_factory=RunSection)
    codistill: CoDistillSection = field(default_factory=CoDistillSection)  # CoDistill-GRPO (off by default)

    def validate(self) -> None:
        """Every range and cross-field check, run at load before any work (the SFT warm start included);
        each error names the key, its value and what is allowed."""
        _check_ranges(self)
        if not 0 < self.rollout.top_p <= 1:
            raise ConfigError(f"rollout.top_p={self.rollout.top_p} must be in (0, 1]")
        if self.rollout.temperature <= 0:
            raise ConfigError(f"rollout.temperature={self.rollout.temperature} must be > 0")
        if self.train.prompts_per_step * self.rollout.n < self.train.mini_batches:
            raise ConfigError("train.mini_batches exceeds the number of rollouts per step")
        from rollwise.rlvr.advantages import make_estimator
        from rollwise.rlvr.correction import make_correction
        from rollwise.rlvr.tasks import make_task

        _check_codistill(self)
        make_estimator(self.algorithm.estimator, **self.algorithm.estimator_params).validate(self.rollout.n)
        make_correction(self.algorithm.correction, **self.algorithm.correction_params)
        _check_engine(self.rollout.engine)
        make_task(self.task.name, **self.task.params)


def _check_codistill(cfg: RLVRConfig) -> None:
    """CoDistill-GRPO reads only the settings it can honour; any other combination is refused, naming the keys."""
    cd, alg = cfg.codistill, cfg.algorithm
    if not cd.enabled:
        if alg.estimator == "codistill":
            raise ConfigError("algorithm.estimator='codistill' reads the effective reward of CoDistill-GRPO's "
                              "scoring stage; set codistill.enabled=true (or --algorithm codistill)")
        return
    if alg.estimator != "codistill":
        raise ConfigError(f"codistill.enabled=true with algorithm.estimator={alg.estimator!r}: CoDistill-GRPO's small "
                          "model uses its own estimator (GRPO on the effective reward r~ = r + alpha r_KD); set "
                          "algorithm.estimator=codistill")
    if alg.estimator_params:
        raise ConfigError(f"codistill.enabled=true with algorithm.estimator_params={alg.estimator_params}: the "
                          "codistill estimator's normalisation is codistill.kd_adv_norm; remove "
                          "algorithm.estimator_params")
    if alg.correction != "none" and cd.hint_tokens > 0 and not cd.mask_hints_small:
        raise ConfigError(f"codistill.hint_tokens={cd.hint_tokens} with codistill.mask_hints_small=false and "
                          f"algorithm.correction={alg.correction!r}: hint tokens come from the large model and have "
                          "no rollout log-prob of the small model to correct against; use algorithm.correction=none "
                          "or codistill.mask_hints_small=true")
    if cfg.rollout.n != cd.m:
        raise ConfigError(f"codistill.enabled=true with rollout.n={cfg.rollout.n} and codistill.m={cd.m}: the small "
                          "model generates codistill.m rollouts per prompt; leave rollout.n unset or equal to "
                          "codistill.m")
    if not 2 <= cd.g <= cd.m:
        raise ConfigError(f"codistill.g={cd.g} and codistill.m={cd.m} need 2 <= g <= m")
    if cd.is_clip_c <= 0:
        raise ConfigError(f"codistill.is_clip_c={cd.is_clip_c} must be > 0")


#: (key, test, what is allowed) for every numeric setting; the tests run on the value
RANGES: list[tuple[str, Callable[[Any], bool], str]] = [
    *((k, lambda v: v >= 1, "an integer >= 1") for k in (
        "train.steps", "train.prompts_per_step", "train.ppo_epochs", "train.mini_batches", "train.eval_prompts",
        "rollout.n", "rollout.max_new_tokens", "rollout.batch_size", "sft.batch_size", "sft.examples",
        "model.tiny.hidden_size", "model.tiny.num_layers", "model.tiny.num_heads", "model.tiny.intermediate_size",
        "model.tiny.max_positions", "codistill.hint_epochs", "sft.check_every", "sft.check_prompts")),
    *((k, lambda v: v >= 0, "an integer >= 0") for k in (
        "train.micro_batch_size", "train.rollout_shards", "train.warmup_steps", "train.eval_every",
        "train.checkpoint_every", "train.keep_checkpoints", "sft.steps", "run.threads", "codistill.hint_tokens")),
    *((k, lambda v: math.isfinite(v) and v > 0, "a finite number > 0") for k in (
        "train.lr", "sft.lr", "rollout.temperature", "task.reward_timeout_s", "codistill.is_clip_c")),
    *((k, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0") for k in (
        "train.weight_decay", "train.max_grad_norm", "algorithm.loss.clip_high", "algorithm.loss.kl_coef",
        "codistill.large_lr", "codistill.alpha")),
    ("algorithm.loss.clip_low", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("algorithm.loss.entropy_coef", math.isfinite, "a finite number"),
    ("algorithm.loss.dual_clip_c", lambda v: v is None or (math.isfinite(v) and v > 1), "a number > 1 (or unset)"),
    ("rollout.top_p", lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("sft.target_accuracy", lambda v: 0 <= v <= 1, "a number in [0, 1] (0: no target)"),
    ("codistill.large_sft_steps", lambda v: v >= -1, "an integer >= 0, or -1 for sft.steps"),
    ("run.output_dir", lambda v: bool(v.strip()), "a non-empty folder path"),
]


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _check_ranges(cfg: RLVRConfig) -> None:
    """Ranges of single settings (``RANGES``) and the combinations that make a run meaningless."""
    for key, ok, allowed in RANGES:
        value = _get(cfg, key)
        if not ok(value):
            raise ConfigError(f"{key}={value!r} is invalid; it must be {allowed}")
    tiny = cfg.model.tiny
    if tiny.hidden_size % tiny.num_heads:
        raise ConfigError(f"model.tiny.hidden_size={tiny.hidden_size} must be divisible by "
                          f"model.tiny.num_heads={tiny.num_heads}")


def _check_engine(name: str) -> None:
    """``rollout.engine`` names a registered engine whose module exists (nothing is imported or built)."""
    import importlib.util

    from rollwise.rlvr.engines import ENGINES

    if importlib.util.find_spec(ENGINES[name].split(":")[0]) is None:  # ENGINES[name]: unknown names listed
        raise ConfigError(f"rollout.engine={name!r} is planned but not implemented in this version of rollwise")


#: named presets for ``rollwise train --algorithm NAME`` (merged over the built-in defaults)
PRESETS: dict[str, dict[str, Any]] = {
    "reinforce_pp": {"algorithm": {"estimator": "reinforce_pp"}, "rollout": {"n": 1}},
    "grpo": {"algorithm": {"estimator": "grpo"}, "rollout": {"n": 8}},
    "dr_grpo": {"algorithm": {"estimator": "dr_grpo", "loss": {"agg_mode": "seq-mean-token-sum-norm"}},
                "rollout": {"n": 8}},
    "rloo": {"algorithm": {"estimator": "rloo"}, "rollout": {"n": 4}},
    "reinforce_pp_baseline": {"algorithm": {"estimator": "reinforce_pp_baseline"}, "rollout": {"n": 4}},
    # BASIS (docs/basis.md): one rollout per prompt, offline pi_0 prior + cross-fitted batch calibration
    "basis": {"algorithm": {"estimator": "basis"}, "rollout": {"n": 1}},
    # UCPO (docs/ucpo.md): the authors' iq estimator and run scripts: tau 0.2, alpha 0, PPO dual-clip 3, 8 rollouts
    "ucpo": {"algorithm": {"estimator": "ucpo", "estimator_params": {"tau": 0.2},
                           "loss": {"dual_clip_c": 3.0, "agg_mode": "token-mean"}}, "rollout": {"n": 8}},
    # CoDistill-GRPO (docs/codistill.md): small model (model.*) + large model (codistill.large), M=16 -> G=8,
    # alpha 1, seq-mean-token-mean as the paper's KD loss; the small model is the tiny 1-layer d=32 transformer
    "codistill": {"algorithm": {"estimator": "codistill", "loss": {"agg_mode": "seq-mean-token-mean"}},
                  "model": {"tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64}},
                  "codistill": {"enabled": True, "m": 16, "g": 8, "alpha": 1.0}},
}


def resolve_config(config_file: str | None = None, overrides: list[str] | None = None,
                   algorithm: str | None = None, base: dict[str, Any] | None = None) -> RLVRConfig:
    """Defaults <- preset <- TOML file <- ``--set`` overrides; then validate.

    ``base``'s task parameters belong to ``base``'s task: when a later layer names another task, they are
    dropped rather than passed to a task that does not know them.
    """
    layers: dict[str, Any] = {}
    if algorithm:
        if algorithm not in PRESETS:
            raise ConfigError(f"--algorithm {algorithm!r} is not a preset; valid choices: {', '.join(PRESETS)}")
        layers = merge(layers, copy.deepcopy(PRESETS[algorithm]))  # overrides must not mutate the preset
    if config_file:
        layers = merge(layers, load_toml(config_file))
    layers = apply_overrides(layers, list(overrides or []))
    data: dict[str, Any] = copy.deepcopy(base or {})
    task_name = layers.get("task", {}).get("name") if isinstance(layers.get("task"), dict) else None
    if task_name and task_name != data.get("task", {}).get("name", task_name):
        data["task"].pop("params", None)
    data = merge(data, layers)
    cfg = from_dict(RLVRConfig, data)
    _codistill_rollouts(cfg, layers)
    cfg.validate()
    return cfg


def _codistill_rollouts(cfg: RLVRConfig, layers: dict[str, Any]) -> None:
    """Under CoDistill the small model generates ``codistill.m`` rollouts per prompt: ``rollout.n`` follows it
    unless the preset, file or overrides set it (a different explicit value is then refused by ``validate``)."""
    explicit = isinstance(layers.get("rollout"), dict) and "n" in layers["rollout"]
    if cfg.codistill.enabled and not explicit and cfg.rollout.n != cfg.codistill.m:
        print(f"rollwise: codistill.enabled: rollout.n={cfg.rollout.n} is replaced by codistill.m={cfg.codistill.m} "
              "(rollouts per prompt of the small model)", file=sys.stderr)
        cfg.rollout.n = cfg.codistill.m


def config_to_dict(cfg: RLVRConfig) -> dict[str, Any]:
    return to_dict(cfg)
