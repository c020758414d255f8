"""Entry point of VNN-LIB parsing, and the normal form shared by both versions.

``parse_spec`` reads a file (plain or gzipped), detects the VNN-LIB version from the text and
hands it to :mod:`planecut.vnnlib.v1` (our own fast parser) or :mod:`planecut.vnnlib.v2` (the
official ``vnnlib`` package). Both front ends reduce a query to the same intermediate form, an
*atom* list per DNF term, and :func:`assemble_spec` turns that into a :class:`Spec`; keeping
that step here means 1.0 and 2.0 queries with the same meaning give identical ``Spec`` objects.

Atoms are plain tuples (cheap to build by the ten thousand):

* ``(LOWER, i, v)``  ``x_i >= v``
* ``(UPPER, i, v)``  ``x_i <= v``
* ``(ROW, idx, coef, rhs)``  ``sum_k coef[k] * y[idx[k]] <= rhs``
* ``(FALSE,)``  a constant comparison that never holds (its term is dropped)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Union

import numpy as np

from planecut.errors import MismatchError, SpecError, UnsupportedError
from planecut.files import gunzip_if_compressed
from planecut.vnnlib.spec import Disjunct, InputRegion, Spec, TensorDecl

__all__ = [
    "parse_spec", "parse_spec_text", "detect_version", "check_dimensions", "assemble_spec",
    "dnf_and", "dnf_or", "MAX_TERMS", "LOWER", "UPPER", "ROW", "FALSE",
]

LOWER, UPPER, ROW, FALSE = 0, 1, 2, 3
Atom = tuple
Term = list  # list[Atom]: a conjunction
Dnf = list  # list[Term]: a disjunction of conjunctions
Where = Union[str, Callable[[], str]]  # where a formula is, for error messages

#: Largest number of DNF terms a query may expand to before we refuse it (memory/time guard).
MAX_TERMS = 100_000

_V2_MARKER = re.compile(r"^[^;\n]*\(\s*(vnnlib-version|declare-network)\b", re.MULTILINE)
_VERSION = re.compile(r"\(\s*vnnlib-version\s*<\s*([^>\s]*)\s*>")


# --------------------------------------------------------------------------------------------
# public entry points

def parse_spec(path: Union[str, Path]) -> Spec:
    """Parse a VNN-LIB file (1.0 or 2.0, detected from the text; ``.gz`` accepted)."""
    text = _read_text(Path(path))
    return parse_spec_text(text, str(path))


def parse_spec_text(text: str, path: str | None = None) -> Spec:
    """Parse VNN-LIB source text; ``path`` is only used in error messages and ``Spec.path``."""
    if not text.strip():
        raise SpecError("empty VNN-LIB file", path)
    version = detect_version(text)
    if version == "2.0":
        from planecut.vnnlib.v2 import parse_v2

        return parse_v2(text, path)
    from planecut.vnnlib.v1 import parse_v1

    return parse_v1(text, path)


def detect_version(text: str) -> str:
    """``"2.0"`` if the text has an (uncommented) ``vnnlib-version`` or ``declare-network``
    form, else ``"1.0"`` (VNN-COMP's classic dialect has neither)."""
    m = _V2_MARKER.search(text)
    if m is None:
        return "1.0"
    v = _VERSION.search(text, m.start())
    if v is not None and not v.group(1).startswith("2"):
        raise UnsupportedError(f"VNN-LIB version <{v.group(1)}> is not supported "
                               "(1.0 files have no version header; 2.x files say <2.0>)")
    return "2.0"


def check_dimensions(spec: Spec, num_inputs: int, num_outputs: int) -> None:
    """Raise :class:`MismatchError` unless the model's flat input/output sizes fit the spec."""
    for what, have, want, decls in (("input", spec.num_inputs, num_inputs, spec.inputs),
                                    ("output", spec.num_outputs, num_outputs, spec.outputs)):
        if have == want:
            continue
        if spec.version == "1.0" or not decls:
            var = "X" if what == "input" else "Y"
            raise MismatchError(f"spec declares {have} {what}s ({var}_0..{var}_{have - 1}) "
                                f"but the model has {want}")
        shown = ", ".join(f"{d.name} {d.dtype} [{','.join(map(str, d.shape))}]" for d in decls)
        raise MismatchError(f"spec declares {what} {shown} ({have} values) "
                            f"but the model has {want} {what}s")


# --------------------------------------------------------------------------------------------
# reading

def _read_text(path: Path) -> str:
    if not path.exists():
        raise SpecError("file not found", str(path))
    if path.is_dir():
        raise SpecError("is a directory, not a VNN-LIB file", str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:  # permission denied, ...
        raise SpecError(f"cannot read file: {exc}", str(path)) from None
    # gzipped whatever the name (gzip magic); errors then point into the decompressed text
    data = gunzip_if_compressed(data, lambda cause: SpecError(cause, str(path)))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SpecError(f"not a text file (invalid UTF-8 byte at offset {exc.start})",
                        str(path), line) from None


# --------------------------------------------------------------------------------------------
# DNF algebra over atom lists

def dnf_or(parts: Sequence[Dnf], cap: int = MAX_TERMS, where: Where = "") -> Dnf:
    """Disjunction: concatenate the children's terms."""
    out: Dnf = []
    for p in parts:
        out.extend(p)
    if len(out) > cap:
        raise _too_many(len(out), cap, where)
    return out


def dnf_and(parts: Sequence[Dnf], cap: int = MAX_TERMS, where: Where = "") -> Dnf:
    """Conjunction: single-term children are merged into one shared term first, so a long
    ``and`` of plain bounds costs O(n), and only real disjunctions are multiplied out."""
    common: Term = []
    multi: list[Dnf] = []
    for p in parts:
        if len(p) == 1:
            common.extend(p[0])
        elif not p:  # a child with no satisfiable term: the conjunction is false
            return []
        else:
            multi.append(p)
    if not multi:
        return [common]
    size = 1
    for p in multi:
        size *= len(p)
        if size > cap:
            raise _too_many(size, cap, where)
    terms: Dnf = [common] if common else [[]]
    for p in multi:
        terms = [t + u for t in terms for u in p]
    return terms


def _too_many(n: int, cap: int, where: Where) -> UnsupportedError:
    if callable(where):  # position text is computed lazily: only errors pay for it
        where = where()
    at = f" ({where})" if where else ""
    return UnsupportedError(f"the spec expands to {n} disjunctive cases{at}, more than the "
                            f"limit of {cap}; split the query into several files")


# --------------------------------------------------------------------------------------------
# atoms -> Spec

def assemble_spec(common: Term, terms: Dnf, num_inputs: int, num_outputs: int, *,
                  version: str, path: str | None, inputs: tuple[TensorDecl, ...],
                  outputs: tuple[TensorDecl, ...],
                  unbounded: Callable[[int, bool], SpecError]) -> Spec:
    """Build the :class:`Spec` for ``common AND (term_1 OR term_2 ...)``.

    ``common`` holds the atoms every term shares (top-level asserts); each term is intersected
    with them. Terms whose box is empty or which contain a FALSE atom are dropped; terms with
    identical boxes become one :class:`InputRegion` (first-appearance order). ``unbounded(i,
    upper)`` builds the error for an input left without a lower/upper bound.
    """
    g_lo = np.full(num_inputs, -np.inf)
    g_hi = np.full(num_inputs, np.inf)
    g_rows: list[Atom] = []
    for a in common:
        tag = a[0]
        if tag == UPPER:
            if a[2] < g_hi[a[1]]:
                g_hi[a[1]] = a[2]
        elif tag == LOWER:
            if a[2] > g_lo[a[1]]:
                g_lo[a[1]] = a[2]
        elif tag == ROW:
            g_rows.append(a)
        else:  # FALSE at top level: the counterexample region is empty
            terms = []
    glo, ghi = g_lo.tolist(), g_hi.tolist()

    groups: dict[tuple, tuple[dict[int, list[float]], list[list[Atom]]]] = {}
    for term in terms:
        changed: dict[int, list[float]] = {}
        rows: list[Atom] = []
        dead = False
        for a in term:
            tag = a[0]
            if tag == ROW:
                rows.append(a)
                continue
            if tag == FALSE:
                dead = True
                break
            i, v = a[1], a[2]
            b = changed.get(i)
            if b is None:
                b = changed[i] = [glo[i], ghi[i]]
            if tag == UPPER:
                if v < b[1]:
                    b[1] = v
            elif v > b[0]:
                b[0] = v
        if dead or any(lo > hi for lo, hi in changed.values()):
            continue
        key = tuple(sorted((i, b[0], b[1]) for i, b in changed.items()
                           if b[0] != glo[i] or b[1] != ghi[i]))
        group = groups.get(key)
        if group is None:
            groups[key] = group = (changed, [])
        group[1].append(rows)

    if np.any(g_lo > g_hi):
        groups = {}
    regions = []
    for key, (_, row_lists) in groups.items():
        lo, hi = g_lo.copy(), g_hi.copy()
        for i, a, b in key:
            lo[i], hi[i] = a, b
        lo += 0.0  # -0.0 -> 0.0: equal specs compare equal bit for bit, whatever the sign trick
        hi += 0.0
        _check_bounded(lo, hi, unbounded)
        disjuncts = tuple(_disjunct(g_rows + rows, num_outputs) for rows in row_lists)
        regions.append(InputRegion(lower=lo, upper=hi, disjuncts=disjuncts))
    return Spec(regions=tuple(regions), num_inputs=num_inputs, num_outputs=num_outputs,
                version=version, path=path, inputs=inputs, outputs=outputs)


def _check_bounded(lo: np.ndarray, hi: np.ndarray,
                   unbounded: Callable[[int, bool], SpecError]) -> None:
    bad_lo = np.flatnonzero(~np.isfinite(lo))
    bad_hi = np.flatnonzero(~np.isfinite(hi))
    if bad_lo.size or bad_hi.size:
        i_lo = int(bad_lo[0]) if bad_lo.size else len(lo)
        i_hi = int(bad_hi[0]) if bad_hi.size else len(hi)
        raise unbounded(min(i_lo, i_hi), i_hi < i_lo)


def _disjunct(rows: list[Atom], num_outputs: int) -> Disjunct:
    C = np.zeros((len(rows), num_outputs))
    d = np.empty(len(rows))
    for r, (_, idx, coef, rhs) in enumerate(rows):
        for k, c in zip(idx, coef):
            C[r, k] += c
        d[r] = rhs
    return Disjunct(C=C + 0.0, d=d + 0.0)
