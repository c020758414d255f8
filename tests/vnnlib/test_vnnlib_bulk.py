"""The vectorised path for large VNN-LIB 1.0 texts (``planecut.vnnlib.scan``) gives exactly what
the plain token path gives: the same ``Spec`` bit for bit, or the same error at the same place.

Each text is parsed twice, with the bulk path forced (``BULK_MIN_CHARS = 0``) and with it off.
"""

from __future__ import annotations

import importlib.util
import random
import re
import time
from pathlib import Path

import numpy as np
import pytest

from planecut.errors import PlanecutError, SpecError, UnsupportedError
from planecut.vnnlib import scan as scan_module
from planecut.vnnlib import v1
from planecut.vnnlib.parse import MAX_TERMS, TooManyCasesError, parse_spec_text


def _sibling(name: str):
    """A test module of this folder (``--import-mode=importlib``: not importable by name)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_errors = _sibling("test_vnnlib_errors")


def parse(text: str, bulk: bool, monkeypatch):
    """The Spec, or (error class, message, line, column)."""
    monkeypatch.setattr(v1, "BULK_MIN_CHARS", 0 if bulk else 1 << 62)
    try:
        return parse_spec_text(text, "q.vnnlib")
    except PlanecutError as e:
        return type(e).__name__, str(e), getattr(e, "line", None), getattr(e, "column", None)


def assert_same(a, b) -> None:
    if isinstance(a, tuple) or isinstance(b, tuple):
        assert a == b
        return
    assert (a.num_inputs, a.num_outputs, len(a.regions)) == \
        (b.num_inputs, b.num_outputs, len(b.regions))
    for ra, rb in zip(a.regions, b.regions):
        assert ra.lower.tobytes() == rb.lower.tobytes()
        assert ra.upper.tobytes() == rb.upper.tobytes()
        assert len(ra.disjuncts) == len(rb.disjuncts)
        for da, db in zip(ra.disjuncts, rb.disjuncts):
            assert da.C.shape == db.C.shape
            assert da.C.tobytes() == db.C.tobytes() and da.d.tobytes() == db.d.tobytes()


def both(text: str, monkeypatch):
    """Parse both ways, check they agree, return the bulk path's result."""
    a = parse(text, True, monkeypatch)
    assert_same(a, parse(text, False, monkeypatch))
    return a


@pytest.fixture
def no_fallback(monkeypatch):
    """Fail if the bulk path hands a text back to the plain token path."""
    init = v1._Parser.__init__

    def checked_init(self, text, path, sc=None):
        assert sc is not None, "the bulk path fell back to the plain token path"
        init(self, text, path, sc)

    monkeypatch.setattr(v1._Parser, "__init__", checked_init)


def decls(n_in: int, n_out: int) -> str:
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in)) + \
        "".join(f"(declare-const Y_{i} Real)\n" for i in range(n_out))


# ------------------------------------------------------------------ hand-written cases

