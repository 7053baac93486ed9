"""T0 unit tests: path-tree evidence, ITF path, Louis' identity, kappa limit (spec tf_bayes.md 5.2)."""

import itertools
import math

import torch
import torch.nn.functional as F

from rollwise.dynamics.alrnn import ALRNNConfig, gated_step, init_params
from rollwise.dynamics.curvature import aggregate, window_information
from rollwise.dynamics.switching import itf_path, leaf_logliks, regime_table, window_posterior


def _model(seed=0, scale=0.3):
    p = init_params(ALRNNConfig(), torch.Generator().manual_seed(seed)).to(torch.float64)
    g = torch.Generator().manual_seed(seed + 100)
    p.W = p.W + scale * torch.randn(p.W.shape, generator=g, dtype=torch.float64)
    p.h = scale * torch.randn(p.h.shape, generator=g, dtype=torch.float64)
    return p


def _window(seed, p, B=1, W=3):
    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(B, p.n_latent, generator=g, dtype=torch.float64)
    # observations near the deterministic path so that several paths matter
    x = torch.randn(B, W, p.n_obs, generator=g, dtype=torch.float64) * 0.5
    return z0, x


def _brute_force(p, z0, x, kappa, log_sigma):
    """Loop over all 2^{PW} paths one by one (eq. 2.2a), returning l_c per path in leaf order."""
    S = regime_table(p.n_pwl)
    out = []
    for path in itertools.product(range(2**p.n_pwl), repeat=x.shape[0]):
        z, total = z0, 0.0
        for t, r in enumerate(path):
            pre = kappa * z[-p.n_pwl:]
            total += float((S[r] * F.logsigmoid(pre) + (1 - S[r]) * F.logsigmoid(-pre)).sum())
            z = gated_step(z, S[r], p.A, p.W, p.h)
            resid = x[t] - z[: p.n_obs]
            sig = math.exp(log_sigma)
            total += float(-0.5 * (resid**2).sum() / sig**2 - p.n_obs * (log_sigma + 0.5 * math.log(2 * math.pi)))
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


def test_tree_equals_brute_force_loop():
    p = _model(0)
    z0, x = _window(1, p, B=2, W=3)
    ll_c, ll_e = leaf_logliks(z0, x, p.A, p.W, p.h, 5.0, -1.2, p.n_pwl)
    assert ll_c.shape == (2, 64)
    for b in range(1):
        ref = _brute_force(p, z0[b], x[b], 5.0, -1.2)
        torch.testing.assert_close(ll_c[b], ref, rtol=0, atol=1e-10)
        torch.testing.assert_close(torch.logsumexp(ll_c[b], 0), torch.logsumexp(ref, 0), rtol=0, atol=1e-12)
    assert torch.all(ll_e >= ll_c)  # the regime prior's log-probabilities are <= 0


def test_itf_leaf_is_the_deterministic_path():
    p = _model(2)
    z0, x = _window(3, p, B=4, W=4)
    idx = itf_path(z0, p.A, p.W, p.h, p.n_pwl, 4)
    # with a near-deterministic prior the ITF leaf carries all posterior mass unless the data say otherwise;
    # the prior part of the ITF leaf is the largest of all leaves
    ll_c, ll_e = leaf_logliks(z0, x, p.A, p.W, p.h, 1e4, -1.0, p.n_pwl)
    prior = ll_c - ll_e
    assert torch.equal(prior.argmax(-1), idx)
    torch.testing.assert_close(prior.gather(1, idx[:, None]).squeeze(1), torch.zeros(4, dtype=torch.float64),
                               atol=1e-8, rtol=0)


def test_louis_identity_and_psd_missing_information():
    p = _model(4)
    z0, x = _window(5, p, B=3, W=4)
    infos = window_information(p, z0, x, kappa=5.0, log_sigma=-1.0)
    for info in infos:
        assert info.louis_residual <= 1e-10
        lmin = torch.linalg.eigvalsh(info.I_mis)[0]
        assert lmin >= -1e-8 * torch.linalg.eigvalsh(info.I_com)[-1]
    assert aggregate([i.summary() for i in infos])["max_louis_residual"] <= 1e-10


def test_kappa_limit_entropy_to_zero_ratio_to_one():
    p = _model(6)
    z0, x = _window(7, p, B=1, W=3)
    ent, ratio = [], []
    for kappa in (5.0, 20.0, 100.0, 1e4):
        s = window_information(p, z0, x, kappa=kappa, log_sigma=-1.0)[0].summary()
        ent.append(s["entropy"])
        ratio.append(s["ratio"])
    assert ent[-1] < 1e-8 and ent[0] > 0.1
    assert abs(ratio[-1] - 1.0) < 1e-8
    assert abs(ratio[0] - 1.0) > abs(ratio[-1] - 1.0)


def test_posterior_sums_to_one_and_entropy_bounds():
    p = _model(8)
    z0, x = _window(9, p, B=5, W=3)
    post = window_posterior(p, z0, x, 5.0, -1.0)
    torch.testing.assert_close(post.posterior.sum(-1), torch.ones(5, dtype=torch.float64))
    assert torch.all(post.entropy >= 0) and torch.all(post.entropy <= math.log(64) + 1e-9)
