import numpy as np
import pytest
import torch

from rollwise.imitation.adversarial import AdversarialConfig, OptimisticAdam
from rollwise.imitation.deep import DeepConfig, confidence, replay_weights, run_deep, train_bc
from rollwise.imitation.point_mass import NoisyPointMass, PointMassConfig, rollouts


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny MLPs run fastest on one thread (the shared conftest sets two)."""
    torch.set_num_threads(1)


class _Const(torch.nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.full((len(s), 2), self.value)


def test_confidence_golden():
    states = np.zeros((3, 1))
    agree = confidence([_Const(0.1)] * 5, states, mu=0.35, beta=0.1)
    np.testing.assert_allclose(agree, 1 / (1 + np.exp(-3.5)), rtol=1e-6)
    # spread 0.3 in each of 2 dims: delta = 0.3 * sqrt(2)
    spread = confidence([_Const(0.0), _Const(0.3)], states, mu=0.35, beta=0.1)
    np.testing.assert_allclose(spread, 1 / (1 + np.exp(-(0.35 - 0.3 * np.sqrt(2)) / 0.1)), rtol=1e-6)


@pytest.mark.parametrize("prefix", [False, True])
def test_replay_weights_normalise(prefix):
    rng = np.random.default_rng(0)
    a3, a2 = rng.uniform(0.01, 0.99, (7, 5)), rng.uniform(0.01, 0.99, (3, 5))
    w3, w2 = replay_weights(a3, a2, prefix)
    assert w3.sum() + w2.sum() == pytest.approx(1.0)
    assert np.all(w3 > 0) and np.all(w2 > 0)
    if prefix:  # the prefix product only shrinks along the episode
        assert np.all(np.diff(w3, axis=1) <= 0)


def test_optimistic_adam_applies_twice_the_step_minus_the_previous():
    """Linear loss: every Adam step is exactly -lr, so OAdam moves -2 lr, then -lr per step."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = OptimisticAdam([p], lr=0.1)
    path = []
    for _ in range(3):
        opt.zero_grad()
        p.sum().backward()
        opt.step()
        path.append(float(p.detach()))
    np.testing.assert_allclose(path, [-0.2, -0.3, -0.4], atol=1e-6)


def test_point_mass_gym_api_and_clone():
    env = NoisyPointMass(PointMassConfig(horizon=5))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    saved = env.clone_state()
    first = [env.step(np.array([0.3]))[0][0] for _ in range(3)]
    env.set_state(saved)
    assert [env.step(np.array([0.3]))[0][0] for _ in range(3)] == first
    *_, truncated, _ = env.step(np.array([0.0]))
    assert not truncated
    *_, truncated, _ = env.step(np.array([0.0]))
    assert truncated


def test_bc_fits_the_expert_on_its_data():
    env = NoisyPointMass()
    s, a, _ = rollouts(env, env.expert_action, 4, np.random.default_rng(0))
    net = train_bc(s.reshape(-1, 1), a.reshape(-1, 1), DeepConfig(bc_steps=600), seed=0)
    with torch.no_grad():
        pred = net(torch.as_tensor(s.reshape(-1, 1), dtype=torch.float32)).numpy()
    assert np.mean((pred - a.reshape(-1, 1)) ** 2) < 0.01


TINY = DeepConfig(bc_steps=50, n_replay_rollouts=8, eval_episodes=4,
                  adversarial=AdversarialConfig(outer_iters=2, disc_steps=1, policy_rollouts=4, policy_steps=1))


def test_deep_run_is_deterministic_and_weights_are_valid():
    a, b = run_deep(TINY, seed=1), run_deep(TINY, seed=1)
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    assert 0 < a["alpha_min"] <= a["alpha_max"] < 1
    assert a["weight_sum"] == pytest.approx(1.0, abs=1e-5)


def test_deep_config_validation_names_the_field():
    with pytest.raises(ValueError, match="replay_member"):
        DeepConfig(replay_member="median")
    with pytest.raises(ValueError, match="n_d1"):
        DeepConfig(n_demos=2, n_d1=2)
