"""Function-preserving simplification passes on the graph IR.

Why: exported models split one affine layer into several nodes (MatMul + Add, Conv +
BatchNorm, input normalisation Sub/Div before the first layer). Each extra linear node costs a
bound-propagation step and, worse, loosens interval bounds; folding them gives the same function
with fewer, tighter layers. Every pass keeps ``graph.forward`` identical up to floating-point
rounding (folds are computed in float64 and stored in the original parameter dtype), edits
``graph`` in place and returns whether it changed anything.

Folding a shift into a *following* convolution is only valid without padding: the padded zeros
would not be shifted. Such an ElementwiseAffine is kept.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from planecut.verifier.graph.ir import (Add, Concat, Conv, ConvTranspose, Dense,
                                        ElementwiseAffine, Gather, Graph, Node, Pad, Reshape,
                                        Slice, Tensor, Transpose)

Pass = Callable[[Graph], bool]


def simplify(graph: Graph, *, max_rounds: int = 100) -> Graph:
    """Apply all passes until nothing changes; returns ``graph`` (edited in place)."""
    for _ in range(max_rounds):
        changed = False
        for p in PASSES:
            changed |= p(graph)
        if not changed:
            break
    return graph


# --------------------------------------------------------------------------- graph editing


def _consumers(graph: Graph) -> dict[str, list[Node]]:
    return graph.consumers()


def _sole_consumer(graph: Graph, cons: dict[str, list[Node]], name: str) -> Node | None:
    """The single node reading ``name`` once, when ``name`` is not also the graph output."""
    users = cons.get(name, [])
    if len(users) != 1 or name == graph.output_name:
        return None
    return users[0]


def _producer(graph: Graph, name: str) -> Node | None:
    return None if name == graph.input_name else graph._by_name.get(name)


def _replace_uses(graph: Graph, old: str, new: str) -> None:
    for n in graph.nodes:
        if old in n.inputs:
            n.inputs = tuple(new if i == old else i for i in n.inputs)
    if graph.output_name == old:
        graph.output_name = new


def _swap(graph: Graph, old: Node, new: Node) -> None:
    graph.nodes[next(i for i, n in enumerate(graph.nodes) if n is old)] = new
    graph.reindex()


def _drop(graph: Graph, node: Node) -> None:
    graph.nodes = [n for n in graph.nodes if n is not node]
    graph.reindex()


def _f64(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().to(torch.float64)


def _like(t: Tensor, ref: Tensor) -> Tensor:
    return t.to(dtype=ref.dtype, device=ref.device).contiguous()


def _along(c: Tensor | None, shape: tuple[int, ...], axis: int) -> Tensor | None | bool:
    """``c`` broadcast to ``shape`` as a vector along ``axis`` (None if ``c`` is None), or
    False when it also varies along another axis."""
    if c is None:
        return None
    r = len(shape)
    if c.dim() > r or r == 0:
        return False
    cs = (1,) * (r - c.dim()) + tuple(c.shape)
    a = axis % r
    if any(d != 1 for i, d in enumerate(cs) if i != a):
        return False
    v = _f64(c).reshape(-1)
    return v.expand(shape[a]).clone() if v.numel() == 1 else v


def _channel_maps(conv: Conv, v: Tensor) -> Tensor:
    """Per-input-channel vector ``v`` laid out like ``conv.weight[:, :, 0, 0]`` (groups)."""
    c_out, c_per = conv.weight.shape[0], conv.weight.shape[1]
    g = conv.groups
    group_of_out = torch.arange(c_out) // (c_out // g)
    idx = group_of_out[:, None] * c_per + torch.arange(c_per)[None, :]
    return v[idx]


# --------------------------------------------------------------------------- passes


def _is_identity(graph: Graph, n: Node) -> bool:
    if len(n.inputs) != 1:
        return False
    if n.shape != graph.shape_of(n.inputs[0]):
        return False
    if isinstance(n, Reshape):
        return True
    if isinstance(n, Transpose):
        return list(n.perm) == sorted(n.perm)
    if isinstance(n, ElementwiseAffine):
        return ((n.scale is None or bool((n.scale == 1).all()))
                and (n.shift is None or not bool(n.shift.any())))
    if isinstance(n, Pad):
        return not any(n.pads)  # (1, -1) keeps the shape but shifts the content
    if isinstance(n, (Slice, Concat)):
        return True
    if isinstance(n, Add):
        return not n.signs or n.signs[0] > 0
    if isinstance(n, Gather):
        return n.keepdim and bool((n.indices.cpu() == torch.arange(n.indices.numel())).all())
    return False


def remove_identities(graph: Graph) -> bool:
    """Drop nodes that compute their input unchanged (same-shape Reshape, identity Transpose,
    full Slice, empty Pad, unit ElementwiseAffine, one-input Concat/Add)."""
    changed = False
    for n in list(graph.nodes):
        if _is_identity(graph, n):
            _replace_uses(graph, n.name, n.inputs[0])
            _drop(graph, n)
            changed = True
    return changed


def merge_reshapes(graph: Graph) -> bool:
    """Reshape(Reshape(x)) reads x directly (the inner one dies if otherwise unused)."""
    changed = False
    for n in graph.nodes:
        if isinstance(n, Reshape):
            p = _producer(graph, n.inputs[0])
            if isinstance(p, Reshape):
                n.inputs = p.inputs
                changed = True
    if changed:
        prune(graph)
    return changed


def _fold_after(p: Node, e: ElementwiseAffine) -> Node | None:
    """The node computing ``e(p(x))`` in one, or None when it cannot be expressed."""
    s, t = e.scale, e.shift
    if isinstance(p, ElementwiseAffine):
        s1, t1, s2, t2 = _f64(p.scale), _f64(p.shift), _f64(s), _f64(t)
        scale = s1 if s2 is None else (s2 if s1 is None else s1 * s2)
        shift = None if t1 is None else (t1 if s2 is None else t1 * s2)
        shift = t2 if shift is None else (shift if t2 is None else shift + t2)
        dts = [x.dtype for x in (p.scale, p.shift, s, t) if x is not None]
        dt = dts[0]
        for d in dts[1:]:
            dt = torch.promote_types(dt, d)
        cast = lambda x: None if x is None else x.to(dt).contiguous()  # noqa: E731
        return ElementwiseAffine(name=e.name, inputs=p.inputs, shape=e.shape,
                                 onnx_node=p.onnx_node, scale=cast(scale), shift=cast(shift))
    if isinstance(p, (Dense, Conv, ConvTranspose)):
        axis = -1 if isinstance(p, Dense) else 0
        sv, tv = _along(s, e.shape, axis), _along(t, e.shape, axis)
        if sv is False or tv is False:
            return None
        if isinstance(p, ConvTranspose) and p.groups != 1 and sv is not None:
            return None
        w = _f64(p.weight)
        n_out = e.shape[axis]
        b = _f64(p.bias_) if p.bias_ is not None else torch.zeros(n_out, dtype=torch.float64)
        if sv is not None:
            if isinstance(p, Dense):
                w = w * sv[:, None]
            elif isinstance(p, Conv):
                w = w * sv[:, None, None, None]
            else:
                w = w * sv[None, :, None, None]
            b = b * sv
        if tv is not None:
            b = b + tv
        return dataclasses.replace(p, name=e.name, shape=e.shape, weight=_like(w, p.weight),
                                   bias_=_like(b, p.weight))
    return None


def fold_affine_into_producer(graph: Graph) -> bool:
    """ElementwiseAffine after Dense/Conv/ConvTranspose (BatchNorm, Add-bias, Mul-scale) or
    after another ElementwiseAffine becomes part of it, when it varies only per output
    channel/feature."""
    changed = False
    cons = _consumers(graph)
    for e in list(graph.nodes):
        if not isinstance(e, ElementwiseAffine):
            continue
        p = _producer(graph, e.inputs[0])
        if p is None or _sole_consumer(graph, cons, p.name) is not e:
            continue
        new = _fold_after(p, e)
        if new is None:
            continue
        _swap(graph, e, new)
        _drop(graph, p)
        cons = _consumers(graph)
        changed = True
    return changed


def _fold_before(e: ElementwiseAffine, c: Node) -> Node | None:
    """The node computing ``c(e(x))`` in one, or None (e.g. a padded convolution)."""
    if isinstance(c, Dense):
        sv, tv = _along(e.scale, e.shape, -1), _along(e.shift, e.shape, -1)
        if sv is False or tv is False:
            return None
        w = _f64(c.weight)
        b = _f64(c.bias_) if c.bias_ is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        if tv is not None:
            b = b + w @ tv
        if sv is not None:
            w = w * sv[None, :]
        return dataclasses.replace(c, inputs=e.inputs, weight=_like(w, c.weight),
                                   bias_=_like(b, c.weight))
    if isinstance(c, Conv):
        if tuple(c.padding) != (0, 0) and e.shift is not None:
            return None  # padded zeros would not be shifted (a pure scale is fine: 0 * s = 0)
        sv, tv = _along(e.scale, e.shape, 0), _along(e.shift, e.shape, 0)
        if sv is False or tv is False:
            return None
        w = _f64(c.weight)
        b = _f64(c.bias_) if c.bias_ is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        if tv is not None:
            b = b + (w * _channel_maps(c, tv)[:, :, None, None]).sum(dim=(1, 2, 3))
        if sv is not None:
            w = w * _channel_maps(c, sv)[:, :, None, None]
        return dataclasses.replace(c, inputs=e.inputs, weight=_like(w, c.weight),
                                   bias_=_like(b, c.weight))
    return None


def fold_affine_into_consumer(graph: Graph) -> bool:
    """ElementwiseAffine (input normalisation) before a Dense, or before a Conv when exact
    (no padding, or a pure per-channel scale), becomes part of it."""
    changed = False
    cons = _consumers(graph)
    for e in list(graph.nodes):
        if not isinstance(e, ElementwiseAffine):
            continue
        c = _sole_consumer(graph, cons, e.name)
        if c is None or len(c.inputs) != 1:
            continue
        new = _fold_before(e, c)
        if new is None:
            continue
        _swap(graph, c, new)
        _drop(graph, e)
        cons = _consumers(graph)
        changed = True
    return changed


def _reshaped(c: Tensor | None, shape: tuple[int, ...], new_shape: tuple[int, ...]
              ) -> Tensor | None:
    """A broadcastable constant materialised at ``shape``, then reshaped to ``new_shape``."""
    return None if c is None else c.expand(shape).reshape(new_shape).contiguous()


def sink_affine_through_reshape(graph: Graph) -> bool:
    """``Reshape(EA(x)) -> EA'(Reshape(x))`` when EA' then folds into the next Dense/Conv
    (e.g. normalisation, Flatten, first Gemm)."""
    changed = False
    cons = _consumers(graph)
    for e in list(graph.nodes):
        if not isinstance(e, ElementwiseAffine):
            continue
        r = _sole_consumer(graph, cons, e.name)
        if not isinstance(r, Reshape):
            continue
        c = _sole_consumer(graph, cons, r.name)
        if c is None or len(c.inputs) != 1:
            continue
        moved = ElementwiseAffine(name=r.name, inputs=(e.name,), shape=r.shape,
                                  onnx_node=e.onnx_node, scale=_reshaped(e.scale, e.shape, r.shape),
                                  shift=_reshaped(e.shift, e.shape, r.shape))
        if _fold_before(moved, c) is None:
            continue
        _swap(graph, e, Reshape(name=e.name, inputs=e.inputs, shape=r.shape,
                                onnx_node=r.onnx_node))
        _swap(graph, r, moved)
        cons = _consumers(graph)
        changed = True
    return changed


def merge_dense_chains(graph: Graph) -> bool:
    """Dense(Dense(x)) becomes one Dense unless that grows the parameter count (a narrow
    bottleneck between two wide layers is cheaper kept as two)."""
    changed = False
    cons = _consumers(graph)
    for d2 in list(graph.nodes):
        if not isinstance(d2, Dense):
            continue
        d1 = _producer(graph, d2.inputs[0])
        if not isinstance(d1, Dense) or _sole_consumer(graph, cons, d1.name) is not d2:
            continue
        (o1, i1), (o2, _) = d1.weight.shape, d2.weight.shape
        if o2 * i1 > o1 * i1 + o2 * o1:
            continue
        w1, w2 = _f64(d1.weight), _f64(d2.weight)
        b = w2 @ _f64(d1.bias_) if d1.bias_ is not None else None
        if d2.bias_ is not None:
            b = _f64(d2.bias_) if b is None else b + _f64(d2.bias_)
        new = dataclasses.replace(d2, inputs=d1.inputs, weight=_like(w2 @ w1, d2.weight),
                                  bias_=None if b is None else _like(b, d2.weight))
        _swap(graph, d2, new)
        _drop(graph, d1)
        cons = _consumers(graph)
        changed = True
    return changed


def fold_transpose_into_dense(graph: Graph) -> bool:
    """``Dense(Flatten(Transpose(x)))`` becomes ``Dense'(Flatten(x))`` with permuted weight
    columns (channels-last models flatten NHWC before their first dense layer)."""
    changed = False
    cons = _consumers(graph)
    for d in list(graph.nodes):
        if not isinstance(d, Dense):
            continue
        r = _producer(graph, d.inputs[0])
        if not isinstance(r, Reshape) or len(r.shape) != 1:
            continue
        t = _producer(graph, r.inputs[0])
        if (not isinstance(t, Transpose) or _sole_consumer(graph, cons, r.name) is not d
                or _sole_consumer(graph, cons, t.name) is not r):
            continue
        src = graph.shape_of(t.inputs[0])
        n = 1
        for k in src:
            n *= k
        idx = torch.arange(n).reshape(src).permute(*t.perm).reshape(-1)
        w = torch.empty_like(d.weight)
        w[:, idx.to(w.device)] = d.weight
        _swap(graph, r, Reshape(name=r.name, inputs=t.inputs, shape=r.shape,
                                onnx_node=r.onnx_node))
        _swap(graph, d, dataclasses.replace(d, weight=w))
        _drop(graph, t)
        cons = _consumers(graph)
        changed = True
    return changed


def prune(graph: Graph) -> bool:
    """Remove nodes that do not feed the output."""
    needed = {graph.output_name}
    keep: list[Node] = []
    for n in reversed(graph.nodes):
        if n.name in needed:
            keep.append(n)
            needed.update(n.inputs)
    if len(keep) == len(graph.nodes):
        return False
    keep.reverse()
    graph.nodes = keep
    graph.reindex()
    return True


PASSES: tuple[Pass, ...] = (
    remove_identities,
    merge_reshapes,
    fold_affine_into_producer,
    sink_affine_through_reshape,
    fold_affine_into_consumer,
    merge_dense_chains,
    fold_transpose_into_dense,
    prune,
)
