"""Regenerate the bundled example: a small ReLU classifier and two robustness properties.

    python examples/make_example.py

writes ``examples/tiny_fc.onnx`` (5 inputs, two hidden layers of 16 ReLUs, 3 outputs; fixed
seed), ``examples/tiny_fc_robust.vnnlib`` (a small box around a point: planecut proves it,
``unsat``) and ``examples/tiny_fc_falsifiable.vnnlib`` (a box wide enough that the class
changes: ``sat``, with a counterexample). Only numpy and onnx are needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
SIZES = (5, 16, 16, 3)


def build_model(seed: int = 7) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev = "X"
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        w = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)
        b = (0.1 * rng.standard_normal(n_out)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"B{i}")]
        out = "Y" if i == len(SIZES) - 2 else f"Z{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"B{i}"], [out], transB=1,
                                      name=f"gemm{i}"))
        if out != "Y":
            nodes.append(helper.make_node("Relu", [out], [f"H{i}"], name=f"relu{i}"))
            prev = f"H{i}"
    graph = helper.make_graph(
        nodes, "tiny_fc",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, SIZES[0]])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, SIZES[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="planecut-examples")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def robustness_vnnlib(center: np.ndarray, eps: float, label: int, n_out: int, title: str
                      ) -> str:
    """Counterexample region: the box around ``center`` where some other class scores at
    least as high as ``label``."""
    lines = [f"; {title}", f"; L-inf ball of radius {eps} around x0; class {label} must win", ""]
    lines += [f"(declare-const X_{i} Real)" for i in range(center.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    lines.append("")
    for i, c in enumerate(center):
        lines.append(f"(assert (>= X_{i} {c - eps:.6f}))")
        lines.append(f"(assert (<= X_{i} {c + eps:.6f}))")
    others = " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(n_out) if j != label)
    lines += ["", f"(assert (or {others}))", ""]
    return "\n".join(lines)


def main() -> None:
    model = build_model()
    onnx.save(model, HERE / "tiny_fc.onnx")
    center = np.array([0.5, -0.2, 0.3, 0.1, -0.4])
    import onnxruntime as ort

    sess = ort.InferenceSession(str(HERE / "tiny_fc.onnx"), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"X": center.astype(np.float32)[None]})[0][0]
    label = int(np.argmax(y))
    (HERE / "tiny_fc_robust.vnnlib").write_text(
        robustness_vnnlib(center, 0.02, label, SIZES[-1], "planecut example: provably robust"))
    (HERE / "tiny_fc_falsifiable.vnnlib").write_text(
        robustness_vnnlib(center, 1.0, label, SIZES[-1], "planecut example: not robust"))
    print(f"x0 scores {np.round(y, 3)}, label {label}")


if __name__ == "__main__":
    main()
