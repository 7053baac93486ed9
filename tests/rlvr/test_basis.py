"""BASIS estimator (specs/basis.md 5.5): U (unbiasedness), M1 (synthetic Bernoulli), state, n > 1, P0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rollwise.config import ConfigError
from rollwise.rlvr.advantages import make_estimator
from rollwise.rlvr.advantages.basis import (
    Basis,
    clipped_logit,
    cross_fit_baseline,
    eb_prior,
    fit_calibration,
    fold_assignment,
)
from rollwise.rlvr.batch import RolloutBatch


def single_rollout_batch(prompts: list[str], rewards: list[float], lengths: list[int] | None = None) -> RolloutBatch:
    b = len(prompts)
    lengths = lengths or [3] * b
    mask = (torch.arange(max(lengths)) < torch.tensor(lengths)[:, None]).float()
    return RolloutBatch(
        prompt_ids=torch.zeros(b, 1, dtype=torch.long), prompt_mask=torch.ones(b, 1, dtype=torch.long),
        response_ids=torch.zeros(mask.shape, dtype=torch.long), response_mask=mask,
        rollout_logprobs=torch.zeros(mask.shape), group_ids=torch.arange(b),
        truncated=torch.zeros(b, dtype=torch.bool), prompts=prompts,
        rewards=torch.tensor(rewards, dtype=torch.float32))


def estimator_with_prior(n: int = 200, seed: int = 0, **params) -> tuple[Basis, list[str], torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    p0 = torch.rand(n, generator=gen, dtype=torch.float64)
    prompts = [f"p{i}" for i in range(n)]
    feats = torch.nn.functional.normalize(torch.randn(n, 8, generator=gen), dim=-1)
    est = make_estimator("basis", **params)
    est.set_prior(prompts, p0, feats)
    return est, prompts, p0


# ----------------------------------------------------------------------------- U: unbiasedness, range, NaN
@pytest.mark.parametrize("params", [
    {}, {"folds": 0}, {"folds": 2}, {"calib": "shift"}, {"calib": "none"},
    {"kernel": "rbf"}, {"kernel": "rbf", "folds": 0, "kappa": 0.5},
])
def test_flipping_own_reward_leaves_baseline_unchanged(params):
    est, prompts, p0 = estimator_with_prior(**params)
    gen = torch.Generator().manual_seed(1)
    idx = torch.randperm(len(prompts), generator=gen)[:32]
    batch_prompts = [prompts[i] for i in idx]
    rewards = torch.bernoulli(p0[idx], generator=gen).float()
    state = est.state_dict()
    feats = est.features[idx] if est.params.kernel == "rbf" else None
    base = est.baselines(batch_prompts, rewards, feats)
    assert torch.all((base >= 0) & (base <= 1))
    changed = 0
    for i in range(len(batch_prompts)):
        est.load_state_dict(state)
        flipped = rewards.clone()
        flipped[i] = 1 - flipped[i]
        other = est.baselines(batch_prompts, flipped, feats)
        assert other[i] == pytest.approx(float(base[i]), abs=1e-12)
        changed += int(not torch.allclose(other, base))
    if est.params.calib != "none":  # the test can fail: others' baselines DO move with r_i
        assert changed > 0


def test_in_fold_refit_would_leak():
    """Control: without cross-fitting (one fold = the whole batch) the baseline moves with r_i."""
    l0 = clipped_logit(torch.linspace(0.05, 0.95, 16), 1e-3)
    r = (torch.arange(16) % 2).double()
    prior = torch.tensor([0.0, 1.0], dtype=torch.float64)
    whole = torch.ones(1, 16, dtype=torch.float64)
    a = fit_calibration(l0, r, whole, prior, (1.0, 10.0))
    r2 = r.clone()
    r2[0] = 1 - r2[0]
    assert not torch.allclose(a, fit_calibration(l0, r2, whole, prior, (1.0, 10.0)))


@pytest.mark.parametrize("value", [0.0, 1.0])
@pytest.mark.parametrize("params", [{}, {"kernel": "rbf"}, {"folds": 0}, {"calib": "shift"}])
def test_all_equal_rewards_give_finite_advantages(value, params):
    est, prompts, _ = estimator_with_prior(**params)
    batch = single_rollout_batch(prompts[:32], [value] * 32, lengths=[2 + i % 4 for i in range(32)])
    for _ in range(5):  # the calibration state runs away over steps without NaN
        adv = est(batch)
        assert torch.isfinite(adv).all()
        assert torch.isfinite(est.calibration).all()
    base = est.baselines(prompts[:32], batch.rewards, est.batch_features(batch), update=False)
    assert torch.all((base >= 0) & (base <= 1))


def test_advantage_is_whitened_reward_minus_baseline():
    est, prompts, p0 = estimator_with_prior(whiten=False)
    rewards = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    batch = single_rollout_batch(prompts[:8], rewards, lengths=[1, 2, 3, 4, 1, 2, 3, 4])
    state = est.state_dict()
    adv = est(batch)
    est.load_state_dict(state)
    b = est.baselines(prompts[:8], batch.rewards)
    expected = (torch.tensor(rewards, dtype=torch.float64) - b).float()
    assert torch.allclose(adv[:, 0], expected, atol=1e-6)
    assert torch.all(adv[batch.response_mask == 0] == 0)
    est2, _, _ = estimator_with_prior()
    white = est2(batch)
    m = batch.response_mask.bool()
    assert float(white[m].mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(white[m].std()) == pytest.approx(1.0, abs=1e-3)


def test_fold_assignment_and_loo():
    fold = fold_assignment(10, 3, torch.Generator().manual_seed(0))
    assert sorted(torch.bincount(fold).tolist()) == [3, 3, 4]
    assert sorted(fold_assignment(10, 0).tolist()) == list(range(10))


def test_eb_prior_shrinks_towards_mean():
    s = torch.tensor([0.0, 16.0, 8.0, 2.0, 14.0, 8.0])
    p = eb_prior(s, 16)
    raw = s / 16
    assert torch.all((p > 0) & (p < 1))
    assert torch.all((p - raw.mean()).abs() <= (raw - raw.mean()).abs() + 1e-12)
    assert torch.allclose(eb_prior(s, 16, shrink=False), raw.double())


# ----------------------------------------------------------------------------- M1: synthetic Bernoulli
def bernoulli_simulation(seed: int = 0, n: int = 4096, m: int = 16, b: int = 64, r: int = 200,
                         **params) -> dict[str, float]:
    """Spec 2.6 / 5.5 M1: z ~ N(0, 1.5^2), V_0 = sigma(z), V_t = sigma(0.6 + 1.2 z + N(0, 0.3^2))."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    v0 = 1 / (1 + np.exp(-z))
    vt = 1 / (1 + np.exp(-(0.6 + 1.2 * z + rng.normal(0, 0.3, n))))
    s = rng.binomial(m, v0)
    est = make_estimator("basis", offline_rollouts=m, **params)
    prompts = [str(i) for i in range(n)]
    est.set_prior(prompts, eb_prior(torch.tensor(s), m, est.params.eb_shrink))
    sq = {"basis": 0.0, "batch_mean": 0.0, "prior_only": 0.0, "group4": 0.0, "group8": 0.0}
    p0 = torch.sigmoid(est.l0).numpy()
    for _ in range(r):
        idx = rng.choice(n, size=b, replace=False)
        v = vt[idx]
        rewards = (rng.random(b) < v).astype(np.float64)
        base = est.baselines([prompts[i] for i in idx], torch.tensor(rewards)).numpy()
        sq["basis"] += np.mean((base - v) ** 2)
        sq["batch_mean"] += np.mean((rewards.mean() - v) ** 2)
        sq["prior_only"] += np.mean((p0[idx] - v) ** 2)
        for k in (4, 8):
            sq[f"group{k}"] += np.mean((rng.binomial(k, v) / k - v) ** 2)
    return {k: val / r for k, val in sq.items()}


