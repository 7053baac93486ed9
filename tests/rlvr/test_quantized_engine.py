"""The quantized rollout engine: formats, refresh after optimizer steps, its own log-probs."""

from __future__ import annotations

import pytest
import torch

from rollwise.cli import load_benchmark
from rollwise.config import ConfigError
from rollwise.rlvr.correction import make_correction
from rollwise.rlvr.engines import SamplingConfig, make_engine
from rollwise.rlvr.engines.quantized import FORMATS, QuantizedEngine, fake_quantize, quantized_linear_names
from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, sequence_logprobs, tiny_causal_lm

PROMPTS = ["12+3=", "7+40="]
SAMPLING = SamplingConfig(n=4, max_new_tokens=6)


@pytest.fixture(scope="module")
def tiny():
    tok = char_tokenizer()
    cfg = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_positions=32)
    return tiny_causal_lm(tok, cfg, seed=0), tok


def _teacher_forced(model, batch):
    ids, mask = batch.sequences()
    with torch.no_grad():
        return sequence_logprobs(model, ids, mask, batch.response_ids.shape[1])[0] * batch.response_mask


def test_fake_quantize_golden():
    w = torch.tensor([[1.0, -0.6, 0.26], [0.0, 0.0, 0.0]])
    q = fake_quantize(w, "int4")  # per row: s = 1/7
    torch.testing.assert_close(q[0], torch.tensor([7, -4, 2]) / 7.0)
    assert torch.equal(q[1], torch.zeros(3))
    assert fake_quantize(torch.tensor([448.0, 1.0]), "fp8_e4m3").tolist() == [448.0, 1.0]
    assert fake_quantize(torch.tensor([448.0, 1.1]), "fp8_e4m3")[1] == 1.125  # e4m3 has 3 mantissa bits
    assert torch.equal(fake_quantize(w, "none"), w)
    with pytest.raises(ConfigError, match="valid choices"):
        fake_quantize(w, "fp6")


@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fp8_e5m2", "int8", "int4"])
def test_rollout_logprobs_are_the_quantized_copy_s(tiny, fmt):
    policy, tok = tiny
    engine = make_engine("quantized", policy, tok, fmt=fmt)
    assert isinstance(engine, QuantizedEngine)
    batch = engine.generate(PROMPTS, SAMPLING, seed=3)
    torch.testing.assert_close(batch.rollout_logprobs, _teacher_forced(engine.model, batch), atol=1e-4, rtol=0)
    gap = (batch.rollout_logprobs - _teacher_forced(policy, batch)).abs().max()
    assert gap > 1e-4  # and they are not the trainer's
    for name in quantized_linear_names(policy):
        w = engine.model.get_submodule(name).weight
        torch.testing.assert_close(w, fake_quantize(policy.get_submodule(name).weight, fmt), atol=0, rtol=0)
    assert torch.equal(engine.model.lm_head.weight, policy.lm_head.weight)  # lm_head stays full precision


def test_identity_format_gives_unit_weights_and_zero_lambda(tiny):
    policy, tok = tiny
    batch = make_engine("quantized", policy, tok, fmt="none").generate(PROMPTS, SAMPLING, seed=1)
    batch.old_logprobs = _teacher_forced(policy, batch)
    w, _, m = make_correction("ais")(batch)
    # generate (KV cache) vs one teacher-forced pass differ only by float rounding
    assert m["mismatch/ess_ratio"] > 1 - 1e-6 and m["mismatch/abs_log_ratio"] < 1e-5
    assert m["ais/lambda"] < 1e-3
    torch.testing.assert_close(w, batch.response_mask, atol=1e-5, rtol=0)


