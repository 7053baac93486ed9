"""rollwise inside the REAL verl registries (verl 0.9.1, CPU): estimators, the AIS loss, registration."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")

from omegaconf import OmegaConf  # noqa: E402  (installed with verl)
from verl import DataProto  # noqa: E402
from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_weights  # noqa: E402
from verl.workers.config import ActorConfig  # noqa: E402

from rollwise.config import ConfigError  # noqa: E402
from rollwise.rlvr.advantages import make_estimator  # noqa: E402
from rollwise.rlvr.batch import RolloutBatch  # noqa: E402
from rollwise.rlvr.correction import make_correction  # noqa: E402
from rollwise.rlvr.integrations import verl as rv  # noqa: E402

torch.set_num_threads(1)
UNTRUNCATED = 1e9  # rollout_is_threshold that never truncates exp(clamp(delta, -20, 20))


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    monkeypatch.delenv(rv.AIS_ENV, raising=False)
    rv.register_with_verl()


def verl_batch(seed: int = 0, sizes=(2, 3, 4, 5)):
    """verl-shaped inputs: interleaved string uids, int64 mask, the outcome reward on the last token."""
    g = torch.Generator().manual_seed(seed)
    group = torch.tensor([i for i, n in enumerate(sizes) for _ in range(n)])
    group = group[torch.randperm(group.numel(), generator=g)]
    b, t = group.numel(), 7
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()
    rewards = (torch.rand(b, generator=g) > 0.4).float()
    token_rewards = torch.zeros(b, t)
    token_rewards[torch.arange(b), lengths - 1] = rewards
    old = -(torch.rand(b, t, generator=g) * 3) * mask
    uids = np.array([f"uid-{int(i)}" for i in group], dtype=object)
    return dict(token_level_rewards=token_rewards, response_mask=mask, index=uids, old_log_probs=old), group, rewards


def rollwise_batch(inputs, group, rewards) -> RolloutBatch:
    b, t = inputs["response_mask"].shape
    return RolloutBatch(prompt_ids=torch.zeros(b, 0, dtype=torch.long), prompt_mask=torch.zeros(b, 0, dtype=torch.long),
                        response_ids=torch.ones(b, t, dtype=torch.long), response_mask=inputs["response_mask"].float(),
                        rollout_logprobs=inputs["old_log_probs"], group_ids=group, truncated=torch.zeros(b, dtype=bool),
                        rewards=rewards, old_logprobs=inputs["old_log_probs"])


def test_register_puts_our_functions_in_verls_registries_and_is_idempotent():
    names = ["rollwise_ucpo", "rollwise_divgrpo", "rollwise_basis", "rollwise_ais"]
    assert rv.register_with_verl() == names and rv.register_with_verl() == names
    assert core_algos.get_adv_estimator_fn("rollwise_ucpo") is rv.compute_rollwise_ucpo_advantage
    assert core_algos.get_adv_estimator_fn("rollwise_divgrpo") is rv.compute_rollwise_divgrpo_advantage
    assert core_algos.get_policy_loss_fn("rollwise_ais") is rv.compute_policy_loss_rollwise_ais
    assert core_algos.get_adv_estimator_fn("grpo") is core_algos.compute_grpo_outcome_advantage


@pytest.mark.parametrize("name,params", [("ucpo", {}), ("ucpo", {"tau": 0.7, "alpha": 0.1}),
                                         ("divgrpo", {}), ("divgrpo", {"tau": 0.3, "length_norm": True})])
def test_estimator_equals_rollwise_estimator_on_the_same_batch(name, params):
    inputs, group, rewards = verl_batch(seed=1)
    config = OmegaConf.create({"adv_estimator": f"rollwise_{name}", f"rollwise_{name}": params})
    fn = core_algos.get_adv_estimator_fn(f"rollwise_{name}")
    advantages, returns = fn(config=config, **inputs)
    expected = make_estimator(name, **params)(rollwise_batch(inputs, group, rewards))
    assert torch.equal(advantages, expected) and torch.equal(returns, expected)
    assert advantages.shape == inputs["response_mask"].shape and advantages.abs().sum() > 0


def test_ucpo_with_tau_zero_is_verls_grpo():
    for seed in range(3):
        inputs, _, _ = verl_batch(seed=seed)
        ours, _ = rv.compute_rollwise_ucpo_advantage(config=OmegaConf.create({"rollwise_ucpo": {"tau": 0.0}}),
                                                     **inputs)
        grpo, _ = core_algos.compute_grpo_outcome_advantage(inputs["token_level_rewards"], inputs["response_mask"],
                                                            inputs["index"])  # verl: Bessel std, eps 1e-6
        torch.testing.assert_close(ours, grpo, rtol=1e-6, atol=1e-6)
    default, _ = rv.compute_rollwise_ucpo_advantage(**inputs)  # tau = 0.2 does move the correct responses
    assert not torch.allclose(default, grpo)


def test_dataproto_helper_passes_old_log_probs_and_stock_call_fails_clearly():
    inputs, group, rewards = verl_batch(seed=2)
    data = DataProto.from_dict(tensors={k: inputs[k] for k in ("token_level_rewards", "response_mask",
                                                               "old_log_probs")},
                               non_tensors={"uid": inputs["index"]})
    out = rv.compute_rollwise_advantage(data, "rollwise_ucpo", OmegaConf.create({"use_kl_in_reward": False}))
    assert torch.equal(out.batch["advantages"], make_estimator("ucpo")(rollwise_batch(inputs, group, rewards)))
    # what verl 0.9.1's compute_advantage passes to a custom estimator (ray_trainer.py, "adv_kwargs")
    stock = {k: inputs[k] for k in ("token_level_rewards", "response_mask", "index")}
    with pytest.raises(ValueError, match="compute_rollwise_advantage"):
        core_algos.get_adv_estimator_fn("rollwise_ucpo")(config=None, **stock)


def test_config_errors_name_the_problem():
    inputs, _, _ = verl_batch()
    with pytest.raises(ConfigError, match="use_kl_in_reward"):
        rv.compute_rollwise_ucpo_advantage(config=OmegaConf.create({"use_kl_in_reward": True}), **inputs)
    with pytest.raises(ConfigError, match="valid parameters: tau"):
        rv.compute_rollwise_ucpo_advantage(config=OmegaConf.create({"rollwise_ucpo": {"taux": 1}}), **inputs)
    with pytest.raises(ValueError, match="at least 2 rollouts"):
        one, _, _ = verl_batch(sizes=(1, 3))
        rv.compute_rollwise_ucpo_advantage(**one)


def actor_config() -> ActorConfig:
    return ActorConfig(strategy="fsdp", ppo_mini_batch_size=4, ppo_micro_batch_size_per_gpu=2, rollout_n=4,
                       clip_ratio=0.2, clip_ratio_high=0.28)


def loss_inputs(seed: int, mismatch: float):
    g = torch.Generator().manual_seed(seed)
    b, t = 8, 6
    mask = (torch.arange(t)[None, :] < torch.randint(1, t + 1, (b,), generator=g)[:, None])
    old = -torch.rand(b, t, generator=g) * 2
    rollout = old + mismatch * torch.randn(b, t, generator=g)
    log_prob = (old + 0.1 * torch.randn(b, t, generator=g)).requires_grad_()
    adv = torch.randn(b, 1, generator=g).expand(b, t) * mask
    return old * mask, rollout * mask, log_prob, adv, mask


def verl_token_weights(old, rollout, mask, threshold):
    weights, _ = compute_rollout_correction_weights(old - rollout, mask.float(), "token", threshold)
    return weights


def test_ais_loss_with_identical_logprobs_is_verls_vanilla_loss():
    old, _, log_prob, adv, mask = loss_inputs(0, 0.0)
    w = verl_token_weights(old, old, mask, UNTRUNCATED)  # exactly 1 on valid tokens
    loss_fn = core_algos.get_policy_loss_fn("rollwise_ais")
    ours, metrics = loss_fn(old_log_prob=old, log_prob=log_prob, advantages=adv, response_mask=mask,
                            loss_agg_mode="token-mean", config=actor_config(), rollout_is_weights=w)
    vanilla, _ = core_algos.compute_policy_loss_vanilla(old_log_prob=old, log_prob=log_prob, advantages=adv,
                                                        response_mask=mask, loss_agg_mode="token-mean",
                                                        config=actor_config(), rollout_is_weights=None)
    assert torch.equal(ours, vanilla) and metrics["actor/ais/lambda"] == 0.0


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_ais_loss_applies_rollwise_ais_weights(agg, monkeypatch):
    monkeypatch.setenv(rv.AIS_ENV, json.dumps({"cap": 3.0, "tau_d": 0.1}))
    old, rollout, log_prob, adv, mask = loss_inputs(1, 0.3)
    ours, metrics = rv.compute_policy_loss_rollwise_ais(old, log_prob, adv, mask, agg, actor_config(),
                                                        verl_token_weights(old, rollout, mask, UNTRUNCATED))
    (grad_ours,) = torch.autograd.grad(ours, log_prob)
    b, t = mask.shape
    batch = RolloutBatch(prompt_ids=torch.zeros(b, 0, dtype=torch.long), prompt_mask=torch.zeros(b, 0, dtype=torch.long),
                         response_ids=torch.ones(b, t, dtype=torch.long), response_mask=mask.float(),
                         rollout_logprobs=rollout, group_ids=torch.arange(b), truncated=torch.zeros(b, dtype=bool),
                         old_logprobs=old, advantages=adv)
    w, keep, expected_metrics = make_correction("ais", cap=3.0, tau_d=0.1)(batch)
    assert keep is None and 0.0 < expected_metrics["ais/lambda"] < 1.0
    expected, _ = core_algos.compute_policy_loss_vanilla(old, log_prob, adv, mask, agg, actor_config(), w)
    (grad_expected,) = torch.autograd.grad(expected, log_prob)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_ours, grad_expected, rtol=1e-5, atol=1e-6)
    assert metrics["actor/ais/lambda"] == pytest.approx(expected_metrics["ais/lambda"], rel=1e-4)
    assert {"actor/pg_clipfrac", "actor/mismatch/ess_ratio"} <= metrics.keys()


def test_ais_loss_refuses_missing_weights_and_stateful_lambda(monkeypatch):
    old, rollout, log_prob, adv, mask = loss_inputs(2, 0.1)
    with pytest.raises(ValueError, match="rollout_is=token"):
        rv.compute_policy_loss_rollwise_ais(old, log_prob, adv, mask, "token-mean", actor_config(), None)
    monkeypatch.setenv(rv.AIS_ENV, '{"ema": 0.5}')
    with pytest.raises(ConfigError, match="ema must be 0"):
        rv.compute_policy_loss_rollwise_ais(old, log_prob, adv, mask, "token-mean", actor_config(),
                                            verl_token_weights(old, rollout, mask, UNTRUNCATED))


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_verls_builtin_tis_is_rollwise_tis(level):
    """Why no rollwise_tis loss is registered: verl's rollout_is=<level>, threshold C is rollwise's tis."""
    old, rollout, _, _, mask = loss_inputs(3, 0.4)
    theirs, _ = compute_rollout_correction_weights(old - rollout, mask.float(), level, 2.0)
    b, t = mask.shape
    batch = RolloutBatch(prompt_ids=torch.zeros(b, 0, dtype=torch.long), prompt_mask=torch.zeros(b, 0, dtype=torch.long),
                         response_ids=torch.ones(b, t, dtype=torch.long), response_mask=mask.float(),
                         rollout_logprobs=rollout, group_ids=torch.arange(b), truncated=torch.zeros(b, dtype=bool),
                         old_logprobs=old)
    ours, _, _ = make_correction("tis", level=level, cap=2.0)(batch)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


def test_verls_seq_mean_k1_rejection_is_rollwise_geo_rs():
    """verl's rollout_rs=seq_mean_k1 keeps a sequence iff log(lo) <= mean_t(-delta) <= log(hi), i.e. iff its
    geometric-mean ratio exp(mean_t delta) lies in [1/hi, 1/lo]: rollwise's mis at level="geometric" with
    weight="one" and lower=1/hi, upper=1/lo."""
    from verl.trainer.ppo.rollout_corr_helper import compute_rollout_rejection_mask

    old, rollout, _, _, mask = loss_inputs(4, 0.3)
    lo, hi = 0.9, 1.05
    theirs, _ = compute_rollout_rejection_mask(old - rollout, mask.float(), "seq_mean_k1", f"{lo}_{hi}")
    b, t = mask.shape
    batch = RolloutBatch(prompt_ids=torch.zeros(b, 0, dtype=torch.long), prompt_mask=torch.zeros(b, 0, dtype=torch.long),
                         response_ids=torch.ones(b, t, dtype=torch.long), response_mask=mask.float(),
                         rollout_logprobs=rollout, group_ids=torch.arange(b), truncated=torch.zeros(b, dtype=bool),
                         old_logprobs=old)
    _, keep, _ = make_correction("mis", level="geometric", lower=1 / hi, upper=1 / lo, weight="one")(batch)
    kept = keep.sum(-1) > 0
    assert 0 < int(kept.sum()) < b, "the bounds must keep some sequences and reject others (else vacuous)"
    torch.testing.assert_close(keep, theirs.to(keep.dtype) * mask.float())


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=240)


def test_importing_rollwise_never_imports_verl():
    code = ("import sys, rollwise, rollwise.rlvr.advantages, rollwise.rlvr.correction, rollwise.rlvr.trainer, "
            "rollwise.rlvr.integrations, rollwise.rlvr.integrations.verl\n"
            "assert not [m for m in sys.modules if m == 'verl' or m.startswith('verl.')], 'verl imported'")
    result = _run(code)
    assert result.returncode == 0, result.stderr


def test_verl_external_modules_loads_the_plugin_in_a_fresh_process():
    code = ("import verl.trainer.ppo.core_algos as c\n"
            "assert 'rollwise_ucpo' in c.ADV_ESTIMATOR_REGISTRY and 'rollwise_ais' in c.POLICY_LOSS_REGISTRY")
    result = _run(code, VERL_USE_EXTERNAL_MODULES="rollwise.rlvr.integrations.verl_plugin")
    assert result.returncode == 0, result.stderr


def test_missing_verl_names_the_extra(monkeypatch):
    for name in ("verl", "verl.trainer", "verl.trainer.ppo", "verl.trainer.ppo.core_algos"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"rollwise\[verl\]"):
        rv.register_with_verl()
