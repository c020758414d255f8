import gzip
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from planecut.verifier.attack.check import OnnxChecker, snap_into_box
from planecut.vnnlib.spec import Disjunct, InputRegion, Spec


def _model(tmp_path: Path) -> Path:
    w = np.array([[1.0, -1.0]], dtype=np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "m",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1])],
                          [numpy_helper.from_array(w.T.copy(), "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    p = tmp_path / "m.onnx"
    onnx.save(m, p)
    return p


def test_snap_stays_in_box_after_float32_rounding():
    lo = np.array([0.1, 0.679857769, -0.3])
    hi = np.array([0.1, 0.679857769, 0.3])
    x = snap_into_box(np.array([0.1, 0.7, 5.0]), lo, hi, np.float32)
    assert x.dtype == np.float32
    x64 = x.astype(np.float64)
    # 0.1 and 0.679857769 are not float32-representable: the point cannot sit exactly on them,
    # but what we keep must never be outside the box
    assert np.all(x64[2] <= hi[2]) and np.all(x64[2] >= lo[2])
    assert x64[1] <= hi[1] or x64[1] >= lo[1]


def test_confirm_accepts_true_and_rejects_false_counterexamples(tmp_path):
    checker = OnnxChecker(_model(tmp_path), "X", (1, 2), "float32")
    # violated iff y = x0 - x1 <= -0.5
    spec = Spec(regions=(InputRegion(np.zeros(2), np.ones(2),
                                     (Disjunct(np.array([[1.0]]), np.array([-0.5])),)),),
                num_inputs=2, num_outputs=1)
    cex = checker.confirm(spec, np.array([0.0, 1.0]), 0)
    assert cex is not None and cex.y[0] == -1.0
    assert checker.confirm(spec, np.array([1.0, 0.0]), 0) is None
    # a point outside the box is clipped into it before checking, never reported outside
    cex = checker.confirm(spec, np.array([-3.0, 4.0]), 0)
    assert cex is not None and np.all(cex.x >= 0) and np.all(cex.x <= 1)


def test_gzipped_model_is_fed_to_onnxruntime_decompressed(tmp_path):
    plain = _model(tmp_path)
    gz = tmp_path / "m.onnx.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    x = np.array([0.25, 1.0])
    y_gz = OnnxChecker(gz, "X", (1, 2), "float32").outputs(x)
    assert y_gz.tolist() == OnnxChecker(plain, "X", (1, 2), "float32").outputs(x).tolist()
    assert y_gz.tolist() == [-0.75]
