"""The Ray rollout engine: the HF engine's rollouts for the same seed, weights pushed once per step and
refreshed on every actor, the trainer end to end, and clear errors for bad settings."""

from __future__ import annotations

import copy
import sys

import pytest
import ray
import torch

from rollwise.config import ConfigError
from rollwise.rlvr.engines import SamplingConfig, make_engine
from rollwise.rlvr.engines.hf import HFEngine, chunk_plan
from rollwise.rlvr.engines.quantized import QuantizedEngine
from rollwise.rlvr.engines.ray import RayEngine, RolloutWorker, _connect, ray_engine_config
from rollwise.rlvr.job import run_training
from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, sequence_logprobs, tiny_causal_lm
from rollwise.runlog import read_jsonl

pytestmark = pytest.mark.integration  # spawned processes, Ray, TRL or a whole quick repro

PROMPTS = [f"{i}+{3 * i}=" for i in range(10)]
SAMPLING = SamplingConfig(n=3, max_new_tokens=6)  # 30 rollouts
CHUNK = 8  # 4 chunks over 2 workers
VOLATILE = ("time/", "wall", "tokens_per_s")


@pytest.fixture(scope="module")
def ray_session():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny():
    tok = char_tokenizer()
    cfg = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_positions=32)
    return tiny_causal_lm(tok, cfg, seed=0), tok


@pytest.fixture(scope="module")
def engine(ray_session, tiny):
    policy, tok = tiny
    # half a CPU per actor, so that the trainer's own 1-CPU pool fits beside this one in the 2-CPU session
    with RayEngine(policy, tok, num_workers=2, batch_size=CHUNK, num_cpus_per_worker=0.5) as eng:
        yield eng


def _assert_same(a, b):
    for name in ("prompt_ids", "prompt_mask", "response_ids", "response_mask", "group_ids", "truncated"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.completions == b.completions and a.prompts == b.prompts
    torch.testing.assert_close(a.rollout_logprobs, b.rollout_logprobs, atol=1e-6, rtol=0)


def test_chunk_plan_is_the_hf_engine_s(tiny, monkeypatch):
    policy, tok = tiny
    seen = []
    real = HFEngine.generate_chunk

    def record(self, prompts, sampling, seed):
        seen.append((len(prompts), seed))
        return real(self, prompts, sampling, seed)

    monkeypatch.setattr(HFEngine, "generate_chunk", record)
    HFEngine(policy, tok, batch_size=CHUNK).generate(PROMPTS, SAMPLING, seed=11)
    assert seen == [(b - a, s) for a, b, s in chunk_plan(30, CHUNK, 11)]
    assert [b - a for a, b, _ in chunk_plan(30, CHUNK, 11)] == [8, 8, 8, 6]


def test_worker_replica_rebuilt_from_config_samples_like_the_policy(tiny):
    policy, tok = tiny
    worker = RolloutWorker(policy.config, policy.generation_config, tok, policy.dtype)
    with pytest.raises(RuntimeError, match="before load_weights"):
        worker.generate_chunk(PROMPTS[:2], SAMPLING, 3)
    worker.load_weights(policy.state_dict())
    ours = worker.generate_chunk(PROMPTS[:4], SAMPLING, 3)
    theirs = HFEngine(policy, tok).generate_chunk(PROMPTS[:4], SAMPLING, 3)
    for x, y in zip(ours, theirs):
        assert torch.equal(x, y)


def test_same_tokens_and_logprobs_as_hf_engine(engine, tiny):
    policy, tok = tiny
    a = engine.generate(PROMPTS, SAMPLING, seed=5)
    _assert_same(a, HFEngine(policy, tok, batch_size=CHUNK).generate(PROMPTS, SAMPLING, seed=5))
    _assert_same(a, engine.generate(PROMPTS, SAMPLING, seed=5))  # deterministic
    assert not torch.equal(a.response_ids, engine.generate(PROMPTS, SAMPLING, seed=6).response_ids)
    assert a.response_mask.sum(-1).min() >= 1 and a.size == 30


def test_sync_weights_pushes_once_and_refreshes_every_actor(engine, tiny, monkeypatch):
    policy, tok = tiny
    trained = copy.deepcopy(policy)
    before = engine.generate(PROMPTS, SAMPLING, seed=2)
    # one optimizer step that raises the likelihood of the sampled tokens
    opt = torch.optim.Adam(trained.parameters(), lr=1e-2)
    ids, mask = before.sequences()
    lp, _ = sequence_logprobs(trained, ids, mask, before.response_ids.shape[1])
    (-(lp * before.response_mask).sum()).backward()
    opt.step()
    trained.eval()
    _assert_same(engine.generate(PROMPTS, SAMPLING, seed=2), before)  # the actors hold their own replicas

    puts = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda obj, **kw: puts.append(obj) or real_put(obj, **kw))
    try:
        engine.sync_weights(trained)
        assert len(puts) == 1, "one put shared by all actors"
        after = engine.generate(PROMPTS, SAMPLING, seed=2)
        _assert_same(after, HFEngine(trained, tok, batch_size=CHUNK).generate(PROMPTS, SAMPLING, seed=2))
        assert (after.rollout_logprobs - before.rollout_logprobs).abs().max() > 1e-3
    finally:
        engine.sync_weights(policy)  # the module's engine serves the other tests with the original weights


