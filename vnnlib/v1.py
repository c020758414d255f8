"""Fast parser for VNN-COMP's VNN-LIB 1.0 dialect (an SMT-LIB 2 fragment).

Why our own parser: VNN-COMP files are large (a CIFAR spec is ~6k asserts in 300 KB; the 2023
nn4sys ones up to 38 MB and 2.5 million comparisons) and generic S-expression or SMT
libraries build a full tree and are slow. Here one ``re.findall`` tokenises the file, a
recursive-descent pass turns each ``assert`` straight into DNF atoms (see
:mod:`planecut.vnnlib.parse`), and token offsets are only recomputed when reporting an error,
so the normal path touches each token once.

Texts of ``BULK_MIN_CHARS`` or more are first scanned with numpy (:mod:`planecut.vnnlib.scan`):
every run of simple comparisons ``(op V NUM)`` becomes one :data:`~planecut.vnnlib.scan.RUN`
token whose atoms stay in arrays (``BULK`` atoms), and the same recursive pass reads the few
tokens left. That pass gives up (``_Fallback``) on anything it does not expect of a run, and
every error it meets before its result is known to be exact is re-derived by the plain token
path, so error messages and positions never depend on the path taken.

Supported: ``;`` comments; ``(declare-const X_i Real)`` / ``(declare-const Y_i Real)``;
``(assert F)`` where ``F`` nests ``and``/``or`` and the comparisons ``<= >= < > =`` (chains
allowed) over linear terms built from declared variables, numerals (decimal or scientific,
signed), ``(+ ...)``, ``(- ...)`` (unary or n-ary), ``(* ...)`` with at most one non-constant
factor and ``(/ e c)``; ``true``/``false``; and the no-op commands ``check-sat``, ``get-model``,
``exit``, ``set-logic``, ``set-info``, ``set-option``. Input comparisons must bound a single
``X_i``; output comparisons may combine any ``Y_j`` linearly.
"""

from __future__ import annotations

import re

import numpy as np

from planecut.errors import PlanecutError, SpecError, UnsupportedError
from planecut.vnnlib.parse import (BULK, LOWER, ROW, UPPER, MAX_TERMS, TooManyCasesError,
                                   assemble_spec, dnf_and, dnf_or)
from planecut.vnnlib.scan import NUMERAL, RUN, Scan, scan
from planecut.vnnlib.spec import Spec, TensorDecl

__all__ = ["parse_v1"]

# One token per match; the prefix skips whitespace and comments. The token part cannot fail
# after the greedy prefix (the next character starts a token, or ``\Z`` matches), so the
# prefix never backtracks into a comment. ``\Z`` yields trailing empty tokens, stripped below.
_TOKEN = re.compile(r"(?:\s+|;[^\n]*)*([()]|[^\s();]+|\Z)")
_NUMERAL = NUMERAL
_VARNAME = re.compile(r"([XY])_(\d+)\Z")
_COMPARE = {"<=": 1, "<": 1, ">=": -1, ">": -1, "=": 0}
_NOOP_COMMANDS = {"check-sat", "get-model", "exit", "set-logic", "set-info", "set-option"}
_UNSUPPORTED_BOOL = {"not", "=>", "xor", "ite", "distinct", "let", "forall", "exists"}


#: Texts at least this long go through the vectorised scanner first (shorter ones parse in
#: well under 10 ms either way).
BULK_MIN_CHARS = 1 << 16


def parse_v1(text: str, path: str | None = None) -> Spec:
    """Parse VNN-LIB 1.0 source text into a :class:`Spec` (errors: SpecError/UnsupportedError)."""
    sc = scan(text) if len(text) >= BULK_MIN_CHARS else None
    if sc is not None:
        p = _Parser(text, path, sc)
        try:
            return p.run()
        except _Fallback:
            pass
        except TooManyCasesError:
            if p.atoms_declared():  # nothing the plain pass would have stopped at first
                raise
        except PlanecutError:
            if p.checked:
                raise
    return _Parser(text, path).run()


class _Fallback(Exception):
    """The scanned tokens hold something the bulk path leaves to the plain token path."""


def _show(tok: str) -> str:
    return "end of file" if tok == "" else repr(tok)


