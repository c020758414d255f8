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

Array = np.ndarray
ConstFn = Callable[[Sequence["Array | None"], dict[str, Any]], list[Array]]


# --------------------------------------------------------------------------- shared helpers


def norm_axis(axis: int, rank: int) -> int:
    """ONNX axes may be negative; map to ``[0, rank)`` (ValueError outside)."""
    a = int(axis)
    if a < 0:
        a += rank
    if not 0 <= a < max(rank, 1):
        raise ValueError(f"axis {axis} out of range for rank {rank}")
    return a


def ints(x: Array | Sequence[int] | None) -> list[int] | None:
    return None if x is None else [int(v) for v in np.asarray(x).reshape(-1)]


def input_or_attr(ins: Sequence[Array | None], i: int, attrs: dict[str, Any], name: str
                  ) -> Any:
    """Opsets moved many attributes to inputs (axes, pads, split...): accept both forms."""
    if len(ins) > i and ins[i] is not None:
        return ins[i]
    return attrs.get(name)


def slice_ranges(shape: Sequence[int], starts: Sequence[int], ends: Sequence[int],
                 axes: Sequence[int] | None, steps: Sequence[int] | None
                 ) -> list[tuple[int, range]]:
    """Per sliced axis, the selected indices. ONNX Slice clamps exactly like Python slices."""
    rank = len(shape)
    axes = list(range(len(starts))) if axes is None else list(axes)
    steps = [1] * len(starts) if steps is None else list(steps)
    out = []
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise ValueError("Slice step 0")
        a = norm_axis(a, rank)
        out.append((a, range(shape[a])[slice(int(s), int(e), int(st))]))
    return out


def reshape_target(shape: Sequence[int], target: Sequence[int], allowzero: bool = False
                   ) -> tuple[int, ...]:
    """Resolve ONNX Reshape's ``0`` (copy) and ``-1`` (infer) entries against ``shape``."""
    total = int(np.prod(shape, dtype=np.int64))
    out = []
    infer = -1
    for i, t in enumerate(target):
        t = int(t)
        if t == 0 and not allowzero:
            if i >= len(shape):
                raise ValueError(f"Reshape copies axis {i} of a rank-{len(shape)} tensor")
            t = shape[i]
        if t == -1:
            if infer >= 0:
                raise ValueError("Reshape target has two -1 entries")
            infer = i
        elif t < 0:
            raise ValueError(f"Reshape target entry {t}")
        out.append(t)
    if infer >= 0:
        known = int(np.prod([d for i, d in enumerate(out) if i != infer], dtype=np.int64))
        if known == 0 or total % known:
            raise ValueError(f"cannot reshape {tuple(shape)} to {tuple(target)}")
        out[infer] = total // known
    if int(np.prod(out, dtype=np.int64)) != total:
        raise ValueError(f"cannot reshape {tuple(shape)} to {tuple(target)}")
    return tuple(out)


def flatten_target(shape: Sequence[int], axis: int) -> tuple[int, int]:
    a = norm_axis(axis, len(shape) + 1)
    return (int(np.prod(shape[:a], dtype=np.int64)), int(np.prod(shape[a:], dtype=np.int64)))


def squeeze_target(shape: Sequence[int], axes: Sequence[int] | None) -> tuple[int, ...]:
    if axes is None:
        return tuple(d for d in shape if d != 1)
    drop = {norm_axis(a, len(shape)) for a in axes}
    for a in drop:
        if shape[a] != 1:
            raise ValueError(f"Squeeze of axis {a} with size {shape[a]}")
    return tuple(d for i, d in enumerate(shape) if i not in drop)


def unsqueeze_target(shape: Sequence[int], axes: Sequence[int]) -> tuple[int, ...]:
    rank = len(shape) + len(axes)
    new = sorted(norm_axis(a, rank) for a in axes)
    out = list(shape)
    for a in new:
        out.insert(a, 1)
    return tuple(out)


def split_sizes(dim: int, split: Sequence[int] | None, n_out: int, num_outputs: int | None
                ) -> list[int]:
    if split is not None:
        sizes = [int(s) for s in split]
    else:
        n = num_outputs or n_out
        if num_outputs is None and dim % n:
            raise ValueError(f"cannot split {dim} into {n} equal parts")
        chunk = -(-dim // n)
        sizes = [min(chunk, dim - i * chunk) for i in range(n)]
    if sum(sizes) != dim:
        raise ValueError(f"split sizes {sizes} do not add up to {dim}")
    return sizes


def reduce_axes(ins: Sequence[Array | None], attrs: dict[str, Any], rank: int
                ) -> list[int] | None:
    """Reduction axes (attribute before opset 13/18, input after); None = all axes."""
    axes = ints(input_or_attr(ins, 1, attrs, "axes"))
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return []
        return None
    return sorted({norm_axis(a, rank) for a in axes})


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


def _gather(ins: Sequence[Array | None], attrs: dict[str, Any]) -> list[Array]:
    data, idx = ins[0], np.asarray(ins[1]).astype(np.int64)
    axis = norm_axis(attrs.get("axis", 0), data.ndim)
    idx = np.where(idx < 0, idx + data.shape[axis], idx)
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


def shape_array(shape: Sequence[int], attrs: dict[str, Any]) -> Array:
    """ONNX Shape (with opset-15 ``start``/``end``) of a tensor of static ``shape``."""
    s = list(shape)
    start, end = attrs.get("start", 0), attrs.get("end")
    return np.asarray(s[slice(start, end)], dtype=np.int64)


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
    "Sign": _same(np.sign),
    "Relu": _same(lambda x: np.maximum(x, 0)),
    "Sigmoid": _same(_sigmoid),
    "Tanh": _same(np.tanh),
    "Min": _same(lambda *xs: np.minimum.reduce(np.broadcast_arrays(*xs))),
    "Max": _same(lambda *xs: np.maximum.reduce(np.broadcast_arrays(*xs))),
    "Equal": _bool(np.equal),
    "Less": _bool(np.less),
    "Greater": _bool(np.greater),
    "Not": _bool(np.logical_not),
    "Where": _where,
    "MatMul": _same(np.matmul),
    "Gemm": _gemm,
    "Gather": _gather,
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
