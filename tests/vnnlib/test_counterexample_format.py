"""Result-file counterexamples: exact text in both versions, and a bit-exact round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planecut.vnnlib.counterexample import format_counterexample, parse_counterexample
from planecut.vnnlib.parse import parse_spec, parse_spec_text

DATA = Path(__file__).parent / "data"
V1 = ("(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)"
      "(assert (<= X_0 1))(assert (>= X_0 -1))(assert (<= X_1 1))(assert (>= X_1 -1))"
      "(assert (<= Y_0 0))")


def test_v1_text():
    s = parse_spec_text(V1)
    text = format_counterexample(s, np.array([0.5, -0.25]), np.array([-1e-3]))
    assert text == "sat\n((X_0 0.5)\n (X_1 -0.25)\n (Y_0 -0.001))\n"


def test_v2_text():
    s = parse_spec(DATA / "robustness_2x3.vnnlib")
    x = np.array([0.0, 0.1, 0.2, 0.1 + 0.2, 0.4, 0.5])
    text = format_counterexample(s, x, np.array([1.0, 2.0, 3.0], dtype=np.float32))
    assert text == ("sat\nimage float32 [1,2,3]\n0.0\n0.1\n0.2\n0.30000000000000004\n0.4\n0.5\n"
                    "logits float32 [1,3]\n1.0\n2.0\n3.0\n")


@pytest.mark.parametrize("spec_file", ["acasxu_prop_3.vnnlib", "acasxu_prop_3_v1.vnnlib"])
def test_round_trip_is_bit_exact(spec_file):
    s = parse_spec(DATA / spec_file)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5) * 1e-7 + np.nextafter(0.1, 1.0)
    y = np.array([np.float32(1 / 3), -2.5e-300, 1e300, -0.0, 123456789.12345679])
    text = format_counterexample(s, x, y)
    x2, y2 = parse_counterexample(text, s)
    assert x2.dtype == np.float64 and x2.tobytes() == x.tobytes()
    assert y2.tobytes() == y.tobytes()


def test_seventeen_significant_digits():
    s = parse_spec_text(V1)
    v = 0.1 + 2 ** -55  # needs 17 digits to round-trip
    text = format_counterexample(s, [v, v], [v])
    assert "(X_0 0.10000000000000003)" in text
    assert parse_counterexample(text, s)[0][0] == v


def test_read_either_format_and_violated_header():
    s1 = parse_spec_text(V1)
    x, y = parse_counterexample("violated\n((X_1 2e-1) (X_0 -1)\n(Y_0 3))", s1)
    assert x.tolist() == [-1.0, 0.2] and y.tolist() == [3.0]
    s2 = parse_spec(DATA / "acasxu_prop_3.vnnlib")
    v1_text = format_counterexample(parse_spec(DATA / "acasxu_prop_3_v1.vnnlib"),
                                    np.arange(5.0), np.arange(5.0) + 10)
    x, y = parse_counterexample(v1_text, s2)
    assert x.tolist() == [0, 1, 2, 3, 4] and y.tolist() == [10, 11, 12, 13, 14]


def test_outputs_are_optional_when_reading():
    s = parse_spec_text(V1)
    x, y = parse_counterexample("sat\n((X_0 0.5)\n (X_1 0.5))\n", s)
    assert x.tolist() == [0.5, 0.5] and y is None
    s2 = parse_spec(DATA / "robustness_2x3.vnnlib")
    x, y = parse_counterexample("sat\nimage float32 [1,2,3]\n" + "0.5\n" * 6, s2)
    assert x.tolist() == [0.5] * 6 and y is None


@pytest.mark.parametrize("text, fragment", [
    ("unsat\n", "first line is 'unsat'"),
    ("sat\n((X_0 0.5))", "no value for X_1"),
    ("sat\n((X_0 0.5) (X_1 0.5) (X_2 1))", "only 2 inputs"),
    ("sat\n((X_0 0.5) (X_1 abc) (Y_0 1))", "X_1 is not a number"),
    ("sat\nimage float32 [1,2,3]\n1.0\n", "needs 6 values"),
    ("sat\n0.5\n", "expected a header"),
])
def test_malformed_counterexamples(text, fragment):
    spec = parse_spec(DATA / "robustness_2x3.vnnlib") if "image" in text else parse_spec_text(V1)
    with pytest.raises(ValueError, match=fragment):
        parse_counterexample(text, spec)


def test_wrong_sizes_when_writing():
    with pytest.raises(ValueError, match="3 values, the spec has 2"):
        format_counterexample(parse_spec_text(V1), [1.0, 2.0, 3.0], [0.0])
