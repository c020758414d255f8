"""Load an ONNX model into the graph IR (:func:`load_onnx`) and summarise it (:func:`describe`).

The driver: read the file (``.onnx`` or gzipped, :func:`planecut.files.read_model_bytes`),
validate it, lift old opsets, check that every operator is supported (all problems reported at
once, before any work), then translate node by node with the table in ``onnx_ops`` while
folding constants (``onnx_const``). Problems with the file are :class:`ModelError`; valid
models using what planecut cannot handle are :class:`UnsupportedError`. Both carry the path
and one line of cause.
"""

from __future__ import annotations

import heapq
import os
from typing import Any, Sequence

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from planecut.errors import ModelError, PlanecutError, UnsupportedError
from planecut.files import read_model_bytes
from planecut.verifier.graph import ir
from planecut.verifier.graph.onnx_builder import Builder, Value, Var
from planecut.verifier.graph.onnx_const import CONST_OPS, MULTI_OUTPUT_CONST_OPS
from planecut.verifier.graph.onnx_nonlinear import ALL_VAR_OPS as VAR_OPS
from planecut.verifier.graph.onnx_ops import SHAPE_ONLY_OPS
from planecut.verifier.graph.onnx_resize import converter_changes_resize
from planecut.verifier.graph.simplify import prune, simplify as simplify_graph

# Opset whose attribute/input conventions the translators treat as canonical; older models are
# lifted to it when onnx.version_converter manages (translators accept older forms anyway).
TARGET_OPSET = 13
# Above this size, skip the checker, the converter and shape inference: each one serialises the
# whole model, which would dominate start-up for multi-hundred-megabyte networks.
_FULL_CHECK_BYTES = 200 << 20
_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.DOUBLE: "float64"}


def load_onnx(path: str | os.PathLike[str], *, simplify: bool = True,
              dtype: torch.dtype = torch.float32) -> ir.Graph:
    """Read an ONNX model (``.onnx`` or gzipped) as a :class:`~planecut.verifier.graph.ir.Graph`.

    Per-example input shape: the ONNX input shape without its leading axis when the rank is at
    least 2 and that axis is 1 or symbolic, else the whole shape (e.g. ``[1]`` or ``[5]``);
    ``graph.onnx_input_shape`` keeps the declared shape (symbolic sizes read as 1) so a flat
    example can be fed back to onnxruntime. The output follows the same rule.

    ``simplify`` applies the function-preserving passes of :mod:`.simplify` (folding
    normalisation and BatchNorm into linear layers, merging affine chains). Parameters end up
    in ``dtype`` (folds are computed in float64 first). Raises :class:`ModelError` for
    unreadable/malformed files or non-finite weights, :class:`UnsupportedError` for models
    planecut cannot represent (every unsupported operator listed in one message).
    """
    source = str(path)
    data = read_model_bytes(path)
    model = _parse(data, source)
    model, inferred, check_error = _prepare(model, len(data))
    graph = _translate(model, source, inferred, os.path.dirname(os.path.abspath(source)),
                       check_error)
    prune(graph)
    if simplify:
        simplify_graph(graph)
    graph.to(dtype=dtype)
    ir.topological_check(graph.nodes, graph.input_name)
    return graph


def describe(graph: ir.Graph) -> str:
    """One line for the CLI: shapes, node kinds and the number of ReLU neurons."""
    def dims(shape: Sequence[int]) -> str:
        return "x".join(str(s) for s in shape) or "scalar"

    relus = sum(n.size for n in graph.relu_nodes)
    kinds = graph.summary() or "no nodes"
    src = os.path.basename(graph.source) if graph.source else "graph"
    return (f"{src}: input {dims(graph.input_shape)} ({graph.onnx_input_dtype}) -> output "
            f"{dims(graph.output_shape)}; {len(graph.nodes)} nodes ({kinds}); "
            f"{relus} ReLU neurons in {len(graph.relu_nodes)} layers")


