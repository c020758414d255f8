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
* ``(BULK, start, stop)``  the simple atoms ``start:stop`` of a large 1.0 file, held in numpy
  arrays (:class:`planecut.vnnlib.scan.Atoms`, passed to :func:`assemble_spec` as ``bulk``)
  rather than as one tuple each
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from planecut.errors import MismatchError, SpecError, UnsupportedError
from planecut.files import gunzip_if_compressed
from planecut.vnnlib.spec import Disjunct, InputRegion, Spec, TensorDecl

if TYPE_CHECKING:
    from planecut.vnnlib.scan import Atoms

__all__ = [
    "parse_spec", "parse_spec_text", "detect_version", "check_dimensions", "assemble_spec",
    "dnf_and", "dnf_or", "MAX_TERMS", "LOWER", "UPPER", "ROW", "FALSE", "BULK",
    "TooManyCasesError",
]

LOWER, UPPER, ROW, FALSE, BULK = 0, 1, 2, 3, 4
Atom = tuple
Term = list  # list[Atom]: a conjunction
Dnf = list  # list[Term]: a disjunction of conjunctions
Where = Union[str, Callable[[], str]]  # where a formula is, for error messages

#: Largest number of DNF terms a query may expand to before we refuse it (memory/time guard).
#: VNN-COMP 2023's nn4sys ``lindex_60000`` has 120,000; ten times that still parses in seconds.
MAX_TERMS = 1_000_000


class TooManyCasesError(UnsupportedError):
    """A query expanding to more than ``MAX_TERMS`` disjunctive cases."""

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
    if not text or text.isspace():  # (not text.strip(): that copies the text)
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
    if "vnnlib-version" not in text and "declare-network" not in text:
        return "1.0"  # plain substring search: the regex costs 10 ms per MB
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
    if len(multi) == 1 and not common and len(multi[0]) <= cap:
        return list(multi[0])  # (a single disjunction: its terms as they are)
    size = 1
    for p in multi:
        size *= len(p)
        if size > cap:
            raise _too_many(size, cap, where)
    terms: Dnf = [common] if common else [[]]
    for p in multi:
        terms = [t + u for t in terms for u in p]
    return terms


def _too_many(n: int, cap: int, where: Where) -> TooManyCasesError:
    if callable(where):  # position text is computed lazily: only errors pay for it
        where = where()
    at = f" ({where})" if where else ""
    return TooManyCasesError(f"the spec expands to {n} disjunctive cases{at}, more than the "
                            f"limit of {cap}; split the query into several files")


# --------------------------------------------------------------------------------------------
# atoms -> Spec

