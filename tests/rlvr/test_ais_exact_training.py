"""benchmarks/ais_exact_training.py: the exact properties of its expected-gradient arms on the smallest toy."""

from __future__ import annotations

import math

import pytest
import torch

from rollwise.cli import load_benchmark
from rollwise.rlvr.engines.quantized import QuantizedEngine


def _bench():
    return load_benchmark("ais_exact_training")


def _toy():
    return _bench().Toy(vocab=4, length=3, modulus=3, beta=4.0, hidden=16, layers=1)


def _trained(fmt: str, steps: int = 3):
    """A model after ``steps`` uncorrected exact-gradient steps (non-trivial weights) and its engine copy."""
    bench, toy = _bench(), _toy()
    model = toy.model(0)
    engine = QuantizedEngine(model, None, fmt=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        grads, _ = bench.exact_gradients(toy, model, engine.model, ["none"])
        offset = 0
        for p in model.parameters():
            p.grad = -grads["none"][offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        opt.step()
        engine.sync_weights(model)
    return toy, model, engine


def test_toy_enumerates_every_sequence_and_probabilities_sum_to_one():
    toy = _toy()
    assert toy.seqs.shape == (64, 3) and len(toy.seqs.unique(dim=0)) == 64
    lp = toy.token_logprobs(toy.model(0))
    assert float(lp.detach().sum(-1).exp().sum()) == pytest.approx(1.0, abs=1e-5)
    # prefix-sharing scoring equals scoring every full sequence teacher-forced
    full = torch.cat([torch.full((64, 1), toy.vocab), toy.seqs], dim=1)
    logits = toy.model(0)(input_ids=full, use_cache=False).logits[:, :3, :toy.vocab] * toy.beta
    ref = torch.log_softmax(logits, -1).gather(-1, toy.seqs.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(lp, ref)


def test_seq_is_gradient_equals_the_fp32_gradient():
    bench = _bench()
    toy, model, engine = _trained("int4")
    grads, diag = bench.exact_gradients(toy, model, engine.model, ["fp32", "seq-IS", "none"])
    assert diag["abs_delta"] > 1e-3  # a real mismatch
    assert bench.rel_err(grads["none"], grads["fp32"]) > 1e-3  # the uncorrected estimator is biased
    assert bench.rel_err(grads["seq-IS"], grads["fp32"]) < 1e-5


def test_ais_gradient_is_the_lambda_mix_of_none_and_tis():
    bench = _bench()
    toy, model, engine = _trained("int4")
    arms = ["none", "token-TIS", "AIS", "AIS-flipped"]
    grads, diag = bench.exact_gradients(toy, model, engine.model, arms)
    for arm in ("AIS", "AIS-flipped"):
        lam = diag[f"lambda/{arm}"]
        assert 0.0 < lam < 1.0, (arm, lam)
        mix = (1 - lam) * grads["none"] + lam * grads["token-TIS"]
        assert bench.rel_err(grads[arm], mix) < 1e-5, arm
    # lambda is the library's map of the population diagnostics
    from rollwise.rlvr.correction import AISConfig, divergence_severity, mix_coefficient

    lam = mix_coefficient(divergence_severity(diag["abs_delta"], 0.05), diag["ess_ratio"], diag["trunc_weight_cv"],
                          AISConfig())
    assert diag["lambda/AIS"] == pytest.approx(lam)


def test_population_diagnostics_by_hand():
    """Two sequences of one token: D, the ESS ratio, k3 and the CV of the truncated weights under mu."""
    bench = _bench()
    lp = torch.log(torch.tensor([[0.5], [0.5]]))
    mu_lp = torch.log(torch.tensor([[0.8], [0.2]]))
    d = bench.population_diagnostics(lp, mu_lp, torch.tensor([1.0, 0.0]))
    rho = torch.tensor([0.5 / 0.8, 0.5 / 0.2])
    mu = torch.tensor([0.8, 0.2])
    assert d["abs_delta"] == pytest.approx(float((mu * rho.log().abs()).sum()))
    assert d["ess_ratio"] == pytest.approx(float((mu * rho).sum() ** 2 / (mu * rho**2).sum()))
    assert d["k3_kl"] == pytest.approx(float((mu * (rho - 1 - rho.log())).sum()))
    w = rho.clamp(max=2.0)
    m = (mu * w).sum()
    assert d["trunc_weight_cv"] == pytest.approx(float(((mu * w * w).sum() - m * m).sqrt() / m))
    assert d["accuracy"] == pytest.approx(0.5) and d["accuracy_mu"] == pytest.approx(0.8)
    assert d["clip_frac"] == pytest.approx(0.2)


def test_identical_engine_every_arm_is_identical_and_lambda_zero():
    bench = _bench()
    toy, steps = _toy(), 3
    runs = {arm: bench.train_arm(toy, arm, 0, "none", steps, 1e-2) for arm in bench.ARMS}
    for arm, rec in runs.items():
        assert [r["accuracy"] for r in rec] == [r["accuracy"] for r in runs["fp32"]], arm
        if arm != "fp32":
            assert all(r["abs_delta"] == 0.0 and r["ess_ratio"] == 1.0 for r in rec), arm
            assert all(r["rel_bias"] == 0.0 for r in rec if "rel_bias" in r), arm
    for arm in bench.AIS_ARMS:
        assert all(r["ais/lambda"] == 0.0 for r in runs[arm]), arm
    assert runs["fp32"][-1]["accuracy"] > runs["fp32"][0]["accuracy"]  # it trains


def test_main_writes_results_and_runs_are_deterministic(tmp_path):
    import json

    bench = _bench()
    argv = ["--quick", "--steps", "2", "--vocab", "3", "--length", "3", "--hidden", "16", "--layers", "1",
            "--arms", "none,seq-IS,AIS", "--lr", "1e-2"]
    assert bench.main([*argv, "--out", str(tmp_path)]) == 0
    p = json.loads((tmp_path / "ais_exact_training_quick.json").read_text())
    assert (tmp_path / "ais_exact_training_quick.md").exists()
    assert p["figures"] and all((tmp_path / f).exists() for f in p["figures"])
    assert p["checks"]["seq_is_max_rel_err"] < 1e-5
    assert [r["arm"] for r in p["table"]] == ["fp32", "none", "seq-IS", "AIS"]
    assert not math.isnan(p["compare"][0]["lambda_first10"])
    args = bench.parse_args(argv)
    assert bench.run(args, log=False) == bench.run(args, log=False)  # bit-for-bit: no sampling anywhere
    assert bench.result_name(bench.parse_args(["--fmt", "int3"])) == "ais_exact_training_int3"