@pytest.mark.parametrize("fmt", ["fp8_e4m3", "int8_dynamic"])
def test_sync_weights_refreshes_after_an_optimizer_step(fmt):
    tok = char_tokenizer()
    cfg = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_positions=32)
    policy = tiny_causal_lm(tok, cfg, seed=1)
    engine = QuantizedEngine(policy, tok, fmt=fmt)
    before = engine.generate(PROMPTS, SAMPLING, seed=0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    stale = engine.generate(PROMPTS, SAMPLING, seed=0)
    torch.testing.assert_close(stale.rollout_logprobs, before.rollout_logprobs)  # not refreshed yet
    engine.sync_weights(policy)
    fresh = engine.generate(PROMPTS, SAMPLING, seed=0)
    rebuilt = QuantizedEngine(policy, tok, fmt=fmt).generate(PROMPTS, SAMPLING, seed=0)
    assert torch.equal(fresh.response_ids, rebuilt.response_ids)
    torch.testing.assert_close(fresh.rollout_logprobs, rebuilt.rollout_logprobs, atol=1e-6, rtol=0)
    assert not torch.allclose(fresh.rollout_logprobs, before.rollout_logprobs)


def test_int8_dynamic_uses_int8_kernels_and_stays_close(tiny):
    policy, tok = tiny
    engine = QuantizedEngine(policy, tok, fmt="int8_dynamic")
    kinds = {type(engine.model.get_submodule(n)).__module__ for n in quantized_linear_names(policy)}
    assert kinds == {"torch.ao.nn.quantized.dynamic.modules.linear"}
    batch = engine.generate(PROMPTS, SAMPLING, seed=2)
    gap = (batch.rollout_logprobs - _teacher_forced(policy, batch)).abs().max()
    assert 1e-5 < gap < 0.5


def test_activation_fake_quant_widens_the_gap(tiny):
    policy, tok = tiny
    weights_only = QuantizedEngine(policy, tok, fmt="fp8_e4m3").generate(PROMPTS, SAMPLING, seed=4)
    w8a8 = QuantizedEngine(policy, tok, fmt="fp8_e4m3", activations=True)
    batch = w8a8.generate(PROMPTS, SAMPLING, seed=4)
    torch.testing.assert_close(batch.rollout_logprobs, _teacher_forced(w8a8.model, batch), atol=1e-4, rtol=0)
    assert not torch.equal(batch.rollout_logprobs, weights_only.rollout_logprobs)


def test_engine_config_errors(tiny):
    policy, tok = tiny
    assert "int8_dynamic" in FORMATS
    with pytest.raises(ConfigError, match="fmt"):
        QuantizedEngine(policy, tok, fmt="bf4")
    with pytest.raises(ConfigError, match="activations"):
        QuantizedEngine(policy, tok, fmt="int8", activations=True)


def test_policy_is_not_modified(tiny):
    policy, tok = tiny
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    QuantizedEngine(policy, tok, fmt="int4").generate(PROMPTS, SAMPLING, seed=0)
    for k, v in policy.state_dict().items():
        assert torch.equal(v, before[k]), k


def _smoke_run(out_dir) -> list[dict]:
    from rollwise.rlvr.job import run_training
    from rollwise.rlvr.run_config import resolve_config
    from rollwise.runlog import read_jsonl

    cfg = resolve_config(base={
        "model": {"tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64}},
        "task": {"name": "add3", "params": {"max_operand": 9, "n_train": 60, "n_test": 20}},
        "sft": {"enabled": False},
        "rollout": {"n": 4, "max_new_tokens": 4, "engine": "quantized", "engine_params": {"fmt": "int4"}},
        "algorithm": {"estimator": "grpo", "correction": "ais"},
        "train": {"steps": 2, "prompts_per_step": 4, "eval_every": 0, "eval_prompts": 8, "checkpoint_every": 0,
                  "lr": 1e-3},
        "run": {"output_dir": str(out_dir), "threads": 1, "report": False},
    })
    run_training(cfg)
    return read_jsonl(out_dir / "metrics.jsonl")


def test_quantized_ais_training_steps_log_diagnostics_and_are_deterministic(tmp_path):
    a = _smoke_run(tmp_path / "a")
    steps = [r for r in a if r["step"] >= 1]
    assert len(steps) == 2
    for r in steps:
        for key in ("mismatch/ess_ratio", "mismatch/abs_log_ratio", "mismatch/k3_kl", "mismatch/weight_cv",
                    "correction/clip_frac", "correction/mask_frac", "ais/lambda"):
            assert key in r, key
        assert 0.0 < r["mismatch/ess_ratio"] <= 1.0 and r["mismatch/abs_log_ratio"] > 0.0
        assert 0.0 <= r["ais/lambda"] <= 1.0
    b = _smoke_run(tmp_path / "b")
    for ra, rb in zip(a, b, strict=True):
        for k, v in ra.items():
            if not k.startswith("time/") and k not in ("wall", "tokens_per_s"):
                assert rb[k] == v, k



def test_sampled_evaluation_measures_the_full_precision_policy(tmp_path):
    """Evaluation samples the trainer's own policy, never the (quantized) rollout engine's copy."""
    from rollwise.rlvr.models import TinyModelConfig, char_tokenizer, tiny_causal_lm
    from rollwise.rlvr.run_config import resolve_config
    from rollwise.rlvr.tasks import make_task
    from rollwise.rlvr.trainer import Trainer

    class Refuses(QuantizedEngine):
        def generate(self, *args, **kwargs):
            raise AssertionError("evaluation must not sample from the rollout engine")

    def evaluate(engine: str) -> dict:
        cfg = resolve_config(base={
            "task": {"name": "make_n", "params": {}},
            "rollout": {"max_new_tokens": 8, "engine": engine,
                        "engine_params": {"fmt": "int3"} if engine == "quantized" else {}},
            "train": {"eval_prompts": 16},
            "run": {"output_dir": str(tmp_path / engine), "threads": 1, "report": False},
        })
        tok = char_tokenizer()
        policy = tiny_causal_lm(tok, TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2,
                                                      intermediate_size=64), seed=0)
        task = make_task(cfg.task.name, **cfg.task.params)
        trainer = Trainer(cfg, policy, tok, task, engine=Refuses(policy, tok, fmt="int3")
                          if engine == "quantized" else None)
        return trainer.evaluate()

    hf, quant = evaluate("hf"), evaluate("quantized")
    assert set(hf) == {"eval/accuracy", "eval/reward"}
    assert quant == hf


# ---- benchmarks/quantized_rollout.py: design presets and spec 5.4 summaries ----------------------------------
def _bench():
    return load_benchmark("quantized_rollout")


def test_bench_designs_resolve_to_valid_configs(tmp_path):
    from rollwise.rlvr.run_config import resolve_config

    bench = _bench()
    v2 = bench.parse_args([])
    assert (v2.task, v2.op, v2.fmt, v2.steps, bench.result_name(v2)) == ("reverse", "sort", "int4", 100,
                                                                          "quantized_rollout")
    cfg = resolve_config(base=bench.base_config(v2, 0, tmp_path))
    assert cfg.task.params == {"op": "sort", "length": 16, "alphabet": "abcdefgh", "sft_noise": 0.0}
    assert cfg.rollout.max_new_tokens == 20 and cfg.rollout.temperature == 1.0
    assert bench.parse_args(["--steps", "7", "--task", "add3"]).steps == 7  # explicit flags win over the design
    assert bench.result_name(bench.parse_args(["--quick"])) == "quantized_rollout_quick"


def test_bench_spec_checks_on_synthetic_runs():
    bench = _bench()
    steps = range(1, 31)

    def run(gap: float, lam0: float, lam1: float, acc: float) -> list[dict]:
        recs = [{"step": s, "entropy": 1.0 - s / 40, "mismatch/abs_log_ratio": gap * s,
                 "mismatch/ess_ratio": 1.0 - gap * s, "ais/lambda": lam0 + (lam1 - lam0) * s / 30,
                 "accuracy": 0.5, "grad_norm": 1.0} for s in steps]
        return [*recs, {"step": 30, bench.FINAL: acc, "final/test_exact": acc}]

    runs = {"fp32": {0: run(0.0, 0, 0, 0.60), 1: run(0.0, 0, 0, 0.70)},
            "quant-none": {0: run(0.01, 0, 0, 0.40), 1: run(0.01, 0, 0, 0.50)},
            "quant-ais": {0: run(0.01, 0.2, 0.6, 0.62), 1: run(0.01, 0.2, 0.6, 0.66)}}
    seed_rows = bench.per_seed(runs)
    ais0 = next(r for r in seed_rows if r["arm"] == "quant-ais" and r["seed"] == 0)
    assert ais0["corr_delta_entropy"] == pytest.approx(-1.0) and ais0["corr_ess_entropy"] == pytest.approx(1.0)
    assert ais0["lambda_last10"] > ais0["lambda_first10"] and ais0["acc"] == 0.62
    rows = [{"arm": a, "acc_mean": sum(bench._final(r, bench.FINAL) for r in by.values()) / 2,
             "acc_std": 0.0707} for a, by in runs.items()]
    checks = {c["target"][:3]: c["met"] for c in bench.spec_checks(rows, seed_rows)}
    assert checks == {"(a)": True, "(b)": True, "(c)": True, "(d)": True}
    runs["quant-ais"] = {0: run(0.01, 0.6, 0.2, 0.45), 1: run(0.01, 0.6, 0.2, 0.45)}  # falling lambda, far below
    rows[2]["acc_mean"] = 0.45
    checks = {c["target"][:3]: c["met"] for c in bench.spec_checks(rows, bench.per_seed(runs))}
    assert checks["(c)"] is False and checks["(d)"] is False


def test_skip_nothing_quantizes_a_tied_lm_head_but_not_the_embeddings(tiny):
    """``skip=()`` must quantize the tied head in the copy only; the embeddings and the policy's tie stay exact."""
    import copy

    policy, tok = copy.deepcopy(tiny[0]), tiny[1]  # changed below; deepcopy keeps the tie
    assert policy.lm_head.weight is policy.model.embed_tokens.weight  # the tiny models tie them
    engine = QuantizedEngine(policy, tok, fmt="int4", skip=())
    assert "lm_head" in engine.linear_names
    copy_ = engine.model
    torch.testing.assert_close(copy_.lm_head.weight, fake_quantize(policy.lm_head.weight.detach(), "int4"))
    assert torch.equal(copy_.model.embed_tokens.weight, policy.model.embed_tokens.weight)
    assert not torch.equal(copy_.lm_head.weight, copy_.model.embed_tokens.weight)
    assert policy.lm_head.weight is policy.model.embed_tokens.weight
    head_kept = QuantizedEngine(policy, tok, fmt="int4")  # default skip: lm_head in full precision
    assert torch.equal(head_kept.model.lm_head.weight, policy.lm_head.weight)
    with torch.no_grad():  # a changed policy: the untied head follows it on sync
        policy.model.embed_tokens.weight.add_(0.01)
        engine.sync_weights(policy)
        torch.testing.assert_close(copy_.lm_head.weight, fake_quantize(policy.lm_head.weight.detach(), "int4"))
        assert torch.equal(copy_.model.embed_tokens.weight, policy.model.embed_tokens.weight)
