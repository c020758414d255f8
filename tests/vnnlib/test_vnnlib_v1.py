"""Semantics of the VNN-LIB 1.0 parser on hand-written specs (no benchmark files needed)."""

from __future__ import annotations

import gzip
import time

import numpy as np
import pytest

from planecut.errors import MismatchError, SpecError, UnsupportedError
from planecut.vnnlib import parse_spec as public_parse_spec
from planecut.vnnlib.parse import (MAX_TERMS, check_dimensions, detect_version, parse_spec,
                                   parse_spec_text)


def decls(n_in: int, n_out: int) -> str:
    xs = "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in))
    ys = "".join(f"(declare-const Y_{i} Real)\n" for i in range(n_out))
    return xs + ys


def box(n_in: int, lo: float = -1.0, hi: float = 1.0) -> str:
    return "".join(f"(assert (>= X_{i} {lo}))\n(assert (<= X_{i} {hi}))\n" for i in range(n_in))


def spec_of(body: str, n_in: int = 2, n_out: int = 3, with_box: bool = True):
    return parse_spec_text(decls(n_in, n_out) + (box(n_in) if with_box else "") + body, "t.vnnlib")


def rows(d) -> list[tuple[list[float], float]]:
    return [(list(c), float(v)) for c, v in zip(d.C, d.d)]


# ------------------------------------------------------------------ basics

def test_box_and_single_output_row():
    s = spec_of("(assert (>= Y_0 3.991125645861615))")
    assert s.version == "1.0" and s.num_inputs == 2 and s.num_outputs == 3
    assert s.inputs[0].shape == (2,) and s.outputs[0].shape == (3,)
    (r,) = s.regions
    np.testing.assert_array_equal(r.lower, [-1, -1])
    np.testing.assert_array_equal(r.upper, [1, 1])
    (d,) = r.disjuncts
    assert rows(d) == [([-1.0, 0.0, 0.0], -3.991125645861615)]


@pytest.mark.parametrize("op, expected", [
    ("<=", [1.0, -1.0, 0.0]), ("<", [1.0, -1.0, 0.0]),
    (">=", [-1.0, 1.0, 0.0]), (">", [-1.0, 1.0, 0.0]),
])
def test_output_vs_output_rows_strict_stored_as_nonstrict(op, expected):
    (r,) = spec_of(f"(assert ({op} Y_0 Y_1))").regions
    assert rows(r.disjuncts[0]) == [(expected, 0.0)]


def test_constant_on_the_left_and_input_bounds_any_order():
    s = parse_spec_text(decls(2, 1) + "(assert (>= 0.5 X_0))(assert (<= -0.5 X_0))\n"
                        "(assert (< X_1 2))(assert (> X_1 -2))(assert (<= 1.5 Y_0))")
    (r,) = s.regions
    np.testing.assert_array_equal(r.lower, [-0.5, -2.0])
    np.testing.assert_array_equal(r.upper, [0.5, 2.0])
    assert rows(r.disjuncts[0]) == [([-1.0], -1.5)]


@pytest.mark.parametrize("text, value", [
    ("1e-3", 1e-3), ("-1e-3", -1e-3), ("2.5E+2", 250.0), ("-0.5", -0.5), ("7", 7.0),
    ("(- 0.5)", -0.5), ("(- 3e-1)", -0.3), (".25", 0.25), ("+4.", 4.0),
    ("0.019999999552965164", 0.019999999552965164),
])
def test_numerals(text, value):
    s = parse_spec_text(decls(1, 1) + f"(assert (<= X_0 {text}))(assert (>= X_0 -1000))"
                        "(assert (<= Y_0 0))")
    assert s.regions[0].upper[0] == value


def test_linear_output_terms():
    s = spec_of("(assert (<= (+ Y_0 (* 2 Y_1)) (- Y_2 1.5)))\n"
                "(assert (>= (* 0.5 Y_0 4) (/ Y_1 2)))\n"
                "(assert (<= (- Y_2) (+ 1 2 Y_2)))")
    (r,) = s.regions
    assert rows(r.disjuncts[0]) == [([1.0, 2.0, -1.0], -1.5), ([-2.0, 0.5, 0.0], 0.0),
                                    ([0.0, 0.0, -2.0], 3.0)]


def test_equality_gives_two_rows_and_fixed_input():
    s = parse_spec_text(decls(2, 3) + "(assert (>= X_0 0))(assert (<= X_0 1))"
                        "(assert (= X_1 0.25))(assert (= Y_0 Y_2))")
    (r,) = s.regions
    assert r.lower[1] == r.upper[1] == 0.25
    assert rows(r.disjuncts[0]) == [([1.0, 0.0, -1.0], 0.0), ([-1.0, 0.0, 1.0], 0.0)]


