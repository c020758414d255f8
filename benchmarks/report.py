"""The end-of-run summary: one table row per benchmark, then one line per wrong answer.

A wrong answer (ERROR) is a definite verdict that contradicts a definite ``expected.csv``
answer, or a ``sat`` whose counterexample failed re-checking. Such answers are not counted as
solved.
"""

from __future__ import annotations

import math
import statistics

from planecut.benchmarks.instance import InstanceResult


def _median(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def summary_table(results: list[InstanceResult]) -> str:
    """Per benchmark: counts by verdict, solved, ERROR, median/total seconds, median start-up,
    largest peak memory; a TOTAL row when there are several benchmarks."""
    head = (f"{'benchmark':<28} {'n':>4} {'unsat':>5} {'sat':>4} {'unkn':>5} {'t/o':>4} "
            f"{'err':>4} {'ERROR':>5} {'solved':>6} {'med s':>7} {'tot s':>8} {'startup':>7} "
            f"{'peak MB':>8}")
    groups: dict[str, list[InstanceResult]] = {}
    for r in results:
        groups.setdefault(r.benchmark, []).append(r)
    if len(groups) > 1:
        groups["TOTAL"] = list(results)
    lines = [head]
    for name, rs in groups.items():
        count = lambda *vs: sum(r.verdict in vs for r in rs)  # noqa: E731
        walls = [r.seconds for r in rs]
        peaks = [r.peak_memory_mb for r in rs if not math.isnan(r.peak_memory_mb)]
        lines.append(
            f"{name:<28} {len(rs):>4} {count('unsat'):>5} {count('sat'):>4} "
            f"{count('unknown'):>5} {count('timeout'):>4} "
            f"{count('error', 'none', 'hung', 'lost'):>4} {sum(r.is_error for r in rs):>5} "
            f"{sum(r.solved for r in rs):>6} {_median(walls):>7.2f} "
            f"{sum(w for w in walls if not math.isnan(w)):>8.1f} "
            f"{_median([r.startup_seconds for r in rs]):>7.2f} "
            f"{max(peaks) if peaks else math.nan:>8.0f}")
    return "\n".join(lines)


def error_lines(results: list[InstanceResult]) -> list[str]:
    """One ``ERROR:`` line per wrong answer."""
    out = []
    for r in results:
        if r.contradicts:
            out.append(f"ERROR: {r.benchmark} {r.onnx} {r.vnnlib}: {r.verdict}, expected "
                       f"{r.expected}")
        elif r.is_error:
            out.append(f"ERROR: {r.benchmark} {r.onnx} {r.vnnlib}: sat with a bad "
                       f"counterexample: {r.error}")
    return out