def assemble_spec(common: Term, terms: Dnf, num_inputs: int, num_outputs: int, *,
                  version: str, path: str | None, inputs: tuple[TensorDecl, ...],
                  outputs: tuple[TensorDecl, ...],
                  unbounded: Callable[[int, bool], SpecError], bulk: Atoms | None = None
                  ) -> Spec:
    """Build the :class:`Spec` for ``common AND (term_1 OR term_2 ...)``.

    ``common`` holds the atoms every term shares (top-level asserts); each term is intersected
    with them. Terms whose box is empty or which contain a FALSE atom are dropped; terms with
    identical boxes become one :class:`InputRegion` (first-appearance order). ``unbounded(i,
    upper)`` builds the error for an input left without a lower/upper bound. ``bulk`` holds
    the atoms that BULK atoms refer to.

    One Python step is taken per atom tuple and per term; the atoms of BULK ranges are handled
    with numpy, a batch of terms at a time, so a 4,000-term file of 2.5 million atoms or a
    120,000-term file is assembled in a fraction of a second. All output rows live in one
    ``C``/``d`` pair, and each disjunct's arrays are views of it (the boxes likewise).
    """
    g_lo = np.full(num_inputs, -np.inf)
    g_hi = np.full(num_inputs, np.inf)
    g_rows: list[Atom] = []
    g_bulk: list[tuple[int, int]] = []
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
        elif tag == BULK:
            g_bulk.append((a[1], a[2]))
            g_rows.extend(_bulk_rows(bulk, a[1], a[2]))
        else:  # FALSE at top level: the counterexample region is empty
            terms = []
    if g_bulk:
        idx = _ranges(np.array(g_bulk, dtype=np.int64))
        x = idx[~bulk.is_y[idx]]
        up = bulk.upper[x]
        np.minimum.at(g_hi, bulk.var[x[up]], bulk.val[x[up]])
        np.maximum.at(g_lo, bulk.var[x[~up]], bulk.val[x[~up]])

    # one pass over the terms: BULK ranges and ROW tuples as items (term, start, stop; stop -1
    # for the ROW tuple number ``start``), input-bound tuples as columns
    items: list[tuple[int, int, int]] = []
    row_atoms: list[Atom] = []
    xt: list[int] = []
    xs: list[Atom] = []
    dead: list[int] = []
    for t, term in enumerate(terms):
        for a in term:
            tag = a[0]
            if tag == BULK:
                items.append((t, a[1], a[2]))
            elif tag == ROW:
                items.append((t, len(row_atoms), -1))
                row_atoms.append(a)
            elif tag == FALSE:
                dead.append(t)
            else:
                xt.append(t)
                xs.append(a)
    item_arr = np.array(items, dtype=np.int64).reshape(-1, 3)
    x_arr = (np.array(xt, dtype=np.int64), np.array([a[1] for a in xs], dtype=np.int64),
             np.array([a[2] for a in xs], dtype=np.float64),
             np.array([a[0] == UPPER for a in xs], dtype=bool))
    live, region, lower, upper = _term_boxes(len(terms), g_lo, g_hi, item_arr, x_arr, dead,
                                             bulk)
    if np.any(g_lo > g_hi) or not live.size:
        return Spec(regions=(), num_inputs=num_inputs, num_outputs=num_outputs,
                    version=version, path=path, inputs=inputs, outputs=outputs)
    bad = ~(np.isfinite(lower).all(axis=1) & np.isfinite(upper).all(axis=1))
    if bad.any():
        r = int(np.argmax(bad))
        _check_bounded(lower[r], upper[r], unbounded)

    C, d, bounds = _term_rows(len(terms), live, item_arr, row_atoms, g_rows, num_outputs, bulk)
    k = bounds[1] - bounds[0]
    if k * live.size == bounds[-1]:  # as many rows in every term: iterate over a reshape
        disjuncts = [Disjunct(C=c, d=v) for c, v in zip(C.reshape(live.size, k, num_outputs),
                                                        d.reshape(live.size, k))]
    else:
        disjuncts = [Disjunct(C=C[a:b], d=d[a:b]) for a, b in zip(bounds, bounds[1:])]
    members: list[list[Disjunct]] = [[] for _ in range(lower.shape[0])]
    for dj, r in zip(disjuncts, region.tolist()):
        members[r].append(dj)
    regions = tuple(InputRegion(lower=lo, upper=hi, disjuncts=tuple(m))
                    for lo, hi, m in zip(lower, upper, members))
    return Spec(regions=regions, num_inputs=num_inputs, num_outputs=num_outputs,
                version=version, path=path, inputs=inputs, outputs=outputs)


# the coordinates where a term's box differs from the global one, as bytes: a dictionary key
# (equal keys <=> equal boxes)
_KEY = np.dtype([("i", np.int64), ("lo", np.float64), ("hi", np.float64)])
_BATCH = 1 << 18  # input atoms per vectorised step (temporaries stay small and are reused)


