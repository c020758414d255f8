"""Run VNN-COMP benchmark folders through ``planecut verify`` and report per benchmark.

Each instance runs as its own ``planecut verify`` process (exactly what a user runs), so the
figures include start-up: Python, imports, parsing and model loading. For each benchmark the
report gives proven (unsat) / falsified (sat) / unknown / timeout / error counts, the median and
total wall time, the median start-up, and every contradiction with a definite answer in
``expected.csv`` (a release-blocking bug; the script then exits with status 1).

    python -m planecut.benchmarks.run_suite ../shared/benchmarks --timeout 30 --limit 5

A benchmark folder holds ``instances.csv`` (``onnx,vnnlib,timeout``, no header) and optionally
``expected.csv``; ROOT may be such a folder or any folder above some.

For long runs (results.csv written as instances finish, resume, parallel or ray workers,
counterexample re-checks, scores and plots) use ``planecut bench run`` instead; this script
shares its instance discovery and its subprocess runner.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from planecut.benchmarks.instance import RunOptions
from planecut.benchmarks.instance import run_instance as run_one
from planecut.benchmarks.suite import (Instance, benchmark_name, find_benchmarks, pair_key,
                                       read_expected, read_instances, result_key)

__all__ = ["InstanceRun", "find_benchmarks", "main", "read_expected", "read_instances",
           "run_instance", "select", "summarise"]

HANG_GRACE_S = 30.0  # an instance still running this long after its timeout is "hung"


@dataclass
class InstanceRun:
    benchmark: str
    onnx: str
    vnnlib: str
    verdict: str
    expected: str
    wall_s: float
    startup_s: float
    message: str = ""
    domains: int = 0
    domains_per_s: float = 0.0
    reference: str = ""  # the reference tool's verdict on this instance (--subset)
    reference_s: float = float("nan")
    worst_margin: float = float("nan")  # the search's worst proof margin left (> 0 proves)
    cuts_used: int = 0

    @property
    def wrong(self) -> bool:
        return self.verdict in ("sat", "unsat") and self.expected in ("sat", "unsat") \
            and self.verdict != self.expected


def select(rows: list, limit: int | None) -> list:
    """An evenly spread slice of ``limit`` instances (the whole list without a limit)."""
    if not limit or limit >= len(rows):
        return rows
    step = len(rows) / limit
    return [rows[int(i * step)] for i in range(limit)]


def read_subset(path: Path) -> dict[tuple[str, str, str], tuple[str, float]]:
    """Instances listed in a reference results CSV (``benchmark,onnx,vnnlib,result,wall_s``):
    (benchmark folder name, onnx, vnnlib) -> (reference verdict, reference seconds)."""
    out = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            out[result_key(r["benchmark"], r["onnx"], r["vnnlib"])] = (r["result"],
                                                                     float(r["wall_s"]))
    return out


def run_instance(bench: Path, onnx: str, vnnlib: str, timeout: float,
                 device: str | None = None, config: Path | None = None
                 ) -> tuple[str, float, float, str, dict]:
    """Run one instance as a subprocess (killed at timeout + 30 s); returns (verdict, wall,
    start-up, message, stats)."""
    inst = Instance(benchmark_name(bench), bench, onnx, vnnlib, timeout)
    opts = RunOptions(timeout=timeout, grace_s=HANG_GRACE_S, device=device,
                      config=str(config) if config else None)
    r = run_one(inst, opts)
    stats = {"bab_domains": r.bab_domains, "bab_domains_per_second": r.domains_per_s,
             "bab_worst_margin": float("nan") if r.worst_margin is None else r.worst_margin,
             "cuts_used": r.cuts_used}
    return r.verdict, r.seconds, r.startup_seconds, r.error, stats


def summarise(runs: list[InstanceRun]) -> str:
    lines = [f"{'benchmark':<28} {'n':>4} {'unsat':>5} {'sat':>4} {'unkn':>5} {'t/o':>4} "
             f"{'err':>4} {'WRONG':>5} {'med s':>6} {'tot s':>7} {'startup':>7} {'dom/s':>7}"]
    by: dict[str, list[InstanceRun]] = {}
    for r in runs:
        by.setdefault(r.benchmark, []).append(r)
    for name, rs in by.items():
        c = lambda v: sum(r.verdict == v for r in rs)  # noqa: E731
        walls = [r.wall_s for r in rs]
        ups = [r.startup_s for r in rs if r.startup_s == r.startup_s]
        lines.append(f"{name:<28} {len(rs):>4} {c('unsat'):>5} {c('sat'):>4} {c('unknown'):>5} "
                     f"{c('timeout'):>4} {sum(r.verdict in ('error', 'none', 'hung') for r in rs):>4} "
                     f"{sum(r.wrong for r in rs):>5} {statistics.median(walls):>6.2f} "
                     f"{sum(walls):>7.1f} {statistics.median(ups) if ups else float('nan'):>7.2f} "
                     f"{_median_rate(rs):>7.0f}")
        refs = [r for r in rs if r.reference]
        if refs:
            solved = lambda v: v in ("sat", "unsat")  # noqa: E731
            both = [r for r in refs if solved(r.verdict) and solved(r.reference)]
            lines.append(
                f"{'  vs reference':<28} solved {sum(solved(r.verdict) for r in refs)} vs "
                f"{sum(solved(r.reference) for r in refs)}; on the {len(both)} both solve: "
                f"{sum(r.wall_s for r in both):.1f}s vs {sum(r.reference_s for r in both):.1f}s; "
                f"only we: {sum(solved(r.verdict) and not solved(r.reference) for r in refs)}, "
                f"only reference: {sum(solved(r.reference) and not solved(r.verdict) for r in refs)}")
    return "\n".join(lines)


def _median_rate(rs: list[InstanceRun]) -> float:
    rates = [r.domains_per_s for r in rs if r.domains]
    return statistics.median(rates) if rates else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="a benchmark folder or a folder above several")
    ap.add_argument("--timeout", type=float, help="seconds per instance (default: the "
                    "instance's own timeout from instances.csv)")
    ap.add_argument("--limit", type=int, help="run an evenly spread slice of N instances "
                    "per benchmark")
    ap.add_argument("--benchmarks", nargs="*", help="only benchmarks whose folder name is "
                    "listed")
    ap.add_argument("--csv", type=Path, help="write per-instance rows to this CSV")
    ap.add_argument("--device", default=None)
    ap.add_argument("--subset", type=Path, help="only the instances listed in this reference "
                    "results CSV (benchmark,onnx,vnnlib,result,wall_s), compared with it")
    ap.add_argument("--config", type=Path, help="YAML config passed to planecut verify")
    args = ap.parse_args(argv)
    subset = read_subset(args.subset) if args.subset else None
    runs: list[InstanceRun] = []
    benches = [b for b in find_benchmarks(args.root)
               if not args.benchmarks or b.name in args.benchmarks]
    if not benches:
        print(f"no instances.csv under {args.root}", file=sys.stderr)
        return 2
    for bench in benches:
        expected = read_expected(bench)
        name = f"{bench.parent.name}/{bench.name}"
        rows = read_instances(bench)
        if subset is not None:
            rows = [r for r in rows if result_key(bench.name, r[0], r[1]) in subset]
        for onnx, vnnlib, t_inst in select(rows, args.limit):
            timeout = args.timeout or t_inst
            verdict, wall, up, msg, st = run_instance(bench, onnx, vnnlib, timeout,
                                                      args.device, args.config)
            ref = subset.get(result_key(bench.name, onnx, vnnlib), ("", float("nan"))) \
                if subset else ("", float("nan"))
            run = InstanceRun(name, onnx, vnnlib, verdict,
                              expected.get(pair_key(onnx, vnnlib), ""), wall, up,
                              msg if verdict in ("error", "none", "hung") else "",
                              int(st.get("bab_domains", 0)),
                              float(st.get("bab_domains_per_second", 0.0)), ref[0], ref[1],
                              float(st.get("bab_worst_margin", float("nan"))),
                              int(st.get("cuts_used", 0)))
            runs.append(run)
            flag = "  <-- CONTRADICTS expected.csv" if run.wrong else ""
            print(f"{name} {onnx} {vnnlib}: {verdict} ({wall:.2f}s, start-up {up:.2f}s)"
                  f"{' ' + run.message if run.message else ''}{flag}", file=sys.stderr,
                  flush=True)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(asdict(runs[0]).keys()))
            w.writeheader()
            w.writerows(asdict(r) for r in runs)
    print(summarise(runs))
    wrong = [r for r in runs if r.wrong]
    for r in wrong:
        print(f"WRONG: {r.benchmark} {r.onnx} {r.vnnlib}: {r.verdict}, expected {r.expected}")
    return 1 if wrong else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
