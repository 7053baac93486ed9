"""rollwise's estimators and corrections inside the REAL TRL GRPOTrainer (trl 1.16.0, CPU, tiny model)."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("trl")

from rollwise.config import ConfigError  # noqa: E402
from rollwise.rlvr.advantages import make_estimator  # noqa: E402
from rollwise.rlvr.batch import RolloutBatch  # noqa: E402
from rollwise.rlvr.correction import make_correction  # noqa: E402
from rollwise.rlvr.integrations import trl_trainer as tt  # noqa: E402
from rollwise.rlvr.integrations.trl import reward_funcs, task_dataset  # noqa: E402
from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, sequence_logprobs, tiny_causal_lm  # noqa: E402
from rollwise.rlvr.sft import supervised_warm_start  # noqa: E402
from rollwise.rlvr.tasks import make_task  # noqa: E402

torch.set_num_threads(1)
TASK = dict(max_operand=9, n_train=16, n_test=4)
BASIS = {"offline_rollouts": 4, "folds": 2}
ESTIMATORS = [("grpo", {}, 4), ("dr_grpo", {}, 4), ("rloo", {}, 4), ("reinforce_pp", {}, 4),
              ("reinforce_pp_baseline", {}, 4), ("ucpo", {"tau": 0.5}, 4), ("divgrpo", {}, 4), ("basis", BASIS, 1),
              ("reinforce_pp", {}, 1)]


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


@pytest.fixture(scope="module")
def warm(tok):
    """A tiny Qwen2 after a short supervised warm start on add3, so that rewards vary within a batch."""
    task = make_task("add3", **TASK)
    torch.manual_seed(0)
    model = tiny_causal_lm(tok, TinyModelConfig())
    sft = task.sft_examples(256, seed=0)
    supervised_warm_start(model, tok, [e.prompt for e in sft], [e.target for e in sft], steps=60, batch_size=32,
                          lr=3e-3, seed=0)
    return model.state_dict()


class Recording(tt.RollwiseGRPOTrainer):
    """Keeps every generation batch's TRL output (advantages, masks, ids) for the assertions."""

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self.outputs = [*getattr(self, "outputs", []), {k: v for k, v in output.items() if torch.is_tensor(v)}]
        return output

    def rollwise_batch(self, output, prompts):
        batch = super().rollwise_batch(output, prompts)
        self.batches = [*getattr(self, "batches", []), batch]
        return batch


def make_trainer(tok, warm, out_dir, name, params, n, max_steps=3, cls=Recording, **config):
    task = make_task("add3", **TASK)
    model = tiny_causal_lm(tok, TinyModelConfig())
    model.load_state_dict(warm)
    args = tt.RollwiseGRPOConfig(
        output_dir=str(out_dir), max_steps=max_steps, per_device_train_batch_size=8, num_generations=n,
        max_completion_length=3, learning_rate=1e-3, bf16=False, activation_checkpointing=False, use_vllm=False,
        report_to=[], logging_steps=1, save_strategy="steps", save_steps=1, seed=0, use_cpu=True,
        disable_tqdm=True, **config)
    return cls(model=model, reward_funcs=reward_funcs(task, tok, model), args=args,
               train_dataset=task_dataset(task), processing_class=tok, estimator=name, estimator_params=params)


def rollwise_view(trainer, inputs, output):
    """The RolloutBatch rollwise's own trainer would build: TRL's rewards and groups, rollwise's own log-probs."""
    n = trainer.num_generations
    mask = output["completion_mask"].float()
    ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
    attention = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
    with torch.no_grad():
        old = sequence_logprobs(trainer.model, ids, attention, mask.shape[1], trainer.temperature)[0] * mask
    b = mask.shape[0]
    batch = RolloutBatch(prompt_ids=output["prompt_ids"], prompt_mask=output["prompt_mask"],
                         response_ids=output["completion_ids"], response_mask=mask, rollout_logprobs=old,
                         group_ids=torch.arange(b) // n, truncated=torch.zeros(b, dtype=torch.bool),
                         prompts=[x["prompt"] for x in inputs], rewards=trainer._rollwise_rewards[:, 0].clone(),
                         old_logprobs=old)
    return batch


@pytest.mark.parametrize("name,params,n", ESTIMATORS, ids=[f"{e}-n{n}" for e, _, n in ESTIMATORS])
def test_advantages_equal_rollwise_estimator_on_one_trl_batch(tok, warm, tmp_path, name, params, n):
    trainer = make_trainer(tok, warm, tmp_path, name, params, n)
    own = make_estimator(name, **params)
    rows = trainer.train_dataset
    prompts = rows["prompt"][:8 // n]
    if name == "basis":  # the same prior table in both
        p0 = torch.linspace(0.1, 0.9, len(rows))
        trainer.rollwise_estimator.set_prior(rows["prompt"], p0)
        own.set_prior(rows["prompt"], p0)
    inputs = [dict(rows[i]) for i in range(len(prompts)) for _ in range(n)]
    trainer.model.train()
    output = trainer._generate_and_score_completions(inputs)
    batch = rollwise_view(trainer, inputs, output)
    assert 0 < float(batch.rewards.sum()) < batch.size, "rewards must vary, else every estimator gives 0"
    want = own(batch)
    got = output["advantages"]
    assert got.shape == want.shape and float(got.abs().sum()) > 0
    if "old_logprobs" in own.fields_read():  # log-probs from TRL's scorer vs rollwise's: the last bits may differ
        torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5)
    else:
        assert torch.equal(got, want.float())