def test_chained_comparison():
    s = parse_spec_text(decls(1, 1) + "(assert (<= -0.5 X_0 0.5))(assert (< Y_0 0))")
    np.testing.assert_array_equal(s.regions[0].lower, [-0.5])
    np.testing.assert_array_equal(s.regions[0].upper, [0.5])


def test_comments_everywhere():
    text = ("; header ( with a paren\n(declare-const X_0 Real) ; trailing\n"
            "(declare-const Y_0 ; inside a form\n Real)\n"
            "(assert (<= X_0 1));no space\n(assert (>= X_0 0))\n(assert (<= Y_0 0)) ; end (")
    s = parse_spec_text(text)
    assert s.regions[0].upper[0] == 1.0 and s.regions[0].lower[0] == 0.0


def test_true_false_and_noop_commands():
    s = spec_of("(set-logic QF_LRA)\n(assert (or false (and true (<= Y_0 0))))\n(check-sat)\n"
                "(get-model)\n(exit)")
    assert rows(s.regions[0].disjuncts[0]) == [([1.0, 0.0, 0.0], 0.0)]
    s = spec_of("(assert false)")
    assert s.regions == ()


# ------------------------------------------------------------------ DNF structure

def test_or_of_ands():
    s = spec_of("(assert (or (and (<= Y_0 Y_1) (<= Y_0 Y_2)) (and (>= Y_2 1.0))))")
    (r,) = s.regions
    assert [d.num_rows for d in r.disjuncts] == [2, 1]
    assert rows(r.disjuncts[0]) == [([1.0, -1.0, 0.0], 0.0), ([1.0, 0.0, -1.0], 0.0)]
    assert rows(r.disjuncts[1]) == [([0.0, 0.0, -1.0], -1.0)]


def test_nested_or_inside_and_multiplies_out_in_order():
    s = spec_of("(assert (and (or (<= Y_0 0) (<= Y_1 0)) (or (<= Y_2 0) (and (or (>= Y_0 5)))))"
                ")\n(assert (<= Y_2 9))")
    (r,) = s.regions
    got = [[(tuple(c), v) for c, v in rows(d)] for d in r.disjuncts]
    a, b = ((1.0, 0.0, 0.0), 0.0), ((0.0, 1.0, 0.0), 0.0)
    c, d = ((0.0, 0.0, 1.0), 0.0), ((-1.0, 0.0, 0.0), -5.0)
    top = ((0.0, 0.0, 1.0), 9.0)  # single-term asserts come first in every disjunct
    assert got == [[top, a, c], [top, a, d], [top, b, c], [top, b, d]]


def test_separate_asserts_are_conjoined():
    s = spec_of("(assert (or (<= Y_0 0) (<= Y_1 0)))\n(assert (or (<= Y_2 0) (<= Y_2 -1)))")
    assert [d.num_rows for d in s.regions[0].disjuncts] == [2, 2, 2, 2]


def test_multiple_input_regions_grouped_in_first_appearance_order():
    body = ("(assert (or\n"
            "  (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (<= Y_0 Y_1))\n"
            "  (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1) (<= Y_1 Y_0))\n"
            "  (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (<= Y_2 Y_1))\n"
            "  (and (>= X_0 0) (<= X_0 0.5) (>= X_0 5) (<= X_1 1) (>= X_1 0))))\n")
    s = spec_of(body, with_box=False)
    assert len(s.regions) == 2  # the empty box (X_0 in [5, 0.5]) is dropped
    r0, r1 = s.regions
    np.testing.assert_array_equal(r0.lower, [0, 0])
    np.testing.assert_array_equal(r0.upper, [1, 1])
    assert [rows(d) for d in r0.disjuncts] == [[([1.0, -1.0, 0.0], 0.0)],
                                               [([0.0, -1.0, 1.0], 0.0)]]
    np.testing.assert_array_equal(r1.lower, [2, 0])
    np.testing.assert_array_equal(r1.upper, [3, 1])
    assert s.num_disjuncts == 3


def test_region_bounds_intersect_global_bounds():
    s = spec_of("(assert (or (and (<= X_0 0.5) (<= Y_0 0)) (and (>= X_0 0.5) (<= Y_1 0))"
                " (and (<= X_0 7) (<= Y_2 0))))")
    # the third term's X_0 <= 7 is looser than the global box: it keeps the global box
    assert [list(r.lower) for r in s.regions] == [[-1, -1], [0.5, -1], [-1, -1]]
    assert [list(r.upper) for r in s.regions] == [[0.5, 1], [1, 1], [1, 1]]


def test_identical_boxes_merge_with_global_box():
    s = spec_of("(assert (or (and (<= X_0 7) (<= Y_0 0)) (<= Y_1 0)))")
    (r,) = s.regions
    assert [rows(d) for d in r.disjuncts] == [[([1.0, 0.0, 0.0], 0.0)], [([0.0, 1.0, 0.0], 0.0)]]


