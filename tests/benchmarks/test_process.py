"""One child under a hard deadline: the whole process group dies, peak memory is its own."""

from __future__ import annotations

import os
import sys
import time

from planecut.benchmarks.process import ProcessGroups, run_command


def test_deadline_kills_the_process_group(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys, time; "
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    t = time.monotonic()
    out = run_command([sys.executable, "-c", script], deadline_s=1.5)
    assert time.monotonic() - t < 10
    assert out.killed and out.returncode < 0
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # killed with the group (reaped by init soon after)
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        if _is_zombie(grandchild):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the grandchild survived its group's kill")


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_output_exit_code_and_peak_memory():
    script = ("import sys; b = bytearray(150 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
              "print('hello'); print('oops', file=sys.stderr); sys.exit(3)")
    out = run_command([sys.executable, "-c", script], deadline_s=30)
    assert not out.killed and out.returncode == 3
    assert out.stdout.strip() == "hello" and out.stderr.strip() == "oops"
    assert 150 < out.peak_rss_mb < 1000  # this child's own peak, not the test process's


def test_closed_registry_refuses_new_children():
    groups = ProcessGroups()
    groups.kill_all()
    t = time.monotonic()
    out = run_command([sys.executable, "-c", "import time; time.sleep(30)"], 30, groups)
    assert out.returncode < 0 and time.monotonic() - t < 10