class _Parser:
    """One parse of one text. Variables map to int keys: ``X_i -> i``, ``Y_j -> -1 - j``."""

    def __init__(self, text: str, path: str | None, sc: Scan | None = None) -> None:
        self.text, self.path = text, path
        self.scan = sc
        self.runs: dict[int, tuple] | None = None  # RUN token -> (BULK, start, stop)
        self.checked = False  # bulk path: the parse is known to match the plain one
        if sc is None:
            toks = _TOKEN.findall(text)
            while toks and toks[-1] == "":
                toks.pop()
        else:
            toks = sc.toks
            stops = (sc.run_start + sc.run_len).tolist()
            self.runs = {k: (BULK, s, e) for k, s, e in zip(sc.run_tok.tolist(),
                                                            sc.run_start.tolist(), stops)}
        self.ntok = len(toks)
        toks.extend([""] * 8)  # end-of-file sentinels: look-ahead never runs off the list
        self.toks = toks
        self.decls: dict[str, int] = {}
        self.decl_at: dict[int, int] = {}  # key -> token index of its name in declare-const

    # ---------------------------------------------------------------- positions and errors

    def _where(self, k: int) -> tuple[int, int]:
        """1-based (line, column) of token ``k`` (recomputed: only used on error paths)."""
        off = len(self.text)
        if self.scan is not None:
            if k < self.ntok:
                off = int(self.scan.offsets[k])
        elif k < self.ntok:
            for n, m in enumerate(_TOKEN.finditer(self.text)):
                if n == k:
                    off = m.start(1)
                    break
        line = self.text.count("\n", 0, off) + 1
        return line, off - self.text.rfind("\n", 0, off)

    def error(self, k: int, message: str) -> SpecError:
        line, col = self._where(k)
        return SpecError(message, self.path, line, col)

    def unsupported(self, k: int, message: str) -> UnsupportedError:
        line, col = self._where(k)
        return UnsupportedError(f"{self.path or '<spec>'}:{line}:{col}: {message}")

    def _name(self, key: int) -> str:
        return f"X_{key}" if key >= 0 else f"Y_{-1 - key}"

    # ---------------------------------------------------------------- top level

    def run(self) -> Spec:
        toks = self.toks
        self._check_balanced()
        common: list = []
        multi: list = []
        n_asserts = 0
        always_false = False
        decls, numeral = self.decls, _NUMERAL.match
        i = 0
        while i < self.ntok:
            if toks[i] != "(":
                raise self.error(i, f"expected '(' to start a command, found {_show(toks[i])}")
            head = toks[i + 1]
            if head == "assert":
                n_asserts += 1
                if toks[i + 2] == RUN and self.runs is not None:
                    _, s, e = self.runs[i + 2]
                    if e - s != 1 or toks[i + 3] != ")":
                        raise _Fallback  # more than one formula: the plain pass says so
                    if common and common[-1][0] == BULK and common[-1][2] == s:
                        common[-1] = (BULK, common[-1][1], e)  # consecutive top-level bounds
                    else:
                        common.append(self.runs[i + 2])
                    i += 4
                    continue
                # fast path for the bulk of VNN-COMP files: (assert (<=|>= X_i NUMBER))
                if toks[i + 6] == ")" and toks[i + 7] == ")" and toks[i + 2] == "(":
                    sign = _COMPARE.get(toks[i + 3])
                    key = decls.get(toks[i + 4])
                    b = toks[i + 5]
                    if sign and key is not None and key >= 0 and b not in decls and numeral(b):
                        common.append((UPPER if sign == 1 else LOWER, key, float(b)))
                        i += 8
                        continue
                dnf, j = self.boolean(i + 2)
                if toks[j] != ")":
                    raise self.error(j, "expected ')' to close (assert ...), found "
                                        f"{_show(toks[j])} (assert takes one formula)")
                i = j + 1
                if len(dnf) == 1:
                    common.extend(dnf[0])
                elif not dnf:
                    always_false = True
                else:
                    multi.append(dnf)
            elif head == "declare-const":
                i = self.declare(i)
            elif head in _NOOP_COMMANDS:
                i = self._skip(i)
            else:
                raise self.error(i + 1, f"unknown command {_show(head)} (expected declare-const "
                                        "or assert)")
        return self._finish(common, multi, n_asserts, always_false)

    def _check_balanced(self) -> None:
        toks = self.toks
        if toks.count("(") == toks.count(")"):
            return  # misordered parens are caught by the parser itself
        stack: list[int] = []
        for k in range(self.ntok):
            t = toks[k]
            if t == "(":
                stack.append(k)
            elif t == ")":
                if not stack:
                    raise self.error(k, "unbalanced parentheses: unexpected ')'")
                stack.pop()
        k = stack[0]
        raise self.error(k, f"unbalanced parentheses: this '(' is never closed "
                            f"(unexpected end of file, {len(stack)} unclosed)")

    def _skip(self, i: int) -> int:
        depth = 0
        toks = self.toks
        while True:
            t = toks[i]
            i += 1
            if t == "(":
                depth += 1
            elif t == ")":
                depth -= 1
                if depth == 0:
                    return i
            elif t == "":
                raise self.error(i - 1, "unexpected end of file")

    def declare(self, i: int) -> int:
        toks = self.toks
        name, typ = toks[i + 2], toks[i + 3]
        m = _VARNAME.match(name)
        if m is None:
            if name in ("(", ")", ""):
                raise self.error(i + 2, f"expected a variable name after declare-const, found "
                                        f"{_show(name)}")
            raise self.error(i + 2, f"variable names must be X_<i> (inputs) or Y_<i> (outputs), "
                                    f"found {name!r}")
        if typ != "Real":
            raise self.error(i + 3, f"{name} must be declared Real, found {_show(typ)}")
        if toks[i + 4] != ")":
            raise self.error(i + 4, f"expected ')' after (declare-const {name} Real, found "
                                    f"{_show(toks[i + 4])}")
        key = int(m.group(2)) if m.group(1) == "X" else -1 - int(m.group(2))
        if self.scan is not None and name != self._name(key):
            raise _Fallback  # scanned atoms name variables canonically (X_1, not X_01)
        if key in self.decl_at:
            line, col = self._where(self.decl_at[key])
            raise self.error(i + 2, f"{self._name(key)} is declared twice (first at line {line}, "
                                    f"column {col})")
        self.decls[name] = key
        self.decl_at[key] = i + 2
        return i + 5

    def _finish(self, common: list, multi: list, n_asserts: int, always_false: bool) -> Spec:
        xs = sorted(k for k in self.decl_at if k >= 0)
        ys = sorted((-1 - k for k in self.decl_at if k < 0))
        if not xs:
            raise SpecError("no input variables declared (expected (declare-const X_0 Real) ...)",
                            self.path)
        if not ys:
            raise SpecError("no output variables declared (expected (declare-const Y_0 Real) ...)",
                            self.path)
        for var, idx, key_of in (("X", xs, lambda j: j), ("Y", ys, lambda j: -1 - j)):
            if idx[-1] != len(idx) - 1:
                missing = next(j for j, v in enumerate(idx) if v != j)
                raise self.error(self.decl_at[key_of(idx[-1])],
                                 f"{var}_{idx[-1]} is declared but {var}_{missing} is not "
                                 f"({var} variables must be numbered {var}_0, {var}_1, ...)")
        if n_asserts == 0:
            raise SpecError("no assert in the file: nothing to verify", self.path)
        n_in, n_out = len(xs), len(ys)
        if self.scan is not None:
            if not self.atoms_declared():
                raise _Fallback
            self.checked = True
        terms = [] if always_false else dnf_and(multi, MAX_TERMS, "conjunction of the asserts")

        def unbounded(i: int, upper: bool) -> SpecError:
            return self.error(self.decl_at[i], f"X_{i} has no {'upper' if upper else 'lower'} "
                                               "bound (every input needs both, in every region)")

        return assemble_spec(common, terms, n_in, n_out, version="1.0", path=self.path,
                             inputs=(TensorDecl("X", "Real", (n_in,)),),
                             outputs=(TensorDecl("Y", "Real", (n_out,)),), unbounded=unbounded,
                             bulk=None if self.scan is None else self.scan.atoms)

    def atoms_declared(self) -> bool:
        """Bulk path: was every scanned atom's variable declared before the atom (as the plain
        pass checks atom by atom)? Uses the declarations read so far."""
        sc = self.scan
        if not sc.run_tok.size:
            return True
        xs = sorted(k for k in self.decl_at if k >= 0)
        ys = sorted(-1 - k for k in self.decl_at if k < 0)
        # declared X_0..X_{n-1} / Y_0..Y_{m-1} cover the runs' largest indices
        if (xs and xs[-1] != len(xs) - 1) or (ys and ys[-1] != len(ys) - 1):
            return False
        if sc.run_max_x.max() >= len(xs) or sc.run_max_y.max() >= len(ys):
            return False
        if max(self.decl_at.values()) < sc.run_tok[0]:
            return True  # the usual layout: every declaration comes before every atom
        # interleaved: atom by atom, the declaration's token must come before the run's
        at = np.full(len(xs) + len(ys), 0, dtype=np.int64)
        for key, k in self.decl_at.items():
            at[key if key >= 0 else len(xs) - 1 - key] = k
        atoms = sc.atoms
        slot = np.where(atoms.is_y, atoms.var + len(xs), atoms.var)
        return bool(np.all(at[slot] < np.repeat(sc.run_tok, sc.run_len)))

    # ---------------------------------------------------------------- formulas

    def boolean(self, i: int) -> tuple[list, int]:
        """Parse the formula at token ``i``; return its DNF and the index after it."""
        toks = self.toks
        t = toks[i]
        if t != "(":
            if t == RUN and self.runs is not None:
                raise _Fallback  # a run where one formula is expected
            if t == "true":
                return [[]], i + 1
            if t == "false":
                return [], i + 1
            raise self.error(i, f"expected a formula such as (<= X_0 1.0), found {_show(t)}")
        op = toks[i + 1]
        sign = _COMPARE.get(op)
        if sign is not None:
            return self.compare(i, op, sign)
        if op == "or" and self.runs is not None:
            return self._or_bulk(i)
        if op == "and" or op == "or":
            parts = []
            j = i + 2
            runs = self.runs
            while toks[j] != ")":
                if toks[j] == "":
                    raise self.error(i, "unexpected end of file: this '(' is never closed")
                if toks[j] == RUN and runs is not None:  # k atoms: one conjunction
                    parts.append([[runs[j]]])
                    j += 1
                    continue
                dnf, j = self.boolean(j)
                parts.append(dnf)
            if op == "and":
                return dnf_and(parts, MAX_TERMS, lambda: self._at(i)), j + 1
            return dnf_or(parts, MAX_TERMS, lambda: self._at(i)), j + 1
        if op in _UNSUPPORTED_BOOL:
            raise self.unsupported(i + 1, f"operator '{op}' is not supported in VNN-LIB 1.0 specs "
                                          "(use and, or, <=, >=, <, >, =)")
        raise self.error(i + 1, f"unknown operator {_show(op)} (expected and, or, <=, >=, <, >, =)")

    def _or_bulk(self, i: int) -> tuple[list, int]:
        """``boolean`` for an ``or`` of a scanned text, collecting the terms directly: its
        children are mostly ``(and RUN)`` (nn4sys: 120,000 of them) or runs of atoms."""
        toks, runs = self.toks, self.runs
        terms: list = []
        j = i + 2
        while True:
            t = toks[j]
            if t == "(" and toks[j + 2] == RUN and toks[j + 1] == "and" and toks[j + 3] == ")":
                terms.append([runs[j + 2]])
                j += 4
            elif t == ")":
                break
            elif t == RUN:  # k atoms: k alternatives
                _, s, e = runs[j]
                terms.extend([(BULK, k, k + 1)] for k in range(s, e))
                j += 1
            elif t == "":
                raise self.error(i, "unexpected end of file: this '(' is never closed")
            else:
                dnf, j = self.boolean(j)
                terms.extend(dnf)
        return dnf_or([terms], MAX_TERMS, lambda: self._at(i)), j + 1

    def _at(self, k: int) -> str:
        line, col = self._where(k)
        return f"at line {line}, column {col}"

    def compare(self, i: int, op: str, sign: int) -> tuple[list, int]:
        toks = self.toks
        decls = self.decls
        # fast path: (op VAR NUM) or (op VAR VAR), the bulk of every VNN-COMP file
        a, b = toks[i + 2], toks[i + 3]
        if toks[i + 4] == ")" and a in decls:
            ka = decls[a]
            kb = decls.get(b)
            if kb is None and _NUMERAL.match(b):
                v = float(b)
                if ka >= 0:
                    if sign == 1:
                        return [[(UPPER, ka, v)]], i + 5
                    if sign == -1:
                        return [[(LOWER, ka, v)]], i + 5
                    return [[(LOWER, ka, v), (UPPER, ka, v)]], i + 5
                if sign == 1:
                    return [[(ROW, (-1 - ka,), (1.0,), v)]], i + 5
                if sign == -1:
                    return [[(ROW, (-1 - ka,), (-1.0,), -v)]], i + 5
            elif kb is not None and ka < 0 and kb < 0 and ka != kb:
                ya, yb = -1 - ka, -1 - kb
                if sign == 1:
                    return [[(ROW, (ya, yb), (1.0, -1.0), 0.0)]], i + 5
                if sign == -1:
                    return [[(ROW, (yb, ya), (1.0, -1.0), 0.0)]], i + 5
        # general path: linear terms, chains
        operands = []
        j = i + 2
        while toks[j] != ")":
            start = j
            lin, const, j = self.arith(j)
            operands.append((lin, const, start))
        if len(operands) < 2:
            raise self.error(i + 1, f"'{op}' needs at least two operands, found {len(operands)}")
        atoms = []
        for (la, ca, pa), (lb, cb, _) in zip(operands, operands[1:]):
            # la + ca  (op)  lb + cb   ->   diff + const <= 0 (and >= 0 for '=')
            diff = dict(la)
            for k, c in lb.items():
                diff[k] = diff.get(k, 0.0) - c
            const = ca - cb
            if sign == 0:
                for s in (1.0, -1.0):
                    atom = self.atom(diff, const, s, pa)
                    if atom is False:
                        return [], j + 1
                    if atom is not True:
                        atoms.append(atom)
            else:
                atom = self.atom(diff, const, float(sign), pa)
                if atom is False:
                    return [], j + 1
                if atom is not True:
                    atoms.append(atom)
        return [atoms], j + 1

    def atom(self, lin: dict[int, float], const: float, s: float, k: int):
        """The atom for ``s * (lin + const) <= 0``; True/False when it has no variables."""
        items = [(key, s * c) for key, c in lin.items() if c != 0.0]
        const = s * const
        if not items:
            return True if const <= 0.0 else False
        xs = [key for key, _ in items if key >= 0]
        if xs:
            if len(xs) != len(items):
                y = next(key for key, _ in items if key < 0)
                raise self.unsupported(k, "constraint mixes inputs and outputs "
                                          f"({self._name(xs[0])} and {self._name(y)}); inputs may "
                                          "only be bounded by constants")
            if len(xs) > 1:
                raise self.unsupported(k, f"input constraint must bound a single X variable, found "
                                          f"{', '.join(self._name(x) for x in xs)}")
            key, c = items[0]
            bound = -const / c
            return (UPPER, key, bound) if c > 0 else (LOWER, key, bound)
        return (ROW, tuple(-1 - key for key, _ in items), tuple(c for _, c in items), -const)

    # ---------------------------------------------------------------- arithmetic

    def arith(self, i: int) -> tuple[dict[int, float], float, int]:
        """Parse a linear term at token ``i``: (coefficients by variable key, constant, next)."""
        toks = self.toks
        t = toks[i]
        if t != "(":
            key = self.decls.get(t)
            if key is not None:
                return {key: 1.0}, 0.0, i + 1
            if _NUMERAL.match(t):
                return {}, float(t), i + 1
            if t == ")" or t == "":
                raise self.error(i, f"expected a number or a variable, found {_show(t)}")
            m = _VARNAME.match(t)
            if m is not None:
                raise self.error(i, f"undeclared variable {t} (add (declare-const {t} Real) "
                                    "before its first use)")
            raise self.error(i, f"expected a number or a declared X_i/Y_i variable, found {t!r}")
        op = toks[i + 1]
        if op not in ("+", "-", "*", "/"):
            if op in _COMPARE or op in ("and", "or"):
                raise self.error(i + 1, f"expected a number or a linear term, found the formula "
                                        f"operator '{op}'")
            raise self.error(i + 1, f"unknown arithmetic operator {_show(op)} "
                                    "(expected +, -, *, /)")
        args = []
        j = i + 2
        while toks[j] != ")":
            start = j
            lin, const, j = self.arith(j)
            args.append((lin, const, start))
        j += 1
        if not args or (op == "/" and len(args) != 2):
            raise self.error(i + 1, f"'{op}' needs {'two' if op == '/' else 'at least one'} "
                                    f"operand{'s' if op == '/' else ''}")
        if op == "+":
            lin, const = {}, 0.0
            for la, ca, _ in args:
                for k, c in la.items():
                    lin[k] = lin.get(k, 0.0) + c
                const += ca
            return lin, const, j
        if op == "-":
            la, ca, _ = args[0]
            if len(args) == 1:
                return {k: -c for k, c in la.items()}, -ca, j
            lin, const = dict(la), ca
            for lb, cb, _ in args[1:]:
                for k, c in lb.items():
                    lin[k] = lin.get(k, 0.0) - c
                const -= cb
            return lin, const, j
        if op == "*":
            with_vars = [a for a in args if a[0]]
            if len(with_vars) > 1:
                names = [self._name(next(iter(a[0]))) for a in with_vars[:2]]
                raise self.error(i + 1, f"non-linear term: product of {names[0]} and {names[1]} "
                                        "(only constant * term is linear)")
            scale = 1.0
            for la, ca, _ in args:
                if not la:
                    scale *= ca
            if not with_vars:
                return {}, scale, j
            la, ca, _ = with_vars[0]
            return {k: c * scale for k, c in la.items()}, ca * scale, j
        (la, ca, _), (lb, cb, pb) = args  # op == "/"
        if lb:
            raise self.error(pb, "non-linear term: division by an expression with variables")
        if cb == 0.0:
            raise self.error(pb, "division by zero")
        return {k: c / cb for k, c in la.items()}, ca / cb, j
