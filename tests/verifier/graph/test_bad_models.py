"""Broken and unsupported models raise the right PlanecutError with a one-line, useful cause."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from onnx import TensorProto, helper

from planecut.errors import ModelError, PlanecutError, UnsupportedError
from planecut.verifier.graph import load_onnx

N = helper.make_node


def _good(ox):
    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    return ox.make([N("MatMul", ["x", "w"], ["m"]), N("Relu", ["m"], ["y"])], [1, 4], [1, 3],
                   {"w": w})


def _raises(cls, path, *needles):
    with pytest.raises(cls) as info:
        load_onnx(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg or path.name in msg
    for needle in needles:
        assert needle.lower() in msg.lower(), msg
    assert isinstance(info.value, PlanecutError)
    return msg


def test_missing_file(tmp_path):
    _raises(ModelError, tmp_path / "nope.onnx", "not found")


def test_directory(tmp_path):
    _raises(ModelError, tmp_path, "directory")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    _raises(ModelError, p, "empty")


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99])
def test_truncated_file(ox, tmp_path, fraction):
    data = _good(ox).SerializeToString()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: int(len(data) * fraction)])
    _raises(ModelError, p)


def test_truncated_benchmark_model(bench_root, tmp_path):
    src = next(bench_root.rglob("mnist_relu_9_200.onnx"), None) or next(bench_root.rglob("*.onnx"))
    data = src.read_bytes()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    _raises(ModelError, p)


def test_random_bytes(tmp_path):
    p = tmp_path / "random.onnx"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    _raises(ModelError, p)


def test_text_file(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_text("(declare-const X_0 Real)\n(assert (<= X_0 1.0))\n")
    _raises(ModelError, p, "onnx")


def test_truncated_gzip(ox, tmp_path):
    data = gzip.compress(_good(ox).SerializeToString())
    p = tmp_path / "m.onnx.gz"
    p.write_bytes(data[: len(data) // 2])
    _raises(ModelError, p, "gzip")


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "infinite"),
                                       (-np.inf, "infinite")])
def test_non_finite_weight(ox, tmp_path, bad, word):
    w = np.ones((4, 3), np.float32)
    w[1, 2] = bad
    m = ox.make([N("MatMul", ["x", "dense_w"], ["y"])], [1, 4], [1, 3], {"dense_w": w})
    _raises(ModelError, ox.save(m, tmp_path), "dense_w", word)


def test_non_finite_constant_node(ox, tmp_path):
    t = helper.make_tensor("c", TensorProto.FLOAT, [3], [1.0, float("nan"), 2.0])
    m = ox.make([N("Constant", [], ["c"], value=t), N("Add", ["x", "c"], ["y"])], [1, 3], None)
    _raises(ModelError, ox.save(m, tmp_path), "'c'", "NaN")


def test_unsupported_ops_all_reported(ox, tmp_path):
    m = ox.make([N("MatMul", ["x", "w"], ["m"], name="dense"),
                 N("HardSwish", ["m"], ["s"], name="hs1"),
                 N("Erf", ["s"], ["e"], name="erf0"),
                 N("HardSwish", ["e"], ["y"], name="hs2")],
                [1, 4], None, {"w": np.ones((4, 4), np.float32)})
    msg = _raises(UnsupportedError, ox.save(m, tmp_path), "unsupported ONNX operators",
                  "HardSwish", "'hs1'", "'hs2'", "Erf", "'erf0'")
    assert "dense" not in msg


def test_unsupported_lstm(ox, tmp_path):
    h = 3
    m = ox.make([N("LSTM", ["x", "W", "R"], ["", "y"], hidden_size=h, name="l0")], [2, 1, 4],
                None, {"W": np.ones((1, 4 * h, 4), np.float32),
                       "R": np.ones((1, 4 * h, h), np.float32)})
    _raises(UnsupportedError, ox.save(m, tmp_path), "LSTM", "'l0'")


def test_constant_only_op_on_input(ox, tmp_path):
    m = ox.make([N("Floor", ["x"], ["y"], name="floor1")], [1, 4], None)
    _raises(UnsupportedError, ox.save(m, tmp_path), "Floor on an input-dependent tensor",
            "'floor1'")


def test_custom_domain(ox, tmp_path):
    m = ox.make([N("FusedGemm", ["x", "w"], ["y"], domain="com.microsoft", name="fg")], [1, 4],
                None, {"w": np.ones((4, 4), np.float32)})
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    _raises(UnsupportedError, ox.save(m, tmp_path), "com.microsoft.FusedGemm", "'fg'")


def test_two_inputs(ox, tmp_path):
    m = ox.make([N("Add", ["x", "z"], ["y"])], [1, 4], [1, 4],
                extra_inputs=[helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])])
    _raises(UnsupportedError, ox.save(m, tmp_path), "exactly one", "'x'", "'z'")


def test_two_outputs(ox, tmp_path):
    m = ox.make([N("Relu", ["x"], ["y"]), N("Neg", ["x"], ["y2"])], [1, 4], [1, 4],
                extra_outputs=[helper.make_tensor_value_info("y2", TensorProto.FLOAT, [1, 4])])
    _raises(UnsupportedError, ox.save(m, tmp_path), "exactly one model output")


def test_product_and_quotient_of_inputs_load(ox, tmp_path):
    """Products and quotients of input-dependent tensors are nonlinear nodes now (they used to
    be rejected); an input-dependent exponent still is rejected."""
    import torch

    from planecut.verifier.graph import load_onnx

    m = ox.make([N("Mul", ["x", "x"], ["sq"], name="sq"), N("Div", ["one", "sq"], ["y"])],
                [1, 4], None, {"one": np.ones(4, np.float32)})
    g = load_onnx(ox.save(m, tmp_path))
    x = torch.tensor([[0.5, -2.0, 3.0, 1.0]])
    assert torch.allclose(g.forward(x), 1 / (x * x))
    m = ox.make([N("Pow", ["x", "x"], ["y"], name="pw")], [1, 4], None)
    _raises(UnsupportedError, ox.save(m, tmp_path), "'pw'", "exponent")


def test_reflect_pad(ox, tmp_path):
    m = ox.make([N("Pad", ["x", "p"], ["y"], mode="reflect", name="pad")], [1, 1, 4, 4], None,
                {"p": np.asarray([0, 0, 1, 1, 0, 0, 1, 1], np.int64)})
    _raises(UnsupportedError, ox.save(m, tmp_path), "reflect", "'pad'")


def test_symbolic_inner_dimension(ox, tmp_path):
    m = ox.make([N("Relu", ["x"], ["y"])], [1, "n"], None)
    _raises(UnsupportedError, ox.save(m, tmp_path), "symbolic", "axis 1")


def test_integer_input(ox, tmp_path):
    m = ox.make([N("Identity", ["x"], ["y"])], [1, 4], None, in_type=TensorProto.INT64)
    _raises(UnsupportedError, ox.save(m, tmp_path), "int64")


def test_missing_initializer(ox, tmp_path):
    m = ox.make([N("MatMul", ["x", "w_gone"], ["y"], name="mm")], [1, 4], None)
    _raises(ModelError, ox.save(m, tmp_path), "'w_gone'", "'mm'")


def test_constant_output(ox, tmp_path):
    m = ox.make([N("Relu", ["x"], ["r"]), N("Identity", ["c"], ["y"])], [1, 4], None,
                {"c": np.ones(3, np.float32)})
    _raises(UnsupportedError, ox.save(m, tmp_path), "does not depend on the input")


def test_shape_mismatch_is_model_error(ox, tmp_path):
    m = ox.make([N("MatMul", ["x", "w"], ["y"], name="mm")], [1, 5], None,
                {"w": np.ones((4, 3), np.float32)})
    _raises(ModelError, ox.save(m, tmp_path), "'mm'")


def test_declared_output_shape_checked(ox, tmp_path):
    m = ox.make([N("MatMul", ["x", "w"], ["y"])], [1, 4], [1, 7],
                {"w": np.ones((4, 3), np.float32)})
    _raises(ModelError, ox.save(m, tmp_path), "'y'", "[1, 3]")


def test_good_model_loads(ox, tmp_path):
    g = load_onnx(ox.save(_good(ox), tmp_path))
    assert g.output_shape == (3,)
