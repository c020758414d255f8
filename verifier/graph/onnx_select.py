"""ONNX translators for the selecting operators on variable tensors: Clip, Min, Max (exact with
ReLUs), Where with a constant condition (elementwise masks) and Tile (a Gather).

Why ReLUs: ``max(x, y) = relu(x − y) + y`` and ``min(x, y) = x − relu(x − y)`` are exact, so
the ReLU machinery (relaxations, branching) covers them with no new node kind; a constant
operand needs the same single ReLU (``max(x, c) = relu(x − c) + c``). Signatures as in
``onnx_ops``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from planecut.verifier.graph.onnx_builder import (Builder, Value, Var, as_float, need_const,
                                                  need_var)
from planecut.verifier.graph.onnx_axes import input_or_attr, ints

Ins = Sequence["Value | None"]
_BIG = float(np.finfo(np.float32).max)  # exporters write "no bound" as ±FLT_MAX


def clamp(b: Builder, x: Var, c: np.ndarray, upper: bool) -> Var:
    """``min(x, c)`` when ``upper`` (``c`` bounds ``x`` from above), else ``max(x, c)``, for a
    constant ``c`` broadcastable with ``x``."""
    c = np.asarray(c)
    if np.all(c >= _BIG) if upper else np.all(c <= -_BIG):  # no bound (±inf, ±FLT_MAX)
        return x
    if not np.all(np.isfinite(c)):
        raise b.unsupported(f"{'Min' if upper else 'Max'} with an infinite or NaN constant")
    if upper:  # min(x, c) = c − relu(c − x)
        neg = -np.ones((), c.dtype)
        return b.affine(b.relu(b.affine(x, scale=neg, shift=c)), scale=neg, shift=c)
    return b.affine(b.relu(b.affine(x, shift=-c)), shift=c)  # max(x, c) = relu(x − c) + c


def extreme(b: Builder, x: Var, y: Var, upper: bool) -> Var:
    """``min(x, y)`` when ``upper`` else ``max(x, y)`` of two variables (ONNX broadcasting)."""
    r = b.relu(b.add([x, y], [1.0, -1.0]))
    return b.add([x, r], [1.0, -1.0]) if upper else b.add([r, y], [1.0, 1.0])


def _minmax(upper: bool):
    fold = np.minimum if upper else np.maximum

    def tr(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
        vs = [x for x in ins if isinstance(x, Var)]
        cs = [as_float(b, x, "operand") for x in ins if x is not None and not isinstance(x, Var)]
        out = vs[0]
        for v in vs[1:]:
            out = extreme(b, out, v, upper)
        if cs:
            out = clamp(b, out, fold.reduce(np.broadcast_arrays(*cs)), upper)
        return [out]
    return tr


def _clip(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    """``min(max(x, lo), hi)``; bounds are attributes before opset 11, optional inputs after."""
    x = need_var(b, ins[0])
    for i, name, upper in ((1, "min", False), (2, "max", True)):
        bound = input_or_attr(ins, i, attrs, name)
        if bound is not None:
            c = as_float(b, np.asarray(need_const(b, bound, name)), name).reshape(-1)
            if c.size != 1:
                raise b.malformed(f"Clip {name} must be a scalar, got {c.size} values")
            x = clamp(b, x, c.reshape(()), upper)
    return [x]


def _shape(x: Value) -> tuple[int, ...]:
    return x.shape if isinstance(x, Var) else np.shape(x)


def _where(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    """``cond ? x : y`` for a constant ``cond``: ``x·m + y·(1 − m)`` with the 0/1 mask ``m``
    (a constant branch enters as a shift, so even huge fill values stay exact)."""
    cond = need_const(b, ins[0], "condition (an input-dependent condition is nonlinear)")
    cond = cond.astype(bool)
    x, y = ins[1], ins[2]
    shape = tuple(np.broadcast_shapes(cond.shape, _shape(x), _shape(y)))
    if cond.all() or not cond.any():
        pick = x if cond.all() else y
        if isinstance(pick, Var):
            return [b.broadcast_to(pick, shape)]
        return [np.broadcast_to(pick, shape).copy()]
    if isinstance(x, Var) and isinstance(y, Var):
        xm = b.affine(x, scale=cond.astype(np.float32))
        ym = b.affine(y, scale=(~cond).astype(np.float32))
        return [b.add([xm, ym], [1.0, 1.0])]
    if isinstance(x, Var):
        cy = as_float(b, y, "else-branch")
        return [b.affine(x, scale=cond.astype(cy.dtype), shift=np.where(cond, 0, cy))]
    cx = as_float(b, x, "then-branch")
    return [b.affine(y, scale=(~cond).astype(cx.dtype), shift=np.where(cond, cx, 0))]


def _tile(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x = need_var(b, ins[0])
    reps = ints(need_const(b, ins[1], "repeats"))
    if len(reps) != x.rank:
        raise b.malformed(f"{len(reps)} repeats for a rank-{x.rank} tensor")
    for a, r in enumerate(reps):
        if r < 1:
            raise b.unsupported(f"Tile with {r} repeats (empty tensor)")
        if r > 1:
            x = b.take(x, a, np.tile(np.arange(x.shape[a]), r))
    return [x]


SELECT_OPS = {
    "Clip": _clip,
    "Min": _minmax(True),
    "Max": _minmax(False),
    "Where": _where,
    "Tile": _tile,
}