# --------------------------------------------------------------------------- reading


def _parse(data: bytes, source: str) -> onnx.ModelProto:
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf DecodeError and friends
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"{source}: not a valid ONNX model (cannot parse the protobuf: {msg}; "
                         f"truncated or not an ONNX file?)") from None
    g = model.graph if model.HasField("graph") else None
    if g is None or (not g.node and not g.output) or not model.ir_version:
        raise ModelError(f"{source}: not a valid ONNX model (no graph or IR version; "
                         f"truncated or not an ONNX file?)")
    return model


def _opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


def _prepare(model: onnx.ModelProto, size: int
             ) -> tuple[onnx.ModelProto, dict[str, tuple[int | None, ...]], str | None]:
    """Checker (its complaint is kept for error messages), opset lifting, shape inference."""
    if size > _FULL_CHECK_BYTES:
        return model, {}, None
    check_error = None
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        check_error = (str(e).strip().splitlines() or [type(e).__name__])[0]
    ops = {n.op_type for n in model.graph.node}
    if check_error is None and _opset(model) < TARGET_OPSET and \
            not converter_changes_resize(ops, _opset(model)):
        try:
            model = onnx.version_converter.convert_version(model, TARGET_OPSET)
        except Exception:
            pass  # keep the original: translators accept the old attribute forms too
    inferred: dict[str, tuple[int | None, ...]] = {}
    try:
        shaped = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        for vi in list(shaped.graph.value_info) + list(shaped.graph.output):
            t = vi.type.tensor_type
            if vi.type.HasField("tensor_type") and t.HasField("shape"):
                inferred[vi.name] = tuple(d.dim_value if d.HasField("dim_value") and
                                          d.dim_value > 0 else None for d in t.shape.dim)
    except Exception:
        pass
    return model, inferred, check_error


# --------------------------------------------------------------------------- translation


