"""Live progress of a suite run: one line on stderr per finished instance.

The estimate of the time left is the wall time per finished instance so far times the number
left; it uses wall time, not the instances' own seconds, so it already accounts for running
several at a time.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from planecut.benchmarks.instance import InstanceResult


def _clock(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Counts finished instances and prints a line for each."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.solved = 0
        self.errors = 0
        self._t0 = time.monotonic()
        self._stream = stream if stream is not None else sys.stderr

    def line(self, r: InstanceResult) -> str:
        elapsed = time.monotonic() - self._t0
        left = self.total - self.done
        eta = elapsed / self.done * left if self.done else float("nan")
        flag = "  <-- ERROR" if r.is_error else ""
        show = r.error and (r.verdict not in ("sat", "unsat") or r.is_error)
        note = f" ({r.error})" if show else ""
        width = len(str(self.total))
        return (f"[{self.done:>{width}}/{self.total}] {_clock(elapsed)} elapsed, "
                f"~{_clock(eta) if left else '0:00:00'} left, {self.solved} solved"
                f"{f', {self.errors} ERROR' if self.errors else ''} | {r.benchmark} {r.onnx} "
                f"{r.vnnlib}: {r.verdict} {r.seconds:.2f}s{note}{flag}")

    def update(self, r: InstanceResult) -> None:
        self.done += 1
        self.solved += r.solved
        self.errors += r.is_error
        print(self.line(r), file=self._stream, flush=True)
