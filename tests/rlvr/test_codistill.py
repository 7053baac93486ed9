"""CoDistill-GRPO (specs/codistill.md 2.2 unit tests): KD reward, Theorem-1 gradient, max-variance downsampling,
hint masking, cross-model importance weights, determinism, checkpointing of both models and a learning check."""

import copy
import math

import pytest
import torch

from rollwise.config import ConfigError
from rollwise.rlvr.codistill import (
    brute_force_maxvar,
    codistill_trainer,
    cross_model_targets,
    distinct_row_logprobs,
    downsample_groups,
    effective_reward,
    kd_reward,
    maxvar_downsample,
)
from rollwise.rlvr.losses import ppo_clip_loss
from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, sequence_logprobs, tiny_causal_lm
from rollwise.rlvr.run_config import resolve_config
from rollwise.rlvr.tasks import make_task
from rollwise.rlvr.trainer import Trainer

TINY = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)


def _trainer(tmp_path, *overrides: str, same: bool = False, large_seed: int = 1,
             peaked: float = 0.0) -> Trainer:
    cfg = resolve_config(algorithm="codistill", overrides=[
        "task.name=add3", "task.params.max_operand=49", "task.params.n_train=256", "task.params.n_test=32",
        "rollout.max_new_tokens=4", "train.prompts_per_step=4", "codistill.m=6", "codistill.g=4",
        "train.eval_every=0", "train.checkpoint_every=0", "train.eval_prompts=16", "run.report=false",
        f"run.output_dir={tmp_path}", *overrides])
    tok = char_tokenizer()
    small = tiny_causal_lm(tok, TINY, seed=0)
    large = copy.deepcopy(small) if same else tiny_causal_lm(tok, TINY, seed=large_seed)
    if peaked:  # a confident large model, far from the near-uniform random small one
        with torch.no_grad():
            large.get_output_embeddings().weight.mul_(peaked)
    return codistill_trainer(cfg, small, tok, make_task(cfg.task.name, **cfg.task.params), large)


# ----------------------------------------------------------------------------------- spec 2.2 (1), (2)
def test_identical_models_give_zero_kd_and_unit_ratios(tmp_path):
    tr = _trainer(tmp_path, "codistill.large_is_mode=ppo_clip", same=True)
    batch = tr.compute_advantages(tr.rollout(1)[0])[0]
    m = batch.response_mask
    assert torch.allclose(batch.extras["lp_large"], batch.old_logprobs, atol=1e-5)
    assert torch.allclose(batch.extras["effective_reward"].double(), batch.rewards.double(), atol=1e-5)
    lb = tr.extra.large_batch(batch)
    lp_new = batch.extras["lp_large"]
    ratio = ((lp_new - lb.old_logprobs) * m).exp()
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-4)
    grpo, _ = ppo_clip_loss(lp_new, lp_new, lb.advantages, m)
    large, met = ppo_clip_loss(lp_new, lb.old_logprobs, lb.advantages, m, is_weights=lb.is_weights)
    assert torch.allclose(large, grpo, atol=1e-6) and abs(met["ratio_mean"] - 1) < 1e-4
    _, w = cross_model_targets(lp_new, batch.old_logprobs, None, "truncated", 2.0)
    assert torch.allclose(w * m, m, atol=1e-4)


def test_kd_reward_sign_and_value():
    lp_small = torch.log(torch.tensor([[0.5, 0.25, 0.1]]))
    lp_large = lp_small.clone()
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert kd_reward(lp_large, lp_small, mask).item() == pytest.approx(0.0)
    raised = lp_large.clone()
    raised[0, 1] += 0.6
    assert kd_reward(raised, lp_small, mask).item() == pytest.approx(0.3)  # (0 + 0.6) / N=2
    lowered = lp_large.clone()
    lowered[0, 0] -= 1.0
    assert kd_reward(lowered, lp_small, mask).item() < 0
    r = torch.tensor([1.0])
    assert effective_reward(r, raised, lp_small, mask, alpha=2.0).item() == pytest.approx(1.6)


# ----------------------------------------------------------------------------------- spec 2.2 (3): Theorem 1
def test_score_function_gradient_of_kd_reward_matches_reverse_kl_gradient():
    gen = torch.Generator().manual_seed(0)
    k, alpha, n = 6, 0.7, 100_000
    phi = torch.randn(k, generator=gen)
    theta = torch.randn(k, generator=gen)
    p = torch.softmax(phi, -1)
    logq = torch.log_softmax(theta, -1)
    a = torch.multinomial(p, n, replacement=True, generator=gen)
    reward = alpha * (logq[a] - torch.log(p)[a])  # detached KD reward, no baseline
    score = torch.nn.functional.one_hot(a, k).double() - p.double()  # grad_phi log pi_phi(a) for softmax
    mc = (reward.double().unsqueeze(-1) * score).mean(0)
    phi_var = phi.clone().requires_grad_(True)
    pv = torch.softmax(phi_var, -1)
    kl = (pv * (torch.log(pv) - logq)).sum()
    (grad,) = torch.autograd.grad(-alpha * kl, phi_var)
    rel = float((mc - grad.double()).norm() / grad.double().norm())
    assert rel < 0.05, rel


