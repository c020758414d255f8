"""Vectorised scanning of large VNN-LIB 1.0 texts (the fast path of :mod:`planecut.vnnlib.v1`).

The VNN-COMP 2023 ``nn4sys`` files are up to 38 MB of ``(and (>= X_0 0.0) (<= X_0 0.0) ...)``:
millions of *simple atoms* ``(op V NUM)`` with ``op`` one of ``<= >= < >``, ``V`` a variable
``X_i``/``Y_j`` and ``NUM`` a numeral. Turning each of them into Python strings and tuples
costs seconds, so this module works on the text's bytes with numpy instead:

1. tokenise exactly as :data:`planecut.vnnlib.v1._TOKEN` does (parentheses, maximal runs of
   other non-space characters, ``;`` comments to the end of the line);
2. find the simple atoms (five tokens ``( op V NUM )``), parse their variables and numbers in
   bulk, and collapse each maximal *run* of consecutive atoms into one :data:`RUN` token;
3. hand the remaining *skeleton* tokens (a few thousand for those files) to the ordinary
   recursive parser, which treats a run as that many formulas in a row.

Only what is certainly a simple atom is collapsed, and numbers are converted bit for bit like
``float()`` (Clinger's exact fast path, ``float()`` itself otherwise), so the parse gives the
same :class:`~planecut.vnnlib.spec.Spec`; whether each atom's variable is declared before use
is checked afterwards by the parser, which redoes the whole parse token by token whenever
something is off (so error messages come from the plain path, or match it).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

__all__ = ["NUMERAL", "RUN", "Atoms", "Scan", "scan"]

#: Skeleton token standing for a run of simple atoms (texts holding NUL are never scanned).
RUN = "\x00"

# byte classes: 0 white space (what ``\s`` matches, as the token regex), 1 '(', 2 ')',
# 3 other token characters, 4 ';'
_CLASS = np.full(256, 3, dtype=np.uint8)
_CLASS[[c for c in range(128) if re.match(r"\s", chr(c))]] = 0
_CLASS[ord("(")], _CLASS[ord(")")], _CLASS[ord(";")] = 1, 2, 4

# numeral automaton, ``[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?`` (NUMERAL), by columns.
# character classes: 0 digit, 1 sign, 2 '.', 3 'e'/'E', 4 other
_NUM_CLASS = np.full(256, 4, dtype=np.uint8)
_NUM_CLASS[ord("0"):ord("9") + 1] = 0
_NUM_CLASS[[ord("+"), ord("-")]] = 1
_NUM_CLASS[ord(".")] = 2
_NUM_CLASS[[ord("e"), ord("E")]] = 3
# states: 0 start, 1 sign, 2 integer digits, 3 '.' after digits, 4 '.' first, 5 fraction
# digits, 6 'e', 7 exponent sign, 8 exponent digits, 9 dead; accepting: 2, 3, 5, 8
_DEAD = 9
_NUM_NEXT = np.full((10, 5), _DEAD, dtype=np.uint8)
for _state, _moves in {0: {0: 2, 1: 1, 2: 4}, 1: {0: 2, 2: 4}, 2: {0: 2, 2: 3, 3: 6},
                       3: {0: 5, 3: 6}, 4: {0: 5}, 5: {0: 5, 3: 6}, 6: {0: 8, 1: 7},
                       7: {0: 8}, 8: {0: 8}}.items():
    for _cls, _next in _moves.items():
        _NUM_NEXT[_state, _cls] = _next
_NUM_ACCEPT = np.zeros(10, dtype=bool)
_NUM_ACCEPT[[2, 3, 5, 8]] = True
_NUM_MAX_LEN = 32  # longer numerals: validated and converted one by one
_POW10 = np.array([10.0 ** k for k in range(23)])  # exact: 10**22 < 2**53 * 2**22
_EXACT = 2 ** 53  # integers below are exact doubles
_NAME_MAX_LEN = 11  # X_ + at most 9 digits
#: A VNN-LIB 1.0 numeral (decimal or scientific, signed), as a whole token.
NUMERAL = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\Z")


class Atoms(NamedTuple):
    """The simple atoms of a text, in text order: ``var`` of ``Y_j`` if ``is_y`` else of
    ``X_i``; ``upper`` for ``<=``/``<`` (else ``>=``/``>``); ``val`` the constant."""

    is_y: np.ndarray  # bool
    var: np.ndarray  # int64
    upper: np.ndarray  # bool
    val: np.ndarray  # float64


class Scan(NamedTuple):
    """A text as skeleton tokens plus atoms. ``toks[run_tok[r]]`` is :data:`RUN` for the
    atoms ``run_start[r] : run_start[r] + run_len[r]``, whose largest ``X``/``Y`` indices are
    ``run_max_x[r]``/``run_max_y[r]`` (-1: none); ``offsets[k]`` is where ``toks[k]`` starts
    in the text."""

    toks: list[str]
    offsets: np.ndarray
    run_tok: np.ndarray
    run_start: np.ndarray
    run_len: np.ndarray
    run_max_x: np.ndarray
    run_max_y: np.ndarray
    atoms: Atoms


def scan(text: str) -> Scan | None:
    """Tokenise ``text`` with its simple atoms collapsed, or None when it is not plain ASCII
    (character and byte offsets must agree) or holds a NUL character."""
    if not text.isascii() or RUN in text:
        return None
    cap = len(text) // 9 + 1  # an atom takes at least 9 characters: (< X_0 1)
    atoms = Atoms(np.empty(cap, dtype=bool), np.empty(cap, dtype=np.int64),
                  np.empty(cap, dtype=bool), np.empty(cap))
    toks: list[str] = []
    offsets: list[np.ndarray] = []
    run_tok: list[np.ndarray] = []
    run_start: list[np.ndarray] = []
    per_run: tuple[list[np.ndarray], ...] = ([], [], [])  # run_len, run_max_x, run_max_y
    n_atoms = 0
    open_run = False  # the previous chunk ended with an atom (a run may go on)
    for s0, s1 in _chunks(text):
        c = _scan_chunk(text, s0, s1)
        if c.empty:  # white space only: a run may go on across it
            continue
        k0 = 0
        if open_run and c.lead:  # the first run continues the last one
            last = next(k for k in range(len(run_start) - 1, -1, -1) if run_start[k].size)
            length, max_x, max_y = (p[last] for p in per_run)
            length[-1] += c.run_len[0]
            max_x[-1] = max(max_x[-1], c.run_max_x[0])
            max_y[-1] = max(max_y[-1], c.run_max_y[0])
            k0 = 1
        m = c.is_y.size
        for dst, src in zip(atoms, (c.is_y, c.var, c.upper, c.val)):
            dst[n_atoms:n_atoms + m] = src
        run_tok.append(c.run_tok[k0:] + (len(toks) - k0))
        run_start.append(c.run_start[k0:] + n_atoms)
        for p, q in zip(per_run, (c.run_len, c.run_max_x, c.run_max_y)):
            p.append(q[k0:])
        offsets.append(c.starts[k0:])
        toks.extend([text[s:e] for s, e in zip(c.starts[k0:].tolist(), c.ends[k0:].tolist())])
        n_atoms += m
        open_run = c.trail

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    run_tok_a = cat(run_tok)
    for k in run_tok_a.tolist():
        toks[k] = RUN
    return Scan(toks, cat(offsets), run_tok_a, cat(run_start), *(cat(p) for p in per_run),
                Atoms(*(x[:n_atoms] for x in atoms)))


_CHUNK = 1 << 20  # characters scanned at a time: temporaries stay small and are reused


def _chunks(text: str):
    """``(start, stop)`` pieces of about ``_CHUNK`` characters, each cut just after a newline
    (or, in a text without comments, after any white space) so that no token or comment
    spans two pieces; an atom that does is simply left to the ordinary parser."""
    n = len(text)
    cut_at = "\n" if ";" in text else None
    s0 = 0
    while s0 < n:
        s1 = s0 + _CHUNK
        if s1 >= n:
            s1 = n
        else:
            k = text.find("\n", s1, s1 + _CHUNK)
            if k < 0 and cut_at is None:
                m = _SPACE.search(text, s1)
                k = m.start() if m else -1
            s1 = n if k < 0 else k + 1
        yield s0, s1
        s0 = s1


_SPACE = re.compile(r"\s")


class _Chunk(NamedTuple):
    starts: np.ndarray  # text offsets of the kept (skeleton) tokens
    ends: np.ndarray
    run_tok: np.ndarray  # index among the kept tokens of each run's token
    run_start: np.ndarray  # first atom of each run (chunk-local)
    run_len: np.ndarray
    run_max_x: np.ndarray
    run_max_y: np.ndarray
    empty: bool  # the chunk has no token
    lead: bool  # the chunk starts with an atom
    trail: bool  # the chunk ends with an atom
    is_y: np.ndarray
    var: np.ndarray
    upper: np.ndarray
    val: np.ndarray


def _scan_chunk(text: str, s0: int, s1: int) -> _Chunk:
    piece = text[s0:s1]
    a = np.frombuffer(piece.encode("ascii"), dtype=np.uint8)
    cls = _CLASS[a]
    if ";" in piece:
        _blank_comments(a, cls)
    starts, ends = _tokens(cls)
    n = starts.size
    first = a[starts]
    lens = ends - starts

    # candidates: ( [<>]... [XY]... any )   -- the five tokens of a simple atom
    c = np.zeros(0, dtype=np.int64)
    if n >= 5:
        op_first = first[1:-3]
        name_first = first[2:-2]
        c = np.flatnonzero((first[:-4] == 40) & (first[4:] == 41)
                           & ((op_first == 60) | (op_first == 62))
                           & ((name_first == 88) | (name_first == 89)))
    ok_op, upper = _ops(a, starts[c + 1], lens[c + 1])
    ok_name, var = _names(a, starts[c + 2], lens[c + 2])
    keep = ok_op & ok_name
    ok_num, val = _numbers(piece, a, starts[c + 3][keep], lens[c + 3][keep])
    sel = np.flatnonzero(keep)[ok_num]
    at = c[sel]  # token index of each atom's '('

    # runs of consecutive atoms, and the skeleton without the runs' tokens
    new_run = np.ones(at.size, dtype=bool)
    new_run[1:] = at[1:] != at[:-1] + 5
    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.append(run_start, at.size))
    kept = np.ones(n, dtype=bool)
    for k in range(1, 5):
        kept[at + k] = False
    kept[at[~new_run]] = False
    kept_idx = np.flatnonzero(kept)
    is_y, var = first[at + 2] == 89, var[sel]
    max_x = max_y = run_len
    if at.size:
        max_x = np.maximum.reduceat(np.where(is_y, -1, var), run_start)
        max_y = np.maximum.reduceat(np.where(is_y, var, -1), run_start)
    return _Chunk(starts[kept_idx] + s0, ends[kept_idx] + s0,
                  np.searchsorted(kept_idx, at[run_start]), run_start, run_len, max_x, max_y,
                  n == 0, bool(at.size and at[0] == 0), bool(at.size and at[-1] == n - 5),
                  is_y, var, upper[sel], val[ok_num])


def _blank_comments(a: np.ndarray, cls: np.ndarray) -> None:
    """Class every comment character as white space: each ``;`` to the next newline (a ``;``
    is never inside a token, so every one outside a comment starts one)."""
    semis = np.flatnonzero(a == 59)
    newlines = np.flatnonzero(a == 10)
    k = np.searchsorted(newlines, semis)
    stops = np.append(newlines, a.size)[k]  # the next newline, or the end
    stops, first = np.unique(stops, return_index=True)  # one comment per line: its first ';'
    for s, e in zip(semis[first].tolist(), stops.tolist()):
        cls[s:e] = 0


def _tokens(cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of every token (a parenthesis or a run of class-3 bytes)."""
    word = cls == 3
    paren = (cls - np.uint8(1)) <= 1  # classes 1 and 2 (0 wraps round)
    edge = np.empty(word.size + 2, dtype=bool)
    edge[0] = edge[-1] = False
    edge[1:-1] = word
    begins = word & ~edge[:-2]
    stops = word & ~edge[2:]
    return np.flatnonzero(begins | paren), np.flatnonzero(stops | paren) + 1


