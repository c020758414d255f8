"""Helpers for the graph tests: build small ONNX models and compare with onnxruntime.

Exposed as the ``ox`` fixture (``--import-mode=importlib`` rules out importing a helper
module from a sibling test file).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from planecut.verifier.graph import Graph, load_onnx

_NP_TO_ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
               np.dtype(np.int64): TensorProto.INT64}


def make_model(nodes: Sequence[onnx.NodeProto], in_shape: Sequence[int | str],
               out_shape: Sequence[int | str] | None = None, inits: dict | None = None, *,
               opset: int = 13, in_type: int = TensorProto.FLOAT, inits_as_inputs: bool = False,
               ir_version: int | None = None, in_name: str = "x", out_name: str = "y",
               extra_inputs: Sequence[onnx.ValueInfoProto] = (),
               extra_outputs: Sequence[onnx.ValueInfoProto] = ()) -> onnx.ModelProto:
    """A one-input one-output model; ``inits`` maps names to numpy arrays."""
    inits = inits or {}
    tensors = [numpy_helper.from_array(np.asarray(v), name=k) for k, v in inits.items()]
    inputs = [helper.make_tensor_value_info(in_name, in_type, list(in_shape))]
    if inits_as_inputs:
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                   for t in tensors]
    inputs += list(extra_inputs)
    out_type = in_type
    outputs = [helper.make_tensor_value_info(out_name, out_type,
                                             None if out_shape is None else list(out_shape))]
    outputs += list(extra_outputs)
    g = helper.make_graph(list(nodes), "g", inputs, outputs, tensors)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version or (3 if opset <= 8 else 9 if opset <= 20 else 10)
    return m


def save(model: onnx.ModelProto, tmp_path: Path, name: str = "model.onnx") -> Path:
    p = tmp_path / name
    p.write_bytes(model.SerializeToString())
    return p


def run_ort(path: Path | str, graph: Graph, x: np.ndarray) -> np.ndarray:
    """onnxruntime on the original model, one example at a time (fixed batch size 1)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    np_dtype = np.float64 if graph.onnx_input_dtype == "float64" else np.float32
    outs = [sess.run(None, {name: xi.reshape(graph.onnx_input_shape).astype(np_dtype)})[0]
            for xi in x]
    return np.stack([o.reshape(-1) for o in outs]).astype(np.float64)


def compare(path: Path | str, *, n: int = 8, low: float = -1.0, high: float = 1.0,
            seed: int = 0, simplify_modes: Sequence[bool] = (True, False),
            dtype: torch.dtype = torch.float32, rtol: float = 1e-4) -> dict[bool, Graph]:
    """Assert ``graph.forward`` matches onnxruntime; returns the graphs by simplify flag."""
    graphs = {}
    x = None
    ref = None
    for simp in simplify_modes:
        g = load_onnx(path, simplify=simp, dtype=dtype)
        if x is None:
            rng = np.random.default_rng(seed)
            x = rng.uniform(low, high, size=(n, *g.input_shape))
            ref = run_ort(path, g, x)
        ours = g.forward(torch.as_tensor(x, dtype=dtype)).detach().double().numpy()
        assert ours.shape[0] == n
        ours = ours.reshape(n, -1)
        assert ours.shape == ref.shape, (ours.shape, ref.shape)
        err = float(np.abs(ours - ref).max())
        tol = rtol * max(1.0, float(np.abs(ref).max()))
        assert err <= tol, f"simplify={simp}: max abs error {err:.3g} > {tol:.3g}"
        graphs[simp] = g
    return graphs


@pytest.fixture
def ox() -> SimpleNamespace:
    return SimpleNamespace(make=make_model, save=save, compare=compare, run_ort=run_ort,
                           node=helper.make_node, vi=helper.make_tensor_value_info)
