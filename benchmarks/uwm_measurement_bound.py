"""UWM-JEPA-CF with a weaker measurement cap (docs/uwm_jepa.md, "Ablation: measurement strength").

Usage: .venv/bin/python benchmarks/uwm_measurement_bound.py --bound 0.2 --seeds 42,123,456
Trains UWM-JEPA-CF with recipe A per seed and prints the indicator accuracies, the action norm ratio, the
HS battery, the invariants (complex64), blind retention and the context probe.
"""

from __future__ import annotations

import argparse

import torch

from rollwise.runlog import seed_everything, set_threads
from rollwise.worldmodels import probes
from rollwise.worldmodels.env import SpringConfig
from rollwise.worldmodels.training import TrainConfig, train
from rollwise.worldmodels.uwm_jepa import UWMConfig, UWMJepa


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bound", type=float, default=0.2, help="UWMConfig.measurement_bound")
    p.add_argument("--seeds", default="42,123,456")
    args = p.parse_args(argv)
    set_threads(1)
    task, pc = SpringConfig(), probes.ProbeConfig()
    for seed in (int(s) for s in args.seeds.split(",")):
        seed_everything(seed)
        model = UWMJepa(UWMConfig(measurement_bound=args.bound))
        res = train(model, task, TrainConfig(), seed)
        print(f"bound {args.bound} seed {seed}: train {res.seconds:.0f} s wall, {res.cpu_seconds:.0f} s CPU")
        print("indicator", probes.indicator_accuracy(model, res.target, task, seed, pc))
        print("actions", model.action_ratio())
        print("hs", probes.hs_distances(model, res.target, task, pc))
        print("invariants64", probes.invariants(model, task, pc, torch.complex64))
        print("retention", probes.retention(model, res.target, task, seed, pc))
        print("context", probes.context_probe(model, task, seed, pc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