def test_estimator_that_refuses_the_group_size_fails_at_construction(tok, warm, tmp_path):
    with pytest.raises(ConfigError, match="at least 2 rollouts"):
        make_trainer(tok, warm, tmp_path, "grpo", {}, 1)
    with pytest.raises(ConfigError, match="exactly one rollout"):
        make_trainer(tok, warm, tmp_path, "basis", {}, 4)


def test_correction_without_rollout_logprobs_is_a_clear_error(tok, warm, tmp_path):
    task = make_task("add3", **TASK)
    model = tiny_causal_lm(tok, TinyModelConfig())
    args = tt.RollwiseGRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=8,
                                 num_generations=4, bf16=False, use_cpu=True, report_to=[])
    for correction in ("tis", "mis", "ais"):
        with pytest.raises(ConfigError, match="use_vllm=True or a rollout_func"):
            tt.RollwiseGRPOTrainer(model=model, reward_funcs=reward_funcs(task, tok, model), args=args,
                                   train_dataset=task_dataset(task), processing_class=tok, correction=correction)


def test_config_accepts_one_generation_and_keeps_trls_other_checks(tmp_path):
    args = tt.RollwiseGRPOConfig(output_dir=str(tmp_path), num_generations=1, per_device_train_batch_size=3,
                                 use_cpu=True, report_to=[])
    assert args.num_generations == 1 and type(args.num_generations) is int and args.generation_batch_size == 3
    with pytest.raises(ValueError, match="divisible by num_generations"):
        tt.RollwiseGRPOConfig(output_dir=str(tmp_path), num_generations=2, per_device_train_batch_size=3,
                              use_cpu=True, report_to=[])
    from trl import GRPOConfig

    with pytest.raises(ValueError, match="at least 2 generations"):  # TRL itself is untouched
        GRPOConfig(output_dir=str(tmp_path), num_generations=1, per_device_train_batch_size=4, use_cpu=True)


DIAGNOSTICS = {"grpo": [], "rloo": [], "reinforce_pp": [], "ucpo": ["ucpo/groups_active"],
               "basis": ["basis/a", "basis/b", "basis/mse_proxy", "basis/prior_missing"]}
RUNS = [("grpo", {}, 4), ("rloo", {}, 4), ("reinforce_pp", {}, 4), ("ucpo", {"tau": 0.5}, 4), ("basis", BASIS, 1),
        ("reinforce_pp", {}, 1)]


@pytest.mark.parametrize("name,params,n", RUNS, ids=[f"{r[0]}-n{r[2]}" for r in RUNS])
def test_trainer_runs_logs_checkpoints_and_resumes_with_the_same_advantages(tok, warm, tmp_path, name, params, n):
    trainer = make_trainer(tok, warm, tmp_path, name, params, n)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rollwise/adv_abs_mean" in h]
    assert len(logs) == 3 and len(trainer.outputs) == 3
    assert any(h["grad_norm"] > 0 for h in logs)
    for key in ["rollwise/accuracy", *DIAGNOSTICS[name]]:
        assert all(key in h for h in logs), key
    assert any(h["rollwise/adv_abs_mean"] > 0 for h in logs)
    checkpoint = tmp_path / "checkpoint-1"
    assert (checkpoint / tt.STATE_FILE).exists()
    if name == "basis":
        state = torch.load(checkpoint / tt.STATE_FILE, weights_only=False)["estimator"]
        assert state["steps"] == 1 and len(state["prompts"]) == 16 and state["offline"]["rollouts"] == 64
        assert logs[1]["basis/a"] != 0.0  # the calibration moved after step 1 and is carried
    resumed = make_trainer(tok, warm, tmp_path, name, params, n)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert len(resumed.outputs) == 2  # steps 2 and 3, and no offline stage
    for step in (0, 1):
        for key in ("completion_ids", "advantages"):
            assert torch.equal(resumed.outputs[step][key], trainer.outputs[step + 1][key]), (step, key)
    if name == "basis":
        assert resumed.rollwise_estimator.steps == trainer.rollwise_estimator.steps == 3


def test_resume_without_rollwise_state_fails_clearly(tok, warm, tmp_path):
    trainer = make_trainer(tok, warm, tmp_path, "basis", BASIS, 1, max_steps=2)
    trainer.train()
    (tmp_path / "checkpoint-2" / tt.STATE_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="rollwise_state.pt"):
        make_trainer(tok, warm, tmp_path, "basis", BASIS, 1).train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))


