"""Seed sweep of the deep replay-estimation path (BC, MM, RE returns on the noisy point mass).

Usage: .venv/bin/python benchmarks/imitation_deep_seeds.py [--seeds 0,1,2,3] [--quick]
Writes benchmarks/results/imitation_deep_seeds.json and .md. Shows how often the adversarial learner
(MM and RE alike) collapses on a CPU budget; see docs/replay_estimation.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rollwise.imitation.adversarial import AdversarialConfig
from rollwise.imitation.deep import DeepConfig, run_deep
from rollwise.report import markdown_table
from rollwise.runlog import set_threads


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", default="0,1,2,3")
    p.add_argument("--quick", action="store_true", help="the repro's --quick deep settings")
    p.add_argument("--code-disc-lr", action="store_true", help="discriminator lr 8e-3/k as in the authors' code")
    args = p.parse_args(argv)
    set_threads(1)
    adv = AdversarialConfig(outer_iters=12 if args.quick else 30, disc_lr_decay=args.code_disc_lr)
    cfg = DeepConfig(bc_steps=800, eval_episodes=30, adversarial=adv) if args.quick else DeepConfig(adversarial=adv)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        r = run_deep(cfg, seed=seed)
        rows.append({"seed": seed, **{k: r[k] for k in ("expert_return", "bc_return", "mm_return", "re_return",
                                                         "alpha_min", "alpha_max", "seconds")}})
        print(rows[-1], flush=True)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    name = "imitation_deep_seeds" + ("_quick" if args.quick else "") + ("_code_disc_lr" if args.code_disc_lr else "")
    (out / f"{name}.json").write_text(json.dumps(rows, indent=2))
    cmd = ("python benchmarks/imitation_deep_seeds.py --seeds " + args.seeds + (" --quick" if args.quick else "")
           + (" --code-disc-lr" if args.code_disc_lr else ""))
    (out / f"{name}.md").write_text(f"# Deep RE seed sweep\n\n`{cmd}`\n\n{markdown_table(rows)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
