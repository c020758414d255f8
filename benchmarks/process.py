"""Running one child process under a hard deadline, measuring its own peak memory.

Why not ``subprocess.run(timeout=...)``: it kills only the direct child, and the peak resident
memory of ``getrusage(RUSAGE_CHILDREN)`` is a maximum over *all* children reaped so far, which
is useless when several instances run in parallel. Here each child starts in its own session
(process group), a timer kills the whole group at the deadline, and the child is reaped with
``os.wait4``, whose rusage belongs to that child alone (its ``ru_maxrss`` includes descendants
it waited for). ``waitid(WNOWAIT)`` first waits without reaping, so the timer can never signal
a process group whose number the kernel has already handed to someone else.

Output goes to files, not pipes: a chatty child can never block on a full pipe.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessOutcome:
    """What one child process did."""

    returncode: int  # negative: killed by that signal
    wall_s: float
    peak_rss_mb: float  # the child's own peak resident set (0.0 where unknown)
    stdout: str
    stderr: str
    killed: bool  # the deadline passed and the process group was killed


class ProcessGroups:
    """The process groups of the children still running, so that an interrupted run (Ctrl-C,
    an exception in the runner) can kill them all: they are in sessions of their own and do not
    receive the terminal's signals."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[int] = set()
        self._closed = False

    def add(self, pid: int) -> bool:
        """Register ``pid``; False when the registry is closed (the caller kills the child)."""
        with self._lock:
            if self._closed:
                return False
            self._live.add(pid)
            return True

    def kill(self, pid: int) -> None:
        """Kill group ``pid`` if it is still registered (never a reaped one)."""
        with self._lock:
            if pid in self._live:
                _killpg(pid)

    def discard(self, pid: int) -> None:
        with self._lock:
            self._live.discard(pid)

    def kill_all(self) -> None:
        """Kill every live group and refuse new children from now on."""
        with self._lock:
            self._closed = True
            for pid in self._live:
                _killpg(pid)


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_command(cmd: list[str], deadline_s: float, groups: ProcessGroups | None = None,
                env: dict[str, str] | None = None, cwd: str | Path | None = None
                ) -> ProcessOutcome:
    """Run ``cmd``; kill its process group after ``deadline_s`` seconds of wall time."""
    groups = groups if groups is not None else ProcessGroups()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True, env=env, cwd=cwd)
        if not groups.add(proc.pid):
            _killpg(proc.pid)
        killed = threading.Event()

        def on_deadline() -> None:
            killed.set()
            groups.kill(proc.pid)

        timer = threading.Timer(max(0.0, deadline_s), on_deadline)
        timer.daemon = True
        timer.start()
        try:
            # wait for the exit without reaping: the group id stays ours until wait4 below
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        except BaseException:  # interrupted (Ctrl-C, ray.cancel): the child must not outlive us
            timer.cancel()
            groups.discard(proc.pid)
            _killpg(proc.pid)
            proc.wait()
            raise
        timer.cancel()
        groups.discard(proc.pid)
        wall = time.monotonic() - t0
        # descendants that outlive the child go too; the unreaped child still holds the id
        _killpg(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait
        out.seek(0)
        err.seek(0)
        return ProcessOutcome(returncode=proc.returncode, wall_s=wall,
                              peak_rss_mb=usage.ru_maxrss / 1024.0,  # Linux: kilobytes
                              stdout=out.read(), stderr=err.read(), killed=killed.is_set())