def test_m1_synthetic_bernoulli():
    mse = bernoulli_simulation(seed=0)
    ratio = mse["basis"] / mse["batch_mean"]
    print(f"M1: {mse}, ratio {ratio:.3f}")
    assert ratio <= 0.35  # spec 5.5 M1 (pilot 0.20, paper 0.31)
    assert mse["basis"] < mse["group4"]
    assert mse["basis"] < mse["prior_only"]  # the online calibration earns its keep under drift


# ----------------------------------------------------------------------------- state, config, registry
def test_state_round_trip_reproduces_next_baselines():
    est, prompts, p0 = estimator_with_prior(kernel="rbf")
    rewards = torch.bernoulli(p0[:32], generator=torch.Generator().manual_seed(3))
    for _ in range(3):
        est.baselines(prompts[:32], rewards, est.features[:32])
    state = est.state_dict()
    copy = make_estimator("basis", kernel="rbf")
    copy.load_state_dict(torch.load(_roundtrip(state), weights_only=False))
    a = est.baselines(prompts[32:64], rewards, est.features[32:64])
    b = copy.baselines(prompts[32:64], rewards, copy.features[32:64])
    assert torch.equal(a, b)
    assert torch.equal(est.calibration, copy.calibration) and copy.steps == est.steps == 4


