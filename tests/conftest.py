"""Shared fixtures. Tests that need ../shared/benchmarks skip cleanly when it is absent."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_DEFAULT_BENCH = REPO.parent / "shared" / "benchmarks"


def benchmarks_root() -> Path | None:
    """The VNN-COMP benchmark folder: $PLANECUT_BENCHMARKS or ../shared/benchmarks."""
    root = Path(os.environ.get("PLANECUT_BENCHMARKS", _DEFAULT_BENCH))
    return root if root.is_dir() else None


@pytest.fixture(scope="session")
def bench_root() -> Path:
    root = benchmarks_root()
    if root is None:
        pytest.skip("../shared/benchmarks not present (set PLANECUT_BENCHMARKS to point at it)")
    return root


def read_expected(bench_dir: Path) -> list[dict[str, str]]:
    with open(bench_dir / "expected.csv", newline="") as fh:
        return list(csv.DictReader(fh))
