"""Spec tf_bayes T2: the full ITF schedule (1000 epochs of the lab's lr 1e-3 -> 1e-5 over 2000 epochs),
evaluated every 5 epochs (the report reads both the 5-epoch and the lab's 25-epoch selection grid from the
same run), then the same curvature and fine-tuning stages as ``rollwise repro tf-bayes``.

Usage: ``rollwise bench tf-bayes-t2 [--out runs/repro-tf-bayes-t2] [--seeds 0,1,2]``
(or ``.venv/bin/python benchmarks/tfb_t2.py ...``). The seeds train as one ensemble, so three cost about as
much as one: about 35 min of one idle core (50k updates at ~34 ms, 600 free-run evaluations at ~0.75 s).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace


def main(argv: list[str] | None = None) -> int:
    from rollwise.dynamics.repro import run_experiment, t2_config

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="runs/repro-tf-bayes-t2")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args(argv)
    cfg = replace(t2_config(), seeds=tuple(int(s) for s in args.seeds.split(",")))
    t0 = time.perf_counter()
    report = run_experiment(cfg, args.out, command=f"rollwise bench tf-bayes-t2 --seeds {args.seeds}")
    report.seconds = time.perf_counter() - t0
    md = report.write(args.out)
    report.print()
    print(f"report: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
