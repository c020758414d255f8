"""Shape and axis bookkeeping shared by the ONNX translators and constant folding.

Why a module of its own: both the evaluators on constants (``onnx_const``) and the
translators on variables (``onnx_ops``, ``onnx_builder``...) resolve ONNX's axis, slice,
reshape and split conventions, and must resolve them identically.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

Array = np.ndarray


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


def shape_array(shape: Sequence[int], attrs: dict[str, Any]) -> Array:
    """ONNX Shape (with opset-15 ``start``/``end``) of a tensor of static ``shape``."""
    s = list(shape)
    start, end = attrs.get("start", 0), attrs.get("end")
    return np.asarray(s[slice(start, end)], dtype=np.int64)
