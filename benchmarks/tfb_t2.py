"""Spec tf_bayes T2: the full ITF schedule (1000 epochs of the lab's lr 1e-3 -> 1e-5 over 2000 epochs),
then the same curvature and fine-tuning stages as ``rollwise repro tf-bayes``.

Usage: ``.venv/bin/python benchmarks/tfb_t2.py [--out runs/repro-tf-bayes-t2] [--seeds 0,1,2]``.
About 3x the T1 training time (30-40 min on one idle core; much longer on a contended machine).
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
    report = run_experiment(cfg, args.out, command="python benchmarks/tfb_t2.py")
    report.seconds = time.perf_counter() - t0
    print(f"report: {report.write(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
