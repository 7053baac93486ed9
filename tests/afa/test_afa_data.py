"""Generator sanity (spec 5.3 unit tests) and data-set plumbing."""

import torch
from sklearn.linear_model import LogisticRegression

from rollwise.afa.data import cube_arrays, cube_nm_arrays, load


def _fit_acc(x: torch.Tensor, y: torch.Tensor) -> float:
    n = x.shape[0] // 2
    clf = LogisticRegression(C=100.0, max_iter=2000).fit(x[:n].numpy(), y[:n].numpy())
    return float(clf.score(x[n:].numpy(), y[n:].numpy()))


def test_cube_noise_free_is_perfectly_classifiable():
    x, y = cube_arrays(800, seed=0, informative_std=0.0, noise_std=0.0)
    assert _fit_acc(x, y) == 1.0
    # label c's little-endian code sits on features c..c+2
    for c in range(8):
        row = x[y == c][0]
        assert row[c:c + 3].tolist() == [float((c >> j) & 1) for j in range(3)]


def test_cube_nm_noise_free_full_features_perfect_and_context_alone_chance():
    x, y = cube_nm_arrays(6000, seed=1, context_std=0.0, informative_std=0.0, noise_std=0.0)
    assert _fit_acc(x, y) == 1.0
    x, y = cube_nm_arrays(6000, seed=1)
    acc = _fit_acc(x[:, :5], y)
    assert acc < 0.16  # 8 classes: chance 0.125; the context carries no label information


def test_cube_nm_code_in_context_block():
    x, y = cube_nm_arrays(200, seed=2, context_std=0.0, informative_std=0.0, noise_std=0.0)
    ctx = x[:, :5].argmax(1)
    for i in range(20):
        block = x[i, 5 + 10 * ctx[i]: 15 + 10 * ctx[i]]
        for j in range(3):
            assert block[(y[i] + j) % 10] == float((int(y[i]) >> j) & 1)


def test_splits_groups_costs_and_seeding():
    d = load("cube_nm", seed=0, n=6000)
    assert [d.x[s].shape[0] for s in ("train", "val", "test")] == [3600, 1200, 1200]
    assert d.groups.shape == (51, 55) and d.n_groups == 51
    assert d.groups[0, :5].sum() == 5 and d.costs[0] == 1.0 and d.context_group == 0
    assert torch.equal(load("cube_nm", seed=0, n=6000).x["test"], d.x["test"])
    assert not torch.equal(load("cube_nm", seed=1, n=6000).x["test"], d.x["test"])


def test_sklearn_sets_zscored_with_training_statistics():
    for name, d_feat, k in (("digits", 64, 10), ("breast_cancer", 30, 2), ("wine", 13, 3)):
        d = load(name, seed=0)
        assert d.n_features == d_feat and d.n_classes == k
        assert d.x["train"].mean(0).abs().max() < 1e-4
        assert d.x["test"].mean(0).abs().max() > 1e-4  # test split is not re-standardised
