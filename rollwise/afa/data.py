"""Data sets of the NM-PPG experiments: CUBE, CUBE-NM (AFABench generators) and three scikit-learn sets.

Every data set is split 60/20/20 with a seeded permutation and comes with its acquisition units
("groups", a 0/1 partition matrix ``groups: (K, d)``) and one cost per group ``costs: (K,)``.
Real data are z-scored with training statistics only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rollwise.shapes import Dim

SPLITS = ("train", "val", "test")
DATASETS = ("cube_nm", "cube", "digits", "breast_cancer", "wine")


@dataclass
class AFAData:
    """A data set ready for feature acquisition.

    ``x[split]: (n, d)`` float32, ``y[split]: (n,)`` int64, ``groups: (K, d)`` disjoint 0/1 rows covering
    every feature, ``costs: (K,)`` positive group costs, ``context_group``: index of CUBE-NM's context group.
    """

    name: str
    x: dict[str, Tensor]
    y: dict[str, Tensor]
    groups: Tensor
    costs: Tensor
    n_classes: int
    context_group: int | None = None

    n_groups = Dim("groups", 0)  # K
    n_features = Dim("groups", 1)  # d

    def validate(self) -> None:
        """Raise ``ValueError`` if groups are not a partition of the features or costs are not positive."""
        col = self.groups.sum(0)
        if not torch.all(col == 1):
            raise ValueError(f"{self.name}: groups must cover each of the {self.n_features} features exactly once; "
                             f"column sums are {col.unique().tolist()}")
        if self.costs.shape != (self.n_groups,) or not torch.all(self.costs > 0):
            raise ValueError(f"{self.name}: costs must be ({self.n_groups},) and positive")


def _bit_codes(n_classes: int = 8, n_bits: int = 3) -> Tensor:
    """Little-endian binary codes of the labels: ``(n_classes, n_bits)``."""
    return torch.tensor([[(c >> j) & 1 for j in range(n_bits)] for c in range(n_classes)], dtype=torch.float32)


def cube_arrays(n: int, seed: int, informative_std: float = 0.3, noise_mean: float = 0.5,
                noise_std: float = 0.3) -> tuple[Tensor, Tensor]:
    """CUBE (AFABench ``CubeDataset``): 20 features, 8 classes.

    Label c puts its 3-bit code (+ N(0, informative_std)) on features c..c+2 of the first 10; every other
    feature is N(noise_mean, noise_std). Returns ``x: (n, 20)``, ``y: (n,)``.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 8, (n,), generator=g)
    x = noise_mean + noise_std * torch.randn(n, 20, generator=g)
    idx = y[:, None] + torch.arange(3)[None, :]  # (n, 3)
    code = _bit_codes()[y] + informative_std * torch.randn(n, 3, generator=g)
    x.scatter_(1, idx, code)
    return x, y


def cube_nm_arrays(n: int, seed: int, n_contexts: int = 5, block: int = 10, context_std: float = 0.1,
                   informative_std: float = 0.3, noise_mean: float = 0.5,
                   noise_std: float = 0.3) -> tuple[Tensor, Tensor]:
    """CUBE-NM (AFABench ``AFAContextDataset``): noisy one-hot context, then ``n_contexts`` blocks.

    The context k (uniform) selects the block whose positions (y + j) mod ``block``, j = 0..2, carry the
    label's code; all other block features are noise. Returns ``x: (n, n_contexts * (1 + block))``, ``y: (n,)``.
    """
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randint(0, n_contexts, (n,), generator=g)
    y = torch.randint(0, 8, (n,), generator=g)
    ctx_feat = torch.nn.functional.one_hot(ctx, n_contexts).float() + context_std * torch.randn(
        n, n_contexts, generator=g)
    blocks = noise_mean + noise_std * torch.randn(n, n_contexts, block, generator=g)
    pos = (y[:, None] + torch.arange(3)[None, :]) % block  # (n, 3)
    code = _bit_codes()[y] + informative_std * torch.randn(n, 3, generator=g)
    rows = torch.arange(n)[:, None].expand(n, 3)
    blocks[rows, ctx[:, None].expand(n, 3), pos] = code
    return torch.cat([ctx_feat, blocks.reshape(n, -1)], dim=1), y


def _split(x: Tensor, y: Tensor, seed: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Seeded 60/20/20 split."""
    n = x.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(10_000 + seed))
    n_tr, n_va = int(0.6 * n), int(0.2 * n)
    parts = {"train": perm[:n_tr], "val": perm[n_tr:n_tr + n_va], "test": perm[n_tr + n_va:]}
    return {k: x[v] for k, v in parts.items()}, {k: y[v] for k, v in parts.items()}


def _zscore(xs: dict[str, Tensor]) -> dict[str, Tensor]:
    """Standardise every split with the training split's mean and std (zero std -> 1)."""
    mu = xs["train"].mean(0)
    sd = xs["train"].std(0, unbiased=False)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    return {k: (v - mu) / sd for k, v in xs.items()}


def load(name: str, seed: int = 0, n: int = 6000, n_contexts: int = 5) -> AFAData:
    """Build data set ``name`` (one of ``DATASETS``) for ``seed``; ``n`` rows and (CUBE-NM) ``n_contexts``
    for the generators (5: our choice; AFABench's class default is 3)."""
    if name == "cube":
        x, y = cube_arrays(n, seed)
        xs, ys = _split(x, y, seed)
        data = AFAData(name, xs, ys, torch.eye(20), torch.ones(20), 8)
    elif name == "cube_nm":
        x, y = cube_nm_arrays(n, seed, n_contexts=n_contexts)
        xs, ys = _split(x, y, seed)
        nb = 10 * n_contexts
        groups = torch.zeros(1 + nb, n_contexts + nb)
        groups[0, :n_contexts] = 1.0  # the context features form one group (AFABench cube_nm_unmasker)
        groups[1:, n_contexts:] = torch.eye(nb)
        costs = torch.ones(1 + nb)  # context features cost 1/n_contexts each: the context group costs 1
        data = AFAData(name, xs, ys, groups, costs, 8, context_group=0)
    elif name in ("digits", "breast_cancer", "wine"):
        from sklearn import datasets as skd

        loader = {"digits": skd.load_digits, "breast_cancer": skd.load_breast_cancer, "wine": skd.load_wine}[name]
        bunch = loader()
        x = torch.tensor(np.asarray(bunch.data), dtype=torch.float32)
        y = torch.tensor(np.asarray(bunch.target), dtype=torch.int64)
        xs, ys = _split(x, y, seed)
        d = x.shape[1]
        data = AFAData(name, _zscore(xs), ys, torch.eye(d), torch.ones(d), int(y.max()) + 1)
    else:
        raise ValueError(f"unknown data set {name!r}; valid: {', '.join(DATASETS)}")
    data.validate()
    return data
