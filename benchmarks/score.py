"""``planecut bench score``: VNN-COMP-style scores and side-by-side comparisons of runs.

The rule implemented, per instance and per results file ("tool"):

* An answer is ``sat`` or ``unsat``; anything else (unknown, timeout, error, ...) scores 0.
* The truth is the definite (``sat``/``unsat``) ``expected`` value of that instance, taken from
  the first file that gives one (planecut's results.csv copies it from ``expected.csv``).
  Without one, when the files disagree (a ``sat`` with a failed counterexample does not count
  as an answer here), a ``sat`` whose counterexample passed re-checking
  (``counterexample_ok`` true) is the truth; otherwise the instance is *disputed*: every answer
  to it scores 0 and earns no bonus.
* An answer is **incorrect** (-100) if it contradicts the truth, or if it is ``sat`` and its
  counterexample failed re-checking (``counterexample_ok`` false). Otherwise it is
  **correct** (+10).
* Time bonus, only when several files are scored together: among the correct answers to an
  instance, times are first raised to 1 s (so all times under 1 s count as equal), then the
  answers with the smallest time get +2 each and those with the next smallest time +1 each
  (dense ranking: ties share a rank, and a rank exists only if some answer holds it).
* A file's score is the sum over its instances; per benchmark the same sum over that
  benchmark's instances.

Instances are matched across files by ``(benchmark, onnx, vnnlib)``. Files may name a
benchmark ``suite/name`` (planecut) or ``name`` (reference CSVs); when the short form
``(last part of benchmark, onnx, vnnlib)`` identifies each row of every file uniquely, the
short form is used, so such files still line up. Paths are compared without a leading ``./`` or
a trailing ``.gz`` (``suite.file_key``): ``x.onnx`` and ``x.onnx.gz`` are the same instance.

The comparison of two runs A and B covers the instances present in both: solved (correct) by
both, by A only, by B only, and the geometric mean over the instances both solve of
``time_B / time_A`` (above 1: A is faster), with times raised to 1 ms to keep logarithms finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from planecut.benchmarks.instance import InstanceResult
from planecut.benchmarks.results import read_results
from planecut.benchmarks.suite import result_key

SOLVED = ("sat", "unsat")
Key = tuple[str, str, str]


@dataclass(frozen=True)
class ScoreRules:
    correct: int = 10
    incorrect: int = -100
    bonuses: tuple[int, ...] = (2, 1)  # fastest, second fastest
    min_time_s: float = 1.0  # times below count as this


@dataclass(frozen=True)
class Run:
    """One results file: a label for tables and plots, and its rows by instance key."""

    label: str
    rows: dict[Key, InstanceResult]


@dataclass
class Tally:
    """Points of one run on a set of instances."""

    correct: int = 0
    incorrect: int = 0
    bonus: int = 0
    score: int = 0


@dataclass
class RunScore:
    label: str
    total: Tally = field(default_factory=Tally)
    by_benchmark: dict[str, Tally] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    common: int
    both: int
    only_a: int
    only_b: int
    time_ratio_b_over_a: float  # geometric mean on instances both solve (nan if none)


def run_label(path: Path) -> str:
    """``results.csv`` files are named after their folder (the run's OUT_DIR), others after
    the file's stem."""
    path = Path(path)
    return path.parent.name if path.name == "results.csv" and path.parent.name else path.stem


def load_runs(paths: list[Path]) -> list[Run]:
    """Read results files and key their rows consistently (see the module docstring)."""
    tables = [read_results(p) for p in paths]
    short_ok = all(len({_short(r) for r in rows}) == len(rows) for rows in tables)
    labels: list[str] = []
    for p in paths:
        label = run_label(p)
        labels.append(label if label not in labels else f"{label}#{len(labels) + 1}")
    return [Run(label, {(_short(r) if short_ok else _full(r)): r for r in rows})
            for label, rows in zip(labels, tables)]


def _full(r: InstanceResult) -> Key:
    return result_key(r.benchmark, r.onnx, r.vnnlib)


def _short(r: InstanceResult) -> Key:
    return result_key(r.benchmark.rstrip("/").rsplit("/", 1)[-1], r.onnx, r.vnnlib)


def truth(answers: list[InstanceResult]) -> str | None:
    """The answer an instance is taken to have: ``sat``/``unsat``, ``"disputed"``, or None
    when nobody knows and nobody disagrees."""
    for r in answers:
        if r.expected in SOLVED:
            return r.expected
    said = {r.verdict for r in answers
            if r.verdict in SOLVED and r.counterexample_ok is not False}
    if len(said) < 2:
        return None
    if any(r.verdict == "sat" and r.counterexample_ok is True for r in answers):
        return "sat"
    return "disputed"


def is_correct(r: InstanceResult, known: str | None) -> bool | None:
    """True (correct), False (incorrect) or None (no points: no answer, or disputed)."""
    if r.verdict == "sat" and r.counterexample_ok is False:
        return False
    if r.verdict not in SOLVED or known == "disputed":
        return None
    return known is None or r.verdict == known


def score_runs(runs: list[Run], rules: ScoreRules = ScoreRules()) -> list[RunScore]:
    """Scores of every run; time bonuses only when there are at least two runs."""
    scores = [RunScore(run.label) for run in runs]
    keys = sorted({k for run in runs for k in run.rows})
    for key in keys:
        present = [(i, run.rows[key]) for i, run in enumerate(runs) if key in run.rows]
        known = truth([r for _, r in present])
        verdicts = {i: is_correct(r, known) for i, r in present}
        bonus = _bonuses([(i, r.seconds) for i, r in present if verdicts[i]], rules) \
            if len(runs) > 1 else {}
        for i, r in present:
            points = {True: rules.correct, False: rules.incorrect, None: 0}[verdicts[i]]
            points += bonus.get(i, 0)
            for tally in (scores[i].total,
                          scores[i].by_benchmark.setdefault(key[0], Tally())):
                tally.correct += verdicts[i] is True
                tally.incorrect += verdicts[i] is False
                tally.bonus += bonus.get(i, 0)
                tally.score += points
    return scores


def _bonuses(correct: list[tuple[int, float]], rules: ScoreRules) -> dict[int, int]:
    times = {i: max(t, rules.min_time_s) if not math.isnan(t) else math.inf for i, t in correct}
    ranks = sorted(set(times.values()))
    return {i: rules.bonuses[ranks.index(t)] for i, t in times.items()
            if ranks.index(t) < len(rules.bonuses)}


def compare(a: Run, b: Run) -> Comparison:
    """Solved by both / A only / B only on the instances both runs hold, and the speed ratio."""
    common = sorted(set(a.rows) & set(b.rows))
    both = only_a = only_b = 0
    logs: list[float] = []
    for key in common:
        ra, rb = a.rows[key], b.rows[key]
        known = truth([ra, rb])
        sa, sb = is_correct(ra, known) is True, is_correct(rb, known) is True
        both += sa and sb
        only_a += sa and not sb
        only_b += sb and not sa
        if sa and sb:
            logs.append(math.log(max(rb.seconds, 1e-3) / max(ra.seconds, 1e-3)))
    ratio = math.exp(sum(logs) / len(logs)) if logs else math.nan
    return Comparison(a.label, b.label, len(common), both, only_a, only_b, ratio)


def format_report(runs: list[Run], rules: ScoreRules = ScoreRules()) -> str:
    """Per-benchmark scores side by side, totals, then pairwise comparisons."""
    scores = score_runs(runs, rules)
    benches = sorted({b for s in scores for b in s.by_benchmark})
    width = max([12] + [len(s.label) for s in scores])
    lines = ["score (correct/incorrect, +bonus)", f"{'benchmark':<28} " + " ".join(
        f"{s.label:>{width}}" for s in scores)]
    for name in benches + ["TOTAL"]:
        cells = []
        for s in scores:
            t = s.total if name == "TOTAL" else s.by_benchmark.get(name)
            cells.append(f"{'-' if t is None else _cell(t):>{width}}")
        lines.append(f"{name:<28} " + " ".join(cells))
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            c = compare(a, b)
            ratio = "n/a" if math.isnan(c.time_ratio_b_over_a) else \
                f"{c.time_ratio_b_over_a:.2f}x"
            lines.append(f"{c.a} vs {c.b}: {c.common} common instances, solved by both "
                         f"{c.both}, only {c.a} {c.only_a}, only {c.b} {c.only_b}; time "
                         f"{c.b}/{c.a} on the commonly solved (geometric mean) {ratio}")
    return "\n".join(lines)


def _cell(t: Tally) -> str:
    bonus = f" +{t.bonus}" if t.bonus else ""
    return f"{t.score} ({t.correct}/{t.incorrect}{bonus})"
