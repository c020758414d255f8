"""VNN-LIB 2.0 queries, read with the official ``vnnlib`` package (PyPI ``vnnlib==1.0.2``).

The package parses and type-checks (declarations, shapes, index bounds, dtypes) and gives a
typed AST; we walk that AST ourselves instead of using ``vnnlib.compat.transform`` because the
latter, in 1.0.2, (a) ORs together the cases of separate compound asserts instead of ANDing
them, (b) encodes ``a == b`` as ``a <= b`` only, and (c) returns its cases in hash order. Our
walk reuses the package's own linearisation (``ArithExpr.to_linear_expr``) and the DNF/region
assembly shared with 1.0 (:mod:`planecut.vnnlib.parse`), so a 2.0 query and its 1.0 twin give
identical :class:`Spec` objects.

Naming: our repository folder ``vnnlib/`` is importable as top-level ``vnnlib`` when the
current directory is the repository root, shadowing the official package; :func:`official`
therefore locates the installed distribution explicitly.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from planecut.errors import SpecError, UnsupportedError
from planecut.vnnlib.parse import (LOWER, MAX_TERMS, ROW, UPPER, assemble_spec, dnf_and,
                                   dnf_or)
from planecut.vnnlib.spec import Spec, TensorDecl

__all__ = ["parse_v2", "official", "DTYPE_NAMES"]

#: The package's DType enum names -> the type names VNN-LIB 2.0 files spell.
DTYPE_NAMES = {
    "Real": "real", "F16": "float16", "F32": "float32", "F64": "float64", "BF16": "bfloat16",
    "F8E4M3FN": "float8e4m3fn", "F8E5M2": "float8e5m2", "F8E4M3FNUZ": "float8e4m3fnuz",
    "F8E5M2FNUZ": "float8e5m2fnuz", "F4E2M1": "float4e2m1", "I8": "int8", "I16": "int16",
    "I32": "int32", "I64": "int64", "U8": "uint8", "U16": "uint16", "U32": "uint32",
    "U64": "uint64", "C64": "complex64", "C128": "complex128", "Bool": "bool", "String": "string",
}
_REAL_TYPES = {"real", "float16", "float32", "float64", "bfloat16"}
_SYNTAX = re.compile(r"syntax error at line (\d+), column (\d+): '(.*)'\s*\Z", re.DOTALL)


def official() -> ModuleType:
    """The official ``vnnlib`` package, even when our own ``vnnlib/`` folder shadows it."""
    mod = sys.modules.get("vnnlib")
    if mod is not None and hasattr(mod, "parse_query_string"):
        return mod
    ours = Path(__file__).resolve().parent
    search = [p for p in sys.path if (Path(p or ".").resolve() / "vnnlib") != ours]
    found = importlib.machinery.PathFinder.find_spec("vnnlib", search)
    if found is None or found.loader is None:
        raise UnsupportedError("VNN-LIB 2.0 needs the 'vnnlib' package (pip install vnnlib==1.0.2)")
    shadow = sys.modules.pop("vnnlib", None)
    try:
        mod = importlib.util.module_from_spec(found)
        sys.modules["vnnlib"] = mod  # its relative imports (vnnlib._core) resolve through this
        found.loader.exec_module(mod)
        importlib.import_module("vnnlib.compat")
    except Exception:
        sys.modules.pop("vnnlib", None)
        raise
    finally:
        if shadow is not None:  # leave whoever imported our folder as ``vnnlib`` undisturbed
            sys.modules["vnnlib"] = shadow
    return mod


def parse_v2(text: str, path: str | None = None) -> Spec:
    """Parse VNN-LIB 2.x source text into a :class:`Spec`."""
    vn = official()
    try:
        query = vn.parse_query_string(text)
    except vn.VNNLibException as exc:
        raise _spec_error(str(exc), path) from None
    return _Converter(vn, path).convert(query)


def _spec_error(raw: str, path: str | None) -> SpecError:
    """Turn the package's message (JSON report or 'syntax error at line L, column C') into a
    one-line SpecError at the first error's position."""
    try:
        report = json.loads(raw)
    except ValueError:
        m = _SYNTAX.search(raw)
        if m is None:
            return SpecError(raw.strip(), path)
        tok = m.group(3)
        msg = (f"syntax error at {tok!r}" if tok else
               "syntax error: unexpected end of file (a missing ')', or a query without assert)")
        return SpecError(msg, path, int(m.group(1)), int(m.group(2)))
    errors = report.get("errors") or [{}]
    e = errors[0]
    msg = e.get("message", "invalid VNN-LIB 2.0 query")
    if e.get("offendingSymbol"):
        msg += f" '{e['offendingSymbol']}'"
    if e.get("hint"):
        msg += f": {e['hint']}"
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    line = e.get("line")
    return SpecError(msg, path, int(line) if isinstance(line, int) and line > 0 else None)