def _translate(model: onnx.ModelProto, source: str, inferred: dict[str, tuple[int | None, ...]],
               base_dir: str, check_error: str | None) -> ir.Graph:
    g = model.graph
    if len(g.sparse_initializer):
        raise UnsupportedError(f"{source}: sparse initializers are not supported")
    inits = {t.name: t for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        names = ", ".join(f"'{i.name}'" for i in inputs) or "none"
        raise UnsupportedError(f"{source}: planecut needs exactly one model input that is not "
                               f"an initializer, found {len(inputs)} ({names})")
    if len(g.output) != 1:
        names = ", ".join(f"'{o.name}'" for o in g.output) or "none"
        raise UnsupportedError(f"{source}: planecut needs exactly one model output, found "
                               f"{len(g.output)} ({names})")
    inp, out_info = inputs[0], g.output[0]
    onnx_shape, batched, in_dtype = _input_signature(inp, source)
    nodes = _sorted_nodes(g, set(inits) | {inp.name}, out_info.name, source)
    _check_supported(nodes, set(inits), source)

    b = Builder(reserved=[inp.name])
    values: dict[str, Value] = {inp.name: Var(inp.name, onnx_shape, batched)}

    def get(name: str) -> Value | None:
        if not name:
            return None
        v = values.get(name)
        if v is None:
            v = values[name] = _weight(inits[name], base_dir)
        return v

    for node in nodes:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        b.begin(node.op_type, node.name, node.output[0] if node.output else "")
        try:
            ins = [get(n) for n in node.input]
            outs = _run(node, ins, attrs, b)
        except PlanecutError as e:
            raise type(e)(f"{source}: {e}") from None
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            hint = f" (onnx checker: {check_error})" if check_error else ""
            raise ModelError(f"{source}: {b.label}: malformed node ({type(e).__name__}: {e})"
                             f"{hint}") from None
        if len(outs) < len([o for o in node.output if o]):
            raise ModelError(f"{source}: {b.label}: produces fewer outputs than declared")
        for name, val in zip(node.output, outs):
            if not name:
                continue
            if isinstance(val, Var):
                val = b.publish(val, name)
                _check_shape(name, val.shape, inferred.get(name), source, b.label)
            values[name] = val

    out = values.get(out_info.name)
    if out is None:
        try:
            out = get(out_info.name)
        except PlanecutError as e:
            raise type(e)(f"{source}: {e}") from None
    if not isinstance(out, Var):
        raise UnsupportedError(f"{source}: the model output '{out_info.name}' does not depend "
                               f"on the input")
    b.begin("output", "", out_info.name)
    if not out.batched and out.rank >= 2 and out.shape[0] == 1:
        out = b.batch(out)  # mirror the input rule: per-example output drops the batch axis
    declared = _declared_shape(out_info)
    if declared is not None:
        _check_shape(out_info.name, out.shape, declared, source, "model output")
    return ir.Graph(input_name=inp.name, input_shape=tuple(onnx_shape[1:] if batched
                                                           else onnx_shape),
                    nodes=b.nodes, output_name=out.name, onnx_input_shape=onnx_shape,
                    onnx_input_dtype=in_dtype, onnx_output_name=out_info.name, source=source)


def _run(node: onnx.NodeProto, ins: list[Value | None], attrs: dict[str, Any], b: Builder
         ) -> list[Value | None]:
    op = node.op_type
    if all(not isinstance(x, Var) for x in ins):
        if op in CONST_OPS:
            outs = CONST_OPS[op](ins, attrs)
            if op == "Constant":
                _check_finite(outs[0], node.output[0])
            return outs
        if op in MULTI_OUTPUT_CONST_OPS:
            return MULTI_OUTPUT_CONST_OPS[op](ins, attrs, len(node.output))
    if op in VAR_OPS:
        return VAR_OPS[op](b, ins, attrs, len(node.output))
    raise b.unsupported("unsupported operator")  # prevented by _check_supported


def _input_signature(inp: onnx.ValueInfoProto, source: str
                     ) -> tuple[tuple[int, ...], bool, str]:
    """ONNX shape (symbolic batch read as 1), whether axis 0 is the batch axis, dtype name."""
    t = inp.type.tensor_type
    if not inp.type.HasField("tensor_type"):
        raise UnsupportedError(f"{source}: model input '{inp.name}' is not a tensor")
    if t.elem_type not in _DTYPES:
        name = onnx.TensorProto.DataType.Name(t.elem_type) if t.elem_type else "undefined"
        raise UnsupportedError(f"{source}: model input '{inp.name}' has element type "
                               f"{name.lower()} (only float32 and float64)")
    if not t.HasField("shape"):
        raise UnsupportedError(f"{source}: model input '{inp.name}' has no declared shape")
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in t.shape.dim]
    rank = len(dims)
    for i, d in enumerate(dims):
        if d is None and not (i == 0 and rank >= 2):
            raise UnsupportedError(f"{source}: model input '{inp.name}' has a symbolic or "
                                   f"unknown size at axis {i} (shape {_fmt(t.shape)})")
    shape = tuple(1 if d is None else d for d in dims)
    batched = rank >= 2 and shape[0] == 1
    return shape, batched, _DTYPES[t.elem_type]


def _fmt(shape: onnx.TensorShapeProto) -> str:
    return "[" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else
                           (d.dim_param or "?") for d in shape.dim) + "]"


def _declared_shape(info: onnx.ValueInfoProto) -> tuple[int | None, ...] | None:
    t = info.type.tensor_type
    if not info.type.HasField("tensor_type") or not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                 for d in t.shape.dim)