CASES = {
    "box and row": decls(2, 3) + "(assert (>= X_0 -1))(assert (<= X_0 1))(assert (>= X_1 -1))"
                   "(assert (<= X_1 1))(assert (>= Y_0 3.991125645861615))",
    "strict and constants left": decls(2, 1) + "(assert (>= 0.5 X_0))(assert (<= -0.5 X_0))\n"
                                 "(assert (< X_1 2))(assert (> X_1 -2))(assert (<= 1.5 Y_0))",
    "whitespace and comments inside atoms": decls(1, 1) + "(assert ( <=\tX_0 ; c (\n 1 ) )\n"
                                            "(assert (>=\nX_0\n-1e-3));x\n(assert (< Y_0 .5))",
    "or of ands (nn4sys)": decls(2, 2) + "(assert (or\n"
                           "  (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (<= Y_0 0.25))\n"
                           "  (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (>= Y_1 -2))\n"
                           "  (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1) (<= Y_1 Y_0))\n"
                           "  (and (>= X_0 5) (<= X_0 0.5) (>= X_1 0) (<= X_1 1))))",
    "or of atoms": decls(1, 3) + "(assert (>= X_0 0))(assert (<= X_0 1))"
                   "(assert (or (<= Y_0 0) (>= Y_1 1) (< Y_2 2)))",
    "nested and/or multiplied out": decls(1, 3) + "(assert (and (>= X_0 0) (<= X_0 1)))"
                                    "(assert (and (or (<= Y_0 0) (<= Y_1 0)) (or (<= Y_2 0) "
                                    "(and (or (>= Y_0 5))))))\n(assert (<= Y_2 9))",
    "equalities and linear terms": decls(2, 3) + "(assert (>= X_0 0))(assert (<= X_0 1))"
                                   "(assert (= X_1 0.25))(assert (= Y_0 Y_2))"
                                   "(assert (<= (+ Y_0 (* 2 Y_1)) (- Y_2 1.5)))",
    "runs mixed with other formulas": decls(2, 2) + "(assert (and (>= X_0 0) (<= X_0 1) "
                                      "(<= (+ X_1 0) 2) (>= X_1 -2) (<= X_1 1.5)))"
                                      "(assert (or (and (<= Y_0 1) (<= Y_0 Y_1) (>= Y_1 -1)) "
                                      "(<= Y_1 0) (>= Y_0 3) true))",
    "true, false, no-op commands": decls(1, 1) + "(set-info :x (<= X_0 1))(assert (>= X_0 0))"
                                   "(assert (<= X_0 1))(assert (or false (and true (<= Y_0 0))))"
                                   "(check-sat)(exit)",
    "all terms empty": decls(1, 1) + "(assert (and (>= X_0 0.9) (<= X_0 -0.9) (<= Y_0 0)))",
    "declarations after asserts": "(declare-const X_0 Real)(assert (>= X_0 0))"
                                  "(declare-const Y_0 Real)(assert (<= X_0 1))(assert (<= Y_0 1))",
    "undeclared until later": "(declare-const X_0 Real)(declare-const Y_0 Real)"
                              "(assert (<= X_1 1))(declare-const X_1 Real)(assert (>= X_0 0))",
    "non-canonical names": "(declare-const X_00 Real)(declare-const Y_0 Real)"
                           "(assert (<= X_00 1))(assert (>= X_00 0))(assert (<= Y_0 0))",
    "non-canonical use": "(declare-const X_0 Real)(declare-const Y_0 Real)"
                         "(assert (<= X_00 1))(assert (>= X_0 0))(assert (<= Y_0 0))",
    "two atoms in one assert": decls(1, 1) + "(assert (<= X_0 1) (>= X_0 0))",
    "atom as command": decls(1, 1) + "(<= X_0 1)",
    "atom as operand": decls(1, 1) + "(assert (<= X_0 1))(assert (>= X_0 0))"
                       "(assert (<= (+ (<= Y_0 1) 1) 2))",
    "unbounded input": decls(2, 1) + "(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))"
                       "(assert (<= Y_0 1))",
    "unbalanced": decls(1, 1) + "(assert (or (<= X_0 1) (>= X_0 0)\n",
    "NUL character": decls(1, 1) + "(assert (<= X_0 1))(assert (>= X_0 0))(assert (<= Y_0 \x00))",
    "non-ASCII": decls(1, 1) + "; é\n(assert (<= X_0 1))(assert (>= X_0 0))(assert (<= Y_0 0))",
}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_same_as_the_plain_path(text, monkeypatch):
    both(text, monkeypatch)


ERRORS = [c[1] for c in _errors.SPEC_ERRORS] + [c[1] for c in _errors.UNSUPPORTED]


@pytest.mark.parametrize("text", ERRORS,
                         ids=[c[0] for c in _errors.SPEC_ERRORS + _errors.UNSUPPORTED])
def test_same_errors_and_positions(text, monkeypatch):
    assert isinstance(both(text, monkeypatch), tuple)


def test_damaged_texts_agree(monkeypatch):
    text = (_errors.D + _errors.BOX + "; comment (\n(assert (or (and (<= Y_0 -1e-3) (>= Y_0 -2) "
            "(>= (+ Y_0 (* 2 Y_0)) (- 0.5))) (and (>= X_0 0.5) (< Y_0 0))))\n")
    for k in range(len(text)):
        both(text[:k], monkeypatch)
        both(text[:k] + text[k + 1:], monkeypatch)


def test_common_shapes_take_no_fallback(no_fallback, monkeypatch):
    for name in ("box and row", "whitespace and comments inside atoms", "or of ands (nn4sys)",
                 "or of atoms", "nested and/or multiplied out", "runs mixed with other formulas",
                 "all terms empty"):
        parse(CASES[name], True, monkeypatch)


# ------------------------------------------------------------------ numbers and chunks

NUMERALS = ["0", "1", "-1", "+2", "0.5", ".5", "5.", "-0.0", "+.5e-3", "1.e5", "1e-5", "1E+3",
            "-2.5e2", "1e400", "-1e-400", "4.9e-324", "1.7976931348623157e308", "1e22", "1e23",
            "0.0072118067182600", "0.9324685247432991", "0.30000000000000004",
            "9007199254740992", "9007199254740993", "12345678901234567890", "9" * 40,
            "3.14159265358979323846", "0." + "1" * 40, "1e-0000000000000000000030",
            "123456789012345.678", "1.0.0", "nan", "inf", "1e", "+", "-", ".", "e5", ".e5",
            "--1", "1-", "1e5.5", "0x10", "1_0"]


