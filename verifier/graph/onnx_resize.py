"""ONNX Resize (opsets 10-19) and Upsample (opsets 7 and 9) on variable tensors.

Why no new node kind: with constant scales or sizes, nearest and (bi/tri)linear resizing are
linear maps with constant coefficients, separable per axis: the output is the input with one
``(out_len, in_len)`` interpolation matrix applied along each resized axis. A nearest matrix
only selects, so it becomes a Gather; a linear one a Dense along the axis. Source coordinates
are computed in float32 in onnxruntime's order, so nearest-neighbour ties break the same way.
Cubic interpolation and antialiased linear downsampling are not supported.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from planecut.verifier.graph.onnx_builder import Builder, Value, Var, need_const, need_var
from planecut.verifier.graph.onnx_axes import ints, norm_axis

Ins = Sequence["Value | None"]
_F = np.float32
_COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _text(attrs: dict[str, Any], name: str, default: str) -> str:
    v = attrs.get(name, default)
    return (v.decode() if isinstance(v, bytes) else str(v)).lower()


def source_coords(mode: str, m: int, n: int, scale: float, roi: tuple[float, float]
                  ) -> np.ndarray:
    """Input coordinate (float32) of each of the ``m`` output positions of an axis of
    length ``n`` resized by ``scale`` (``coordinate_transformation_mode``)."""
    x, s, h = np.arange(m, dtype=_F), _F(scale), _F(0.5)
    if mode == "half_pixel" or (mode == "pytorch_half_pixel" and m > 1):
        return (x + h) / s - h
    if mode == "pytorch_half_pixel" or (mode == "align_corners" and m == 1):
        return np.zeros(m, _F)
    if mode == "align_corners":
        return x * _F(n - 1) / _F(m - 1)
    if mode == "asymmetric":
        return x / s
    if mode == "tf_half_pixel_for_nn":
        return (x + h) / s
    if mode == "half_pixel_symmetric":
        adjust = _F(m) / (s * _F(n))
        offset = _F(n) / _F(2) * (_F(1) - adjust)
        return offset + (x + h) / s - h
    r0, r1 = _F(roi[0]), _F(roi[1])  # tf_crop_and_resize
    if m > 1:
        return r0 * _F(n - 1) + x * (r1 - r0) * _F(n - 1) / _F(m - 1)
    return np.full(m, 0.5 * (float(r0) + float(r1)) * (n - 1), _F)


def nearest_index(xo: np.ndarray, mode: str, downsampling: bool) -> np.ndarray:
    """Nearest input index (before clamping) per ``nearest_mode``; ``simple`` is the rule of
    Upsample and opset-10 Resize (truncate, or ceil when downsampling)."""
    d = xo.astype(np.float64)
    rounded = np.where(d >= 0, np.floor(d + 0.5), np.ceil(d - 0.5))  # C's round(): ties away
    if mode == "round_prefer_floor":
        idx = np.where(d == np.trunc(d) + 0.5, np.floor(d), rounded)
    elif mode == "round_prefer_ceil":
        idx = rounded
    elif mode == "floor":
        idx = np.floor(d)
    elif mode == "ceil" or downsampling:
        idx = np.ceil(d)
    else:
        idx = np.trunc(d)
    return idx.astype(np.int64)


def linear_matrix(xo: np.ndarray, n: int) -> np.ndarray:
    """``(len(xo), n)`` weights of 1-D linear interpolation at coordinates ``xo`` (clamped to
    the axis), as onnxruntime weighs the two neighbours."""
    c = np.clip(xo, _F(0), _F(n - 1)).astype(_F)
    i1 = np.minimum(c.astype(np.int64), n - 1)
    i2 = np.minimum(i1 + 1, n - 1)
    d1 = np.abs(c - i1.astype(_F)).astype(np.float64)
    d2 = np.abs(c - i2.astype(_F)).astype(np.float64)
    same = i1 == i2
    d1[same] = d2[same] = 0.5
    w = np.zeros((len(xo), n))
    rows = np.arange(len(xo))
    np.add.at(w, (rows, i1), d2)
    np.add.at(w, (rows, i2), d1)
    return w


def _apply(b: Builder, v: Var, axis: int, w: np.ndarray) -> Var:
    """``w`` along ``axis``: nothing for the identity, a Gather for a selection, else Dense."""
    if w.shape[0] == w.shape[1] and np.array_equal(w, np.eye(w.shape[0])):
        return v
    if np.all((w == 0) | (w == 1)) and np.all(w.sum(axis=1) == 1):
        return b.take(v, axis, w.argmax(axis=1))
    return b.axis_linear(v, axis, w)


def _targets(b: Builder, shape: Sequence[int], axes: list[int], scales: np.ndarray | None,
             sizes: np.ndarray | None, policy: str) -> tuple[np.ndarray, list[int]]:
    """Per-axis float32 scale and output length (from ``scales``, or ``sizes`` with the
    opset-18 ``keep_aspect_ratio_policy``)."""
    rank = len(shape)
    scale, out = np.ones(rank, _F), list(shape)
    given = sizes if sizes is not None else scales
    if given is None:
        raise b.malformed("needs scales or sizes")
    if given.size != len(axes):
        raise b.malformed(f"{given.size} {'sizes' if sizes is not None else 'scales'} for "
                          f"{len(axes)} axes")
    if sizes is None:
        for s, a in zip(scales.astype(_F).reshape(-1), axes):
            if not s > 0:
                raise b.malformed(f"scale {s} (must be positive)")
            scale[a], out[a] = s, int(s * _F(shape[a]))  # truncation, as onnxruntime
        return scale, out
    sz = ints(sizes)
    ratios = [_F(t) / _F(shape[a]) for t, a in zip(sz, axes)]
    if policy == "stretch":
        for r, t, a in zip(ratios, sz, axes):
            scale[a], out[a] = r, t
        return scale, out
    if policy not in ("not_larger", "not_smaller"):
        raise b.malformed(f"unknown keep_aspect_ratio_policy {policy!r}")
    r = min(ratios) if policy == "not_larger" else max(ratios)
    for a in axes:
        scale[a], out[a] = r, int(np.floor(float(r * _F(shape[a])) + 0.5))
    return scale, out


def _const(b: Builder, x: Value | None, what: str) -> np.ndarray | None:
    """An optional constant input; an empty tensor counts as omitted."""
    if x is None:
        return None
    c = np.asarray(need_const(b, x, what))
    return c if c.size else None


def _resize(b: Builder, x: Var, attrs: dict[str, Any], roi: Value | None, scales: Value | None,
            sizes: Value | None, legacy: bool) -> Var:
    mode = _text(attrs, "mode", "nearest")
    mode = "linear" if mode in ("bilinear", "trilinear") else mode
    if mode == "cubic":
        raise b.unsupported("mode 'cubic' (bicubic interpolation) is not supported, only "
                            "'nearest' and 'linear'")
    if mode not in ("nearest", "linear"):
        raise b.malformed(f"unknown mode {mode!r}")
    coord = "asymmetric" if legacy else _text(attrs, "coordinate_transformation_mode",
                                              "half_pixel")
    nearest = "simple" if legacy else _text(attrs, "nearest_mode", "round_prefer_floor")
    if coord not in _COORD_MODES:
        raise b.unsupported(f"coordinate_transformation_mode {coord!r}")
    if nearest not in _NEAREST_MODES + ("simple",):
        raise b.unsupported(f"nearest_mode {nearest!r}")
    axes = ints(attrs.get("axes"))
    axes = list(range(x.rank)) if axes is None else [norm_axis(a, x.rank) for a in axes]
    scale, out = _targets(b, x.shape, axes, _const(b, scales, "scales"),
                          _const(b, sizes, "sizes"), _text(attrs, "keep_aspect_ratio_policy",
                                                           "stretch"))
    if attrs.get("antialias", 0) and mode == "linear" and np.any(scale < 1):
        raise b.unsupported("antialiased linear downsampling is not supported")
    starts, ends = [0.0] * x.rank, [1.0] * x.rank
    roi_c = _const(b, roi, "roi") if coord == "tf_crop_and_resize" else None
    if roi_c is not None:
        r = roi_c.astype(np.float64).reshape(-1)
        if r.size != 2 * len(axes):
            raise b.malformed(f"roi has {r.size} values for {len(axes)} axes")
        for i, a in enumerate(axes):
            starts[a], ends[a] = r[i], r[i + len(axes)]
    outside = np.zeros(out, bool)
    v = x
    for a in reversed(range(x.rank)):  # last axis first: it needs no transposition
        n, m = x.shape[a], out[a]
        xo = source_coords(coord, m, n, scale[a], (starts[a], ends[a]))
        if mode == "nearest":
            w = np.zeros((m, n))
            w[np.arange(m), np.clip(nearest_index(xo, nearest, scale[a] < 1), 0, n - 1)] = 1
        else:
            w = linear_matrix(xo, n)
        if coord == "tf_crop_and_resize":  # out of the input: extrapolation_value
            off = (xo < 0) | (xo > n - 1)
            w[off] = 0
            outside |= off.reshape([-1 if i == a else 1 for i in range(x.rank)])
        v = _apply(b, v, a, w)
    fill = float(attrs.get("extrapolation_value", 0.0))
    if fill and outside.any():
        v = b.affine(v, shift=np.where(outside, fill, 0.0).astype(_F))
    return v


def resize(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x = need_var(b, ins[0])
    if len(ins) == 2:  # opset 10: (X, scales), asymmetric coordinates
        return [_resize(b, x, attrs, None, ins[1], None, legacy=True)]
    roi, scales, sizes = (ins[i] if len(ins) > i else None for i in (1, 2, 3))
    return [_resize(b, x, attrs, roi, scales, sizes, legacy=False)]


def upsample(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    """Upsample: ``scales`` an attribute (opset 7) or an input (opset 9); Resize-10 rules."""
    x = need_var(b, ins[0])
    scales = ins[1] if len(ins) > 1 and ins[1] is not None else attrs.get("scales")
    if isinstance(scales, (list, tuple)):
        scales = np.asarray(scales, _F)
    return [_resize(b, x, attrs, None, scales, None, legacy=True)]


def converter_changes_resize(op_types: Sequence[str], opset: int) -> bool:
    """Whether lifting a model of ``opset`` with these operators by onnx's version converter
    would change it: onnx 1.23 turns Upsample and opset-10 Resize into a Resize-11+ that keeps
    neither their asymmetric coordinates nor their nearest rule (linear results differ). The
    translators handle those forms as they are."""
    return "Upsample" in op_types or (opset < 11 and "Resize" in op_types)


RESIZE_OPS = {"Resize": resize, "Upsample": upsample}
