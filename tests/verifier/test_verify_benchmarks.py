"""verify() on real VNN-COMP instances: never contradict expected.csv, never error.

CI runs a slice (a few instances of every benchmark, short timeouts); ``-m slow`` runs every
instance. A contradiction with a definite expected answer is a release-blocking bug.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from planecut.verifier.api import verify
from planecut.verifier.config import VerifierConfig

# (suite/benchmark, how many evenly spread instances in the CI slice, timeout per instance)
SLICE = [
    ("vnncomp2021/test", 5, 20.0),
    ("vnncomp2021/acasxu", 3, 10.0),
    ("vnncomp2022/mnist_fc", 2, 10.0),
    ("vnncomp2021/eran", 2, 10.0),
    ("vnncomp2021/oval21", 1, 15.0),
    ("vnncomp2021/cifar10_resnet", 1, 15.0),
    ("vnncomp2021/marabou-cifar10", 2, 15.0),
    ("vnncomp2021/verivital", 1, 15.0),
]


def _instances(bench: Path) -> list[dict[str, str]]:
    with open(bench / "expected.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _spread(rows: list, n: int) -> list:
    if n >= len(rows):
        return rows
    return [rows[int(i * len(rows) / n)] for i in range(n)]


def _check(bench: Path, row: dict[str, str], timeout: float) -> str:
    result = verify(bench / row["onnx"], bench / row["vnnlib"], timeout=timeout,
                    config=VerifierConfig(device="cpu"))
    assert result.verdict != "error", result.message
    if result.verdict in ("sat", "unsat") and row["expected"] in ("sat", "unsat"):
        assert result.verdict == row["expected"], (
            f"WRONG ANSWER on {bench.name} {row['onnx']} {row['vnnlib']}: {result.verdict}, "
            f"expected {row['expected']}")
    if result.verdict == "sat":
        spec = result.spec
        assert spec.is_violated_by(result.counterexample.x, result.counterexample.y)
    assert result.seconds <= timeout + 1.5
    return result.verdict


def _slice_params():
    return [pytest.param(name, i, n, t, id=f"{name.split('/')[1]}-{i}")
            for name, n, t in SLICE for i in range(n)]


@pytest.mark.benchmarks
@pytest.mark.parametrize("name, i, n, timeout", _slice_params())
def test_slice_never_contradicts_expected(bench_root, name, i, n, timeout):
    bench = bench_root / name
    row = _spread(_instances(bench), n)[i]
    _check(bench, row, timeout)


@pytest.mark.benchmarks
def test_vnncomp2021_test_instances_are_decided(bench_root):
    """test_nano, test_tiny, test_small and test_sat must get their expected answer."""
    bench = bench_root / "vnncomp2021/test"
    rows = {r["onnx"]: r for r in _instances(bench)}
    for onnx in ("test_nano.onnx", "test_tiny.onnx", "test_small.onnx", "test_sat.onnx"):
        verdict = _check(bench, rows[onnx], 20.0)
        assert verdict == rows[onnx]["expected"], onnx


@pytest.mark.slow
@pytest.mark.benchmarks
@pytest.mark.parametrize("name", [s[0] for s in SLICE])
def test_whole_benchmark_never_contradicts_expected(bench_root, name):
    bench = bench_root / name
    for row in _instances(bench):
        _check(bench, row, 10.0)