def _term_boxes(n_terms: int, g_lo: np.ndarray, g_hi: np.ndarray, items: np.ndarray,
                tuples: tuple[np.ndarray, ...], dead: list[int], bulk: Atoms | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The input box of every term: which terms are live (in order), the region of each live
    term (first-appearance numbering of distinct boxes), and the regions' ``(R, n)`` lower
    and upper bounds."""
    n = g_lo.size
    tt, ti, tv, tu = tuples  # input-bound tuples, by term
    rng = items[items[:, 2] >= 0]  # BULK ranges, by term
    # batches of whole terms holding about _BATCH atoms each
    size = np.bincount(rng[:, 0], weights=rng[:, 2] - rng[:, 1], minlength=n_terms)
    size += np.bincount(tt, minlength=n_terms)
    cuts = np.searchsorted(np.cumsum(size), np.arange(_BATCH, size.sum(), _BATCH))
    cuts = np.unique(np.concatenate([[0], cuts + 1, [n_terms]])).clip(0, n_terms)
    is_dead = np.zeros(n_terms, dtype=bool)
    is_dead[dead] = True
    groups: dict[bytes, int] = {}
    live: list[int] = []
    region: list[int] = []
    boxes: list[tuple[np.ndarray, np.ndarray]] = []
    w = _KEY.itemsize
    for t0, t1 in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
        if t1 <= t0:
            continue
        a, b = np.searchsorted(tt, [t0, t1])
        t, i, v, up = tt[a:b], ti[a:b], tv[a:b], tu[a:b]
        a, b = np.searchsorted(rng[:, 0], [t0, t1])
        if b > a:
            r = rng[a:b]
            idx = _ranges(r[:, 1:])
            owner = np.repeat(r[:, 0], r[:, 2] - r[:, 1])
            x = ~bulk.is_y[idx]
            idx = idx[x]
            t = np.concatenate([t, owner[x]])
            i = np.concatenate([i, bulk.var[idx]])
            v = np.concatenate([v, bulk.val[idx]])
            up = np.concatenate([up, bulk.upper[idx]])
        # tightest bound per (term, input): sort by term then input (mostly sorted already)
        key = t * n + i
        order = np.argsort(key, kind="stable")
        key, up, v = key[order], up[order], v[order]
        first = np.ones(key.size, dtype=bool)
        first[1:] = key[1:] != key[:-1]
        at = np.flatnonzero(first)
        gt, gi = np.divmod(key[at], max(n, 1))
        lo = np.maximum(np.maximum.reduceat(np.where(up, -np.inf, v), at), g_lo[gi]) \
            if at.size else v[:0]
        hi = np.minimum(np.minimum.reduceat(np.where(up, v, np.inf), at), g_hi[gi]) \
            if at.size else v[:0]
        gone = is_dead[t0:t1].copy()
        gone[gt[lo > hi] - t0] = True
        ch = (lo != g_lo[gi]) | (hi != g_hi[gi])
        gt, gi, lo, hi = gt[ch], gi[ch], lo[ch] + 0.0, hi[ch] + 0.0  # -0.0, 0.0: one bound
        entries = np.empty(gt.size, dtype=_KEY)
        entries["i"], entries["lo"], entries["hi"] = gi, lo, hi
        raw = entries.tobytes()
        bounds = np.searchsorted(gt, np.arange(t0, t1 + 1)).tolist()
        new: list[int] = []
        for k in np.flatnonzero(~gone).tolist():
            key_k = raw[bounds[k] * w:bounds[k + 1] * w]
            r_k = groups.get(key_k)
            if r_k is None:
                r_k = groups[key_k] = len(groups)
                new.append(k)
            live.append(t0 + k)
            region.append(r_k)
        if new:  # the boxes of this batch's new regions
            slot = np.full(t1 - t0, -1, dtype=np.int64)
            slot[new] = np.arange(len(new))
            s = slot[gt - t0]
            sel = s >= 0
            lo_rows = np.tile(g_lo + 0.0, (len(new), 1))
            hi_rows = np.tile(g_hi + 0.0, (len(new), 1))
            lo_rows[s[sel], gi[sel]] = lo[sel]
            hi_rows[s[sel], gi[sel]] = hi[sel]
            boxes.append((lo_rows, hi_rows))
    if boxes:
        lower = np.concatenate([b[0] for b in boxes])
        upper = np.concatenate([b[1] for b in boxes])
    else:
        lower = upper = np.zeros((0, n))
    return (np.array(live, dtype=np.int64), np.array(region, dtype=np.int64), lower, upper)


def _term_rows(n_terms: int, live: np.ndarray, items: np.ndarray, row_atoms: list[Atom],
               shared: list[Atom], num_outputs: int, bulk: Atoms | None
               ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``C``, ``d`` of all live terms' rows, and each live term's bounds in them (``k``'s rows
    are ``bounds[k]:bounds[k + 1]``): the shared rows (from ``common``) first, then the term's
    own in atom order."""
    g = len(shared)
    rank = np.full(n_terms, -1, dtype=np.int64)
    rank[live] = np.arange(live.size)
    items = items[rank[items[:, 0]] >= 0]
    term = rank[items[:, 0]]
    is_row = items[:, 2] < 0
    size = np.ones(len(items), dtype=np.int64)
    in_bulk = ~is_row
    if in_bulk.any():  # a BULK range gives a row per output atom in it
        y_at = np.flatnonzero(bulk.is_y)
        first_y = np.searchsorted(y_at, items[in_bulk, 1])
        size[in_bulk] = np.searchsorted(y_at, items[in_bulk, 2]) - first_y
    own = np.bincount(term, weights=size, minlength=live.size).astype(np.int64)
    bounds = np.zeros(live.size + 1, dtype=np.int64)
    np.cumsum(own + g, out=bounds[1:])
    # an item's first row: its term's start + g + the sizes of the term's earlier items
    # (all earlier items' sizes, less those of the earlier terms)
    start = bounds[term] + g + (np.cumsum(size) - size) - (np.cumsum(own) - own)[term]
    C = np.zeros((int(bounds[-1]), num_outputs))
    d = np.zeros(int(bounds[-1]))
    if g:
        Cg, dg = _rows_matrix(shared, num_outputs)
        at = (bounds[:-1, None] + np.arange(g)).ravel()
        C[at] = np.tile(Cg, (live.size, 1))
        d[at] = np.tile(dg, live.size)
    for k, r in zip(items[is_row, 1].tolist(), start[is_row].tolist()):
        _, idx, coef, rhs = row_atoms[k]
        for j, c in zip(idx, coef):
            C[r, j] += c
        d[r] = rhs
    if in_bulk.any():
        counts = size[in_bulk]
        ys = y_at[_ranges(np.stack([first_y, first_y + counts], axis=1))]
        r = _ranges(np.stack([start[in_bulk], start[in_bulk] + counts], axis=1))
        sign = np.where(bulk.upper[ys], 1.0, -1.0)
        C[r, bulk.var[ys]] = sign
        d[r] = sign * bulk.val[ys]
    C += 0.0  # -0.0 -> 0.0: equal specs compare equal bit for bit, whatever the sign trick
    d += 0.0
    return C, d, bounds.tolist()


def _rows_matrix(rows: list[Atom], num_outputs: int) -> tuple[np.ndarray, np.ndarray]:
    C = np.zeros((len(rows), num_outputs))
    d = np.empty(len(rows))
    for r, (_, idx, coef, rhs) in enumerate(rows):
        for k, c in zip(idx, coef):
            C[r, k] += c
        d[r] = rhs
    return C, d


def _bulk_rows(bulk: Atoms, s: int, e: int) -> list[Atom]:
    """The output atoms among the BULK atoms ``s:e`` as ROW tuples."""
    out = []
    for k in (np.flatnonzero(bulk.is_y[s:e]) + s).tolist():
        j, v = int(bulk.var[k]), float(bulk.val[k])
        out.append((ROW, (j,), (1.0,), v) if bulk.upper[k] else (ROW, (j,), (-1.0,), -v))
    return out


def _ranges(se: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(s, e)`` for the rows ``(s, e)`` of ``se``."""
    n = se[:, 1] - se[:, 0]
    total = int(n.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(se[:, 0] - (np.cumsum(n) - n), n)
    return np.arange(total, dtype=np.int64) + shift


def _check_bounded(lo: np.ndarray, hi: np.ndarray,
                   unbounded: Callable[[int, bool], SpecError]) -> None:
    bad_lo = np.flatnonzero(~np.isfinite(lo))
    bad_hi = np.flatnonzero(~np.isfinite(hi))
    if bad_lo.size or bad_hi.size:
        i_lo = int(bad_lo[0]) if bad_lo.size else len(lo)
        i_hi = int(bad_hi[0]) if bad_hi.size else len(hi)
        raise unbounded(min(i_lo, i_hi), i_hi < i_lo)
