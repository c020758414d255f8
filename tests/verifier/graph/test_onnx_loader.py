"""Synthetic ONNX models, one per supported operator and quirk, checked against onnxruntime."""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from planecut.verifier.graph import (Conv, Dense, ElementwiseAffine, Graph, Relu, describe,
                                     load_onnx)
from planecut.verifier.graph import ir

N = helper.make_node
RNG = np.random.default_rng(1234)


def W(*shape: int, dtype=np.float32) -> np.ndarray:
    return RNG.normal(size=shape).astype(dtype)


def I64(*vals: int) -> np.ndarray:
    return np.asarray(vals, dtype=np.int64)


# Each case returns a model; the test saves it, loads it both with and without simplification
# and compares with onnxruntime on random inputs.
# ``mk`` is conftest's make_model (test helpers reach test modules only through fixtures).
Case = Callable[[Callable[..., onnx.ModelProto]], onnx.ModelProto]
CASES: dict[str, Case] = {}


def case(fn: Case) -> Case:
    CASES[fn.__name__] = fn
    return fn


@case
def gemm_transb_alpha_beta(mk):
    return mk([N("Gemm", ["x", "w", "c"], ["h"], transB=1, alpha=0.5, beta=2.0),
                       N("Relu", ["h"], ["r"]),
                       N("Gemm", ["r", "w2", "c2"], ["y"])],
                      [1, 6], [1, 3], {"w": W(4, 6), "c": W(4), "w2": W(4, 3), "c2": W(1, 3)})


@case
def gemm_transa(mk):
    # input (6, 1): not a batch axis (size 6), so the whole shape is per-example
    return mk([N("Gemm", ["x", "w"], ["y"], transA=1)], [6, 1], [1, 3], {"w": W(6, 3)})


@case
def gemm_constant_a(mk):
    return mk([N("Gemm", ["w", "x", "c"], ["y"], transB=1)], [1, 5], [4, 1],
                      {"w": W(4, 5), "c": W(4, 1)})


@case
def matmul_add_relu(mk):
    return mk([N("MatMul", ["x", "w"], ["m"]), N("Add", ["b", "m"], ["a"]),
                       N("Relu", ["a"], ["y"])], [1, 5], [1, 3], {"w": W(5, 3), "b": W(3)})


@case
def matmul_w_x_1d_float64(mk):
    # test_small style: W @ x with a 1-D float64 input
    f64 = TensorProto.DOUBLE
    return mk([N("MatMul", ["w", "x"], ["m"]), N("Add", ["m", "b"], ["h"]),
                       N("Relu", ["h"], ["r"]), N("MatMul", ["w2", "r"], ["y"])],
                      [3], [2], {"w": W(4, 3, dtype=np.float64), "b": W(4, dtype=np.float64),
                                 "w2": W(2, 4, dtype=np.float64)}, in_type=f64)


@case
def matmul_w_x_2d(mk):
    return mk([N("MatMul", ["w", "x"], ["y"])], [1, 3, 4], [1, 2, 4], {"w": W(2, 3)})


@case
def matmul_1d_weight(mk):
    return mk([N("MatMul", ["x", "w"], ["y"])], [1, 2, 5], [1, 2], {"w": W(5)})


@case
def matmul_3d_input(mk):
    return mk([N("MatMul", ["x", "w"], ["y"])], [1, 4, 5], [1, 4, 3], {"w": W(5, 3)})


@case
def arithmetic_constants(mk):
    return mk([N("Sub", ["c", "x"], ["a"]),  # -x + c
                       N("Mul", ["a", "s"], ["b"]), N("Div", ["b", "d"], ["e"]),
                       N("Neg", ["e"], ["f"]), N("Add", ["k", "f"], ["g"]),
                       N("Mul", ["s2", "g"], ["h"]), N("Sub", ["h", "c2"], ["y"])],
                      [1, 2, 3], [1, 2, 3],
                      {"c": W(2, 3), "s": W(1, 3), "d": np.float32(2.5) + np.abs(W(2, 1)),
                       "k": W(1), "s2": W(), "c2": W(3)})