def _roundtrip(state):
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return buf


def test_rejects_more_than_one_rollout_per_prompt():
    est = make_estimator("basis")
    est.validate(1)
    with pytest.raises(ConfigError, match="one rollout per prompt"):
        est.validate(4)
    batch = single_rollout_batch(["a", "a", "b", "b"], [1, 0, 1, 0])
    batch.group_ids = torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="exactly one rollout"):
        est(batch)


@pytest.mark.parametrize("bad", [{"calib": "isotonic"}, {"kernel": "gauss"}, {"offline_subset": 0.0},
                                 {"lambda_b": 0.0}, {"folds": "8"}])
def test_bad_params_are_config_errors(bad):
    with pytest.raises(ConfigError):
        make_estimator("basis", **bad)


def test_unknown_prompts_fall_back_to_the_mean_prior():
    est, prompts, p0 = estimator_with_prior()
    l0, missing = est.prior_logits([prompts[0], "never seen"])
    assert missing == 1
    assert float(l0[1]) == pytest.approx(float(clipped_logit(p0.mean(), 1e-3)))


def test_cross_fit_with_kernel_corrects_drift_invisible_to_prior():
    """Stage S: a drift tied to a feature cluster is picked up by the kernel and missed by the calibration."""
    rng = np.random.default_rng(0)
    n = 256
    group = rng.integers(0, 2, n)
    feats = torch.tensor(np.eye(2)[group] + 0.01 * rng.normal(size=(n, 2)))
    l0 = torch.zeros(n, dtype=torch.float64)  # the prior knows nothing
    v = np.where(group == 1, 0.9, 0.1)
    errs = {"off": 0.0, "rbf": 0.0}
    for t in range(20):
        r = torch.tensor((rng.random(n) < v).astype(float))
        fold = fold_assignment(n, 8, torch.Generator().manual_seed(t))
        prior = torch.tensor([0.0, 1.0], dtype=torch.float64)
        errs["off"] += float(((cross_fit_baseline(l0, r, fold, prior, (1.0, 10.0)).baseline - torch.tensor(v)) ** 2)
                             .mean())
        fit = cross_fit_baseline(l0, r, fold, prior, (1.0, 10.0), features=feats, bandwidth=0.1)
        errs["rbf"] += float(((fit.baseline - torch.tensor(v)) ** 2).mean())
    assert errs["rbf"] < 0.2 * errs["off"]