# ------------------------------------------------------------------------------------ corrections
def mismatched_rollout_func(shift: float):
    """A TRL rollout_func that samples with TRL's own generator and reports log-probs of a slightly different
    engine (the trainer's log-probs plus noise), as an engine in another precision would."""

    def rollout(prompts, trainer):
        prompt_ids, _, _ = trainer._tokenize_prompts(prompts)
        completion_ids, _ = trainer._generate_single_turn(prompt_ids, None, {}, trainer.num_generations)
        logprobs = []
        g = torch.Generator().manual_seed(len(trainer.outputs) if hasattr(trainer, "outputs") else 0)
        for p, c in zip(prompt_ids, completion_ids, strict=True):
            ids = torch.tensor([p + c])
            with torch.no_grad():
                lp = sequence_logprobs(trainer.model, ids, torch.ones_like(ids), len(c), trainer.temperature)[0][0]
            logprobs.append((lp + shift * torch.randn(len(c), generator=g)).tolist())
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs}

    return rollout


@pytest.mark.parametrize("correction,params", [("tis", {"cap": 1.5}), ("mis", {"level": "token", "lower": 0.8,
                                                                                 "upper": 1.25}), ("ais", {})])
def test_correction_weights_from_rollout_logprobs(tok, warm, tmp_path, correction, params):
    task = make_task("add3", **TASK)
    model = tiny_causal_lm(tok, TinyModelConfig())
    model.load_state_dict(warm)
    args = tt.RollwiseGRPOConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8,
                                 num_generations=4, max_completion_length=3, learning_rate=1e-3, bf16=False,
                                 activation_checkpointing=False, report_to=[], logging_steps=1, save_strategy="no",
                                 seed=0, use_cpu=True, disable_tqdm=True)
    trainer = Recording(model=model, reward_funcs=reward_funcs(task, tok, model), args=args,
                        train_dataset=task_dataset(task), processing_class=tok, rollout_func=mismatched_rollout_func(0.3),
                        estimator="grpo", correction=correction, correction_params=params)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "mismatch/ess_ratio" in h]
    assert len(logs) == 2 and all(h["mismatch/abs_log_ratio"] > 0.1 for h in logs)
    out, seen = trainer.outputs[-1], trainer.batches[-1]
    mask = out["completion_mask"].float()
    b = mask.shape[0]
    torch.testing.assert_close(seen.rollout_logprobs, out["sampling_per_token_logps"] * mask)
    batch = RolloutBatch(prompt_ids=out["prompt_ids"], prompt_mask=out["prompt_mask"],
                         response_ids=out["completion_ids"], response_mask=mask,
                         rollout_logprobs=out["sampling_per_token_logps"] * mask, group_ids=torch.arange(b) // 4,
                         truncated=torch.zeros(b, dtype=torch.bool), rewards=seen.rewards,
                         old_logprobs=seen.old_logprobs)
    batch.advantages = make_estimator("grpo")(batch)
    own = make_correction(correction, **params)
    if correction == "ais":  # lambda is per batch (ema 0): no state to replay
        assert own.cfg.ema == 0.0
    w, keep, metrics = own(batch)
    expected = batch.advantages * (1.0 if w is None else w) * (1.0 if keep is None else keep)
    torch.testing.assert_close(out["advantages"], expected.float(), rtol=1e-5, atol=1e-6)
    if correction == "mis":
        assert 0 < float((keep * mask).sum()) < float(mask.sum())  # some tokens rejected, some kept
        assert torch.equal(out["tool_mask"], keep.long())
        assert int(out["num_items_in_batch"]) == int((mask * keep).sum())
    if correction == "ais":
        assert "ais/lambda" in logs[-1] and math.isfinite(logs[-1]["ais/lambda"])


def test_weighting_the_advantages_equals_trls_own_ratio_in_the_loss(tok, warm, tmp_path):
    """What the correction relies on: TRL's loss with advantages A*w equals TRL's loss with A and its own
    vLLM importance_sampling_ratio w (the path TRL uses for its vLLM correction), value and gradient."""
    trainer = make_trainer(tok, warm, tmp_path, "grpo", {}, 4)
    rows = trainer.train_dataset
    trainer.model.train()
    out = trainer._generate_and_score_completions([dict(rows[i]) for i in range(2) for _ in range(4)])
    g = torch.Generator().manual_seed(0)
    w = torch.rand(out["completion_mask"].shape, generator=g) * 2
    out["old_per_token_logps"] = trainer._old_logprobs(out)

    trainer.current_gradient_accumulation_steps = 1  # set by TRL's training loop

    def loss_and_grad(inputs, vllm_is):
        trainer.use_vllm = trainer.vllm_importance_sampling_correction = vllm_is
        trainer.model.zero_grad()
        loss = trainer._compute_loss(trainer.model, inputs)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]

    try:
        folded, g1 = loss_and_grad({**out, "advantages": out["advantages"] * w}, False)
        theirs, g2 = loss_and_grad({**out, "importance_sampling_ratio": w}, True)
    finally:
        trainer.use_vllm = trainer.vllm_importance_sampling_correction = False
    torch.testing.assert_close(folded, theirs)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b)
    assert folded.abs() > 0