# ----------------------------------------------------------------------------------- spec 2.2 (4)
@pytest.mark.parametrize("m", [2, 3, 5, 8, 12])
def test_maxvar_downsampling_equals_brute_force(m):
    gen = torch.Generator().manual_seed(m)
    for trial in range(6):
        if trial % 2:
            values = torch.randint(0, 2, (m,), generator=gen).double() + 0.1 * torch.randn(m, generator=gen).double()
        else:
            values = torch.randn(m, generator=gen).double()
        for g in range(1, m + 1):
            idx = maxvar_downsample(values, g)
            assert idx.numel() == g and idx.unique().numel() == g
            assert float(values[idx].var(unbiased=False)) == pytest.approx(brute_force_maxvar(values, g), abs=1e-12)


def test_downsample_groups_keeps_each_groups_maxvar_subset_in_order():
    gen = torch.Generator().manual_seed(3)
    n, m, g = 5, 9, 4
    values = torch.randn(n * m, generator=gen).double()
    perm = torch.randperm(n * m, generator=gen)  # groups need not be contiguous
    group_ids = torch.arange(n).repeat_interleave(m)[perm]
    keep = downsample_groups(values, group_ids, g, "maxvar", seed=0)
    assert keep.numel() == n * g
    for gid in range(n):
        rows = keep[group_ids[keep] == gid]
        assert torch.all(rows[1:] > rows[:-1])  # original order within the group
        members = (group_ids == gid).nonzero().squeeze(-1)
        assert float(values[rows].var(unbiased=False)) == pytest.approx(brute_force_maxvar(values[members], g))
    assert group_ids[keep].tolist() == sorted(group_ids[keep].tolist())  # groups in id order
    rand = downsample_groups(values, group_ids, g, "random", seed=1)
    assert torch.equal(torch.bincount(group_ids[rand]), torch.full((n,), g))
    assert torch.equal(rand, downsample_groups(values, group_ids, g, "random", seed=1))
    with pytest.raises(ValueError, match="unequal"):
        downsample_groups(values[:-1], group_ids[:-1], g, "maxvar", seed=0)


def test_large_model_scores_each_distinct_rollout_once(tmp_path):
    tr = _trainer(tmp_path, "codistill.m=12")
    with torch.no_grad():  # a peaked small model repeats itself, as a warm-started one does
        tr.policy.get_output_embeddings().weight.mul_(30.0)
    batch, metrics = tr.rollout(1)  # alpha = 1: the large model scored all M rollouts
    n_unique, n_rows = metrics["large/scored_rows"], metrics["large/candidate_rows"]
    assert n_rows == 4 * 12 and n_unique < n_rows  # fewer large-model passes than rollouts
    full = tr.engine.generate([e.prompt for e in tr.sample_prompts(1)], tr.cfg.rollout, 0)
    ids, mask = full.sequences()
    t = full.response_ids.shape[1]
    got, n = distinct_row_logprobs(tr.extra.large.policy, ids, mask, t, 1.0)
    ref = sequence_logprobs(tr.extra.large.policy, ids, mask, t, 1.0)[0]
    assert n == torch.unique(ids, dim=0).shape[0]
    assert torch.allclose(got * full.response_mask, ref * full.response_mask, atol=1e-5)
    assert batch.size == 4 * 4


# ----------------------------------------------------------------------------------- spec 2.2 (5), (6)
def test_hint_tokens_masked_for_small_and_weighted_for_large(tmp_path):
    tr = _trainer(tmp_path, "codistill.hint_tokens=2", "codistill.large_is_mode=ppo_clip")
    batch = tr.compute_advantages(tr.rollout(1)[0])[0]
    hint = batch.extras["hint_mask"]
    assert hint.sum() > 0 and tr.engine.large_tokens > 0
    assert torch.all(batch.loss_mask[hint.bool()] == 0) and torch.all(batch.loss_mask[~hint.bool()] == 1)
    lb = tr.extra.large_batch(batch)
    assert lb.loss_mask is None and torch.all(lb.response_mask[hint.bool()] == 1)  # hint tokens in the large loss
    on_hint = hint.bool()
    assert torch.allclose(lb.old_logprobs[on_hint], batch.extras["lp_large"][on_hint])  # behaviour = large model
    off = ~on_hint & batch.response_mask.bool()
    assert torch.allclose(lb.old_logprobs[off], batch.old_logprobs[off])  # behaviour = small model
    # hints are given only in the first epoch
    tr.extra.steps_per_epoch = 1
    before = tr.engine.large_tokens
    later = tr.rollout(2)[0]
    assert tr.engine.large_tokens == before and later.extras["hint_mask"].sum() == 0


