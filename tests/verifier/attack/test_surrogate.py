"""The logit surrogate: a net ending in a saturated softmax passes no gradient, the attack
searches before the softmax, and onnxruntime still confirms on the real model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from planecut.verifier import VerifierConfig, verify
from planecut.verifier.attack.pgd import pgd_attack
from planecut.verifier.attack.surrogate import logit_graph, softmax_logits
from planecut.verifier.graph import load_onnx
from planecut.verifier.spec_tensors import SpecTensors
from planecut.vnnlib.parse import parse_spec

N = 10


def _saturated_net(path, softmax: bool = True):
    """logit1 = 1000·(0.05 − Σ|x − 0.9|), logit0 = 0, then softmax: class 1 wins only near
    x = 0.9 (no box vertex, almost no random point), and everywhere else the softmax is 0/1
    to working precision, with an exactly zero gradient."""
    inits = {"c": np.full((1, N), 0.9, np.float32), "k": np.array(-1000.0, np.float32),
             "b": np.array(50.0, np.float32), "z": np.zeros((1, 1), np.float32)}
    nodes = [helper.make_node("Sub", ["x", "c"], ["d"]),
             helper.make_node("Abs", ["d"], ["a"]),
             helper.make_node("ReduceSum", ["a"], ["s"], axes=[1], keepdims=1),
             helper.make_node("Mul", ["s", "k"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["l1"]),
             helper.make_node("Concat", ["z", "l1"], ["logits" if softmax else "y"], axis=1)]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["y"], axis=1))
    g = helper.make_graph(nodes, "sat", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                       [1, N])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.save(model, path)
    return path


def _spec(path):
    lines = [f"(declare-const X_{i} Real)" for i in range(N)] + \
        ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)"]
    lines += [f"(assert (>= X_{i} -1.0))\n(assert (<= X_{i} 1.0))" for i in range(N)]
    lines.append("(assert (>= Y_1 Y_0))")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_softmax_logits_found_only_after_a_softmax(tmp_path):
    with_sm = load_onnx(_saturated_net(tmp_path / "a.onnx"))
    without = load_onnx(_saturated_net(tmp_path / "b.onnx", softmax=False))
    assert softmax_logits(without) is None and logit_graph(without) is None
    name = softmax_logits(with_sm)
    cut = logit_graph(with_sm)
    assert name is not None and cut.output_name == name
    x = torch.rand(5, N) * 2 - 1
    z = cut.forward(x)
    assert torch.allclose(torch.softmax(z, dim=-1), with_sm.forward(x), atol=1e-6)


def test_saturated_softmax_is_falsified_through_its_logits(tmp_path):
    model = _saturated_net(tmp_path / "m.onnx")
    spec = _spec(tmp_path / "p.vnnlib")
    graph = load_onnx(model)
    st = SpecTensors.from_spec(parse_spec(spec), [0])
    plain = pgd_attack(graph, st, restarts=50, steps=100, generator=torch.Generator()
                       .manual_seed(0))
    assert plain.best_margin > 0  # the real outputs give the search nothing to follow
    res = verify(model, spec, timeout=60, config=VerifierConfig(device="cpu"))
    assert res.verdict == "sat"
    x = np.asarray(res.counterexample.x, dtype=np.float32).reshape(1, N)
    ort = pytest.importorskip("onnxruntime")
    y = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0].reshape(-1)
    assert y[1] >= y[0] and np.all(np.abs(x) <= 1.0)