@case
def broadcast_constant_grows_input(mk):
    # x (1,3) + c (2,3) -> (2,3): the variable must be broadcast explicitly
    return mk([N("Add", ["x", "c"], ["a"]), N("Relu", ["a"], ["y"])], [1, 3], [2, 3],
                      {"c": W(2, 3)})


@case
def residual_add_sub(mk):
    return mk([N("MatMul", ["x", "w"], ["m"]), N("Relu", ["m"], ["r"]),
                       N("Add", ["r", "x"], ["a"]), N("Sub", ["a", "r"], ["s"]),
                       N("Sum", ["s", "a", "x"], ["y"])], [1, 4], [1, 4], {"w": W(4, 4)})


@case
def conv_bn_relu(mk):
    c = 4
    return mk([N("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
                       N("BatchNormalization", ["c", "g", "be", "mu", "var"], ["n"],
                         epsilon=1e-3),
                       N("Relu", ["n"], ["y"])], [1, 3, 9, 9], [1, c, 5, 5],
                      {"w": W(c, 3, 3, 3), "b": W(c), "g": W(c), "be": W(c), "mu": W(c),
                       "var": np.abs(W(c)) + 0.5})


@case
def conv_groups_dilation_no_bias(mk):
    return mk([N("Conv", ["x", "w"], ["y"], group=2, dilations=[2, 1],
                         pads=[2, 1, 2, 1])], [1, 4, 8, 7], None, {"w": W(6, 2, 3, 3)})


@case
def conv_asymmetric_pads(mk):
    return mk([N("Conv", ["x", "w", "b"], ["y"], pads=[0, 1, 2, 0], strides=[1, 2])],
                      [1, 2, 6, 6], None, {"w": W(3, 2, 3, 3), "b": W(3)})


@case
def conv_auto_pad_same_upper(mk):
    return mk([N("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])],
                      [1, 2, 6, 6], None, {"w": W(3, 2, 4, 4)})


@case
def conv_1d(mk):
    return mk([N("Conv", ["x", "w", "b"], ["c"], pads=[1, 2], strides=[2]),
                       N("Relu", ["c"], ["r"]), N("Flatten", ["r"], ["y"])],
                      [1, 2, 10], None, {"w": W(3, 2, 3), "b": W(3)})


@case
def bn_then_padded_conv(mk):
    # normalisation (shift) before a padded conv: must NOT be folded into the conv
    return mk([N("Sub", ["x", "m"], ["a"]), N("Div", ["a", "s"], ["n"]),
                       N("Conv", ["n", "w"], ["y"], pads=[1, 1, 1, 1])], [1, 3, 5, 5], None,
                      {"m": W(1, 3, 1, 1), "s": np.abs(W(1, 3, 1, 1)) + 0.5,
                       "w": W(2, 3, 3, 3)})


@case
def bn_then_unpadded_conv(mk):
    return mk([N("Sub", ["x", "m"], ["a"]), N("Div", ["a", "s"], ["n"]),
                       N("Conv", ["n", "w", "b"], ["y"], group=3)], [1, 3, 5, 5], None,
                      {"m": W(1, 3, 1, 1), "s": np.abs(W(1, 3, 1, 1)) + 0.5,
                       "w": W(6, 1, 3, 3), "b": W(6)})


@case
def conv_transpose(mk):
    return mk([N("ConvTranspose", ["x", "w", "b"], ["c"], strides=[2, 2],
                         pads=[1, 1, 1, 1], output_padding=[1, 1]),
                       N("Relu", ["c"], ["y"])], [1, 3, 4, 4], None,
                      {"w": W(3, 2, 3, 3), "b": W(2)})


@case
def conv_transpose_asymmetric_groups(mk):
    return mk([N("ConvTranspose", ["x", "w"], ["y"], strides=[2, 1], group=2,
                         pads=[0, 1, 1, 0], dilations=[1, 2])], [1, 4, 3, 3], None,
                      {"w": W(4, 1, 2, 3)})


@case
def conv_transpose_output_shape(mk):
    return mk([N("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2],
                         output_shape=[7, 8])], [1, 2, 4, 4], None, {"w": W(2, 3, 3, 3)})


@case
def pad_avgpool(mk):
    return mk([N("Pad", ["x", "p", "v"], ["q"]),
                       N("AveragePool", ["q"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
                      [1, 2, 5, 5], None,
                      {"p": I64(0, 0, 1, 0, 0, 0, 0, 1), "v": np.float32(0.5)})


@case
def avgpool_pads_exclude_and_include(mk):
    return mk([N("AveragePool", ["x"], ["a"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
                       N("AveragePool", ["a"], ["y"], kernel_shape=[2, 2],
                         pads=[1, 0, 1, 0], count_include_pad=1)], [1, 2, 7, 7], None)


@case
def avgpool_asymmetric_include_pad(mk):
    return mk([N("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                         pads=[0, 0, 1, 1], count_include_pad=1)], [1, 2, 5, 5], None)


@case
def avgpool_ceil_mode(mk):
    return mk([N("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                         ceil_mode=1)], [1, 2, 5, 5], None)


@case
def global_average_pool(mk):
    return mk([N("GlobalAveragePool", ["x"], ["g"]), N("Flatten", ["g"], ["y"])],
                      [1, 3, 4, 5], None)


@case
def maxpool(mk):
    return mk([N("MaxPool", ["x"], ["m"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
                       N("MaxPool", ["m"], ["y"], kernel_shape=[2, 2], ceil_mode=1,
                         strides=[2, 2])], [1, 2, 9, 9], None)


@case
def maxpool_dilated_1d(mk):
    return mk([N("MaxPool", ["x"], ["y"], kernel_shape=[2], dilations=[2])],
                      [1, 2, 9], None)


@case
def global_max_pool(mk):
    return mk([N("GlobalMaxPool", ["x"], ["y"])], [1, 3, 4, 5], None)


@case
def slice_steps_negative_axes(mk):
    return mk([N("Slice", ["x", "st", "en", "ax", "sp"], ["s"]),
                       N("Slice", ["s", "st2", "en2"], ["y"])], [1, 3, 8, 6], None,
                      {"st": I64(-1, 1), "en": I64(-100, 7), "ax": I64(-1, 2),
                       "sp": I64(-2, 2), "st2": I64(0, 1), "en2": I64(1, 3)})


@case
def split_concat(mk):
    return mk([N("Split", ["x", "sp"], ["a", "b", "c"], axis=1),
                       N("Relu", ["a"], ["ra"]),
                       N("Concat", ["c", "ra", "b"], ["y"], axis=-1 + 2)], [1, 6, 2], None,
                      {"sp": I64(1, 2, 3)})


@case
def split_equal_opset11(mk):
    return mk([N("Split", ["x"], ["a", "b"], axis=2),
                       N("Sub", ["a", "b"], ["y"])], [1, 2, 6], [1, 2, 3], opset=11)


@case
def concat_with_constants(mk):
    return mk([N("Concat", ["c1", "x", "c2", "x"], ["y"], axis=1)], [1, 3], None,
                      {"c1": W(1, 2), "c2": W(1, 1)})


@case
def concat_batch_axis(mk):
    # concatenation along ONNX axis 0 (the batch axis, size 1): handled per example
    return mk([N("Relu", ["x"], ["r"]), N("Concat", ["x", "r"], ["c"], axis=0),
                       N("Flatten", ["c"], ["f"]), N("MatMul", ["f", "w"], ["y"])],
                      [1, 2, 3], None, {"w": W(6, 2)})


@case
def gather_indices(mk):
    return mk([N("Gather", ["x", "i"], ["a"], axis=1),  # vector (negative index)
                       N("Gather", ["a", "j"], ["b"], axis=2),  # scalar: drops the axis
                       N("Gather", ["b", "k"], ["y"], axis=1)],  # 2-D indices
                      [1, 4, 5], None,
                      {"i": I64(3, -4, 0), "j": np.asarray(2, np.int64),
                       "k": np.asarray([[0, 1], [2, 2]], np.int64)})


@case
def transpose_nhwc(mk):
    # channels-last input, as in Marabou's cifar10 models
    return mk([N("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
                       N("Conv", ["t", "w", "b"], ["c"]), N("Relu", ["c"], ["r"]),
                       N("Transpose", ["r"], ["u"], perm=[0, 2, 3, 1]),
                       N("Reshape", ["u", "shp"], ["f"]),
                       N("MatMul", ["f", "wd"], ["m"]), N("Add", ["m", "bd"], ["y"])],
                      ["N", 6, 6, 3], ["N", 5], {"w": W(4, 3, 3, 3), "b": W(4),
                                                 "shp": I64(-1, 64), "wd": W(64, 5),
                                                 "bd": W(5)})


@case
def transpose_moving_batch_axis(mk):
    return mk([N("Transpose", ["x"], ["t"], perm=[2, 1, 0]),
                       N("Reshape", ["t", "s"], ["r"]), N("MatMul", ["r", "w"], ["y"])],
                      [1, 4, 3], None, {"s": I64(1, 12), "w": W(12, 2)})


@case
def reshape_hardcoded_batch_and_zero(mk):
    return mk([N("Reshape", ["x", "s1"], ["a"]),  # [1, 0, -1]
                       N("Relu", ["a"], ["r"]),
                       N("Reshape", ["r", "s2"], ["y"])],  # [1, -1]
                      [1, 2, 3, 4], None, {"s1": I64(1, 0, -1), "s2": I64(1, -1)})


@case
def reshape_from_shape_ops(mk):
    # the PyTorch export pattern: Shape -> Gather -> Unsqueeze -> Concat -> Reshape
    return mk([N("Shape", ["x"], ["sh"]),
                       N("Gather", ["sh", "zero"], ["n"], axis=0),
                       N("Unsqueeze", ["n", "ax"], ["nu"]),
                       N("Concat", ["nu", "minus1"], ["target"], axis=0),
                       N("Reshape", ["x", "target"], ["f"]),
                       N("Constant", [], ["w"], value=helper.make_tensor(
                           "w", TensorProto.FLOAT, [24, 3], W(24, 3).reshape(-1).tolist())),
                       N("Cast", ["f"], ["fc"], to=TensorProto.FLOAT),
                       N("MatMul", ["fc", "w"], ["y"])],
                      ["batch", 2, 3, 4], ["batch", 3],
                      {"zero": np.asarray(0, np.int64), "ax": I64(0), "minus1": I64(-1)})


@case
def flatten_squeeze_unsqueeze(mk):
    return mk([N("Flatten", ["x"], ["f"], axis=2),  # (1*2, 3*4) -> not batched
                       N("Unsqueeze", ["f", "a0"], ["u"]),  # (1, 2, 12)
                       N("Squeeze", ["u", "a0"], ["s"]),
                       N("Unsqueeze", ["s", "a2"], ["v"]),  # (2, 12, 1)
                       N("Relu", ["v"], ["y"])], [1, 2, 3, 4], None,
                      {"a0": I64(0), "a2": I64(-1)})


@case
def initializers_as_inputs_opset8(mk):
    # ACAS Xu style: IR version 3, opset 8, every initializer also listed as a graph input
    return mk([N("Sub", ["x", "avg"], ["s"]), N("Flatten", ["s"], ["f"], axis=1),
                       N("MatMul", ["f", "w"], ["m"]), N("Add", ["m", "b"], ["a"]),
                       N("Relu", ["a"], ["r"]), N("MatMul", ["r", "w2"], ["m2"]),
                       N("Add", ["m2", "b2"], ["y"])], [1, 1, 1, 5], [1, 4],
                      {"avg": W(1, 1, 1, 5), "w": W(5, 8), "b": W(8), "w2": W(8, 4),
                       "b2": W(4)}, opset=8, inits_as_inputs=True)


@case
def old_opset9_attribute_forms(mk):
    # Slice/Pad/Unsqueeze/Squeeze with attributes, Dropout with ratio, Upsample-free
    return mk([N("Slice", ["x"], ["s"], starts=[1], ends=[5], axes=[2]),
                       N("Pad", ["s"], ["p"], pads=[0, 0, 1, 1, 0, 0, 1, 0], value=0.25),
                       N("Dropout", ["p"], ["d"], ratio=0.3),
                       N("Unsqueeze", ["d"], ["u"], axes=[1]),
                       N("Squeeze", ["u"], ["q"], axes=[1]),
                       N("Clip", ["q"], ["y"], min=-0.2, max=0.4)],
                      [1, 2, 6, 3], [1, 2, 6, 4], opset=9)


@case
def sigmoid_tanh(mk):
    return mk([N("Gemm", ["x", "w", "b"], ["g"]), N("Sigmoid", ["g"], ["s"]),
                       N("Gemm", ["s", "w2", "b2"], ["h"]), N("Tanh", ["h"], ["y"])],
                      [1, 4], None, {"w": W(4, 6), "b": W(6), "w2": W(6, 3), "b2": W(3)})


@case
def clip_relu6_and_reductions(mk):
    return mk([N("Clip", ["x", "lo", "hi"], ["c"]),
                       N("ReduceMean", ["c"], ["m"], axes=[2], keepdims=0),
                       N("ReduceSum", ["c", "ax"], ["s"], keepdims=1),
                       N("Flatten", ["s"], ["sf"]),
                       N("Concat", ["m", "sf"], ["y"], axis=1)], [1, 3, 4], None,
                      {"lo": np.float32(0.0), "hi": np.float32(0.5), "ax": I64(1, 2)})


@case
def identity_dropout_cast_expand(mk):
    return mk([N("Identity", ["x"], ["i"]), N("Dropout", ["i"], ["d"]),
                       N("Cast", ["d"], ["c"], to=TensorProto.FLOAT),
                       N("Expand", ["c", "shape"], ["e"]),
                       N("Relu", ["e"], ["y"])], [1, 1, 3], None, {"shape": I64(2, 3)})


@case
def output_is_transformed_input(mk):
    return mk([N("Identity", ["x"], ["y"])], [1, 4], [1, 4])


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_onnxruntime(name, ox, tmp_path):
    path = ox.save(CASES[name](ox.make), tmp_path, f"{name}.onnx")
    graphs = ox.compare(path)
    g = graphs[True]
    ir.topological_check(g.nodes, g.input_name)
    assert len(g.nodes) <= len(graphs[False].nodes)
    assert describe(g)


# A float64 model evaluated in float64 matches onnxruntime to rounding; float32 models are
# compared with a float32 reference, so only float32 accuracy can be expected.
@pytest.mark.parametrize("name, rtol", [("matmul_w_x_1d_float64", 1e-12),
                                        ("conv_bn_relu", 1e-5), ("gather_indices", 1e-6)])
def test_float64_graph(name, rtol, ox, tmp_path):
    path = ox.save(CASES[name](ox.make), tmp_path)
    graphs = ox.compare(path, dtype=torch.float64, rtol=rtol, simplify_modes=(False, True))
    g = graphs[True]
    assert all(t.dtype == torch.float64 for n in g.nodes for t in n.tensors().values()
               if t.is_floating_point())


def test_graph_to_float64_after_loading(ox, tmp_path):
    path = ox.save(CASES["pad_avgpool"](ox.make), tmp_path)
    g = load_onnx(path)
    x = torch.rand(3, *g.input_shape)
    y32 = g.forward(x)
    g.to(dtype=torch.float64)
    y64 = g.forward(x.double())
    assert y64.dtype == torch.float64
    assert torch.allclose(y32.double(), y64, atol=1e-5)


def test_metadata_and_batch_convention(ox, tmp_path):
    g = load_onnx(ox.save(CASES["transpose_nhwc"](ox.make), tmp_path))
    assert g.input_shape == (6, 6, 3)
    assert g.onnx_input_shape == (1, 6, 6, 3)  # symbolic batch read as 1
    assert g.onnx_input_dtype == "float32"
    assert g.onnx_output_name == "y"
    assert g.output_shape == (5,)
    assert g.source.endswith(".onnx")

    g = load_onnx(ox.save(CASES["matmul_w_x_1d_float64"](ox.make), tmp_path, "f64.onnx"))
    assert g.input_shape == (3,) and g.onnx_input_shape == (3,)
    assert g.onnx_input_dtype == "float64"
    assert g.output_shape == (2,)
    assert all(t.dtype == torch.float32 for n in g.nodes for t in n.tensors().values())


def test_flat_inputs_accepted(ox, tmp_path):
    g = load_onnx(ox.save(CASES["conv_bn_relu"](ox.make), tmp_path))
    x = torch.rand(2, *g.input_shape)
    assert torch.equal(g.forward(x), g.forward(x.reshape(2, -1)))


def test_gzipped_model(ox, tmp_path):
    import gzip

    model = CASES["matmul_add_relu"](ox.make)
    path = tmp_path / "m.onnx.gz"
    path.write_bytes(gzip.compress(model.SerializeToString()))
    g = load_onnx(path)
    plain = load_onnx(ox.save(model, tmp_path))
    x = torch.rand(4, *g.input_shape)
    assert torch.equal(g.forward(x), plain.forward(x))


def test_conv_bn_structure(ox, tmp_path):
    g = load_onnx(ox.save(CASES["conv_bn_relu"](ox.make), tmp_path))
    assert [type(n) for n in g.nodes] == [Conv, Relu]
    raw = load_onnx(ox.save(CASES["conv_bn_relu"](ox.make), tmp_path), simplify=False)
    assert [type(n) for n in raw.nodes] == [Conv, ElementwiseAffine, Relu]


def test_ir_names_follow_onnx(ox, tmp_path):
    g = load_onnx(ox.save(CASES["matmul_add_relu"](ox.make), tmp_path), simplify=False)
    assert [n.name for n in g.nodes] == ["m", "a", "y"]
    assert g.output_name == "y"
    assert all(n.onnx_node for n in g.nodes)
    assert isinstance(g.node("m"), Dense)


def test_describe(ox, tmp_path):
    g = load_onnx(ox.save(CASES["gemm_transb_alpha_beta"](ox.make), tmp_path))
    line = describe(g)
    assert "\n" not in line
    assert "input 6" in line and "output 3" in line and "4 ReLU" in line
    assert isinstance(g, Graph)


@pytest.mark.parametrize("name", ["initializers_as_inputs_opset8", "old_opset9_attribute_forms",
                                  "split_equal_opset11"])
def test_old_opsets_without_version_converter(name, ox, tmp_path, monkeypatch):
    """If onnx.version_converter fails, the translators handle the old attribute forms."""
    import onnx.version_converter

    calls = []

    def fail(model, target):
        calls.append(target)
        raise RuntimeError("no adapter")

    monkeypatch.setattr(onnx.version_converter, "convert_version", fail)
    ox.compare(ox.save(CASES[name](ox.make), tmp_path, f"{name}.onnx"))
    assert calls  # the converter was tried (the models pass the checker)


def test_unsorted_nodes(ox, tmp_path):
    model = CASES["residual_add_sub"](ox.make)
    ref = load_onnx(ox.save(model, tmp_path, "sorted.onnx"))
    nodes = list(model.graph.node)[::-1]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    g = load_onnx(ox.save(model, tmp_path, "reversed.onnx"))
    x = torch.rand(4, *g.input_shape)
    assert torch.allclose(g.forward(x), ref.forward(x))


@pytest.mark.parametrize("converter", [True, False])
def test_very_old_opset_semantics(ox, tmp_path, monkeypatch, converter):
    """Opset 3: axis-aligned legacy broadcasting, Cast to a type *name*, Concat without axis,
    Reshape with a shape attribute (onnxruntime no longer runs such models: numpy reference)."""
    import onnx.version_converter

    if not converter:
        def fail(model, target):
            raise RuntimeError("no adapter")
        monkeypatch.setattr(onnx.version_converter, "convert_version", fail)
    s, t = W(3), W(3)
    m = ox.make([N("Mul", ["x", "s"], ["a"], broadcast=1, axis=1),
                 N("Add", ["a", "t"], ["b"], broadcast=1, axis=1),
                 N("Cast", ["b"], ["c"], to="FLOAT"),
                 N("Concat", ["c", "c"], ["d"]),
                 N("Reshape", ["d"], ["y"], shape=[1, -1])],
                [1, 3, 2, 2], [1, 24], {"s": s, "t": t}, opset=3)
    g = load_onnx(ox.save(m, tmp_path))
    x = torch.rand(2, 3, 2, 2)
    c = x.numpy() * s[:, None, None] + t[:, None, None]
    ref = np.concatenate([c, c], axis=1).reshape(2, -1)
    assert np.allclose(g.forward(x).numpy(), ref, atol=1e-6)
