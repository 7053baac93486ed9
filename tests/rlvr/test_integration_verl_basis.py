"""``rollwise_basis`` inside verl 0.9.1's REAL registry (CPU): equal to rollwise's BASIS step after step, its
state carried across calls and through verl's checkpoint callback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")

from omegaconf import OmegaConf  # noqa: E402  (installed with verl)
from verl import DataProto  # noqa: E402
from verl.trainer.ppo.checkpoint_callback import build_checkpoint_callback  # noqa: E402

from rollwise.config import ConfigError  # noqa: E402
from rollwise.rlvr.advantages import make_estimator  # noqa: E402
from rollwise.rlvr.batch import RolloutBatch  # noqa: E402
from rollwise.rlvr.integrations import verl as rv  # noqa: E402
from rollwise.rlvr.integrations import verl_basis as vb  # noqa: E402

torch.set_num_threads(1)
POOL = [f"{a}+{b}=" for a in range(6) for b in range(5)]  # 30 prompt texts
M = 8
PARAMS = {"folds": 3, "lambda_a": 0.5}


@pytest.fixture(autouse=True)
def fresh_process():
    rv.register_with_verl()
    vb.reset_basis_estimator()
    yield
    vb.reset_basis_estimator()


@pytest.fixture
def prior(tmp_path):
    successes = torch.tensor([(7 * i) % (M + 1) for i in range(len(POOL))], dtype=torch.float64)
    path = str(tmp_path / "prior.pt")
    vb.write_basis_prior(path, POOL, successes, M)
    return path


def algorithm(prior_path=None, **params):
    cfg = {**PARAMS, **params, **({"prior_path": prior_path} if prior_path else {})}
    return OmegaConf.create({"adv_estimator": "rollwise_basis", "rollwise_basis": cfg})


def step_data(step: int, b: int = 12):
    """One verl batch: b distinct prompts (raw_prompt), one response each, the outcome on the last token."""
    g = torch.Generator().manual_seed(100 + step)
    prompts = [POOL[i] for i in torch.randperm(len(POOL), generator=g)[:b].tolist()]
    t = 6
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()
    rewards = (torch.rand(b, generator=g) > 0.5).float()
    token_rewards = torch.zeros(b, t)
    token_rewards[torch.arange(b), lengths - 1] = rewards
    uids = np.array([f"uid-{step}-{i}" for i in range(b)], dtype=object)
    data = DataProto.from_dict(tensors={"token_level_rewards": token_rewards, "response_mask": mask},
                               non_tensors={"uid": uids, "raw_prompt": np.array(prompts, dtype=object)})
    return data, prompts, rewards, mask


def own_advantages(est, prompts, rewards, mask):
    b = mask.shape[0]
    batch = RolloutBatch(prompt_ids=torch.zeros(b, 0, dtype=torch.long), prompt_mask=torch.zeros(b, 0, dtype=torch.long),
                         response_ids=torch.zeros(mask.shape, dtype=torch.long), response_mask=mask.float(),
                         rollout_logprobs=torch.zeros(mask.shape), group_ids=torch.arange(b),
                         truncated=torch.zeros(b, dtype=torch.bool), prompts=prompts, rewards=rewards)
    return est(batch)


def test_registered_in_verls_registry():
    assert core_algos.get_adv_estimator_fn("rollwise_basis") is vb.compute_rollwise_basis_advantage


def test_equals_rollwise_basis_across_steps_with_state_carried(prior):
    own = make_estimator("basis", **PARAMS)
    own.load_state_dict(torch.load(prior, weights_only=False))
    config = algorithm(prior)
    calibrations = []
    for step in range(5):
        data, prompts, rewards, mask = step_data(step)
        out = rv.compute_rollwise_advantage(data, "rollwise_basis", config)
        want = own_advantages(own, prompts, rewards, mask)
        assert torch.equal(out.batch["advantages"], want) and torch.equal(out.batch["returns"], want)
        assert float(want.abs().sum()) > 0
        ours = vb.basis_estimator(config)
        assert torch.equal(ours.calibration, own.calibration) and ours.steps == own.steps == step + 1
        assert ours.metrics["basis/prior_missing"] == 0.0
        calibrations.append(ours.calibration.clone())
    assert not torch.equal(calibrations[0], calibrations[-1])  # the state moved...
    data, prompts, rewards, mask = step_data(5)
    fresh = make_estimator("basis", **PARAMS)
    fresh.load_state_dict(torch.load(prior, weights_only=False))
    carried = rv.compute_rollwise_advantage(data, "rollwise_basis", config).batch["advantages"]
    assert not torch.equal(carried, own_advantages(fresh, prompts, rewards, mask))  # ...and it matters


def test_checkpoint_callback_saves_and_restores_the_state(prior, tmp_path):
    config = algorithm(prior)
    full = OmegaConf.create({"algorithm": config, "trainer": {
        "checkpoint_callback_class": "rollwise.rlvr.integrations.verl_basis.BasisCheckpointCallback",
        "resume_mode": "auto", "default_local_dir": str(tmp_path / "ckpt")}})
    callback = build_checkpoint_callback(full)  # verl's own builder, as its trainer calls it at start-up
    assert isinstance(callback, vb.BasisCheckpointCallback)
    for step in range(3):
        rv.compute_rollwise_advantage(step_data(step)[0], "rollwise_basis", config)
    folder = tmp_path / "ckpt" / "global_step_3"
    folder.mkdir(parents=True)
    callback.on_save(trainer=None, global_step=3, checkpoint_dir=str(folder))
    (tmp_path / "ckpt" / vb.TRACKER).write_text("3")  # what verl writes after a save
    uninterrupted = [rv.compute_rollwise_advantage(step_data(s)[0], "rollwise_basis", config).batch["advantages"]
                     for s in (3, 4)]

    vb.reset_basis_estimator()  # a new driver process
    build_checkpoint_callback(full)
    assert vb.basis_estimator(config).steps == 3
    resumed = [rv.compute_rollwise_advantage(step_data(s)[0], "rollwise_basis", config).batch["advantages"]
               for s in (3, 4)]
    assert all(torch.equal(a, b) for a, b in zip(resumed, uninterrupted, strict=True))

    vb.reset_basis_estimator()
    build_checkpoint_callback(OmegaConf.merge(full, {"trainer": {"resume_mode": "disable"}}))
    assert vb.basis_estimator(config).steps == 0  # not resuming: the prior file's state
    (folder / vb.STATE_FILE).unlink()
    vb.reset_basis_estimator()
    with pytest.raises(FileNotFoundError, match="rollwise_basis.pt"):
        build_checkpoint_callback(full)


def test_stock_call_without_prompts(prior):
    data, _, _, _ = step_data(0)
    stock = {"token_level_rewards": data.batch["token_level_rewards"], "response_mask": data.batch["response_mask"],
             "index": data.non_tensor_batch["uid"]}
    fn = core_algos.get_adv_estimator_fn("rollwise_basis")
    with pytest.raises(ValueError, match="compute_rollwise_advantage"):
        fn(config=algorithm(prior), **stock)
    vb.reset_basis_estimator()
    advantages, _ = fn(config=algorithm(), **stock)  # no prior table: the calibrated batch rate
    assert advantages.shape == stock["response_mask"].shape and float(advantages.abs().sum()) > 0
    assert vb.basis_estimator(algorithm()).metrics["basis/prior_missing"] == 12.0


def test_errors_name_the_problem(prior):
    data, _, _, _ = step_data(0)
    data.non_tensor_batch["uid"] = np.array(["same"] * 12, dtype=object)  # n = 12 responses of one prompt
    with pytest.raises(ValueError, match="exactly one rollout per prompt"):
        rv.compute_rollwise_advantage(data, "rollwise_basis", algorithm(prior))
    with pytest.raises(ConfigError, match="parameters changed"):
        vb.basis_estimator(algorithm(prior, folds=5))
    with pytest.raises(ConfigError, match="valid parameters"):
        vb.reset_basis_estimator()
        vb.basis_estimator(algorithm(foldz=2))
    del data.non_tensor_batch["raw_prompt"]
    with pytest.raises(ValueError, match="raw_prompt"):
        rv.compute_rollwise_advantage(data, "rollwise_basis", algorithm(prior))
