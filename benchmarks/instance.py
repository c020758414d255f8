"""One benchmark instance, run exactly as a user runs it: its own ``planecut verify`` process.

Times therefore include start-up (Python, imports, parsing, model loading). The process is
killed at ``timeout + grace`` whatever it is doing (planecut's own watchdog answers by about a
second after the timeout; a process still alive long after that is a bug, reported as ``hung``).
A ``sat`` answer's counterexample is re-checked here, in the same worker, so that the local and
the ray executors return the same complete :class:`InstanceResult`.

:func:`run_instance` is a plain top-level function of picklable arguments: ray ships it to its
workers as it is.
"""

from __future__ import annotations

import json
import math
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from planecut.benchmarks.process import ProcessGroups, run_command
from planecut.benchmarks.recheck import recheck_counterexample
from planecut.benchmarks.suite import DEFINITE, Instance

DEFAULT_GRACE_S = 10.0
SOLVED = DEFINITE


@dataclass(frozen=True)
class RunOptions:
    """How every instance of a run is verified (the same for all of them)."""

    timeout: float | None = None  # overrides each instance's timeout when set
    timeout_scale: float = 1.0  # multiplies the timeout (instance's or the override)
    grace_s: float = DEFAULT_GRACE_S  # kill the process group at timeout + grace
    device: str | None = None
    config: str | None = None  # YAML file passed to planecut verify
    python: str = field(default_factory=lambda: sys.executable)

    def timeout_for(self, inst: Instance) -> float:
        return (self.timeout if self.timeout else inst.timeout) * self.timeout_scale


@dataclass(frozen=True)
class InstanceResult:
    """The outcome of one instance: one row of results.csv."""

    benchmark: str
    onnx: str
    vnnlib: str
    timeout: float
    verdict: str  # sat/unsat/unknown/timeout/error, "none" (no result file), "hung", "lost"
    expected: str
    seconds: float  # wall time of the process, start-up included
    startup_seconds: float  # process start until the model is loaded (nan if unknown)
    peak_memory_mb: float
    exit_code: int
    counterexample_ok: bool | None = None  # sat only: the re-check's answer
    error: str = ""  # one line: the cause of an error/none/hung, or the failed re-check
    bab_domains: int = 0
    domains_per_s: float = 0.0
    host: str = ""
    # the search's worst proof margin left (> 0 proves; None when no search ran) and the cuts
    # the MIP worker contributed: what an unsolved run still tells
    worst_margin: float | None = None
    cuts_used: int = 0

    @property
    def contradicts(self) -> bool:
        """A definite answer that disagrees with a definite expected answer."""
        return self.verdict in SOLVED and self.expected in SOLVED \
            and self.verdict != self.expected

    @property
    def is_error(self) -> bool:
        """A wrong answer: a contradiction or a counterexample that fails re-checking."""
        return self.contradicts or (self.verdict == "sat" and self.counterexample_ok is False)

    @property
    def solved(self) -> bool:
        return self.verdict in SOLVED and not self.is_error


def verify_command(inst: Instance, opts: RunOptions, result_file: Path, stats_file: Path
                   ) -> list[str]:
    """The ``planecut verify`` command line for ``inst``."""
    cmd = [opts.python, "-m", "planecut", "verify", str(inst.onnx_path), str(inst.vnnlib_path),
           "--timeout", repr(opts.timeout_for(inst)), "--result-file", str(result_file),
           "--stats", str(stats_file), "--quiet"]
    if opts.device:
        cmd += ["--device", opts.device]
    if opts.config:
        cmd += ["--config", str(opts.config)]
    return cmd


def run_instance(inst: Instance, opts: RunOptions, groups: ProcessGroups | None = None
                 ) -> InstanceResult:
    """Verify ``inst`` in a subprocess and re-check a ``sat`` answer's counterexample."""
    timeout = opts.timeout_for(inst)
    with tempfile.TemporaryDirectory(prefix="planecut-bench-") as tmp:
        result_file, stats_file = Path(tmp, "result.txt"), Path(tmp, "stats.json")
        proc = run_command(verify_command(inst, opts, result_file, stats_file),
                           timeout + opts.grace_s, groups)
        text = result_file.read_text() if result_file.exists() else ""
        stats = _read_stats(stats_file)
    verdict = text.split("\n", 1)[0].strip() if text else "none"
    message = ""
    if proc.killed:
        verdict, message = "hung", f"no answer by timeout + {opts.grace_s:g} s: killed"
    elif verdict in ("error", "none"):
        message = _last_line(proc.stderr) or f"exit code {proc.returncode}, no result file"
    ce_ok = None
    if verdict == "sat":
        check = recheck_counterexample(inst.onnx_path, inst.vnnlib_path, text)
        ce_ok, message = check.ok, check.message
    inner = stats.get("stats", {}) if isinstance(stats.get("stats"), dict) else {}
    return InstanceResult(
        benchmark=inst.benchmark, onnx=inst.onnx, vnnlib=inst.vnnlib, timeout=timeout,
        verdict=verdict, expected=inst.expected, seconds=proc.wall_s,
        startup_seconds=_startup(proc.wall_s, stats), peak_memory_mb=proc.peak_rss_mb,
        exit_code=proc.returncode, counterexample_ok=ce_ok, error=message,
        bab_domains=int(inner.get("bab_domains", 0) or 0),
        domains_per_s=float(inner.get("bab_domains_per_second", 0.0) or 0.0),
        host=socket.gethostname(),
        worst_margin=None if inner.get("bab_worst_margin") is None
        else float(inner["bab_worst_margin"]),
        cuts_used=int(inner.get("cuts_used", 0) or 0))


def _read_stats(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _startup(wall: float, stats: dict) -> float:
    """Process start until the model is loaded: the wall time less what the verifier spent
    after parsing, importing and loading (from its --stats file)."""
    try:
        timings = stats.get("timings", {})
        after_load = float(stats["seconds"]) - sum(float(timings.get(k, 0.0))
                                                   for k in ("parse", "import", "load"))
    except (KeyError, TypeError, ValueError):
        return math.nan
    return wall - after_load


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def failed_result(inst: Instance, opts: RunOptions, message: str, verdict: str = "lost"
                  ) -> InstanceResult:
    """The row for an instance whose run did not come back (worker lost, runner failure)."""
    return InstanceResult(
        benchmark=inst.benchmark, onnx=inst.onnx, vnnlib=inst.vnnlib,
        timeout=opts.timeout_for(inst), verdict=verdict, expected=inst.expected,
        seconds=math.nan, startup_seconds=math.nan, peak_memory_mb=math.nan, exit_code=-1,
        error=message.replace("\n", " ")[:300])