def test_term_without_output_constraint_is_always_violated():
    s = parse_spec_text(decls(1, 1) + "(assert (or (and (>= X_0 -1) (<= X_0 1) (>= Y_0 100))\n"
                        "(and (>= X_0 5) (<= X_0 6))))")
    r0, r1 = s.regions
    assert r1.disjuncts[0].num_rows == 0 and r1.disjuncts[0].C.shape == (0, 1)
    assert s.is_violated_by([5.5], [-1e9])
    assert not s.is_violated_by([0.0], [99.0])
    assert s.is_violated_by([0.0], [100.0])
    assert not s.is_violated_by([3.0], [1000.0])


def test_all_terms_empty_gives_no_regions():
    s = spec_of("(assert (and (>= X_0 0.9) (<= X_0 -0.9)))")
    assert s.regions == ()


def test_dnf_cap():
    assert MAX_TERMS == 1_000_000  # VNN-COMP 2023 nn4sys lindex_60000 has 120,000 cases
    body = "".join(f"(assert (or (<= Y_0 {i}) (<= Y_1 {i})))\n" for i in range(20))  # 2**20
    with pytest.raises(UnsupportedError, match=f"1048576 disjunctive cases .*limit of {MAX_TERMS}"):
        spec_of(body)


def test_many_regions_is_fast():
    n_in, n_reg = 100, 300
    terms = []
    for k in range(n_reg):
        bounds = " ".join(f"(>= X_{i} {k}) (<= X_{i} {k + 0.5})" for i in range(n_in))
        terms.append(f"  (and {bounds} (>= Y_{k % 10} Y_0))")
    text = decls(n_in, 10) + "(assert (or\n" + "\n".join(terms) + "))\n"
    t0 = time.perf_counter()
    s = parse_spec_text(text)
    assert time.perf_counter() - t0 < 2.0
    assert len(s.regions) == n_reg
    assert s.regions[7].lower[3] == 7 and s.regions[7].upper[3] == 7.5


# ------------------------------------------------------------------ files and entry points

def test_parse_spec_reads_plain_and_gz(tmp_path):
    text = decls(1, 1) + box(1) + "(assert (<= Y_0 0))\n"
    plain = tmp_path / "p.vnnlib"
    plain.write_text(text)
    gz = tmp_path / "p.vnnlib.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(text)
    a, b = parse_spec(plain), public_parse_spec(str(gz))
    assert a.path == str(plain) and b.path == str(gz)
    np.testing.assert_array_equal(a.regions[0].upper, b.regions[0].upper)


@pytest.mark.parametrize("content, message", [
    (None, "file not found"), (b"", "empty"), (b"  \n ; \n", None), (b"\xff\xfe(", "UTF-8"),
])
def test_unreadable_files(tmp_path, content, message):
    p = tmp_path / "s.vnnlib"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(SpecError, match=message) as exc:
        parse_spec(p)
    assert exc.value.path == str(p)


def test_corrupt_gz_and_directory(tmp_path):
    gz = tmp_path / "s.vnnlib.gz"
    gz.write_bytes(gzip.compress(b"(declare-const X_0 Real)\n" * 50)[:20])
    with pytest.raises(SpecError, match="corrupt or truncated gzip"):
        parse_spec(gz)
    with pytest.raises(SpecError, match="directory"):
        parse_spec(tmp_path)


def test_detect_version():
    assert detect_version(decls(1, 1)) == "1.0"
    assert detect_version("; (declare-network N) in a comment\n" + decls(1, 1)) == "1.0"
    assert detect_version("(vnnlib-version <2.0>)") == "2.0"
    assert detect_version("(declare-network N (declare-input X real [1]))") == "2.0"
    with pytest.raises(UnsupportedError, match="<3.0>"):
        detect_version("(vnnlib-version <3.0>)")


def test_check_dimensions():
    s = spec_of("(assert (<= Y_0 0))", n_in=784, n_out=10)
    check_dimensions(s, 784, 10)
    with pytest.raises(MismatchError,
                       match=r"spec declares 784 inputs \(X_0..X_783\) but the model has 3072"):
        check_dimensions(s, 3072, 10)
    with pytest.raises(MismatchError, match=r"10 outputs \(Y_0..Y_9\) but the model has 5"):
        check_dimensions(s, 784, 5)


def test_comparisons_without_variables_are_constants():
    s = spec_of("(assert (or (<= Y_0 (- Y_0 1)) (<= Y_1 0)))\n(assert (or (>= Y_0 Y_0) (<= 1 0)))")
    assert [rows(d) for d in s.regions[0].disjuncts] == [[([0.0, 1.0, 0.0], 0.0)]]