class _Converter:
    """Typed AST of one query -> atoms -> Spec. Holds the single input/output declaration."""

    def __init__(self, vn: ModuleType, path: str | None) -> None:
        self.vn, self.path = vn, path

    def _unsupported(self, message: str, node: Any = None) -> UnsupportedError:
        where = self.path or "<spec>"
        line = _first_line(node) if node is not None else None
        if line:
            where += f":{line}"
        return UnsupportedError(f"{where}: {message}")

    def convert(self, query: Any) -> Spec:
        nets = query.networks
        if len(nets) != 1:
            names = ", ".join(n.name for n in nets)
            raise self._unsupported(f"the query declares {len(nets)} networks ({names}); planecut "
                                    "verifies one network per query")
        net = nets[0]
        if net.equal_to or net.isometric_to:
            rel = "equal-to" if net.equal_to else "isometric-to"
            raise self._unsupported(f"network relations ({rel}) are not supported")
        if net.hidden:
            raise self._unsupported(f"hidden variables (declare-hidden {net.hidden[0].name}) are "
                                    "not supported; constrain only the network's input and output")
        for what, decls in (("input", net.inputs), ("output", net.outputs)):
            if len(decls) != 1:
                raise self._unsupported(f"network {net.name} declares {len(decls)} {what}s; "
                                        f"planecut needs exactly one {what} tensor")
        self.x = self._decl(net.inputs[0], "input")
        self.y = self._decl(net.outputs[0], "output")
        # variable name -> (0 input | 1 output, row-major strides of its shape)
        self.vars = {d.name: (tag, _strides(d.shape)) for tag, d in ((0, self.x), (1, self.y))}
        if not query.assertions:
            raise SpecError("no assert in the query: nothing to verify", self.path)

        common: list = []
        multi: list = []
        always_false = False
        for a in query.assertions:
            dnf = self.boolean(a.expr)
            if len(dnf) == 1:
                common.extend(dnf[0])
            elif not dnf:
                always_false = True
            else:
                multi.append(dnf)
        terms = [] if always_false else dnf_and(multi, MAX_TERMS, "conjunction of the asserts")

        def unbounded(i: int, upper: bool) -> SpecError:
            idx = ",".join(map(str, np.unravel_index(i, self.x.shape))) if self.x.shape else ""
            name = f"{self.x.name}[{idx}]" if self.x.shape else self.x.name
            return SpecError(f"{name} has no {'upper' if upper else 'lower'} bound (every input "
                             "needs both, in every region)", self.path)

        return assemble_spec(common, terms, self.x.size, self.y.size, version="2.0",
                             path=self.path, inputs=(self.x,), outputs=(self.y,),
                             unbounded=unbounded)

    def _decl(self, d: Any, what: str) -> TensorDecl:
        dtype = DTYPE_NAMES.get(d.dtype.name, d.dtype.name.lower())
        if dtype not in _REAL_TYPES:
            raise self._unsupported(f"{what} {d.name} has type {dtype}; planecut handles "
                                    f"floating-point/real tensors only")
        return TensorDecl(name=d.name, dtype=dtype, shape=tuple(int(s) for s in d.shape))

    # ------------------------------------------------------------------ formulas

    def boolean(self, e: Any) -> list:
        vn = self.vn
        if isinstance(e, vn.Comparison):
            atoms = self.compare(e)
            return [] if atoms is None else [atoms]
        if isinstance(e, vn.And):
            return dnf_and([self.boolean(a) for a in e.args], MAX_TERMS, lambda: self._line_of(e))
        if isinstance(e, vn.Or):
            return dnf_or([self.boolean(a) for a in e.args], MAX_TERMS, lambda: self._line_of(e))
        raise self._unsupported(f"formula {str(e).strip()[:60]!r} is not supported")

    def _line_of(self, e: Any) -> str:
        line = _first_line(e)
        return f"line {line}" if line else ""

    def compare(self, e: Any) -> list | None:
        """The atoms of one comparison (a conjunction), or None if it can never hold."""
        vn = self.vn
        if isinstance(e, vn.NotEqual):
            raise self._unsupported("'!=' is not supported: a != b is the union of two open "
                                    "half-spaces, not a polytope (the official compat transform "
                                    "rejects it too); write (or (< a b) (> a b)) instead", e)
        try:
            lhs, rhs = e.lhs.to_linear_expr(), e.rhs.to_linear_expr()
        except vn.VNNLibException as exc:
            raise self._unsupported(f"non-linear term in {str(e).strip()[:60]!r}: {exc}",
                                    e) from None
        lin: dict[tuple[int, int], float] = {}  # (0 input | 1 output, flat index) -> coeff
        for t in lhs.terms:
            k = self._flat(t.var, e)
            lin[k] = lin.get(k, 0.0) + t.coeff
        for t in rhs.terms:
            k = self._flat(t.var, e)
            lin[k] = lin.get(k, 0.0) - t.coeff
        const = lhs.constant - rhs.constant  # lin + const (op) 0
        if isinstance(e, (vn.LessEqual, vn.LessThan)):
            signs = (1.0,)
        elif isinstance(e, (vn.GreaterEqual, vn.GreaterThan)):
            signs = (-1.0,)
        elif isinstance(e, vn.Equal):
            signs = (1.0, -1.0)
        else:
            raise self._unsupported(f"comparison {str(e).strip()[:60]!r} is not supported", e)
        atoms = []
        for s in signs:
            atom = self._atom(lin, const, s, e)
            if atom is False:
                return None
            if atom is not True:
                atoms.append(atom)
        return atoms

    def _flat(self, var: Any, node: Any) -> tuple[int, int]:
        found = self.vars.get(var.name)
        if found is None:
            raise self._unsupported(f"variable {var.name} is neither the network's input nor its "
                                    "output", node)
        tag, strides = found
        return tag, sum(i * s for i, s in zip(var.indices, strides))

    def _atom(self, lin: dict, const: float, s: float, node: Any):
        items = [(k, s * c) for k, c in lin.items() if c != 0.0]
        const = s * const
        if not items:
            return const <= 0.0
        ins = [k for k, _ in items if k[0] == 0]
        if ins:
            if len(ins) != len(items):
                raise self._unsupported("constraint mixes input and output variables; inputs may "
                                        "only be bounded by constants", node)
            if len(ins) > 1:
                raise self._unsupported("input constraint must bound a single input element "
                                        f"(found {len(ins)})", node)
            (_, i), c = items[0]
            bound = -const / c
            return (UPPER, i, bound) if c > 0 else (LOWER, i, bound)
        return (ROW, tuple(k[1] for k, _ in items), tuple(c for _, c in items), -const)


def _strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= n
    return tuple(reversed(out))


def _first_line(node: Any) -> int | None:
    """Line of the first variable/literal under ``node`` (the AST keeps lines only there)."""
    stack = [node]
    while stack:
        n = stack.pop()
        line = getattr(n, "line", None)
        if isinstance(line, int) and line > 0:
            return line
        stack.extend(reversed(n.children()))
    return None
