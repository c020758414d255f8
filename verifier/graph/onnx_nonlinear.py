"""ONNX translators for the nonlinear operators of transformer, power-flow, learned-index and
binarised-net exports: products and quotients of two variable tensors, Softmax, Pow and the
smooth unary functions, Sign and Abs.

Everything is rewritten into the single-input nonlinear nodes of ``ir_nonlinear`` plus linear
nodes, so that bound propagation needs no special case per operator:

* ``a·b`` (Mul), ``a/b`` (Div: ``a·(1/b)``) of two variables: both operands broadcast to one
  shape, stacked on a new per-example axis, one :class:`Product`;
* ``A @ B`` of two variables: ``A`` broadcast over ``B``'s last axis and ``B`` over ``A``'s
  rows, one elementwise Product of shape ``(..., n, k, m)``, summed over ``k``;
* Softmax over an axis: ``softmax(x)_i = 1 / Σ_j exp(x_j − x_i)``. The differences are one
  linear map, the diagonal is exactly 0 (so ``Σ >= 1`` and the reciprocal stays bounded),
  and no exponential of a raw logit ever overflows;
* ``x ** p`` for a constant scalar ``p``: Sqrt for 0.5, Reciprocal for −1, else :class:`Pow`;
* ``|x| = relu(x) + relu(−x)``: exact with ReLUs, so branch and bound still applies.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from planecut.verifier.graph import ir
from planecut.verifier.graph import ir_nonlinear as nl
from planecut.verifier.graph.onnx_builder import (Builder, Value, Var, as_float, need_const,
                                                  need_var)
from planecut.verifier.graph.onnx_const import norm_axis
from planecut.verifier.graph.onnx_ops import VAR_OPS

Ins = Sequence["Value | None"]


def _stack_pair(b: Builder, x: Var, y: Var) -> Var:
    """``x`` and ``y`` (same ONNX shape) stacked on a new leading per-example axis."""
    x, y = b.same_layout([x, y])
    if x.batched:
        parts = [b.emit(ir.Reshape, [v], (1, 1) + v.pe, True) for v in (x, y)]
        return b.emit(ir.Concat, parts, (1, 2) + x.pe, True, axis=0)
    parts = [b.emit(ir.Reshape, [v], (1,) + v.shape, False) for v in (x, y)]
    return b.emit(ir.Concat, parts, (2,) + x.shape, False, axis=0)


def product(b: Builder, x: Var, y: Var) -> Var:
    """Elementwise ``x·y`` of two variables with ONNX broadcasting."""
    shape = tuple(np.broadcast_shapes(x.shape, y.shape))
    x, y = b.broadcast_to(x, shape), b.broadcast_to(y, shape)
    stacked = _stack_pair(b, x, y)
    out_shape = stacked.shape[:1] + stacked.shape[2:] if stacked.batched else stacked.shape[1:]
    return b.emit(nl.Product, [stacked], out_shape, stacked.batched)


def unary(b: Builder, cls: type[nl.Elementwise], x: Var, **fields: Any) -> Var:
    return b.emit(cls, [x], x.shape, x.batched, **fields)


def _mul(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x, y = ins[0], ins[1]
    if isinstance(x, Var) and isinstance(y, Var):
        return [product(b, x, y)]
    return VAR_OPS["Mul"](b, ins, attrs, n_out)


def _div(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x, y = ins[0], ins[1]
    if not isinstance(y, Var):
        return VAR_OPS["Div"](b, ins, attrs, n_out)
    inv = unary(b, nl.Reciprocal, y)
    if isinstance(x, Var):
        return [product(b, x, inv)]
    return [b.affine(inv, scale=as_float(b, need_const(b, x, "dividend"), "dividend"))]


def matmul_vars(b: Builder, x: Var, y: Var) -> Var:
    """``x @ y`` for two variables (numpy matmul semantics, 1-D operands promoted)."""
    squeeze_rows = x.rank == 1
    squeeze_cols = y.rank == 1
    if squeeze_rows:
        x = b.reshape(x, (1,) + x.shape)
    if squeeze_cols:
        y = b.reshape(y, y.shape + (1,))
    n, k = x.shape[-2:]
    k2, m = y.shape[-2:]
    if k != k2:
        raise b.malformed(f"MatMul of shapes {x.shape} and {y.shape}")
    prefix = tuple(np.broadcast_shapes(x.shape[:-2], y.shape[:-2]))
    full = prefix + (n, k, m)
    xa = b.broadcast_to(b.reshape(x, x.shape + (1,)), full)
    ya = b.broadcast_to(b.reshape(y, y.shape[:-2] + (1, k, m)), full)
    p = product(b, xa, ya)
    s = b.axis_linear(p, len(full) - 2, np.ones((1, k), np.float32))
    out_shape = prefix + (n, m)
    if squeeze_rows:
        out_shape = prefix + (m,)
    if squeeze_cols:
        out_shape = out_shape[:-1]
    return b.reshape(s, out_shape)


def _matmul(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x, y = ins[0], ins[1]
    if isinstance(x, Var) and isinstance(y, Var):
        return [matmul_vars(b, x, y)]
    return VAR_OPS["MatMul"](b, ins, attrs, n_out)


def softmax(b: Builder, x: Var, axis: int) -> Value:
    """``softmax`` over ONNX ``axis`` as ``1 / Σ_j exp(x_j − x_i)`` (see the module doc)."""
    a = norm_axis(axis, x.rank)
    n = x.shape[a]
    if n == 1:
        return np.ones(x.shape, np.float32)
    last = x.rank - 1
    perm = list(range(x.rank))
    if a != last:
        perm = [i for i in range(x.rank) if i != a] + [a]
        x = b.transpose(x, perm)
    w = np.zeros((n * n, n), np.float32)
    rows = np.arange(n * n)
    w[rows, rows % n] += 1.0  # + x_j
    w[rows, rows // n] -= 1.0  # − x_i
    diffs = b.reshape(b.axis_linear(x, last, w), x.shape[:-1] + (n, n))
    e = unary(b, nl.Exp, diffs)
    s = b.reshape(b.axis_linear(e, last + 1, np.ones((1, n), np.float32)), x.shape)
    out = unary(b, nl.Reciprocal, s)
    if a != last:
        out = b.transpose(out, list(np.argsort(perm)))
    return out


def _softmax(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x = need_var(b, ins[0])
    return [softmax(b, x, int(attrs.get("axis", -1)))]


def _pow(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x = need_var(b, ins[0], "base")
    p = np.asarray(need_const(b, ins[1], "exponent (an input-dependent exponent)"))
    if p.size != 1:
        if np.all(p == p.reshape(-1)[0]):
            p = p.reshape(-1)[:1]
        else:
            raise b.unsupported("Pow with a non-scalar exponent")
    e = float(p.reshape(-1)[0])
    if e == 1.0:
        return [x]
    if e == 0.0:
        return [np.ones(x.shape, np.float32)]
    if e == 0.5:
        return [unary(b, nl.Sqrt, x)]
    if e == -1.0:
        return [unary(b, nl.Reciprocal, x)]
    return [unary(b, nl.Pow, x, exponent=e)]


def _unary(cls: type[nl.Elementwise]):
    def tr(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
        return [unary(b, cls, need_var(b, ins[0]))]
    return tr


def _abs(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x = need_var(b, ins[0])
    neg = b.affine(x, scale=-np.ones((), np.float32))
    return [b.add([b.relu(x), b.relu(neg)], [1.0, 1.0])]


NONLINEAR_OPS = {
    "Mul": _mul,
    "Div": _div,
    "MatMul": _matmul,
    "Softmax": _softmax,
    "Pow": _pow,
    "Abs": _abs,
    **{op: _unary(cls) for op, cls in nl.UNARY_OPS.items()},
}

#: every operator with a variable input that the loader translates
ALL_VAR_OPS = {**VAR_OPS, **NONLINEAR_OPS}
