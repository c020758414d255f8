"""ONNX operator translation table: one function per operator with a variable input.

Each translator receives the :class:`Builder`, the node's inputs (numpy constants, :class:`Var`
variables, or ``None`` for omitted optional inputs), its attributes and its number of outputs,
emits IR nodes and returns its outputs. Attribute-vs-input forms of every opset are accepted
(``axes``, ``pads``, ``split``...), so the loader still works when ``version_converter`` fails on
an old model. Operators whose inputs are all constant never get here (see ``onnx_const``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from planecut.verifier.graph import ir
from planecut.verifier.graph import onnx_spatial as spatial
from planecut.verifier.graph.onnx_builder import (Builder, Value, Var, as_float, need_const,
                                                  need_var)
from planecut.verifier.graph.onnx_axes import (flatten_target, input_or_attr, ints, norm_axis,
                                               reduce_axes, reshape_target, shape_array,
                                               slice_ranges, split_sizes, squeeze_target,
                                               unsqueeze_target)
from planecut.verifier.graph.onnx_const import cast_target
from planecut.verifier.graph.onnx_resize import RESIZE_OPS
from planecut.verifier.graph.onnx_select import SELECT_OPS

Ins = Sequence["Value | None"]
Translator = Callable[[Builder, Ins, dict[str, Any], int], list["Value | None"]]


# --------------------------------------------------------------------------- arithmetic


def _legacy_broadcast(ins: Ins, attrs: dict[str, Any]) -> Ins:
    """Opset < 7 Add/Sub/Mul/Div broadcast B onto A from ``axis`` on (not right-aligned);
    only reachable when version_converter failed."""
    a, c = ins[0], ins[1]
    if not attrs.get("broadcast") or "axis" not in attrs or not isinstance(c, np.ndarray):
        return ins
    rank = a.rank if isinstance(a, Var) else np.ndim(a)
    axis = norm_axis(int(attrs["axis"]), rank)
    return [a, c.reshape(c.shape + (1,) * (rank - axis - c.ndim))]


def _add(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x, y = _legacy_broadcast(ins, attrs)
    if isinstance(x, Var) and isinstance(y, Var):
        return [b.add([x, y], [1.0, 1.0])]
    v, c = (x, y) if isinstance(x, Var) else (y, x)
    return [b.affine(v, shift=as_float(b, c, "addend"))]


def _sub(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x, y = _legacy_broadcast(ins, attrs)
    if isinstance(x, Var) and isinstance(y, Var):
        return [b.add([x, y], [1.0, -1.0])]
    if isinstance(x, Var):
        return [b.affine(x, shift=-as_float(b, y, "subtrahend"))]
    c = as_float(b, x, "minuend")
    return [b.affine(y, scale=-np.ones((), c.dtype), shift=c)]


def _mul(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x, y = _legacy_broadcast(ins, attrs)
    if isinstance(x, Var) and isinstance(y, Var):
        raise b.unsupported("product of two tensors that depend on the input (nonlinear)")
    v, c = (x, y) if isinstance(x, Var) else (y, x)
    return [b.affine(v, scale=as_float(b, c, "factor"))]


def _div(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    ins = _legacy_broadcast(ins, attrs)
    x = need_var(b, ins[0], "dividend (division by an input-dependent tensor is nonlinear)")
    c = as_float(b, need_const(b, ins[1], "divisor"), "divisor")
    if not np.all(c):
        raise b.malformed("division by zero")
    return [b.affine(x, scale=(1.0 / c).astype(c.dtype))]


def _neg(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    return [b.affine(need_var(b, ins[0]), scale=-np.ones((), np.float32))]


def _sum(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    vs = [x for x in ins if isinstance(x, Var)]
    cs = [x for x in ins if x is not None and not isinstance(x, Var)]
    out = b.add(vs, [1.0] * len(vs))
    for c in cs:
        out = b.affine(out, shift=as_float(b, c, "addend"))
    return [out]


# --------------------------------------------------------------------------- matrix products


def _matmul_const_right(b: Builder, v: Var, w: np.ndarray) -> Var:
    """``v @ w`` for a constant ``w`` (numpy matmul semantics)."""
    if w.ndim > 2 and all(d == 1 for d in w.shape[:-2]):
        if v.rank < w.ndim:
            v = b.reshape(v, (1,) * (w.ndim - v.rank) + v.shape)
        w = w.reshape(w.shape[-2:])
    if w.ndim == 1:
        out = b.axis_linear(v, -1, w[None, :])
        return b.reshape(out, out.shape[:-1])
    if w.ndim != 2:
        raise b.unsupported(f"batched MatMul with a constant of shape {w.shape}")
    return b.axis_linear(v, -1, np.ascontiguousarray(w.T))


def _matmul_const_left(b: Builder, w: np.ndarray, v: Var) -> Var:
    """``w @ v`` for a constant ``w``: ``w`` acts on the second-to-last axis of ``v``."""
    if w.ndim > 2 and all(d == 1 for d in w.shape[:-2]):
        if v.rank < w.ndim:
            v = b.reshape(v, (1,) * (w.ndim - v.rank) + v.shape)
        w = w.reshape(w.shape[-2:])
    if w.ndim > 2:
        raise b.unsupported(f"batched MatMul with a constant of shape {w.shape}")
    w2 = w[None, :] if w.ndim == 1 else w
    if v.rank == 1:
        out = b.axis_linear(v, 0, w2)
        return b.reshape(out, ()) if w.ndim == 1 else out
    out = b.axis_linear(v, v.rank - 2, w2)
    if w.ndim == 1:
        out = b.reshape(out, out.shape[:-2] + out.shape[-1:])
    return out


def _matmul(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x, y = ins[0], ins[1]
    if isinstance(x, Var) and isinstance(y, Var):
        raise b.unsupported("product of two tensors that depend on the input (nonlinear)")
    if isinstance(x, Var):
        return [_matmul_const_right(b, x, as_float(b, y, "weight"))]
    return [_matmul_const_left(b, as_float(b, x, "weight"), y)]


def _gemm(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    a, w = ins[0], ins[1]
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    c = ins[2] if len(ins) > 2 else None
    if isinstance(a, Var) and isinstance(w, Var):
        raise b.unsupported("product of two tensors that depend on the input (nonlinear)")
    if isinstance(c, Var):
        raise b.unsupported("Gemm with an input-dependent C")
    if isinstance(a, Var):
        if a.rank != 2:
            raise b.malformed(f"Gemm input A must be 2-D, got {a.shape}")
        if attrs.get("transA", 0):
            a = b.transpose(a, [1, 0])
        w = as_float(b, w, "weight B")
        wt = w if attrs.get("transB", 0) else w.T  # (out, in)
        weight = np.ascontiguousarray(wt * alpha if alpha != 1.0 else wt)
        bias = None
        if c is not None:
            c = as_float(b, c, "bias C") * beta
            if c.size == 1 or (c.size == weight.shape[0] and c.shape[-1] == c.size):
                bias = np.broadcast_to(c.reshape(-1), (weight.shape[0],)).astype(c.dtype)
                c = None
        out = b.axis_linear(a, -1, weight, bias)
    else:
        wa = as_float(b, a, "weight A")
        wa = wa.T if attrs.get("transA", 0) else wa
        v = need_var(b, w)
        if v.rank != 2:
            raise b.malformed(f"Gemm input B must be 2-D, got {v.shape}")
        if attrs.get("transB", 0):
            v = b.transpose(v, [1, 0])
        out = _matmul_const_left(b, np.ascontiguousarray(wa * alpha), v)
        if c is not None:
            c = as_float(b, c, "bias C") * beta
    if c is not None:
        out = b.affine(out, shift=c)
    return [out]


# --------------------------------------------------------------------------- activations


def _act(cls: type[ir.Node]) -> Translator:
    def tr(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
        x = need_var(b, ins[0])
        return [b.emit(cls, [x], x.shape, x.batched)]
    return tr


def _batchnorm(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    if n_out > 1:
        raise b.unsupported("BatchNormalization in training mode (running statistics outputs)")
    x = need_var(b, ins[0])
    scale, bias, mean, var = (as_float(b, need_const(b, c, n), n) for c, n in
                              zip(ins[1:5], ("scale", "bias", "mean", "variance")))
    eps = float(attrs.get("epsilon", 1e-5))
    s = scale / np.sqrt(var.astype(np.float64) + eps)
    t = bias - mean * s
    if x.rank < 2:
        raise b.malformed(f"BatchNormalization input of shape {x.shape}")
    c = x.shape[1]
    if s.size == c:  # per-channel (always, unless opset<9 with spatial=0)
        shape = (1, c) + (1,) * (x.rank - 2)
    else:
        shape = (1,) + s.shape
    return [b.affine(x, scale=s.reshape(shape), shift=t.reshape(shape))]  # float64: folded later


# --------------------------------------------------------------------------- shape ops


def _reshape(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x = need_var(b, ins[0])
    target = input_or_attr(ins, 1, attrs, "shape")
    target = ints(need_const(b, target, "target shape"))
    try:
        return [b.reshape(x, reshape_target(x.shape, target, bool(attrs.get("allowzero"))))]
    except ValueError as e:
        raise b.malformed(str(e)) from None


def _flatten(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x = need_var(b, ins[0])
    return [b.reshape(x, flatten_target(x.shape, attrs.get("axis", 1)))]


def _squeeze(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x = need_var(b, ins[0])
    axes = input_or_attr(ins, 1, attrs, "axes")
    axes = None if axes is None else ints(need_const(b, axes, "axes"))
    return [b.reshape(x, squeeze_target(x.shape, axes))]


def _unsqueeze(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x = need_var(b, ins[0])
    axes = ints(need_const(b, input_or_attr(ins, 1, attrs, "axes"), "axes"))
    return [b.reshape(x, unsqueeze_target(x.shape, axes))]


def _transpose(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x = need_var(b, ins[0])
    perm = ints(attrs.get("perm")) or list(range(x.rank))[::-1]
    return [b.transpose(x, perm)]


def _slice(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x = need_var(b, ins[0])
    get = lambda i, n: input_or_attr(ins, i, attrs, n)  # noqa: E731
    starts = ints(need_const(b, get(1, "starts"), "starts"))
    ends = ints(need_const(b, get(2, "ends"), "ends"))
    axes = get(3, "axes")
    axes = None if axes is None else ints(need_const(b, axes, "axes"))
    steps = ins[4] if len(ins) > 4 else None
    steps = None if steps is None else ints(need_const(b, steps, "steps"))
    for a, sel in slice_ranges(x.shape, starts, ends, axes, steps):
        x = b.slice_axis(x, a, sel)
    return [x]


def _split(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x = need_var(b, ins[0])
    axis = norm_axis(attrs.get("axis", 0), x.rank)
    split = input_or_attr(ins, 1, attrs, "split")
    split = None if split is None else ints(need_const(b, split, "split"))
    sizes = split_sizes(x.shape[axis], split, n_out, attrs.get("num_outputs"))
    outs: list[Value | None] = []
    start = 0
    for size in sizes:
        outs.append(b.slice_axis(x, axis, range(start, start + size)))
        start += size
    return outs


def _concat(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    """Variables are concatenated; constant pieces become padding of a neighbouring variable
    plus a shift (the IR has no constant node)."""
    parts = [x for x in ins if x is not None]
    rank = next(x.rank for x in parts if isinstance(x, Var))
    axis = norm_axis(int(attrs.get("axis", 1)), rank)  # optional (default 1) before opset 4
    parts = [x for x in parts if x.shape[axis] > 0]
    vars_ = b.same_layout([x for x in parts if isinstance(x, Var)], uses_axis0=(axis == 0))
    it = iter(vars_)
    parts = [next(it) if isinstance(x, Var) else x for x in parts]
    groups: list[list[Any]] = []  # [var, before, after]
    pending = 0
    for x in parts:
        if isinstance(x, Var):
            groups.append([x, pending, 0])
            pending = 0
        elif groups:
            groups[-1][2] += x.shape[axis]
        else:
            pending += x.shape[axis]
    pieces = []
    for v, before, after in groups:
        if before or after:
            begins, ends = [0] * rank, [0] * rank
            begins[axis], ends[axis] = before, after
            v = b.pad(v, begins, ends)
        pieces.append(v)
    if len(pieces) == 1:
        out = pieces[0]
    else:
        _, pa = b.pe_axis(pieces[0], axis)
        shape = list(pieces[0].shape)
        shape[axis] = sum(p.shape[axis] for p in pieces)
        out = b.emit(ir.Concat, pieces, shape, pieces[0].batched, axis=pa)
    consts = [x for x in parts if not isinstance(x, Var)]
    if consts:
        dt = np.result_type(*(c.dtype for c in consts if c.dtype.kind == "f"), np.float32)
        shift = np.concatenate([np.zeros(x.shape, dt) if isinstance(x, Var) else x.astype(dt)
                                for x in parts], axis=axis)
        out = b.affine(out, shift=shift)
    return [out]


def _gather(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x = need_var(b, ins[0])
    idx = need_const(b, ins[1], "indices").astype(np.int64)
    axis = norm_axis(attrs.get("axis", 0), x.rank)
    n = x.shape[axis]
    if np.any((idx < -n) | (idx >= n)):
        raise b.malformed(f"Gather index out of range for axis of size {n}")
    idx = np.where(idx < 0, idx + n, idx)
    out_shape = x.shape[:axis] + idx.shape + x.shape[axis + 1:]
    x, pa = b.pe_axis(x, axis)
    flat = torch.from_numpy(idx.reshape(-1).copy())
    mid = x.shape[:axis] + (flat.numel(),) + x.shape[axis + 1:]
    out = b.emit(ir.Gather, [x], mid if idx.ndim else out_shape, x.batched, axis=pa,
                 indices=flat, keepdim=idx.ndim > 0)
    if idx.ndim > 1:
        out = b.reshape(out, out_shape)
    return [out]


def _expand(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x = need_var(b, ins[0])
    shape = ints(need_const(b, ins[1], "shape"))
    return [b.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(shape)))]


def _reduce_linear(mean: bool) -> Translator:
    """ReduceSum/ReduceMean are linear: a ones-row Dense along each reduced axis."""
    def tr(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
        x = need_var(b, ins[0])
        if len(ins) > 1 and isinstance(ins[1], Var):
            raise b.unsupported("input-dependent reduction axes")
        axes = reduce_axes(ins, attrs, x.rank)
        if axes == []:
            return [x]
        axes = list(range(x.rank)) if axes is None else axes
        keep = bool(attrs.get("keepdims", 1))
        final = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keep else \
            tuple(d for i, d in enumerate(x.shape) if i not in axes)
        for a in axes:
            n = x.shape[a]
            if n == 1:
                continue
            x = b.axis_linear(x, a, np.full((1, n), 1.0 / n if mean else 1.0, np.float32))
        return [b.reshape(x, final)]
    return tr


# --------------------------------------------------------------------------- pass-through


def _identity(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x = need_var(b, ins[0])
    return [x] + [np.ones(x.shape, dtype=bool)] * (n_out - 1)  # Dropout's mask is all-true


def _cast(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    from onnx import TensorProto

    x = need_var(b, ins[0])
    if "to" in attrs:
        to = cast_target(attrs["to"])
        if to not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16,
                      TensorProto.BFLOAT16):
            raise b.unsupported(f"cast of an input-dependent tensor to "
                                f"{TensorProto.DataType.Name(to).lower()}")
    elif isinstance(ins[1], np.ndarray) and ins[1].dtype.kind != "f":  # CastLike
        raise b.unsupported(f"cast of an input-dependent tensor to {ins[1].dtype}")
    return [x]


def _shape(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    return [shape_array(need_var(b, ins[0]).shape, attrs)]  # static: batch axis reads as 1


def _size(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    return [np.asarray(int(np.prod(need_var(b, ins[0]).shape, dtype=np.int64)), dtype=np.int64)]


VAR_OPS: dict[str, Translator] = {
    "Add": _add,
    "Sub": _sub,
    "Mul": _mul,
    "Div": _div,
    "Neg": _neg,
    "Sum": _sum,
    "MatMul": _matmul,
    "Gemm": _gemm,
    "Conv": spatial.conv,
    "ConvTranspose": spatial.conv_transpose,
    "Pad": spatial.pad,
    "AveragePool": spatial.avgpool,
    "GlobalAveragePool": spatial.global_avgpool,
    "MaxPool": spatial.maxpool,
    "GlobalMaxPool": spatial.global_maxpool,
    "Relu": _act(ir.Relu),
    "Sigmoid": _act(ir.Sigmoid),
    "Tanh": _act(ir.Tanh),
    "BatchNormalization": _batchnorm,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Transpose": _transpose,
    "Slice": _slice,
    "Split": _split,
    "Concat": _concat,
    "Gather": _gather,
    "Expand": _expand,
    "ReduceSum": _reduce_linear(False),
    "ReduceMean": _reduce_linear(True),
    "Identity": _identity,
    "Dropout": _identity,
    "Cast": _cast,
    "CastLike": _cast,
    "Shape": _shape,
    "Size": _size,
    **SELECT_OPS,
    **RESIZE_OPS,
}

# Operators that read only the *shape* of an input, so a variable input still gives constants.
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})