# ----------------------------------------------------------------------------- trainer integration
def tiny_trainer(tmp_path, steps: int = 3, seed: int = 0, extra: list[str] | None = None):
    from rollwise.rlvr.policy import build_policy
    from rollwise.rlvr.run_config import resolve_config
    from rollwise.rlvr.tasks import make_task
    from rollwise.rlvr.trainer import Trainer
    from rollwise.runlog import seed_everything

    cfg = resolve_config(algorithm="basis", overrides=[
        "task.params.max_operand=9", "task.params.n_train=40", "task.params.n_test=20", "sft.steps=20",
        "sft.batch_size=32", "model.tiny.hidden_size=32", "model.tiny.intermediate_size=64",
        "model.tiny.num_layers=1", "rollout.max_new_tokens=4", f"train.steps={steps}", "train.prompts_per_step=16",
        "train.eval_every=0", "train.checkpoint_every=0", f"train.seed={seed}", f"run.output_dir={tmp_path}",
        "algorithm.estimator_params.offline_rollouts=4", *(extra or [])])
    seed_everything(seed)
    task = make_task(cfg.task.name, **cfg.task.params)
    policy, tok = build_policy(cfg, task)
    return Trainer(cfg, policy, tok, task)


def test_trainer_runs_basis_counts_offline_rollouts_and_is_deterministic(tmp_path):
    runs = []
    for _ in range(2):
        tr = tiny_trainer(tmp_path)
        tr.estimator.prepare(tr)
        assert tr.rollouts_generated == 40 * 4 == tr.estimator.offline["rollouts"]
        recs = [tr.train_step(s) for s in (1, 2)]
        assert recs[-1]["rollouts_total"] == 160 + 2 * 16
        runs.append(([r["adv/mean"] for r in recs], tr.estimator.calibration.clone(),
                     [p.detach().clone() for p in tr.policy.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][2], runs[1][2]))


def test_checkpoint_holds_the_prior_and_calibration_and_resume_continues(tmp_path):
    from rollwise.rlvr.checkpoint import latest_checkpoint, load_trainer_state

    extra = ["algorithm.estimator_params.kernel=rbf", "train.checkpoint_every=1"]
    tr = tiny_trainer(tmp_path, steps=1, extra=extra)
    tr.fit()
    state = load_trainer_state(latest_checkpoint(tmp_path))["estimator"]
    assert state["prompts"] == tr.estimator.prompts and state["steps"] == 1
    assert torch.equal(state["l0"], tr.estimator.l0) and torch.equal(state["features"], tr.estimator.features)
    assert state["offline"]["rollouts"] == 160
    resumed = tiny_trainer(tmp_path, steps=2, extra=extra)
    resumed.fit(resume=True)
    assert resumed.estimator.steps == 2 and resumed.estimator.prompts == tr.estimator.prompts
    assert resumed.rollouts_generated == 160 + 2 * 16


@pytest.mark.slow
def test_p0_basis_steps_raise_exact_accuracy(tmp_path):
    """Spec 5.5 P0: 50 BASIS steps (B=32) raise the exact expected test accuracy by >= 3 points."""
    from rollwise.rlvr.policy import build_policy
    from rollwise.rlvr.run_config import resolve_config
    from rollwise.rlvr.tasks import make_task
    from rollwise.rlvr.trainer import Trainer

    cfg = resolve_config(algorithm="basis", overrides=[
        "task.params.max_operand=99", "sft.steps=800", "sft.lr=2e-3", "rollout.max_new_tokens=6",
        "train.steps=50", "train.prompts_per_step=32", "train.lr=1e-4", "train.eval_every=0",
        "train.checkpoint_every=0", f"run.output_dir={tmp_path}"])
    task = make_task(cfg.task.name, **cfg.task.params)
    policy, tok = build_policy(cfg, task)
    tr = Trainer(cfg, policy, tok, task)
    before = tr.evaluate()["eval/exact_accuracy"]
    tr.estimator.prepare(tr)
    for step in range(1, 51):
        tr.train_step(step)
    after = tr.evaluate()["eval/exact_accuracy"]
    print(f"P0: {before:.4f} -> {after:.4f}")
    assert after - before >= 0.03
