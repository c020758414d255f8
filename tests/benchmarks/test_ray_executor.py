"""The ray executor on a local ray: a suite run, retry of a lost worker, a twice-lost task."""

from __future__ import annotations

import csv
import os

import pytest

ray = pytest.importorskip("ray")

from planecut.benchmarks.cli import main  # noqa: E402
from planecut.benchmarks.instance import InstanceResult, RunOptions  # noqa: E402
from planecut.benchmarks.ray_executor import run_ray  # noqa: E402
from planecut.benchmarks.suite import Instance, load_suite  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    """One local ray for the module (run_ray uses a ray it finds running and leaves it)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_suite_on_local_ray(local_ray, tiny_suite, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["run", str(tiny_suite), "--out", str(out), "--executor", "ray",
               "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured
    with open(out / "results.csv", newline="") as fh:
        rows = {r["vnnlib"]: r for r in csv.DictReader(fh)}
    assert rows["tiny_fc_robust.vnnlib"]["verdict"] == "unsat"
    assert rows["tiny_fc_falsifiable.vnnlib"]["verdict"] == "sat"
    assert rows["tiny_fc_falsifiable.vnnlib"]["counterexample_ok"] == "true"
    assert "[2/2]" in captured.err
    assert ray.is_initialized()  # not ours to shut down


def _fake(inst: Instance, opts: RunOptions) -> InstanceResult:
    return InstanceResult(inst.benchmark, inst.onnx, inst.vnnlib, opts.timeout_for(inst),
                          "unknown", inst.expected, 0.1, 0.1, 1.0, 0)


def test_lost_worker_is_retried_once(local_ray, tiny_suite, tmp_path, capsys):
    marks = tmp_path / "marks"
    marks.mkdir()

    def crash_first_time(inst: Instance, opts: RunOptions) -> InstanceResult:
        mark = marks / inst.vnnlib
        if not mark.exists():
            mark.touch()
            os._exit(1)  # the worker process dies: ray reports WorkerCrashedError
        return _fake(inst, opts)

    insts = load_suite(tiny_suite)
    results = list(run_ray(insts, RunOptions(), task=crash_first_time))
    assert sorted(r.vnnlib for r in results) == sorted(i.vnnlib for i in insts)
    assert all(r.verdict == "unknown" for r in results)
    assert capsys.readouterr().err.count("worker lost (WorkerCrashedError); retrying") == 2


def test_worker_lost_twice_gives_a_lost_row(local_ray, tiny_suite, capsys):
    def always_crash(inst: Instance, opts: RunOptions) -> InstanceResult:
        os._exit(1)

    (r,) = list(run_ray(load_suite(tiny_suite)[:1], RunOptions(), task=always_crash))
    assert r.verdict == "lost" and "lost 2 times" in r.error
    capsys.readouterr()


def test_task_exception_is_recorded_not_retried(local_ray, tiny_suite):
    def broken(inst: Instance, opts: RunOptions) -> InstanceResult:
        raise RuntimeError("boom")

    (r,) = list(run_ray(load_suite(tiny_suite)[:1], RunOptions(), task=broken))
    assert r.verdict == "lost" and "boom" in r.error