def test_numerals_convert_exactly_like_float():
    rng = random.Random(7)
    toks = list(NUMERALS)
    for _ in range(3000):
        k = rng.randrange(5)
        if k == 0:
            toks.append(repr(rng.uniform(-1e3, 1e3) * 10 ** rng.randrange(-30, 30)))
        elif k == 1:
            toks.append("".join(rng.choice("0123456789.-+eE") for _ in range(rng.randrange(1, 12))))
        elif k == 2:
            toks.append(f"{rng.randrange(10 ** rng.randrange(1, 20))}."
                        f"{rng.randrange(10 ** rng.randrange(1, 18))}")
        elif k == 3:
            toks.append(f"{rng.choice(['', '-', '+'])}{rng.randrange(1000)}e"
                        f"{rng.choice(['', '-', '+'])}{rng.randrange(40)}")
        else:
            toks.append(f"{rng.uniform(-1, 1):.{rng.randrange(1, 20)}f}")
    text = " ".join(toks)
    starts = np.cumsum([0] + [len(t) + 1 for t in toks[:-1]])
    ok, val = scan_module._numbers(text, np.frombuffer(text.encode(), np.uint8), starts,
                                   np.array([len(t) for t in toks]))
    numeral = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\Z")
    for t, o, v in zip(toks, ok, val):
        assert o == bool(numeral.match(t)), t
        if o:
            assert np.float64(float(t)).tobytes() == np.float64(v).tobytes(), t


def test_runs_across_chunk_boundaries(monkeypatch):
    monkeypatch.setattr(scan_module, "_CHUNK", 40)  # pieces of a few atoms, cut at newlines
    lines = [f"  (and (>= X_0 {k}) (<= X_0 {k + 0.5})\n (>= X_1 -1) (<= X_1 1)\n (<= Y_0 {k}))"
             for k in range(30)]
    text = decls(2, 1) + "; header\n(assert (or\n" + "\n".join(lines) + "))\n"
    s = both(text, monkeypatch)
    assert len(s.regions) == 30 and s.regions[7].lower[0] == 7 and s.regions[7].upper[0] == 7.5
    sc = scan_module.scan(text)
    assert sc.run_len.tolist() == [5] * 30  # each run whole although cut into pieces
    monkeypatch.setattr(scan_module, "_CHUNK", 7)
    both(text.replace("\n", " ").replace("; header", ""), monkeypatch)  # cut at spaces
    monkeypatch.setattr(scan_module, "_CHUNK", len(text) - 1)  # cut at the last newline:
    both(text + "; the end (", monkeypatch)  # the last piece is a comment without a newline


# ------------------------------------------------------------------ random specs

def _random_spec(rng: random.Random) -> str:
    nx, ny = rng.randrange(1, 4), rng.randrange(1, 3)
    nums = NUMERALS[:24] + ["1.0.0", "X_0", "(- 1)"]

    def atom() -> str:
        v = f"X_{rng.randrange(nx + 1)}" if rng.random() < 0.6 else f"Y_{rng.randrange(ny + 1)}"
        sp = lambda: rng.choice([" ", " ", "\n", "\t", " ;c\n"])  # noqa: E731
        op = rng.choice(["<=", ">=", "<", ">", "=", "<=", ">="])
        if rng.random() < 0.15:
            return f"({op}{sp()}{rng.choice(nums)}{sp()}{v})"
        return f"({op}{sp()}{v}{sp()}{rng.choice(nums)})"

    def formula(depth: int) -> str:
        if depth > 2 or rng.random() < 0.5:
            return atom()
        op = rng.choice(["and", "or"])
        return f"({op} " + " ".join(formula(depth + 1) for _ in range(rng.randrange(5))) + ")"

    parts = [f"(declare-const X_{i} Real)" for i in range(nx)] + \
        [f"(declare-const Y_{i} Real)" for i in range(ny)]
    body = []
    for i in range(nx):
        body += [f"(assert (>= X_{i} {rng.choice(['-1', '0', '-0.5'])}))",
                 f"(assert (<= X_{i} {rng.choice(['1', '0.5', '2'])}))"]
    body += [f"(assert {formula(0)})" for _ in range(rng.randrange(4))]
    if rng.random() < 0.2:  # some asserts before the last declarations
        k = rng.randrange(len(parts) + 1)
        parts, body = parts[:k] + body[:2] + parts[k:], body[2:]
    text = "\n".join(parts + body) + "\n"
    if rng.random() < 0.1:
        k = rng.randrange(len(text))
        text = text[:k] + text[k + 1:]
    return text