def test_quantized_replica_matches_the_quantized_engine(tiny):
    """``fmt`` runs a QuantizedEngine inside each worker (checked in process: the transport is tested above)."""
    policy, tok = tiny
    worker = RolloutWorker(policy.config, policy.generation_config, tok, policy.dtype, fmt="int8")
    worker.load_weights(policy.state_dict())
    reference = QuantizedEngine(policy, tok, fmt="int8")
    for x, y in zip(worker.generate_chunk(PROMPTS[:4], SAMPLING, 4), reference.generate_chunk(PROMPTS[:4], SAMPLING, 4)):
        assert torch.equal(x, y)
    trained = copy.deepcopy(policy)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.05 * torch.randn_like(p))
    worker.load_weights(trained.state_dict())  # re-quantized from the new weights
    reference.sync_weights(trained)
    for x, y in zip(worker.generate_chunk(PROMPTS[:4], SAMPLING, 4), reference.generate_chunk(PROMPTS[:4], SAMPLING, 4)):
        assert torch.equal(x, y)


def test_train_with_ray_engine_equals_hf_engine(ray_session, engine, small_config):
    """``engine`` is requested so that its actors already hold one CPU of the session: both pools fit.

    An entropy bonus with a large learning rate moves the policy every step (the rewards of an untrained
    model are all 0), so a stale replica would show in the rollout/trainer mismatch metrics. One worker
    here (two chunks per step on it) keeps the start-up cost down; the 2-worker split is tested above.
    """
    common = ("sft.enabled=false", "train.steps=2", "rollout.n=2", "rollout.batch_size=16",
              "algorithm.estimator=rloo", "algorithm.loss.entropy_coef=0.1", "train.lr=1e-2",
              "train.eval_prompts=32")
    hf = small_config(*common, "rollout.engine=hf", name="hf")
    rays = small_config(*common, "rollout.engine=ray", "rollout.engine_params.num_workers=1", name="ray")
    run_training(hf)
    run_training(rays)
    ra, rb = (read_jsonl(f"{c.run.output_dir}/metrics.jsonl") for c in (hf, rays))
    stable = [[{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in recs] for recs in (ra, rb)]
    assert [r["step"] for r in rb] == [0, 1, 2]
    assert stable[0] == stable[1]
    assert rb[1]["entropy"] != rb[2]["entropy"], "the policy should move between steps"
    assert max(r["mismatch/abs_log_ratio"] for r in rb[1:]) < 1e-6, "the replicas sample the trainer's weights"


def test_actors_that_cannot_be_placed_fail_with_the_free_cpus(ray_session, tiny):
    policy, tok = tiny
    with pytest.raises(RuntimeError, match=r"num_cpus_per_worker=3 CPUs and the cluster has .* free"):
        RayEngine(policy, tok, num_workers=1, num_cpus_per_worker=3, startup_timeout_s=1)


class _FakeRay:
    def __init__(self, initialized=False):
        self.initialized, self.calls = initialized, []

    def is_initialized(self):
        return self.initialized

    def init(self, **kw):
        self.calls.append(kw)


def test_connect_starts_a_bounded_quiet_local_session_or_attaches():
    fake = _FakeRay()
    assert _connect(fake, ray_engine_config({"num_workers": 3, "num_cpus_per_worker": 0.5}))
    (kw,) = fake.calls
    assert kw["address"] == "local" and kw["num_cpus"] == 2  # ceil(3 x 0.5)
    assert kw["include_dashboard"] is False and kw["log_to_driver"] is False
    fake = _FakeRay()
    _connect(fake, ray_engine_config({"address": "ray://head:10001"}))
    assert fake.calls[0]["address"] == "ray://head:10001" and "num_cpus" not in fake.calls[0]
    fake = _FakeRay(initialized=True)
    assert not _connect(fake, ray_engine_config({})) and fake.calls == []  # an open session is reused


@pytest.mark.parametrize(("params", "match"), [
    ({"num_workers": 0}, r"rollout\.engine_params\.num_workers=0 .* integer >= 1"),
    ({"batch_size": 0}, r"rollout\.engine_params\.batch_size=0"),
    ({"num_cpus_per_worker": -1}, r"rollout\.engine_params\.num_cpus_per_worker=-1 .* > 0"),
    ({"torch_threads": 1.5}, r"rollout\.engine_params\.torch_threads"),
    ({"fmt": "fp6"}, r"rollout\.engine_params\.fmt='fp6' .*int8_dynamic"),
    ({"address": ""}, r"rollout\.engine_params\.address"),
    ({"workers": 2}, r"rollout\.engine_params\.workers is not a setting .*valid keys: num_workers"),
])
def test_bad_params_name_the_key(tiny, params, match):
    policy, tok = tiny
    with pytest.raises(ConfigError, match=match):
        make_engine("ray", policy, tok, **params)


def test_missing_ray_says_which_extra_to_install(tiny, monkeypatch):
    policy, tok = tiny
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'rollwise\[ray\]'"):
        make_engine("ray", policy, tok)
