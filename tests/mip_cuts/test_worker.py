"""The cut worker process: streams validated cuts, reports what the MIP finds, stops on request
and on its deadline, and never outlives its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from planecut.mip_cuts.worker import CutJob, CutWorker

from testnets import encode, make_fc

REPO = Path(__file__).resolve().parents[2]


def _long_job(tmp_path: Path, time_limit: float = 60.0) -> CutJob:
    """A MILP SCIP cannot finish quickly (wide box, 3x40 ReLUs)."""
    net = make_fc(tmp_path / "big.onnx", [6, 40, 40, 40, 3], seed=21)
    _, enc = encode(net.path, -np.ones(6) * 2, np.ones(6) * 2)
    return CutJob(enc, [(np.array([[1.0, -1.0, 0.0]]), np.zeros(1))], time_limit=time_limit,
                  samples=500, stop_when_decided=False)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
    except OSError:  # pragma: no cover - no procfs: fall back to signal 0
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return True


def _wait_gone(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if _gone(pid):
            return True
        time.sleep(0.1)
    return _gone(pid)


def test_streams_cuts_then_stops_on_request(tmp_path):
    w = CutWorker().start(_long_job(tmp_path))
    try:
        got, end = [], time.monotonic() + 40
        while not got and time.monotonic() < end and w.error is None:
            got += w.poll(timeout=0.2)
        assert w.error is None, w.error
        assert got and all(len(c) for c in got)
        assert w.first_cut_s is not None and w.cuts_received == sum(len(c) for c in got)
        versions = [c.version for c in got]
        assert versions == sorted(versions)
    finally:
        t = time.monotonic()
        w.stop()
        took = time.monotonic() - t
    assert not w.alive, f"worker alive after stop() ({took:.2f}s)"


def test_stops_at_its_deadline(tmp_path):
    w = CutWorker().start(_long_job(tmp_path, time_limit=2.0))
    try:
        w.wait(30)
        assert w.done and w.error is None
        assert w.verdicts[0].solver_status == "timelimit"
        w._proc.join(5)
        assert not w.alive
    finally:
        w.stop()


def test_mip_verdicts_on_the_example(tmp_path):
    from planecut.mip_cuts.inspect import region_encoding

    ex = REPO / "examples"
    for spec, want in (("tiny_fc_robust.vnnlib", "proved"),
                       ("tiny_fc_falsifiable.vnnlib", "candidate")):
        _, sp, enc = region_encoding(ex / "tiny_fc.onnx", ex / spec, method="crown")
        r = sp.regions[0]
        w = CutWorker().start(CutJob(enc, [(d.C, d.d) for d in r.disjuncts], time_limit=20))
        try:
            w.wait(40)
        finally:
            w.stop()
        assert w.done, w.error
        statuses = {v.status for v in w.verdicts.values()}
        if want == "proved":
            assert statuses == {"proved"} and len(w.verdicts) == len(r.disjuncts)
        else:
            assert "candidate" in statuses
            v = next(v for v in w.verdicts.values() if v.status == "candidate")
            _, _, out = enc.forward(v.x[None])
            assert sp.is_violated_by(v.x, out[0], tol=1e-6)


def test_killed_worker_does_not_take_the_parent_down(tmp_path):
    w = CutWorker().start(_long_job(tmp_path))
    try:
        end = time.monotonic() + 20
        while w.pid is None and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(w.pid, signal.SIGKILL)
        end = time.monotonic() + 10
        while w.error is None and time.monotonic() < end:
            w.poll(timeout=0.2)
        assert w.error is not None and "exited unexpectedly" in w.error
    finally:
        w.stop()


_PARENT = textwrap.dedent("""
    import sys, time
    import numpy as np
    sys.path.insert(0, {tests!r})
    from testnets import encode, make_fc
    from planecut.mip_cuts.worker import CutJob, CutWorker
    from pathlib import Path
    if __name__ == "__main__":
        net = make_fc(Path({tmp!r}) / "p.onnx", [6, 40, 40, 40, 3], seed=21)
        _, enc = encode(net.path, -np.ones(6) * 2, np.ones(6) * 2)
        w = CutWorker().start(CutJob(enc, [(np.array([[1.0, -1.0, 0.0]]), np.zeros(1))],
                                     time_limit=120, samples=200, stop_when_decided=False))
        print(w.pid, flush=True)
        time.sleep(1.5)
        if {mode!r} == "exit":
            sys.exit(0)  # returns without stop(): the worker must not linger
        time.sleep(600)
""")


@pytest.mark.parametrize("mode", ["killed", "exit"])
def test_no_orphan_when_the_parent_goes(tmp_path, mode):
    script = tmp_path / "parent.py"
    script.write_text(_PARENT.format(tests=str(REPO / "tests"), tmp=str(tmp_path), mode=mode))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(proc.stdout.readline().strip())
        assert not _gone(pid)
        if mode == "killed":
            proc.kill()
        proc.wait(30)
        assert _wait_gone(pid, 10), f"cut worker {pid} outlived its parent ({mode})"
    finally:
        if proc.poll() is None:
            proc.kill()
