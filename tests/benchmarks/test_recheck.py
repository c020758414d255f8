"""Re-checking counterexamples on the ONNX model with onnxruntime (no verifier run)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from planecut.benchmarks.recheck import onnx_outputs, recheck_counterexample
from planecut.vnnlib.counterexample import format_counterexample
from planecut.vnnlib.parse import parse_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODEL = EXAMPLES / "tiny_fc.onnx"
SPEC = EXAMPLES / "tiny_fc_falsifiable.vnnlib"


@pytest.fixture(scope="module")
def violation() -> tuple[np.ndarray, np.ndarray]:
    """A point of the falsifiable spec's box whose outputs violate it (random search)."""
    spec = parse_spec(str(SPEC))
    region = spec.regions[0]
    rng = np.random.default_rng(0)
    for _ in range(2000):
        x = rng.uniform(region.lower, region.upper).astype(np.float32).astype(np.float64)
        y = onnx_outputs(MODEL, x)
        if spec.is_violated_by(x, y):
            return x, y
    pytest.fail("no violating point found by random search")


def test_valid_counterexample_passes(violation):
    x, y = violation
    text = format_counterexample(parse_spec(str(SPEC)), x, y)
    assert recheck_counterexample(MODEL, SPEC, text).ok


def test_gzipped_model_and_outputs_omitted(violation, tmp_path):
    x, _ = violation
    gz = tmp_path / "tiny_fc.onnx.gz"
    gz.write_bytes(gzip.compress(MODEL.read_bytes()))
    text = "sat\n(" + "\n ".join(f"(X_{i} {float(v)!r})" for i, v in enumerate(x)) + ")\n"
    assert recheck_counterexample(gz, SPEC, text).ok


@pytest.mark.parametrize("tamper, words", [
    ("outputs", "differ"), ("outside", "does not violate"), ("robust", "does not violate"),
    ("garbage", "unreadable")])
def test_bad_counterexamples_fail(violation, tamper, words, tmp_path):
    x, y = violation
    spec_path = SPEC
    if tamper == "outputs":
        y = y + 1.0
    elif tamper == "outside":
        x = x.copy()
        x[0] = 10.0
        y = onnx_outputs(MODEL, x)
    elif tamper == "robust":  # the same point against the robust spec (class 0 wins there)
        spec_path = tmp_path / "robust.vnnlib"
        shutil.copy(EXAMPLES / "tiny_fc_robust.vnnlib", spec_path)
        x = np.clip(x, parse_spec(str(spec_path)).regions[0].lower,
                    parse_spec(str(spec_path)).regions[0].upper)
        y = onnx_outputs(MODEL, x)
    text = "sat\nnonsense\n" if tamper == "garbage" else \
        format_counterexample(parse_spec(str(spec_path)), x, y)
    out = recheck_counterexample(MODEL, spec_path, text)
    assert not out.ok and words in out.message
