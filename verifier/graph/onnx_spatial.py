"""ONNX translators for convolutions, padding and pooling (the NCHW-layout operators).

Why separate: these share the pad/stride/dilation/auto_pad bookkeeping and the 1-D -> 2-D
lifting, and make up half of the translation table. Signatures as in ``onnx_ops``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from planecut.verifier.graph import ir
from planecut.verifier.graph.onnx_builder import (Builder, Value, Var, as_float, need_const,
                                                  need_var, to_tensor)
from planecut.verifier.graph.onnx_axes import input_or_attr, ints, norm_axis

Ins = Sequence["Value | None"]


# --------------------------------------------------------------------------- convolutions


def _resolve_pads(b: Builder, attrs: dict[str, Any], in_sizes: Sequence[int],
                  kernel: Sequence[int], strides: Sequence[int], dil: Sequence[int]
                  ) -> tuple[list[int], list[int]]:
    """(begins, ends) per spatial axis from ``pads``/``auto_pad`` (conv and pooling)."""
    nd = len(kernel)
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for i in range(nd):
            out = -(-in_sizes[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - in_sizes[i])
            small, big = total // 2, total - total // 2
            begins.append(small if auto == "SAME_UPPER" else big)
            ends.append(big if auto == "SAME_UPPER" else small)
        return begins, ends
    if auto == "VALID":
        return [0] * nd, [0] * nd
    if auto not in ("NOTSET", ""):
        raise b.malformed(f"unknown auto_pad {auto!r}")
    pads = ints(attrs.get("pads")) or [0] * (2 * nd)
    if len(pads) != 2 * nd:
        raise b.malformed(f"pads {pads} do not match {nd} spatial axes")
    return pads[:nd], pads[nd:]


def _lift_1d(b: Builder, v: Var) -> Var:
    """(1, C, L) -> (1, C, 1, L): 1-D conv/pool as 2-D with a height-1 kernel."""
    return b.reshape(v, v.shape[:2] + (1,) + v.shape[2:])


def conv(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    w = as_float(b, need_const(b, ins[1], "weight"), "weight")
    bias = ins[2] if len(ins) > 2 else None
    bias = None if bias is None else as_float(b, need_const(b, bias, "bias"), "bias").reshape(-1)
    nd = w.ndim - 2
    if nd not in (1, 2):
        raise b.unsupported(f"{nd}-D convolution (only 1-D and 2-D)")
    x = b.spatial(need_var(b, ins[0]), nd)
    groups = int(attrs.get("group", 1))
    if x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
        raise b.malformed(f"weight {w.shape} does not fit input {x.shape} with group={groups}")
    kernel = list(w.shape[2:])
    strides = ints(attrs.get("strides")) or [1] * nd
    dil = ints(attrs.get("dilations")) or [1] * nd
    begins, ends = _resolve_pads(b, attrs, x.shape[2:], kernel, strides, dil)
    if nd == 1:
        x, w = _lift_1d(b, x), w[:, :, None, :]
        kernel, strides, dil = [1] + kernel, [1] + strides, [1] + dil
        begins, ends = [0] + begins, [0] + ends
    sym = [min(p, q) for p, q in zip(begins, ends)]
    if begins != sym or ends != sym:  # asymmetric: the excess goes to an explicit Pad
        x = b.pad(x, [0, 0] + [p - s for p, s in zip(begins, sym)],
                  [0, 0] + [q - s for q, s in zip(ends, sym)])
    hw = [(x.shape[2 + i] + 2 * sym[i] - dil[i] * (kernel[i] - 1) - 1) // strides[i] + 1
          for i in range(2)]
    out = b.emit(ir.Conv, [x], (1, w.shape[0], *hw), True, weight=to_tensor(w),
                 bias_=None if bias is None else to_tensor(bias), stride=tuple(strides),
                 padding=tuple(sym), dilation=tuple(dil), groups=groups)
    if nd == 1:
        out = b.reshape(out, (1, w.shape[0], hw[1]))
    return [out]


def conv_transpose(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int
                    ) -> list[Value | None]:
    w = as_float(b, need_const(b, ins[1], "weight"), "weight")
    bias = ins[2] if len(ins) > 2 else None
    bias = None if bias is None else as_float(b, need_const(b, bias, "bias"), "bias").reshape(-1)
    if w.ndim != 4:
        raise b.unsupported(f"{w.ndim - 2}-D transposed convolution (only 2-D)")
    x = b.spatial(need_var(b, ins[0]), 2)
    groups = int(attrs.get("group", 1))
    if x.shape[1] != w.shape[0]:
        raise b.malformed(f"weight {w.shape} does not fit input {x.shape}")
    kernel = list(w.shape[2:])
    strides = ints(attrs.get("strides")) or [1, 1]
    dil = ints(attrs.get("dilations")) or [1, 1]
    out_pad = ints(attrs.get("output_padding")) or [0, 0]
    full = [strides[i] * (x.shape[2 + i] - 1) + out_pad[i] + (kernel[i] - 1) * dil[i] + 1
            for i in range(2)]
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    out_shape = ints(attrs.get("output_shape"))
    if out_shape:  # onnxruntime's rule: an odd total crops more at the head unless SAME_UPPER
        out_shape = out_shape[-2:]
        totals = [max(0, f - o) for f, o in zip(full, out_shape)]
        if auto == "SAME_UPPER":
            begins = [t // 2 for t in totals]
        else:
            begins = [t - t // 2 for t in totals]
        ends = [t - s for t, s in zip(totals, begins)]
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        raise b.unsupported("ConvTranspose with auto_pad SAME and no output_shape")
    else:
        begins, ends = _resolve_pads(b, attrs, x.shape[2:], kernel, strides, dil)
    sym = [min(p, q) for p, q in zip(begins, ends)]
    hw = [f - 2 * s for f, s in zip(full, sym)]
    for i in range(2):
        if out_pad[i] >= max(strides[i], dil[i]):
            raise b.unsupported(f"output_padding {out_pad} not below stride or dilation")
    c_out = w.shape[1] * groups
    out = b.emit(ir.ConvTranspose, [x], (1, c_out, *hw), True, weight=to_tensor(w),
                 bias_=None if bias is None else to_tensor(bias), stride=tuple(strides),
                 padding=tuple(sym), output_padding=tuple(out_pad), dilation=tuple(dil),
                 groups=groups)
    if begins != sym or ends != sym:  # asymmetric crop
        out = b.pad(out, [0, 0] + [s - p for p, s in zip(begins, sym)],
                    [0, 0] + [s - q for q, s in zip(ends, sym)])
    return [out]


# --------------------------------------------------------------------------- padding, pooling


def pad(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    x = need_var(b, ins[0])
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    pads = input_or_attr(ins, 1, attrs, "pads")
    if pads is None:
        pads = attrs.get("paddings")  # opset 1
    pads = ints(need_const(b, pads, "pads"))
    value = input_or_attr(ins, 2, attrs, "value")
    if value is not None:
        value = np.asarray(need_const(b, value, "pad value")).reshape(-1)
    value = float(value[0]) if value is not None and value.size else 0.0
    axes = ints(ins[3]) if len(ins) > 3 and ins[3] is not None else list(range(x.rank))
    axes = [norm_axis(a, x.rank) for a in axes]
    if len(pads) != 2 * len(axes):
        raise b.malformed(f"pads {pads} do not match rank {x.rank}")
    begins, ends = [0] * x.rank, [0] * x.rank
    for i, a in enumerate(axes):
        begins[a], ends[a] = pads[i], pads[len(axes) + i]
    if mode != "constant" and (any(begins) or any(ends)):
        raise b.unsupported(f"Pad mode {mode!r} (only 'constant')")
    return [b.pad(x, begins, ends, value)]


def _pool_out(size: int, pb: int, pe: int, k: int, s: int, d: int, ceil: bool) -> int:
    eff = (k - 1) * d + 1
    if ceil:
        out = -(-(size + pb + pe - eff) // s) + 1
        if (out - 1) * s >= size + pb:  # last window must start inside the input
            out -= 1
        return out
    return (size + pb + pe - eff) // s + 1


def _pool(b: Builder, ins: Ins, attrs: dict[str, Any], is_max: bool, global_: bool) -> Var:
    x = need_var(b, ins[0])
    nd = x.rank - 2
    if nd not in (1, 2):
        raise b.unsupported(f"{nd}-D pooling (only 1-D and 2-D)")
    x = b.spatial(x, nd)
    kernel = list(x.shape[2:]) if global_ else ints(attrs["kernel_shape"])
    strides = [1] * nd if global_ else (ints(attrs.get("strides")) or [1] * nd)
    dil = [1] * nd if global_ else (ints(attrs.get("dilations")) or [1] * nd)
    begins, ends = ([0] * nd, [0] * nd) if global_ else _resolve_pads(
        b, attrs, x.shape[2:], kernel, strides, dil)
    ceil = bool(attrs.get("ceil_mode", 0))
    include_pad = bool(attrs.get("count_include_pad", 0))
    if nd == 1:
        x = _lift_1d(b, x)
        kernel, strides, dil = [1] + kernel, [1] + strides, [1] + dil
        begins, ends = [0] + begins, [0] + ends
    if not is_max and dil != [1, 1]:
        raise b.unsupported(f"dilated average pooling (dilations {dil})")
    sym = [min(p, q) for p, q in zip(begins, ends)]
    too_big = any(2 * p > k for p, k in zip(sym, kernel))
    if begins != sym or ends != sym or too_big:
        if is_max or not include_pad:
            raise b.unsupported(f"{'max' if is_max else 'average'} pooling with pads "
                                f"{begins + ends} (asymmetric or larger than half the kernel)")
        x = b.pad(x, [0, 0] + begins, [0, 0] + ends)  # zeros count in the average anyway
        sym = [0, 0]
    hw = [_pool_out(x.shape[2 + i], sym[i], sym[i], kernel[i], strides[i], dil[i], ceil)
          for i in range(2)]
    shape = (1, x.shape[1], *hw)
    if is_max:
        out = b.emit(ir.MaxPool, [x], shape, True, kernel=tuple(kernel), stride=tuple(strides),
                     padding=tuple(sym), dilation=tuple(dil), ceil_mode=ceil)
    else:
        out = b.emit(ir.AvgPool, [x], shape, True, kernel=tuple(kernel), stride=tuple(strides),
                     padding=tuple(sym), count_include_pad=include_pad, ceil_mode=ceil)
    if nd == 1:
        out = b.reshape(out, (1, x.shape[1], hw[1]))
    return out


def maxpool(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    if n_out > 1:
        raise b.unsupported("MaxPool's Indices output")
    return [_pool(b, ins, attrs, True, False)]


def avgpool(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int) -> list[Value | None]:
    return [_pool(b, ins, attrs, False, False)]


def global_avgpool(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int
                    ) -> list[Value | None]:
    return [_pool(b, ins, attrs, False, True)]


def global_maxpool(b: Builder, ins: Ins, attrs: dict[str, Any], n_out: int
                    ) -> list[Value | None]:
    return [_pool(b, ins, attrs, True, True)]
