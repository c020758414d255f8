"""``planecut bench run|score|plot``: the command line of the benchmark tools.

The same subcommands serve ``planecut bench ...`` (wired into the planecut command with
:func:`add_bench_parser` and :func:`bench_main`) and ``python -m planecut.benchmarks ...``
(:func:`main`). Only argparse is imported at parser-building time, so ``planecut --help``
stays fast; each subcommand imports what it needs when it runs.

Exit codes: 0 done; 1 ``run`` found a wrong answer (a contradiction with expected.csv or a bad
counterexample); 2 the command line or its inputs are unusable (no instances, missing optional
package, results.csv in the way).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_USAGE = 2


def add_bench_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``bench`` with its subcommands to a subparsers object (of the planecut command)."""
    bench = sub.add_parser("bench", help="run, score and plot benchmark suites",
                           description="Run VNN-COMP benchmark suites, score and plot results.")
    add_subcommands(bench)
    return bench


def add_subcommands(parser: argparse.ArgumentParser) -> None:
    bsub = parser.add_subparsers(dest="bench_command", metavar="SUBCOMMAND")
    bsub.required = True

    run = bsub.add_parser(
        "run", help="run every instance of a suite, write OUT_DIR/results.csv",
        description="Run each instance of SUITE_DIR (a folder with instances.csv, or a folder "
        "above several) as its own `planecut verify` process; append a row per finished "
        "instance to OUT_DIR/results.csv; print a summary per benchmark. Exits 1 if an "
        "answer contradicts expected.csv or a counterexample fails re-checking.")
    run.add_argument("suite", type=Path, metavar="SUITE_DIR")
    run.add_argument("--out", type=Path, required=True, metavar="OUT_DIR",
                     help="folder for results.csv")
    run.add_argument("--select", action="append", metavar="GLOB",
                     help="only instances whose onnx or vnnlib path or base name matches "
                     "(repeatable: any may match)")
    run.add_argument("--range", dest="index_range", metavar="A:B",
                     help="only positions A..B-1 (0-based) of the selected list, across "
                     "benchmarks")
    run.add_argument("--benchmarks", nargs="+", metavar="NAME",
                     help="only benchmark folders whose name (or suite/name) matches a glob")
    run.add_argument("--timeout", type=float, help="seconds per instance, replacing each "
                     "instance's own timeout")
    run.add_argument("--timeout-scale", type=float, default=1.0, metavar="F",
                     help="multiply every timeout by F (default 1)")
    run.add_argument("--grace", type=float, default=10.0, metavar="S",
                     help="kill an instance's process group at timeout + S seconds "
                     "(default 10)")
    run.add_argument("--device", help="passed to planecut verify (auto, cpu, cuda, cuda:N)")
    run.add_argument("--config", type=Path, help="YAML config passed to planecut verify")
    run.add_argument("--resume", action="store_true",
                     help="keep OUT_DIR/results.csv and skip the instances it holds")
    run.add_argument("--force", action="store_true",
                     help="replace an existing OUT_DIR/results.csv")
    run.add_argument("--jobs", "-j", type=int, metavar="N",
                     help="instances at a time (local: default 1; local ray: N x "
                     "--cpus-per-task CPUs, default all cores)")
    run.add_argument("--executor", choices=("local", "ray"), default="local")
    run.add_argument("--address", help="ray cluster address (default: start a local ray)")
    run.add_argument("--cpus-per-task", type=float, default=1.0, metavar="C",
                     help="CPUs reserved by each ray task (default 1)")
    run.set_defaults(bench_func=_run)

    score = bsub.add_parser(
        "score", help="VNN-COMP scores of one or more results files, compared",
        description="Score results files (+10 correct, -100 incorrect, time bonus +2/+1 "
        "when several files are given) and compare them pairwise.")
    score.add_argument("results", type=Path, nargs="+", metavar="RESULTS.csv")
    score.set_defaults(bench_func=_score)

    plot = bsub.add_parser(
        "plot", help="cactus plot and per-benchmark bar chart (PNG)",
        description="Write a cactus plot to FILE.png and a bar chart of solved instances per "
        "benchmark to FILE_bars.png (needs matplotlib).")
    plot.add_argument("results", type=Path, nargs="+", metavar="RESULTS.csv")
    plot.add_argument("--out", type=Path, required=True, metavar="FILE.png")
    plot.set_defaults(bench_func=_plot)


def bench_main(args: argparse.Namespace) -> int:
    """Run the ``bench`` subcommand that ``args`` (parsed by this module's parser) names."""
    return int(args.bench_func(args))


def _fail(message: str) -> int:
    print(f"planecut bench: {message}", file=sys.stderr)
    return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    from planecut.benchmarks.instance import RunOptions
    from planecut.benchmarks.ray_executor import RayUnavailableError
    from planecut.benchmarks.runner import SuiteRun, run_suite
    from planecut.benchmarks.suite import parse_range

    if args.timeout is not None and args.timeout <= 0 or args.timeout_scale <= 0:
        return _fail("--timeout and --timeout-scale must be positive")
    if args.jobs is not None and args.jobs < 1:
        return _fail("--jobs must be at least 1")
    if args.resume and args.force:
        return _fail("--resume and --force exclude each other")
    if args.address and args.executor != "ray":
        return _fail("--address needs --executor ray")
    try:
        index_range = parse_range(args.index_range) if args.index_range else None
    except ValueError as exc:
        return _fail(str(exc))
    if args.config is not None and not args.config.is_file():
        return _fail(f"config file {args.config} not found")
    opts = RunOptions(timeout=args.timeout, timeout_scale=args.timeout_scale,
                      grace_s=args.grace, device=args.device,
                      config=str(args.config.resolve()) if args.config else None)
    run = SuiteRun(suite=args.suite, out_dir=args.out, options=opts,
                   select=tuple(args.select or ()), index_range=index_range,
                   benchmarks=tuple(args.benchmarks or ()), resume=args.resume,
                   force=args.force, jobs=args.jobs, executor=args.executor,
                   address=args.address, cpus_per_task=args.cpus_per_task)
    try:
        return run_suite(run)
    except RayUnavailableError as exc:
        return _fail(str(exc))
    except ValueError as exc:  # e.g. a results.csv of another format in the way of --resume
        return _fail(str(exc))


def _score(args: argparse.Namespace) -> int:
    from planecut.benchmarks.score import format_report, load_runs

    missing = [p for p in args.results if not p.is_file()]
    if missing:
        return _fail(f"{missing[0]}: no such file")
    print(format_report(load_runs(args.results)))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from planecut.benchmarks.plot import MatplotlibMissingError, bars_path, plot_runs
    from planecut.benchmarks.score import load_runs

    missing = [p for p in args.results if not p.is_file()]
    if missing:
        return _fail(f"{missing[0]}: no such file")
    try:
        plot_runs(load_runs(args.results), args.out)
    except MatplotlibMissingError as exc:
        return _fail(str(exc))
    print(f"wrote {args.out} and {bars_path(args.out)}")
    return 0


def build_parser(prog: str = "python -m planecut.benchmarks") -> argparse.ArgumentParser:
    """A standalone parser with the bench subcommands at the top level."""
    parser = argparse.ArgumentParser(prog=prog, description="Run VNN-COMP benchmark suites "
                                     "with planecut, score and plot results.")
    add_subcommands(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return bench_main(build_parser().parse_args(argv))