def _check_shape(name: str, ours: tuple[int, ...], theirs: tuple[int | None, ...] | None,
                 source: str, where: str) -> None:
    """Cross-check computed shapes with the model's declarations / ONNX shape inference."""
    if theirs is None:
        return
    ok = len(ours) == len(theirs) and all(t is None or t == o for o, t in zip(ours, theirs))
    if not ok and len(theirs) != len(ours):  # tolerate size-1 axes declared differently
        ok = [d for d in ours if d != 1] == [d for d in theirs if d != 1] and None not in theirs
    if not ok:
        shown = "[" + ", ".join("?" if t is None else str(t) for t in theirs) + "]"
        raise ModelError(f"{source}: {where}: tensor '{name}' has shape {list(ours)} but the "
                         f"model declares {shown}")


def _weight(t: onnx.TensorProto, base_dir: str) -> np.ndarray:
    """An initializer as numpy (read on first use: unused weights cost nothing)."""
    try:
        arr = numpy_helper.to_array(t, base_dir)
    except Exception as e:
        raise ModelError(f"cannot read weight tensor '{t.name}' ({e}; truncated file?)"
                         ) from None
    _check_finite(arr, t.name)
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        nan = int(np.isnan(arr).sum())
        inf = int(np.isinf(arr).sum())
        what = " and ".join(w for w, k in ((f"{nan} NaN", nan), (f"{inf} infinite", inf)) if k)
        raise ModelError(f"weight tensor '{name}' contains {what} value(s)")


def _sorted_nodes(g: onnx.GraphProto, available: set[str], output: str, source: str
                  ) -> list[onnx.NodeProto]:
    """Nodes in topological order (exporters are meant to sort them; not all do). Reading a
    tensor that nothing provides is the usual symptom of a truncated or corrupt file."""
    nodes = list(g.node)
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if o:
                producer[o] = i
    deps: list[set[int]] = []
    for n in nodes:
        d = set()
        for x in n.input:
            if not x or x in available:
                continue
            if x not in producer:
                raise ModelError(f"{source}: {n.op_type} (node '{n.name or n.output[0]}') "
                                 f"reads tensor '{x}' that no node, initializer or input "
                                 f"provides (truncated or corrupt file?)")
            d.add(producer[x])
        deps.append(d)
    if output not in producer and output not in available:
        raise ModelError(f"{source}: the model output '{output}' is never computed")
    if all(all(j < i for j in d) for i, d in enumerate(deps)):
        return nodes
    users: list[list[int]] = [[] for _ in nodes]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    indeg = [len(d) for d in deps]
    ready = [i for i, k in enumerate(indeg) if k == 0]
    order: list[int] = []
    heapq.heapify(ready)
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        raise ModelError(f"{source}: the model graph has a cycle")
    return [nodes[i] for i in order]


def _check_supported(nodes: Sequence[onnx.NodeProto], constants: set[str], source: str
                     ) -> None:
    """Report every unsupported operator at once (before any translation work)."""
    const = set(constants)
    bad: dict[str, list[str]] = {}
    for n in nodes:
        op = n.op_type
        label = n.name or (n.output[0] if n.output else "?")
        if n.domain not in ("", "ai.onnx"):
            bad.setdefault(f"{n.domain}.{op}", []).append(label)
            continue
        all_const = all(not x or x in const for x in n.input)
        if op in SHAPE_ONLY_OPS or (all_const and (op in CONST_OPS or
                                                   op in MULTI_OUTPUT_CONST_OPS)):
            const.update(o for o in n.output if o)
        elif op not in VAR_OPS:
            key = op if op not in CONST_OPS else f"{op} on an input-dependent tensor"
            bad.setdefault(key, []).append(label)
    if bad:
        parts = []
        for op, labels in bad.items():
            shown = ", ".join(f"'{x}'" for x in labels[:3])
            more = f" and {len(labels) - 3} more" if len(labels) > 3 else ""
            parts.append(f"{op} (node{'s' if len(labels) > 1 else ''} {shown}{more})")
        raise UnsupportedError(f"{source}: unsupported ONNX operators: " + ", ".join(parts))
