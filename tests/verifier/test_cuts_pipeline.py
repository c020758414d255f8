"""The verifier with the MIP cut worker: no process is left behind however the run ends (deadline,
Ctrl-C, the verifier killed), and the run statistics report the cuts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmarks

NET = "vnncomp2022/mnist_fc/onnx/mnist-net_256x4.onnx"
PROP = "vnncomp2022/mnist_fc/vnnlib/prop_6_0.03.vnnlib"  # hard: branch and bound runs long


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _start(bench_root: Path, timeout: float, tmp: Path) -> tuple[subprocess.Popen, list[int]]:
    stats = tmp / "stats.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "planecut", "verify", str(bench_root / NET),
         str(bench_root / PROP), "--timeout", str(timeout), "--cuts", "mip", "--stats",
         str(stats)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kids: list[int] = []
    end = time.monotonic() + 25
    while not kids and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.2)
        kids = [k for k in _children(proc.pid)
                if "spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes().decode(
                    errors="replace")]
    return proc, kids


def _assert_gone(kids: list[int], seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while any(_alive(k) for k in kids) and time.monotonic() < end:
        time.sleep(0.2)
    assert not any(_alive(k) for k in kids), f"cut worker(s) {kids} outlived the verifier"


def test_deadline_stops_the_worker_and_stats_report_cuts(bench_root, tmp_path):
    proc, kids = _start(bench_root, 12, tmp_path)
    out, err = proc.communicate(timeout=60)
    assert kids, f"no cut worker was started: {err[-2000:]}"
    assert out.strip().splitlines()[-1] in ("timeout", "unsat", "sat"), err[-2000:]
    _assert_gone(kids)
    stats = json.loads((tmp_path / "stats.json").read_text())["stats"]
    for key in ("cuts_received", "cuts_used", "cuts_rejected", "cuts_first_s", "mip_status",
                "bab_domains", "bab_domains_per_second"):
        assert key in stats, key
    assert "Traceback" not in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_no_worker_left_when_interrupted_or_killed(bench_root, tmp_path, sig):
    proc, kids = _start(bench_root, 60, tmp_path)
    try:
        assert kids, "no cut worker was started"
        time.sleep(1.0)
        os.kill(proc.pid, sig)
        proc.communicate(timeout=30)
        if sig == signal.SIGINT:
            assert proc.returncode == 130
        _assert_gone(kids)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_refined_bounds_reach_the_search(bench_root: Path) -> None:
    """With ``cuts.refine_fraction`` the worker MIP-tightens root neurons first; the search
    adopts them (statistics count them) and the answer stays the expected one or none."""
    from planecut.verifier.api import verify
    from planecut.verifier.config import CutsConfig, VerifierConfig

    cfg = VerifierConfig(device="cpu", cuts=CutsConfig(mode="mip", refine_fraction=0.5,
                                                       refine_solve_seconds=1.0))
    res = verify(bench_root / NET, bench_root / PROP, timeout=25.0, config=cfg)
    assert res.verdict in ("unsat", "timeout", "unknown")  # expected: unsat
    assert res.stats["refined_neurons"] > 0
    assert res.stats["refined_improved"] <= res.stats["refined_neurons"]
