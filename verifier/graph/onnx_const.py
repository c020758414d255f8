"""Constant folding for the ONNX loader: numpy evaluators for operators on constant inputs.

Why: exported models compute shapes and preprocess weights inside the graph (``Shape ->
Gather -> Unsqueeze -> Concat -> Reshape``, ``Constant``, ``Cast``, transposed weights...).
Evaluating those here, once, keeps the IR free of anything but the computation on the single
variable input. Every evaluator takes the node's inputs (``None`` for omitted optional inputs)
and its attributes, and returns the list of its outputs.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from planecut.verifier.graph.onnx_axes import (  # noqa: F401 (re-exported)
    flatten_target, input_or_attr, ints, norm_axis, reduce_axes, reshape_target, shape_array,
    slice_ranges, split_sizes, squeeze_target, unsqueeze_target)

Array = np.ndarray
ConstFn = Callable[[Sequence["Array | None"], dict[str, Any]], list[Array]]


# --------------------------------------------------------------------------- evaluators


def _constant(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    if "value" in attrs:
        return [numpy_helper.to_array(attrs["value"])]
    for key, dt in (("value_float", np.float32), ("value_floats", np.float32),
                    ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return [np.asarray(attrs[key], dtype=dt)]
    raise ValueError("Constant without a supported value attribute (sparse or string)")


def cast_target(to: Any) -> int:
    """Cast's ``to``: a TensorProto enum value, or its name (a string before opset 6)."""
    if isinstance(to, (bytes, str)):
        name = to.decode() if isinstance(to, bytes) else to
        return int(TensorProto.DataType.Value(name.upper()))
    return int(to)


