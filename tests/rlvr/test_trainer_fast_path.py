"""The trainer's fast path: the compact forward and old log-probs reused from the update's own forward."""

import pytest
import torch

from rollwise.rlvr.microbatch import loss_backward
from rollwise.rlvr.models import char_tokenizer, tiny_causal_lm
from rollwise.rlvr.tasks import make_task
from rollwise.rlvr.trainer import Trainer

FAST = ["rollout.engine=lean", "model.forward=compact", "train.reuse_logprobs=true"]


class _RandomAdvantages:
    """A random-init policy scores 0 everywhere (zero advantages, zero gradients): fixed random ones instead."""

    def __init__(self, estimator):
        self.inner = estimator

    def __call__(self, batch):
        gen = torch.Generator().manual_seed(batch.size)
        return torch.randn(batch.size, 1, generator=gen) * batch.response_mask

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _trainer(cfg, seed: int = 0) -> Trainer:
    tok = char_tokenizer()
    model = tiny_causal_lm(tok, cfg.model.tiny, seed=seed)
    tr = Trainer(cfg, model, tok, make_task(cfg.task.name, **cfg.task.params))
    tr.estimator = _RandomAdvantages(tr.estimator)
    return tr


def _grads(trainer: Trainer, batch) -> dict[str, torch.Tensor]:
    trainer.policy.zero_grad(set_to_none=True)
    trainer.policy.train()
    loss_backward(trainer.policy, batch, trainer.loss_cfg, trainer.teacher_forced, 1.0)
    return {n: p.grad.clone() for n, p in trainer.policy.named_parameters()}


def test_reused_logprobs_give_the_gradient_of_the_separate_pass(small_config):
    cfg = small_config(*FAST, "algorithm.estimator=grpo", "rollout.n=4")
    tr = _trainer(cfg)
    assert tr.reuse_logprobs
    batch, _ = tr.compute_advantages(tr.rollout(1)[0])
    assert batch.old_logprobs is None  # no separate pass ran
    reused = _grads(tr, batch)
    with torch.no_grad():
        batch.old_logprobs = tr.teacher_forced(tr.policy, batch)[0] * batch.response_mask
    separate = _grads(tr, batch)
    for name, g in separate.items():
        assert torch.allclose(reused[name], g, atol=1e-6, rtol=1e-5), name
        assert g.abs().sum() > 0


def test_a_step_with_reused_logprobs_matches_the_separate_pass(small_config):
    on = _trainer(small_config(*FAST, "algorithm.estimator=grpo", "rollout.n=4"))
    off = _trainer(small_config(*FAST[:2], "algorithm.estimator=grpo", "rollout.n=4", "train.reuse_logprobs=false"))
    assert on.reuse_logprobs and not off.reuse_logprobs
    a, b = on.train_step(1), off.train_step(1)
    assert a["reward"] == b["reward"] and a["ratio_mean"] == 1.0
    # the mismatch diagnostics are logged either way (from the update's own forward when reused)
    diag = {k for k in b if k.startswith("correction/")}
    assert diag and diag <= set(a)
    for k in diag:
        assert a[k] == pytest.approx(b[k], abs=1e-5), k
    assert "time/logprobs" not in a or a["time/logprobs"] < 1.0
    for p, q in zip(on.policy.parameters(), off.policy.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


@pytest.mark.parametrize("override,reason", [
    ("train.ppo_epochs=2", "epochs"),
    ("train.mini_batches=2", "mini-batches"),
    ("rollout.engine=quantized", "another copy"),
    ("algorithm.correction=tis", "correction"),
    ("algorithm.estimator=ucpo", "log-probs"),
    ("algorithm.loss.kl_coef=0.1", "reference"),
])
def test_configurations_that_need_the_separate_pass_keep_it(small_config, override, reason):
    from rollwise.rlvr.trainer import reuse_blocker

    cfg = small_config(*FAST, "algorithm.estimator=grpo", "rollout.n=4", override)
    tr = _trainer(cfg)
    assert not tr.reuse_logprobs
    assert reason in reuse_blocker(cfg, tr.reads, False)
    assert tr.rollout(1)[0].old_logprobs is not None


def test_fast_path_is_deterministic(small_config):
    cfg = small_config(*FAST, "algorithm.estimator=grpo", "rollout.n=4")
    a = [_trainer(cfg).train_step(s) for s in (1,)]
    b = [_trainer(cfg).train_step(s) for s in (1,)]
    strip = lambda r: {k: v for k, v in r.items() if not k.startswith("time/") and k != "tokens_per_s"}  # noqa: E731
    assert [strip(r) for r in a] == [strip(r) for r in b]
