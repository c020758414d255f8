"""Every rejected spec says what is wrong and where (1-based line and column)."""

from __future__ import annotations

import pytest

from planecut.errors import PlanecutError, SpecError, UnsupportedError
from planecut.vnnlib.parse import parse_spec_text

D = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
BOX = "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n"  # lines 3-4 after D

# (name, text, line, column, message fragment)
SPEC_ERRORS = [
    ("undeclared variable", D + "(assert (<= X_1 1.0))", 3, 13, "undeclared variable X_1"),
    ("undeclared output", D + BOX + "(assert (or (<= Y_0 0) (<= Y_3 0)))", 5, 28,
     "undeclared variable Y_3"),
    ("bad variable name", "(declare-const X_0 Real)\n  (declare-const Z_0 Real)", 2, 18,
     "X_<i> (inputs) or Y_<i> (outputs), found 'Z_0'"),
    ("bad name used in assert", D + "(assert (<= foo 1))", 3, 13,
     "expected a number or a declared X_i/Y_i variable, found 'foo'"),
    ("type not Real", "(declare-const X_0 Int)", 1, 20, "X_0 must be declared Real, found 'Int'"),
    ("declare missing type", "(declare-const X_0)", 1, 19, "must be declared Real, found ')'"),
    ("declared twice", D + "(declare-const X_0 Real)", 3, 16,
     "X_0 is declared twice (first at line 1, column 16)"),
    ("unknown operator", D + BOX + "(assert (or (foo Y_0 1)))", 5, 14,
     "unknown operator 'foo'"),
    ("unknown arithmetic operator", D + BOX + "(assert (<= (max Y_0 1) 2))", 5, 14,
     "unknown arithmetic operator 'max'"),
    ("unknown command", D + "(define-fun f () Real 1.0)", 3, 2, "unknown command 'define-fun'"),
    ("unclosed paren", D + "(assert (<= X_0 1.0)\n(assert (>= X_0 0.0))", 3, 1,
     "unbalanced parentheses: this '(' is never closed"),
    ("unclosed at end", D + BOX + "(assert (or (<= Y_0 0)\n", 5, 1, "never closed"),
    ("unexpected close", D + "(assert (<= X_0 1.0)))", 3, 22, "unexpected ')'"),
    ("non-numeric", D + "(assert (<= X_0 1.0.0))", 3, 17,
     "expected a number or a declared X_i/Y_i variable, found '1.0.0'"),
    ("nan is not a number", D + "(assert (<= X_0 nan))", 3, 17, "found 'nan'"),
    ("missing operand", D + BOX + "(assert (<= Y_0))", 5, 10, "'<=' needs at least two operands"),
    ("non-linear", D + BOX + "(assert (<= (* Y_0 (+ Y_0 1)) 1))", 5, 14,
     "non-linear term: product of Y_0 and Y_0"),
    ("division by variable", D + BOX + "(assert (<= (/ 1 Y_0) 1))", 5, 18,
     "non-linear term: division"),
    ("two formulas in assert", D + "(assert (<= X_0 1) (>= X_0 0))", 3, 20,
     "expected ')' to close (assert ...)"),
    ("formula expected", D + "(assert X_0)", 3, 9, "expected a formula"),
    ("no upper bound", "(declare-const X_0 Real)\n(declare-const X_1 Real)\n"
     "(declare-const Y_0 Real)\n(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))", 2, 16,
     "X_1 has no upper bound"),
    ("no lower bound in one region", D + "(assert (or (and (>= X_0 0) (<= X_0 1))"
     " (<= X_0 5)))", 1, 16, "X_0 has no lower bound"),
    ("gap in inputs",
     "(declare-const X_0 Real)\n(declare-const X_2 Real)\n(declare-const Y_0 Real)", 2, 16,
     "X_2 is declared but X_1 is not"),
]


@pytest.mark.parametrize("name, text, line, column, fragment", SPEC_ERRORS,
                         ids=[c[0] for c in SPEC_ERRORS])
def test_spec_error_position(name, text, line, column, fragment):
    with pytest.raises(SpecError) as exc:
        parse_spec_text(text, "bad.vnnlib")
    e = exc.value
    assert fragment in e.message
    assert (e.path, e.line, e.column) == ("bad.vnnlib", line, column)
    assert str(e).startswith(f"bad.vnnlib:{line}:{column}: ")
    assert "\n" not in str(e)


@pytest.mark.parametrize("text, fragment", [
    (D, "no assert"),
    ("(declare-const Y_0 Real)\n(assert (<= Y_0 1))", "no input variables declared"),
    ("(declare-const X_0 Real)\n(assert (<= X_0 1))", "no output variables declared"),
    ("   ", "empty"),
])
def test_spec_error_without_position(text, fragment):
    with pytest.raises(SpecError, match=fragment) as exc:
        parse_spec_text(text, "bad.vnnlib")
    assert exc.value.line is None


UNSUPPORTED = [
    ("mixed input/output", D + "(assert (<= X_0 Y_0))", "bad.vnnlib:3:13",
     "mixes inputs and outputs (X_0 and Y_0)"),
    ("two inputs in one atom", "(declare-const X_0 Real)\n(declare-const X_1 Real)\n"
     "(declare-const Y_0 Real)\n(assert (<= (+ X_0 X_1) 1))", "bad.vnnlib:4:13",
     "input constraint must bound a single X variable, found X_0, X_1"),
    ("not", D + BOX + "(assert (not (<= Y_0 1)))", "bad.vnnlib:5:10", "operator 'not'"),
    ("implication", D + BOX + "(assert (=> (<= Y_0 1) (<= Y_0 2)))", "bad.vnnlib:5:10",
     "operator '=>'"),
]


@pytest.mark.parametrize("name, text, where, fragment", UNSUPPORTED,
                         ids=[c[0] for c in UNSUPPORTED])
def test_unsupported_names_construct_and_position(name, text, where, fragment):
    with pytest.raises(UnsupportedError) as exc:
        parse_spec_text(text, "bad.vnnlib")
    assert str(exc.value).startswith(where + ": ")
    assert fragment in str(exc.value)


def test_errors_are_planecut_errors_with_one_line():
    for _, text, *_ in SPEC_ERRORS + UNSUPPORTED:
        with pytest.raises(PlanecutError) as exc:
            parse_spec_text(text)
        assert "\n" not in str(exc.value)
        assert str(exc.value).startswith("<spec>")


def test_damaged_files_only_raise_planecut_errors():
    """Truncations and single-character deletions of a valid spec either parse or raise a
    PlanecutError: nothing else (IndexError, ValueError, ...) may escape the parser."""
    text = (D + BOX + "; comment (\n(assert (or (and (<= Y_0 -1e-3) (>= (+ Y_0 (* 2 Y_0)) "
            "(- 0.5))) (< Y_0 0)))\n")
    variants = [text[:k] for k in range(len(text))]
    variants += [text[:k] + text[k + 1:] for k in range(len(text))]
    for v in variants:
        try:
            parse_spec_text(v)
        except PlanecutError:
            pass