def _cast(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    to = helper.tensor_dtype_to_np_dtype(cast_target(attrs["to"]))
    return [np.asarray(ins[0]).astype(to)]


def _div(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    a, b = ins[0], ins[1]
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":  # ONNX integer division truncates
        return [np.trunc(np.true_divide(a, b)).astype(np.result_type(a, b))]
    return [np.asarray(a / b, dtype=np.result_type(a, b))]


def _same(fn: Callable[..., Any]) -> ConstFn:
    """Elementwise op whose result keeps the (promoted) input dtype, as ONNX does."""
    def ev(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
        args = [x for x in ins if x is not None]
        return [np.asarray(fn(*args)).astype(np.result_type(*args), copy=False)]
    return ev


def _bool(fn: Callable[..., Any]) -> ConstFn:
    return lambda ins, attrs: [np.asarray(fn(*[x for x in ins if x is not None]))]


def _gemm(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    a, b = ins[0], ins[1]
    a = a.T if attrs.get("transA", 0) else a
    b = b.T if attrs.get("transB", 0) else b
    y = attrs.get("alpha", 1.0) * (a @ b)
    if len(ins) > 2 and ins[2] is not None:
        y = y + attrs.get("beta", 1.0) * ins[2]
    return [y.astype(a.dtype, copy=False)]


def _axis_indices(ins: Sequence[Array | None], attrs: dict[str, Any]
                  ) -> tuple[Array, Array, int]:
    """(data, indices made non-negative, axis) of Gather/GatherElements/ScatterElements."""
    data, idx = ins[0], np.asarray(ins[1]).astype(np.int64)
    axis = norm_axis(attrs.get("axis", 0), data.ndim)
    return data, np.where(idx < 0, idx + data.shape[axis], idx), axis


def _gather(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    data, idx, axis = _axis_indices(ins, attrs)
    return [np.take(data, idx, axis=axis)]


def _unsqueeze(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    axes = ints(input_or_attr(ins, 1, attrs, "axes"))
    return [ins[0].reshape(unsqueeze_target(ins[0].shape, axes))]


def _squeeze(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    axes = ints(input_or_attr(ins, 1, attrs, "axes"))
    return [ins[0].reshape(squeeze_target(ins[0].shape, axes))]


def _concat(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    xs = [x for x in ins if x is not None]
    return [np.concatenate(xs, axis=norm_axis(attrs.get("axis", 1), xs[0].ndim))]


def _reshape(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    target = ints(input_or_attr(ins, 1, attrs, "shape"))
    return [ins[0].reshape(reshape_target(ins[0].shape, target, bool(attrs.get("allowzero"))))]


def _flatten(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    return [ins[0].reshape(flatten_target(ins[0].shape, attrs.get("axis", 1)))]


def _transpose(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    return [np.transpose(ins[0], attrs.get("perm"))]


def _slice(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    x = ins[0]
    starts = ints(input_or_attr(ins, 1, attrs, "starts"))
    ends = ints(input_or_attr(ins, 2, attrs, "ends"))
    axes = ints(input_or_attr(ins, 3, attrs, "axes"))
    steps = ints(ins[4]) if len(ins) > 4 and ins[4] is not None else None
    index: list[Any] = [slice(None)] * x.ndim
    for a, r in slice_ranges(x.shape, starts, ends, axes, steps):
        index[a] = list(r)
    out = x
    for a, sel in enumerate(index):  # one axis at a time: fancy indexing on several axes zips
        if not isinstance(sel, slice):
            out = np.take(out, np.asarray(sel, dtype=np.int64), axis=a)
    return [out]


def _split(ins: Sequence[Array | None], attrs: dict[str, Any], n_out: int) -> list[Array]:
    x = ins[0]
    axis = norm_axis(attrs.get("axis", 0), x.ndim)
    sizes = split_sizes(x.shape[axis], ints(input_or_attr(ins, 1, attrs, "split")), n_out,
                        attrs.get("num_outputs"))
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


def _shape(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    return [shape_array(ins[0].shape, attrs)]


def _constant_of_shape(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    value = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, np.float32)
    return [np.full(ints(ins[0]), value.reshape(-1)[0], dtype=value.dtype)]


def _range(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    start, limit, delta = (np.asarray(x).reshape(()) for x in ins[:3])
    return [np.arange(start, limit, delta, dtype=np.result_type(start, limit, delta))]


def _expand(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    shape = np.broadcast_shapes(ins[0].shape, tuple(ints(ins[1])))
    return [np.broadcast_to(ins[0], shape).copy()]


def _reduce(fn: Callable[..., Array]) -> ConstFn:
    def ev(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
        x = ins[0]
        axes = reduce_axes(ins, attrs, x.ndim)
        if axes == []:
            return [x]
        return [np.asarray(fn(x, axis=None if axes is None else tuple(axes),
                              keepdims=bool(attrs.get("keepdims", 1)))).astype(x.dtype)]
    return ev


def _where(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    return [np.where(ins[0], ins[1], ins[2])]


def _arg(fn: Callable[..., Array]) -> ConstFn:
    """ArgMax/ArgMin (``select_last_index``: the last of tied extremes)."""
    def ev(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
        x = ins[0]
        axis = norm_axis(attrs.get("axis", 0), x.ndim)
        if attrs.get("select_last_index", 0):
            idx = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)
        else:
            idx = fn(x, axis=axis)
        idx = np.asarray(idx, dtype=np.int64)
        return [np.expand_dims(idx, axis) if attrs.get("keepdims", 1) else idx]
    return ev


_SCATTER = {"none": None, "add": np.add, "mul": np.multiply, "max": np.maximum,
            "min": np.minimum}


def _reduction(attrs: dict[str, Any]) -> Any:
    r = attrs.get("reduction", "none")
    return _SCATTER[r.decode() if isinstance(r, bytes) else r]


def _scatter_nd(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    data, idx, upd = ins[0], np.asarray(ins[1]).astype(np.int64), ins[2]
    k = idx.shape[-1]
    idx = idx.reshape(-1, k)
    idx = np.where(idx < 0, idx + np.asarray(data.shape[:k]), idx)
    upd = np.asarray(upd, dtype=data.dtype).reshape((idx.shape[0],) + data.shape[k:])
    out, red = data.copy(), _reduction(attrs)
    for i, u in zip(idx, upd):  # in order: later updates win, as in the reference
        t = tuple(i)
        out[t] = u if red is None else red(out[t], u)
    return [out]


def _scatter_elements(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    data, idx, axis = _axis_indices(ins, attrs)
    full = list(np.indices(idx.shape, sparse=True))
    full[axis] = idx
    out, red = data.copy(), _reduction(attrs)
    upd = np.asarray(ins[2], dtype=data.dtype)
    if red is None:
        out[tuple(full)] = upd
    else:
        red.at(out, tuple(np.broadcast_arrays(*full)), upd)
    return [out]


def _gather_elements(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    data, idx, axis = _axis_indices(ins, attrs)
    return [np.take_along_axis(data, idx, axis=axis)]


def _mod(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    """``fmod=1``: C fmod (sign of the dividend); else Python-style (sign of the divisor)."""
    a, b = ins[0], ins[1]
    fn = np.fmod if attrs.get("fmod", 0) else np.mod
    return [np.asarray(fn(a, b)).astype(np.result_type(a, b), copy=False)]


def _nonzero(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    return [np.asarray(np.nonzero(np.atleast_1d(ins[0])), dtype=np.int64)]


def _clip(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    x = ins[0]
    lo, hi = input_or_attr(ins, 1, attrs, "min"), input_or_attr(ins, 2, attrs, "max")
    out = x if lo is None else np.maximum(x, np.asarray(lo, x.dtype))
    out = out if hi is None else np.minimum(out, np.asarray(hi, x.dtype))
    return [np.asarray(out, dtype=x.dtype)]


def _trilu(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    k = int(np.asarray(ins[1]).reshape(-1)[0]) if len(ins) > 1 and ins[1] is not None else 0
    return [(np.triu if attrs.get("upper", 1) else np.tril)(ins[0], k)]


def _cumsum(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    x = ins[0]
    axis = norm_axis(int(np.asarray(ins[1]).reshape(-1)[0]), x.ndim)
    rev = bool(attrs.get("reverse", 0))
    y = np.flip(x, axis) if rev else x
    out = np.cumsum(y, axis=axis, dtype=x.dtype)
    if attrs.get("exclusive", 0):
        out = out - y
    return [np.flip(out, axis) if rev else out]


def _identity(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    return [ins[0]]


def _dropout(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    return [ins[0], np.ones(ins[0].shape, dtype=bool)]


def _sigmoid(x: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-x))


CONST_OPS: dict[str, ConstFn] = {
    "Constant": _constant,
    "Identity": _identity,
    "Dropout": _dropout,
    "Cast": _cast,
    "CastLike": lambda ins, attrs: [np.asarray(ins[0]).astype(ins[1].dtype)],
    "Add": _same(np.add),
    "Sub": _same(np.subtract),
    "Mul": _same(np.multiply),
    "Div": _div,
    "Neg": _same(np.negative),
    "Abs": _same(np.abs),
    "Sqrt": _same(np.sqrt),
    "Pow": lambda ins, attrs: [np.power(ins[0], ins[1]).astype(ins[0].dtype)],
    "Exp": _same(np.exp),
    "Log": _same(np.log),
    "Reciprocal": _same(np.reciprocal),
    "Floor": _same(np.floor),
    "Ceil": _same(np.ceil),
    "Round": _same(np.round),  # half to even, as ONNX
    "Mod": _mod,
    "Clip": _clip,
    "Sum": _same(lambda *xs: sum(xs[1:], xs[0])),
    "Sign": _same(np.sign),
    "Relu": _same(lambda x: np.maximum(x, 0)),
    "Sigmoid": _same(_sigmoid),
    "Tanh": _same(np.tanh),
    "Min": _same(lambda *xs: np.minimum.reduce(np.broadcast_arrays(*xs))),
    "Max": _same(lambda *xs: np.maximum.reduce(np.broadcast_arrays(*xs))),
    "Equal": _bool(np.equal),
    "Less": _bool(np.less),
    "Greater": _bool(np.greater),
    "LessOrEqual": _bool(np.less_equal),
    "GreaterOrEqual": _bool(np.greater_equal),
    "Not": _bool(np.logical_not),
    "And": _bool(np.logical_and),
    "Or": _bool(np.logical_or),
    "Xor": _bool(np.logical_xor),
    "NonZero": _nonzero,
    "Where": _where,
    "MatMul": _same(np.matmul),
    "Gemm": _gemm,
    "Gather": _gather,
    "GatherElements": _gather_elements,
    "ScatterND": _scatter_nd,
    "ScatterElements": _scatter_elements,
    "ArgMax": _arg(np.argmax),
    "ArgMin": _arg(np.argmin),
    "Trilu": _trilu,
    "CumSum": _cumsum,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Transpose": _transpose,
    "Slice": _slice,
    "Shape": _shape,
    "Size": lambda ins, attrs: [np.asarray(ins[0].size, dtype=np.int64)],
    "ConstantOfShape": _constant_of_shape,
    "Range": _range,
    "Expand": _expand,
    "Tile": lambda ins, attrs: [np.tile(ins[0], ints(ins[1]))],
    "ReduceProd": _reduce(np.prod),
    "ReduceSum": _reduce(np.sum),
    "ReduceMean": _reduce(np.mean),
    "ReduceMax": _reduce(np.max),
    "ReduceMin": _reduce(np.min),
}

# Split's output count comes from the node, not its inputs.
MULTI_OUTPUT_CONST_OPS = {"Split": _split}
