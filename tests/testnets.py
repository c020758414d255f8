"""Small real ONNX networks for tests (MIP, GCP-CROWN): fully connected ones (with an exact
reference by enumerating activation patterns) and a conv net with a residual connection."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


@dataclass
class FcNet:
    ws: list[np.ndarray]  # float32 values held as float64
    bs: list[np.ndarray]
    path: Path
    act: str = "Relu"

    def forward(self, x: np.ndarray) -> np.ndarray:
        h = np.atleast_2d(x)
        for i, (w, b) in enumerate(zip(self.ws, self.bs)):
            h = h @ w.T + b
            if i < len(self.ws) - 1:
                h = np.maximum(h, 0.0) if self.act == "Relu" else 1.0 / (1.0 + np.exp(-h))
        return h


def _save(nodes, inits, n_in_shape, n_out, path: Path, name: str) -> None:
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("X", TensorProto.FLOAT, n_in_shape)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, n_out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def make_fc(path: Path, dims: list[int], seed: int, act: str = "Relu") -> FcNet:
    """Dense layers with ``act`` ("Relu" or "Sigmoid") between them."""
    rng = np.random.default_rng(seed)
    ws, bs, nodes, inits = [], [], [], []
    cur = "X"
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        w = (rng.normal(size=(b, a)) * 1.3 / np.sqrt(a)).astype(np.float32)
        bb = (rng.normal(size=b) * 0.3).astype(np.float32)
        ws.append(w.astype(np.float64))
        bs.append(bb.astype(np.float64))
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(bb, f"B{i}")]
        out = "Y" if i == len(dims) - 2 else f"g{i}"
        nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"B{i}"], [out], transB=1))
        cur = out
        if i < len(dims) - 2:
            nodes.append(helper.make_node(act, [cur], [f"r{i}"]))
            cur = f"r{i}"
    _save(nodes, inits, [1, dims[0]], dims[-1], path, "fc")
    return FcNet(ws, bs, path, act)


def make_conv_residual(path: Path, seed: int = 0) -> Path:
    """X (1,2,5,5) -> Conv(3ch) -> Relu -> Conv(3ch, pad 1) -> Add(first relu) -> Relu
    -> Flatten -> Gemm(3)."""
    rng = np.random.default_rng(seed)
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(f32(rng.normal(size=(3, 2, 3, 3)) * 0.5), "K1"),
             numpy_helper.from_array(f32(rng.normal(size=3) * 0.2), "c1"),
             numpy_helper.from_array(f32(rng.normal(size=(3, 3, 3, 3)) * 0.4), "K2"),
             numpy_helper.from_array(f32(rng.normal(size=3) * 0.2), "c2"),
             numpy_helper.from_array(f32(rng.normal(size=(3, 27)) * 0.3), "W"),
             numpy_helper.from_array(f32(rng.normal(size=3) * 0.1), "b")]
    nodes = [helper.make_node("Conv", ["X", "K1", "c1"], ["z1"]),
             helper.make_node("Relu", ["z1"], ["y1"]),
             helper.make_node("Conv", ["y1", "K2", "c2"], ["t2"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["t2", "y1"], ["z2"]),
             helper.make_node("Relu", ["z2"], ["y2"]),
             helper.make_node("Flatten", ["y2"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "b"], ["Y"], transB=1)]
    _save(nodes, inits, [1, 2, 5, 5], 3, path, "convres")
    return path


def exact_min(net: FcNet, xl: np.ndarray, xu: np.ndarray, c: np.ndarray) -> float:
    """``min c·net(x)`` over the box by enumerating every activation pattern (one LP each):
    an independent reference for the MILP."""
    from scipy.optimize import linprog

    sizes = [w.shape[0] for w in net.ws[:-1]]
    best = np.inf
    for pattern in itertools.product([0, 1], repeat=sum(sizes)):
        masks, o = [], 0
        for s in sizes:
            masks.append(np.array(pattern[o:o + s], dtype=np.float64))
            o += s
        # affine pieces: h = A x + a0
        A, a0 = np.eye(len(xl)), np.zeros(len(xl))
        rows, rhs = [], []
        for w, b, m in zip(net.ws[:-1], net.bs[:-1], masks):
            Z, z0 = w @ A, w @ a0 + b
            # active: z >= 0  ->  -Z x <= z0 ; inactive: z <= 0 -> Z x <= -z0
            sgn = np.where(m > 0, -1.0, 1.0)
            rows.append(sgn[:, None] * Z)
            rhs.append(np.where(m > 0, z0, -z0))
            A, a0 = m[:, None] * Z, m * z0
        obj = c @ net.ws[-1] @ A
        const = c @ (net.ws[-1] @ a0 + net.bs[-1])
        res = linprog(obj, A_ub=np.concatenate(rows), b_ub=np.concatenate(rhs),
                      bounds=list(zip(xl, xu)), method="highs")
        if res.status == 0:
            best = min(best, res.fun + const)
    return float(best)

def encode(path: Path, xl: np.ndarray, xu: np.ndarray, method: str = "crown"):
    """(graph, encoding) of the model at ``path`` over the box, bounds from ``method``."""
    import torch

    from planecut.mip_cuts.encoding import encode_network
    from planecut.verifier.bounds import compute_bounds
    from planecut.verifier.graph import load_onnx

    g = load_onnx(path)
    g.to(dtype=torch.float64)
    tl = torch.as_tensor(xl, dtype=torch.float64)[None]
    tu = torch.as_tensor(xu, dtype=torch.float64)[None]
    br = compute_bounds(g, tl, tu, None, method=method)
    return g, encode_network(g, xl, xu, br.intermediate)

