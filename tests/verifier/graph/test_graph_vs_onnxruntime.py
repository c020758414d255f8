"""Every benchmark ONNX model loads and matches onnxruntime on random inputs (float32)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from planecut.verifier.graph import describe, load_onnx

_ROOT = Path(os.environ.get("PLANECUT_BENCHMARKS",
                            Path(__file__).resolve().parents[3].parent / "shared" / "benchmarks"))
_MODELS = sorted(str(p.relative_to(_ROOT)) for p in _ROOT.rglob("*.onnx")) if _ROOT.is_dir() \
    else ["<no benchmarks>"]


def _input_range(rel: str) -> tuple[float, float]:
    """Plausible inputs: ACAS Xu and the toy nets take normalised values around 0, the
    image models [0, 1] pixels."""
    if "acasxu" in rel.lower() or "/test/" in f"/{rel}":
        return -0.5, 0.5
    return 0.0, 1.0


@pytest.mark.benchmarks
@pytest.mark.parametrize("rel", _MODELS)
def test_benchmark_model_matches_onnxruntime(bench_root, rel, ox):
    path = bench_root / rel
    if not path.is_file():
        pytest.skip(f"{rel} not present under {bench_root}")
    low, high = _input_range(rel)
    graphs = ox.compare(path, low=low, high=high, n=8)
    g = graphs[True]
    assert g.num_inputs > 0 and g.num_outputs > 0
    assert describe(g)


@pytest.mark.benchmarks
def test_largest_model_loads_fast(bench_root):
    largest = max(bench_root.rglob("*.onnx"), key=lambda p: p.stat().st_size, default=None)
    if largest is None:
        pytest.skip("no ONNX models")
    load_onnx(largest)  # warm up imports and torch kernels
    t = time.perf_counter()
    load_onnx(largest)
    dt = time.perf_counter() - t
    assert dt < 1.0, f"{largest.name} took {dt:.2f}s to load"
