"""results.csv: one row per finished instance, written as it finishes.

Rows are appended and flushed one at a time so that a run killed half-way keeps every row it
finished, and ``--resume`` can skip them. The reader also accepts the reference CSVs kept next
to the benchmarks (``benchmark,onnx,vnnlib,result,seconds|wall_s[,peak_rss_mb]``) and the
competition's result words (``holds`` = unsat, ``violated`` = sat), so that ``bench score`` and
``bench plot`` compare planecut runs with other tools' results directly.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import IO

from planecut.benchmarks.instance import InstanceResult
from planecut.benchmarks.suite import result_key

COLUMNS = ["benchmark", "onnx", "vnnlib", "timeout", "verdict", "expected", "check", "seconds",
           "startup_seconds", "peak_memory_mb", "exit_code", "counterexample_ok", "error",
           "bab_domains", "domains_per_s", "host", "worst_margin", "cuts_used"]

_VERDICT_WORDS = {"holds": "unsat", "violated": "sat", "timed_out": "timeout",
                  "timedout": "timeout"}
_ALIASES = {"verdict": ("verdict", "result"), "seconds": ("seconds", "wall_s", "time"),
            "peak_memory_mb": ("peak_memory_mb", "peak_rss_mb")}


def check_label(r: InstanceResult) -> str:
    """``ERROR`` for a wrong answer, ``ok`` for a definite answer that matches a definite
    expected one, empty otherwise."""
    if r.is_error:
        return "ERROR"
    if r.verdict in ("sat", "unsat") and r.expected in ("sat", "unsat"):
        return "ok"
    return ""


def to_row(r: InstanceResult) -> dict[str, str]:
    ce = "" if r.counterexample_ok is None else str(r.counterexample_ok).lower()
    return {"benchmark": r.benchmark, "onnx": r.onnx, "vnnlib": r.vnnlib,
            "timeout": f"{r.timeout:g}", "verdict": r.verdict, "expected": r.expected,
            "check": check_label(r), "seconds": f"{r.seconds:.3f}",
            "startup_seconds": f"{r.startup_seconds:.3f}",
            "peak_memory_mb": f"{r.peak_memory_mb:.1f}", "exit_code": str(r.exit_code),
            "counterexample_ok": ce, "error": r.error.replace("\n", " "),
            "bab_domains": str(r.bab_domains), "domains_per_s": f"{r.domains_per_s:.1f}",
            "host": r.host, "worst_margin": "" if r.worst_margin is None else f"{r.worst_margin:.6g}", "cuts_used": str(r.cuts_used)}


class ResultsWriter:
    """Appends rows to a results.csv, flushing after each (use as a context manager)."""

    def __init__(self, path: Path, append: bool) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existing = append and self.path.exists() and self.path.stat().st_size > 0
        if existing:
            header = _header(self.path)
            if header != COLUMNS:
                raise ValueError(f"{self.path}: its columns are not those of a results.csv "
                                 "written by this version; cannot append to it")
            needs_newline = not self.path.read_bytes().endswith(b"\n")
        self._fh: IO[str] = open(self.path, "a" if existing else "w", newline="")
        if existing and needs_newline:
            self._fh.write("\n")  # the last row of a killed run may be cut short
        self._writer = csv.DictWriter(self._fh, fieldnames=COLUMNS)
        if not existing:
            self._writer.writeheader()
            self._fh.flush()

    def write(self, r: InstanceResult) -> None:
        self._writer.writerow(to_row(r))
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _header(path: Path) -> list[str]:
    with open(path, newline="") as fh:
        return next(csv.reader(fh), [])


def read_results(path: Path) -> list[InstanceResult]:
    """Every complete row of a results file (ours or a reference CSV) as InstanceResult."""
    out = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            r = from_row(row)
            if r is not None:
                out.append(r)
    return out


def from_row(row: dict[str, str | None]) -> InstanceResult | None:
    """One CSV row as an InstanceResult; None for an incomplete row (a killed writer's)."""
    get = lambda name: _field(row, name)  # noqa: E731
    verdict = get("verdict").lower()
    if not (get("onnx") and verdict):
        return None
    verdict = _VERDICT_WORDS.get(verdict, verdict)
    ce = get("counterexample_ok").lower()
    return InstanceResult(
        benchmark=get("benchmark"), onnx=get("onnx"), vnnlib=get("vnnlib"),
        timeout=_num(get("timeout")), verdict=verdict, expected=get("expected").lower(),
        seconds=_num(get("seconds")), startup_seconds=_num(get("startup_seconds")),
        peak_memory_mb=_num(get("peak_memory_mb")), exit_code=_int(get("exit_code")),
        counterexample_ok=None if ce not in ("true", "false") else ce == "true",
        error=get("error"), bab_domains=_int(get("bab_domains")),
        domains_per_s=_num(get("domains_per_s"), 0.0), host=get("host"),
        worst_margin=None if not get("worst_margin") else _num(get("worst_margin")),
        cuts_used=_int(get("cuts_used")))


def _field(row: dict[str, str | None], name: str) -> str:
    for alias in _ALIASES.get(name, (name,)):
        value = row.get(alias)
        if value is not None and value.strip():
            return value.strip()
    return ""


def _num(text: str, default: float = math.nan) -> float:
    try:
        return float(text)
    except ValueError:
        return default


def _int(text: str) -> int:
    value = _num(text, 0.0)
    return int(value) if math.isfinite(value) else 0


def done_keys(path: Path) -> set[tuple[str, str, str]]:
    """``result_key(benchmark, onnx, vnnlib)`` of the rows already in ``path`` (for --resume)."""
    if not Path(path).exists():
        return set()
    return {result_key(r.benchmark, r.onnx, r.vnnlib) for r in read_results(path)}

