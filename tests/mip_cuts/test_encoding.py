"""The MILP's affine maps are the network: forward passes agree with onnxruntime, and the
encoding rejects what it cannot represent."""

from __future__ import annotations

import numpy as np
import pytest

from planecut.errors import UnsupportedError
from planecut.mip_cuts.encoding import encode_network
from planecut.mip_cuts.milp import build_milp, execution_columns

from testnets import encode, make_conv_residual


def _ort(path, X, shape):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.stack([s.run(None, {"X": x.astype(np.float32).reshape(shape)})[0].reshape(-1)
                     for x in X]).astype(np.float64)


def test_fc_encoding_matches_onnxruntime(fc_net):
    net = fc_net((4, 6, 5, 3), seed=1)
    xl, xu = -np.ones(4), np.ones(4)
    _, enc = encode(net.path, xl, xu)
    X = np.random.default_rng(0).uniform(xl, xu, size=(50, 4))
    zs, ys, out = enc.forward(X)
    assert np.allclose(out, _ort(net.path, X, (1, 4)), atol=1e-5)
    assert [z.shape[1] for z in zs] == [6, 5]
    # every execution satisfies the encoding's bounds
    for L, z in zip(enc.layers, zs):
        assert np.all(z >= L.lower - 1e-9) and np.all(z <= L.upper + 1e-9)


def test_conv_residual_encoding_matches_onnxruntime(tmp_path):
    path = make_conv_residual(tmp_path / "convres.onnx")
    rng = np.random.default_rng(0)
    centre = rng.uniform(-1, 1, size=50)
    xl, xu = centre - 0.3, centre + 0.3
    _, enc = encode(path, xl, xu)
    assert len(enc.layers) == 2
    # the residual: layer 1 depends on the input's conv path and on layer 0's output
    assert set(enc.layers[1].maps) == {1}
    assert set(enc.out_maps) == {2}
    X = rng.uniform(xl, xu, size=(40, 50))
    _, _, out = enc.forward(X)
    assert np.allclose(out, _ort(path, X, (1, 2, 5, 5)), atol=1e-5)


def test_milp_rows_hold_at_executions(fc_net):
    """Every row of the MILP is satisfied by real executions (z, y, a = [z > 0])."""
    net = fc_net((3, 6, 6, 2), seed=2)
    xl, xu = -np.ones(3), np.ones(3)
    _, enc = encode(net.path, xl, xu)
    m = build_milp(enc, np.array([[1.0, -1.0]]), np.zeros(1))
    V = execution_columns(enc, np.random.default_rng(1).uniform(xl, xu, size=(300, 3)))
    act = m.A @ V.T
    tol = 1e-7
    assert np.all(act >= m.row_lo[:, None] - tol) and np.all(act <= m.row_hi[:, None] + tol)
    assert np.all(V >= m.lb - tol) and np.all(V <= m.ub + tol)


def test_unsupported_layer_is_a_clear_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from planecut.verifier.graph import load_onnx

    w = numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), "W")
    g = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["h"]),
                           helper.make_node("Sigmoid", ["h"], ["Y"])], "sig",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    p = tmp_path / "sig.onnx"
    p.write_bytes(model.SerializeToString())
    with pytest.raises(UnsupportedError, match="ReLU"):
        encode_network(load_onnx(p), np.zeros(2), np.ones(2), {})


def test_empty_region_is_a_clear_error(fc_net):
    from planecut.verifier.graph import load_onnx

    net = fc_net()
    with pytest.raises(ValueError, match="empty input region"):
        encode_network(load_onnx(net.path), np.ones(3), np.zeros(3), {})
