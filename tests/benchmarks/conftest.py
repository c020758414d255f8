"""Fixtures for the benchmark-suite tests: a tiny self-contained suite built from examples/."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def make_suite(root: Path, expected: dict[str, str] | None, timeout: float = 30) -> Path:
    """``root/tiny/`` with tiny_fc.onnx and its robust (unsat) and falsifiable (sat) specs;
    ``expected`` maps a vnnlib name to the answer written in expected.csv (no file if None)."""
    bench = root / "tiny"
    bench.mkdir(parents=True)
    for name in ("tiny_fc.onnx", "tiny_fc_robust.vnnlib", "tiny_fc_falsifiable.vnnlib"):
        shutil.copy(EXAMPLES / name, bench / name)
    specs = ["tiny_fc_robust.vnnlib", "tiny_fc_falsifiable.vnnlib"]
    (bench / "instances.csv").write_text(
        "".join(f"tiny_fc.onnx,{s},{timeout:g}\n" for s in specs))
    if expected is not None:
        (bench / "expected.csv").write_text("onnx,vnnlib,expected\n" + "".join(
            f"tiny_fc.onnx,{s},{expected.get(s, 'unknown')}\n" for s in specs))
    return root


@pytest.fixture
def tiny_suite(tmp_path: Path) -> Path:
    """A suite whose expected.csv holds the true answers."""
    return make_suite(tmp_path / "suite", {"tiny_fc_robust.vnnlib": "unsat",
                                           "tiny_fc_falsifiable.vnnlib": "sat"})


@pytest.fixture
def suite_factory():
    """``make_suite`` for tests that need their own expected answers."""
    return make_suite


@pytest.fixture
def gz_suite(tmp_path: Path) -> Path:
    """The tiny suite as VNN-COMP 2023 ships benchmarks: only ``.gz`` files on disk while
    instances.csv names the plain ones, and expected.csv names them yet another way
    (``./NAME.gz``)."""
    root = make_suite(tmp_path / "gzsuite", None)
    bench = root / "tiny"
    for name in ("tiny_fc.onnx", "tiny_fc_robust.vnnlib", "tiny_fc_falsifiable.vnnlib"):
        plain = bench / name
        (bench / f"{name}.gz").write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
    (bench / "expected.csv").write_text(
        "onnx,vnnlib,expected\n./tiny_fc.onnx.gz,./tiny_fc_robust.vnnlib.gz,unsat\n"
        "./tiny_fc.onnx.gz,./tiny_fc_falsifiable.vnnlib.gz,sat\n")
    return root