def _ops(a: np.ndarray, s: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which tokens (all starting with < or >) are ``< > <= >=``, and which of them ``<``."""
    second = a[np.minimum(s + 1, a.size - 1)]
    ok = (n == 1) | ((n == 2) & (second == 61))
    return ok, a[s] == 60


def _names(a: np.ndarray, s: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which tokens (all starting with X or Y) are ``X_<i>`` in canonical decimal (no leading
    zero, at most 9 digits), and the index ``i``."""
    ok = np.zeros(s.size, dtype=bool)
    idx = np.zeros(s.size, dtype=np.int64)
    for length in range(3, _NAME_MAX_LEN + 1):
        rows = np.flatnonzero(n == length)
        if not rows.size:
            continue
        p = s[rows]
        good = a[p + 1] == 95  # '_'
        if length > 3:
            good &= a[p + 2] != 48  # no leading zero
        value = np.zeros(rows.size, dtype=np.int64)
        for j in range(2, length):
            d = a[p + j].astype(np.int64) - 48
            good &= (d >= 0) & (d <= 9)
            value = value * 10 + d
        ok[rows], idx[rows] = good, value
    return ok, idx


def _numbers(text: str, a: np.ndarray, s: np.ndarray, n: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Which tokens are numerals, and their values exactly as ``float(token)`` gives them."""
    ok = np.zeros(s.size, dtype=bool)
    val = np.zeros(s.size)
    slow: list[int] = []
    for length in np.flatnonzero(np.bincount(n)).tolist():
        rows = np.flatnonzero(n == length)
        if length > _NUM_MAX_LEN:
            slow.extend(rows.tolist())
            continue
        chars = a[s[rows] + np.arange(length)[:, None]]  # (length, rows): columns contiguous
        cls = _NUM_CLASS[chars]
        # the usual shape, [-+]? digits with at most one '.': a column at a time
        bad = cls[0] >= 3
        seen_dot = cls[0] == 2
        digit = cls[0] == 0
        any_digit = digit.copy()
        n_digits = digit.astype(np.int64)
        mant = np.where(digit, chars[0] - np.uint8(48), 0).astype(np.int64)
        frac = np.zeros(rows.size, dtype=np.int64)
        for j in range(1, length):
            c = cls[j]
            digit = c == 0
            dot = c == 2
            bad |= (c | 2) != 2  # neither digit nor '.'
            bad |= dot & seen_dot
            seen_dot |= dot
            any_digit |= digit
            frac += digit & seen_dot
            n_digits += digit
            # (chars - 48 wraps round off digits, where it is not used)
            mant = np.where(digit, mant * 10 + (chars[j] - np.uint8(48)), mant)
        good = ~bad & any_digit
        # exact: one correctly rounded division of exact doubles (up to 18 digits: no overflow)
        fast = good & (n_digits <= 18) & (mant < _EXACT) & (frac <= 22)
        v = mant / _POW10[np.minimum(frac, 22)]
        other = np.flatnonzero(~good)
        if other.size:  # signs inside, exponents, junk: the full automaton
            g, f, w = _numerals(chars[:, other].T, cls[:, other].T)
            good[other], fast[other], v[other] = g, f, w
        ok[rows], val[rows] = good, np.where(chars[0] == 45, -v, v)
        slow.extend(rows[good & ~fast].tolist())
    if slow:
        for r, start, size in zip(slow, s[slow].tolist(), n[slow].tolist()):
            tok = text[start:start + size]
            if NUMERAL.match(tok):
                ok[r], val[r] = True, float(tok)
    return ok, val


def _numerals(chars: np.ndarray, cls: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The numeral automaton over the columns of ``chars`` (rows of one length): which rows
    are numerals, which of those are exact by Clinger's fast path, and their magnitudes."""
    m = chars.shape[0]
    state = np.zeros(m, dtype=np.uint8)
    mant = np.zeros(m, dtype=np.int64)
    frac = np.zeros(m, dtype=np.int64)
    expo = np.zeros(m, dtype=np.int64)
    eneg = np.zeros(m, dtype=bool)
    for j in range(chars.shape[1]):
        ch, cc = chars[:, j], cls[:, j]
        digit = cc == 0
        d = ch.astype(np.int64) - 48
        in_mant = digit & (state <= 5)
        mant = np.where(in_mant, np.minimum(mant, _EXACT) * 10 + d, mant)
        frac += in_mant & (state >= 3)
        expo = np.where(digit & (state >= 6), np.minimum(expo, 10 ** 6) * 10 + d, expo)
        eneg |= (ch == 45) & (state == 6)
        state = _NUM_NEXT[state, cc]
    good = _NUM_ACCEPT[state]
    k = np.where(eneg, -expo, expo) - frac
    fast = good & (mant < _EXACT) & (np.abs(k) <= 22)
    scale = _POW10[np.minimum(np.abs(k), 22)]
    return good, fast, np.where(k >= 0, mant * scale, mant / scale)