def test_truncated_weights_are_detached_and_bounded():
    gen = torch.Generator().manual_seed(0)
    lp_large = (torch.randn(5, 7, generator=gen) * 3).requires_grad_(True)
    lp_small = torch.randn(5, 7, generator=gen) * 3
    hint = torch.zeros(5, 7)
    hint[:, :2] = 1
    old, w = cross_model_targets(lp_large, lp_small, hint, "truncated", c=2.0)
    assert not w.requires_grad and not old.requires_grad
    assert float(w.max()) <= 2.0 + 1e-6 and float(w.min()) >= 0 and torch.all(w[:, :2] == 1)
    expect = torch.minimum((lp_large - lp_small).exp(), torch.tensor(2.0))[:, 2:]
    assert torch.allclose(w[:, 2:], expect.detach(), rtol=1e-5)
    assert (w[:, 2:] == 2.0).any() and (w[:, 2:] < 2.0).any()


# ----------------------------------------------------------------------------------- loop-level checks
def _stable(rec):
    return {k: v for k, v in rec.items() if not k.startswith(("time/", "wall", "tokens_per_s"))}


def test_same_seed_same_metrics_and_large_model_generates_nothing_without_hints(tmp_path):
    a = _trainer(tmp_path / "a")
    b = _trainer(tmp_path / "b")
    ra = [_stable(a.train_step(s)) for s in (1, 2)]
    rb = [_stable(b.train_step(s)) for s in (1, 2)]
    assert ra == rb
    assert all(r["large/generated_tokens"] == 0 for r in ra) and a.engine.large_tokens == 0
    assert ra[-1]["rollouts"] == 4 * 4  # prompts x G after downsampling M=6 -> G=4


def test_checkpoint_state_restores_both_models(tmp_path):
    a = _trainer(tmp_path / "a")
    a.train_step(1)
    state = a.state()
    b = _trainer(tmp_path / "b", large_seed=5)
    b.load_state({**state, "step": 1, "rng": __import__("rollwise.rlvr.checkpoint", fromlist=["x"]).rng_state()})
    for p, q in zip(a.extra.large.policy.parameters(), b.extra.large.policy.parameters()):
        assert torch.equal(p, q)
    assert b.start_step == 2


def test_kd_reward_alone_pulls_small_model_towards_large(tmp_path):
    """With alpha large and the verifier reward carrying no signal early on, the small model's per-token
    KL(pi_phi || pi_theta) on its own rollouts goes down (the on-policy distillation effect of Theorem 1)."""
    tr = _trainer(tmp_path, "codistill.alpha=5", "train.lr=1e-2", "codistill.large_lr=1e-12",
                  "train.prompts_per_step=8", "codistill.m=8", "codistill.g=8", peaked=30.0)
    kls = [tr.train_step(s)["kl_small_large"] for s in range(1, 41)]
    first, last = sum(kls[:5]) / 5, sum(kls[-5:]) / 5  # 40 steps: KL 13 -> < 1 in the pilot (1 thread)
    assert last < 0.7 * first, (first, last)
    assert math.isfinite(last)


# ----------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(("overrides", "keys"), [
    (["algorithm.estimator=grpo"], ("codistill.enabled", "algorithm.estimator")),
    (["algorithm.estimator_params.norm_by_std=false"], ("codistill.enabled", "algorithm.estimator_params",
                                                        "codistill.kd_adv_norm")),
    (["codistill.hint_tokens=2", "codistill.mask_hints_small=false", "algorithm.correction=tis"],
     ("codistill.hint_tokens", "algorithm.correction")),
    (["rollout.n=8"], ("rollout.n", "codistill.m")),
])
def test_settings_codistill_cannot_honour_fail_at_start_naming_both_keys(overrides, keys):
    with pytest.raises(ConfigError) as err:
        resolve_config(algorithm="codistill", overrides=overrides)
    assert all(k in str(err.value) for k in keys), str(err.value)


def test_codistill_estimator_needs_codistill_and_the_default_job_estimator_is_refused():
    from rollwise.rlvr.commands import DEFAULT_JOB

    with pytest.raises(ConfigError, match="codistill.enabled=true"):
        resolve_config(overrides=["algorithm.estimator=codistill"])
    with pytest.raises(ConfigError, match=r"codistill.enabled=true with algorithm.estimator='grpo'"):
        resolve_config(overrides=["codistill.enabled=true"], base=DEFAULT_JOB)


def test_rollout_n_follows_codistill_m_and_says_so(capsys):
    cfg = resolve_config(algorithm="codistill", overrides=["codistill.m=12", "codistill.g=4"])
    assert cfg.rollout.n == 12
    assert "rollout.n=1 is replaced by codistill.m=12" in capsys.readouterr().err
    assert resolve_config(algorithm="codistill", overrides=["rollout.n=12", "codistill.m=12"]).rollout.n == 12
    tis = resolve_config(algorithm="codistill", overrides=["algorithm.correction=tis"])  # no hints: honoured
    assert tis.algorithm.correction == "tis"
