"""The ``rollwise`` command: train, sft, eval, report, bench, repro, base.

Sub-commands import their heavy modules lazily, so ``rollwise --help`` is instant and importing the
CLI pulls in no optional engine.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType

#: ``rollwise repro NAME`` -> module with ``run(quick, out_dir, seeds) -> ReproReport``.
REPROS: dict[str, str] = {
    "uwm-jepa": "rollwise.worldmodels.repro",
    "nm-ppg": "rollwise.afa.repro",
    "tf-bayes": "rollwise.dynamics.repro",
    "replay-estimation": "rollwise.imitation.repro",
    "explors": "rollwise.shaping.repro",
}

#: ``rollwise bench NAME`` -> script in ``benchmarks/`` with ``main(argv) -> int``.
BENCHES: dict[str, str] = {
    "throughput": "throughput.py",
    "value-mse": "value_mse.py",
    "policy": "policy_compare.py",
    "quantized-rollout": "quantized_rollout.py",
    "ais-exact-training": "ais_exact_training.py",
    "diversity": "diversity.py",
    "codistill": "codistill.py",
    "explors-linek": "explors_linek.py",
    "imitation-deep-seeds": "imitation_deep_seeds.py",
    "tf-bayes-t2": "tfb_t2.py",
    "ray-rollout": "ray_rollout.py",
    "replay-a-re-2-noise": "imitation_re2_noise.py",
    "decode-vs-score": "decode_vs_score.py",
    "codistill-long": "codistill_long.py",
    "codistill-is-diagnostic": "codistill_is_diagnostic.py",
    "crash-resume": "crash_resume.py",
    "trl-methods": "trl_methods.py",
    "testbed-properties": "testbed_properties.py",
    "vs-trl": "vs_trl.py",
    "default-job": "default_job.py",
    "sft-step": "sft_step.py",
}


def _benchmarks_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "benchmarks"


def _cmd_repro(args: argparse.Namespace) -> int:
    name = args.name
    if name not in REPROS:
        print(f"rollwise repro: unknown experiment {name!r}; valid choices: {', '.join(sorted(REPROS))}",
              file=sys.stderr)
        return 2
    mod = importlib.import_module(REPROS[name])
    out = Path(args.out or f"runs/repro-{name}{'-quick' if args.quick else ''}")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    t0 = time.perf_counter()
    report = mod.run(quick=args.quick, out_dir=out, seeds=seeds)
    report.seconds = time.perf_counter() - t0
    md = report.write(out)
    report.print()
    print(f"report: {md}")
    return 0 if (report.all_passed or not args.strict) else 1


def _cmd_bench(args: argparse.Namespace, rest: list[str]) -> int:
    if args.name not in BENCHES:
        print(f"rollwise bench: unknown benchmark {args.name!r}; valid choices: {', '.join(sorted(BENCHES))}",
              file=sys.stderr)
        return 2
    path = _benchmarks_dir() / BENCHES[args.name]
    if not path.exists():
        print(f"rollwise bench: {path} not found (benchmarks ship with the source checkout)", file=sys.stderr)
        return 2
    return int(load_benchmark(path.stem).main(rest) or 0)


def load_benchmark(stem: str) -> ModuleType:
    """``benchmarks/<stem>.py`` as the module ``rollwise_bench_<stem>``, loaded once per process.

    It is registered in ``sys.modules`` before it runs, so dataclasses (which look their module up there)
    work in benchmark scripts.
    """
    name = f"rollwise_bench_{stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _benchmarks_dir() / f"{stem}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def _add_import(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--import", dest="imports", action="append", default=None, metavar="MODULE",
                        help="import a module or .py file first, e.g. one that registers a task (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rollwise", description="Learning from rollouts.")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (also accepted after "
                                                         "the sub-command)")
    sub = p.add_subparsers(dest="command", required=True)

    for name, help_ in (("train", "RL post-training (default: tiny model on add3, CPU)"),
                        ("sft", "supervised warm start of a policy")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--config", "-c", help="TOML config file (default: the built-in job)")
        sp.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                        help="dotted override, e.g. --set train.steps=50 (repeatable)")
        sp.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
        sp.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
        _add_import(sp)
        if name == "train":
            sp.add_argument("--algorithm", help="shortcut for a preset: e.g. grpo, basis, codistill")
            sp.add_argument("--overwrite", action="store_true",
                            help="reuse a non-empty run.output_dir: remove rollwise's files in it, keep the rest")

    ev = sub.add_parser("eval", help="evaluate a checkpoint: pass@k, maj@k, exact accuracy")
    ev.add_argument("checkpoint", help="run directory or checkpoint directory")
    ev.add_argument("--config", "-c")
    ev.add_argument("--set", action="append", default=None, metavar="KEY=VALUE")
    ev.add_argument("--n", type=int, default=16, help="samples per prompt")
    ev.add_argument("--k", default="1,4,16", help="comma-separated k values for pass@k")
    _add_import(ev)

    rp = sub.add_parser("report", help="write a Markdown report with plots for a run directory")
    rp.add_argument("run_dir")

    bp = sub.add_parser("bench", help="run a benchmark script from benchmarks/ (extra args pass through)")
    bp.add_argument("name", help=f"one of: {', '.join(sorted(BENCHES))}")

    bb = sub.add_parser("base", help="build or list the testbed's base models (SFT from scratch, cached)")
    bb.add_argument("action", choices=["build", "list"])
    bb.add_argument("name", nargs="?", help="base model name (see: rollwise base list)")
    bb.add_argument("--root", default="runs/base", help="cache folder (default runs/base)")
    bb.add_argument("--threads", type=int, default=0, help="torch threads (default: the spec's, 1)")
    bb.add_argument("--sft-steps", type=int, default=0, help="override the spec's SFT steps (the cache key follows)")
    bb.add_argument("--force", action="store_true", help="rebuild even when cached")

    rr = sub.add_parser("repro", help="reproduce a paper's headline experiment at CPU scale")
    rr.add_argument("name", help=f"one of: {', '.join(sorted(REPROS))}")
    rr.add_argument("--quick", action="store_true", help="the fast variant run in CI")
    rr.add_argument("--out", help="output directory (default runs/repro-NAME)")
    rr.add_argument("--seeds", help="comma-separated seeds (default: the experiment's own)")
    rr.add_argument("--strict", action="store_true", help="exit 1 when an acceptance target is missed")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; returns the exit status.

    An error the user can cause (:class:`rollwise.errors.RollwiseError`: settings, files, folders, data)
    is printed as one line and exits 2; any other exception is printed as one line naming its type and
    exits 1. ``--debug`` (anywhere before a ``bench`` name's own arguments) shows the traceback instead.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    head = argv[:2] if argv[:1] == ["bench"] else argv  # a benchmark's own arguments pass through untouched
    debug = "--debug" in head
    if debug:
        argv.remove("--debug")
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "set", None) is None:
        args.set = []  # not a shared mutable default: argparse appends to the default list in place
    if args.command != "bench" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if not debug:  # warnings as one line each, without the source line
        warnings.formatwarning = lambda message, category, *_, **__: f"rollwise: warning: {message}\n"
    try:
        return _run(args, rest)
    except Exception as e:  # noqa: BLE001 - the one place that turns every exception into a message
        if debug:
            raise
        print(error_line(args.command, e), file=sys.stderr)
        return 2 if _is_user_error(e) else 1
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"rollwise {args.command}: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    if args.command == "bench":
        return _cmd_bench(args, rest)
    if args.command == "repro":
        return _cmd_repro(args)
    if args.command == "base":
        from rollwise.rlvr import base_models

        return base_models.main(args)
    from rollwise.rlvr import commands  # lazy: pulls in torch/transformers

    return commands.dispatch(args)


def _is_user_error(e: BaseException) -> bool:
    from rollwise.errors import RollwiseError

    return isinstance(e, RollwiseError)


def error_line(command: str, e: BaseException) -> str:
    """One line for an exception: ``rollwise CMD: config error: ...`` for rollwise's own errors,
    ``rollwise CMD: error (TypeName): ...`` otherwise."""
    from rollwise.config import ConfigError

    text = " ".join(str(e).split()) or repr(e)
    if isinstance(e, ConfigError):
        return f"rollwise {command}: config error: {text}"
    if _is_user_error(e):
        return f"rollwise {command}: error: {text}"
    if isinstance(e, OSError) and e.filename is not None:
        text = f"{e.filename}: {e.strerror or text}"
    return f"rollwise {command}: error ({type(e).__name__}): {text} (rerun with --debug for the traceback)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