@pytest.mark.parametrize("chunk", [None, 16])
def test_random_specs_agree(chunk, monkeypatch):
    if chunk:
        monkeypatch.setattr(scan_module, "_CHUNK", chunk)
    rng = random.Random(2023)
    parsed = 0
    for _ in range(400):
        parsed += not isinstance(both(_random_spec(rng), monkeypatch), tuple)
    assert parsed > 50  # not only errors


# ------------------------------------------------------------------ scale

def _cardinality_like(n_terms: int, n_in: int) -> str:
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(n_terms):
        v = rng.integers(0, 2, n_in)
        atoms = " ".join(f"(>= X_{i} {v[i]}.0) (<= X_{i} {v[i]}.0)" for i in range(n_in))
        lines.append(f"(and {atoms} (<= Y_0 -1e-5))")
    return decls(n_in, 1) + "(assert (or \n" + "\n".join(lines) + "\n))\n"


def test_cardinality_like_file(no_fallback, monkeypatch):
    text = _cardinality_like(300, 100)  # 1 MB, 60,300 atoms
    s = parse(text, True, monkeypatch)
    monkeypatch.undo()
    assert_same(s, parse(text, False, monkeypatch))
    assert s.num_disjuncts == 300 and all(np.array_equal(r.lower, r.upper) for r in s.regions)


def test_120000_cases_lindex_like(no_fallback, monkeypatch):
    """nn4sys lindex_60000: 60,000 boxes with two output cases each, 120,000 cases in all,
    over the old limit of 100,000; parsed in a fraction of a second, with one C/d pair."""
    lo = np.round(np.linspace(0.0, 0.06, 60_000), 16)
    lines = []
    for k, x in enumerate(lo.tolist()):
        box = f"(>= X_0 {x:.16f}) (<= X_0 {x + 1e-6:.16f})"
        lines.append(f"  (and {box} (<= Y_0 {k * 1e-5:.16f}))\n"
                     f"  (and {box} (>= Y_0 {k * 2e-5:.16f}))")
    text = decls(1, 1) + "(assert (or\n" + "\n".join(lines) + "\n))\n"
    t0 = time.perf_counter()
    s = parse(text, True, monkeypatch)
    took = time.perf_counter() - t0
    assert len(s.regions) == 60_000 and s.num_disjuncts == 120_000 < MAX_TERMS
    r = s.regions[12_345]
    assert r.lower[0] == float(f"{lo[12_345]:.16f}") and r.upper[0] > r.lower[0]
    (a, b) = r.disjuncts
    assert a.C.tolist() == [[1.0]] and a.d[0] == float(f"{12_345 * 1e-5:.16f}")
    assert b.C.tolist() == [[-1.0]] and b.d[0] == -float(f"{12_345 * 2e-5:.16f}")
    assert a.C.base is not None and a.C.base is b.C.base  # views of one array, not 120,000
    assert took < 30  # generous: about 1 s on a loaded 2-core machine


def test_too_many_cases_same_error_both_paths(monkeypatch):
    body = "".join(f"(assert (or (<= Y_0 {i}) (<= Y_1 {i})))\n" for i in range(20))
    text = decls(1, 2) + "(assert (>= X_0 0))(assert (<= X_0 1))\n" + body
    a = both(text, monkeypatch)
    assert a[0] == TooManyCasesError.__name__ and "1048576 disjunctive cases" in a[1]
    assert issubclass(TooManyCasesError, UnsupportedError)  # the 'error' verdict, as before


def test_too_many_cases_in_one_or(no_fallback, monkeypatch):
    monkeypatch.setattr(v1, "BULK_MIN_CHARS", 0)
    big_or = "(assert (or " + " ".join(f"(<= Y_0 {i})" for i in range(MAX_TERMS + 1)) + "))"
    text = decls(1, 1) + "(assert (>= X_0 0))(assert (<= X_0 1))\n" + big_or
    with pytest.raises(TooManyCasesError, match=r"1000001 disjunctive cases \(at line 4, column 9"):
        parse_spec_text(text)  # raised by the bulk path itself, at the plain path's position


def test_error_in_a_big_file_points_into_it(monkeypatch):
    text = _cardinality_like(50, 20) + "(assert (<= Y_0 Y_7))\n"
    with pytest.raises(SpecError, match="undeclared variable Y_7") as exc:
        parse_spec_text(text, "big.vnnlib")
    assert exc.value.line == text.count("\n") and exc.value.column == 17
