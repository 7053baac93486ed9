"""LineK learning curves beyond the repro's budget (EXPLORS lab, LineK of the authors' code).

    python benchmarks/explors_linek.py --episodes 20000 --methods explors,explob --seeds 0

Uses exactly the code path of ``rollwise repro explors`` (``run_method`` with ``ExplorsConfig.neural``),
so the first 12 000 episodes match the repro's LineK curves for the same seed. Writes
``runs/bench-explors-linek/explors_linek.json`` and ``.md`` (``--out`` changes the stem).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rollwise.report import markdown_table
from rollwise.runlog import set_threads
from rollwise.shaping.config import LABELS, ExplorsConfig
from rollwise.shaping.repro import crossing
from rollwise.shaping.training import run_method


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=20_000)
    p.add_argument("--methods", default="explors,explob,orig")
    p.add_argument("--seeds", default="0")
    p.add_argument("--out", default="runs/bench-explors-linek/explors_linek")
    args = p.parse_args(argv)
    set_threads(1)
    rows, curves = [], []
    for method in args.methods.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            c = run_method("linek", method, ExplorsConfig.neural(episodes=args.episodes), seed)
            curves.append({"method": method, "seed": seed, "episodes": c.episodes, "returns": c.returns,
                           "successes": c.successes, "seconds": c.seconds})
            rows.append({"method": LABELS[method], "seed": seed, "episodes": args.episodes, "final": c.final(),
                         "first eval >= 5": crossing(c), "train eps with return > 0": c.successes,
                         "seconds": c.seconds})
            print(rows[-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": " ".join(sys.argv), "curves": curves}, indent=1))
    out.with_suffix(".md").write_text(f"# LineK ({args.episodes} episodes)\n\n{markdown_table(rows)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
