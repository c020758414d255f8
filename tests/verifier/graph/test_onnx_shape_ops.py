"""Shape, selection and constant-path operators of detection and transformer exports, each in
a tiny model checked against onnxruntime: Min/Max/Clip/Where/Tile/Expand/Split/Reduce* on
variables, and the operators that must fold away when all their inputs are constant."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from planecut.errors import UnsupportedError
from planecut.verifier.graph import load_onnx
from planecut.verifier.graph import ir

N = helper.make_node
RNG = np.random.default_rng(7)
F32, I64 = np.float32, np.int64


def W(*shape):
    return RNG.normal(size=shape).astype(F32)


def ints(*v):
    return np.asarray(v, I64)


def const(name, value):
    return N("Constant", [], [name], value=helper.make_tensor(
        name, helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype), np.shape(value),
        np.asarray(value).reshape(-1).tolist()))


# --------------------------------------------------------------------------- variables

VAR_CASES = {}


def var_case(fn):
    VAR_CASES[fn.__name__] = fn
    return fn


@var_case
def max_min_var_var(mk):
    return mk([N("MatMul", ["x", "w1"], ["a"]), N("MatMul", ["x", "w2"], ["b"]),
               N("Max", ["a", "b"], ["m"]), N("Min", ["m", "x"], ["y"])],
              [1, 4], None, {"w1": W(4, 4), "w2": W(4, 4)})


@var_case
def max_broadcast_var_var_and_const(mk):
    # a (1, 3, 4), b (1, 1, 4), a constant (3, 1): three inputs, all broadcast
    return mk([N("Reshape", ["x", "s"], ["a"]), N("ReduceMean", ["a"], ["b"], axes=[1]),
               N("Max", ["a", "b", "c"], ["y"])],
              [1, 12], None, {"s": ints(1, 3, 4), "c": W(3, 1)})


@var_case
def min_const_grows_input(mk):
    return mk([N("Min", ["x", "c"], ["m"]), N("Max", ["m"], ["y"])], [1, 3], None,
              {"c": W(2, 1, 3)})


@var_case
def min_max_mixed_dtypes_constants(mk):
    return mk([N("Max", ["x", "lo"], ["a"]), N("Min", ["hi", "a", "hi2"], ["y"])], [1, 2, 3],
              None, {"lo": W(3) * 0.3, "hi": np.float32(0.7),
                    "hi2": np.asarray([[0.8], [0.3]], F32)})


@var_case
def clip_bounds_from_constant_path(mk):
    # min: Constant -> Neg -> Cast; max omitted (empty name)
    return mk([const("c", np.float32(0.25)), N("Neg", ["c"], ["nc"]),
               N("Cast", ["nc"], ["lo"], to=TensorProto.FLOAT),
               N("Clip", ["x", "lo"], ["a"]),
               N("Clip", ["a", "", "hi"], ["b"]),
               N("Clip", ["b"], ["y"])], [1, 6], None, {"hi": np.float32(0.4)})


@var_case
def clip_opset6_attributes(mk):
    return mk([N("Clip", ["x"], ["a"], max=0.3), N("Clip", ["a"], ["y"], min=-0.2, max=0.1)],
              [1, 6], None, opset=6)


@var_case
def clip_flt_max_bounds(mk):
    big = float(np.finfo(F32).max)
    return mk([N("Clip", ["x", "lo", "hi"], ["y"])], [1, 6], None,
              {"lo": np.float32(-big), "hi": np.float32(big)})


@var_case
def where_var_const(mk):
    # the condition comes from a constant path: Range -> Mod -> Equal
    return mk([const("n", ints(6).reshape(())), N("Range", ["zero", "n", "one"], ["r"]),
               N("Mod", ["r", "two"], ["m"]), N("Equal", ["m", "zero"], ["cond"]),
               N("Where", ["cond", "x", "fill"], ["a"]), N("Not", ["cond"], ["odd"]),
               N("Where", ["odd", "fill2", "a"], ["y"])],
              [1, 6], None, {"zero": ints(0).reshape(()), "one": ints(1).reshape(()),
                             "two": ints(2).reshape(()), "fill": np.float32(-100.0),
                             "fill2": W(3, 1)})


@var_case
def where_var_var_broadcast(mk):
    return mk([N("MatMul", ["x", "w"], ["a"]), N("Reshape", ["x", "s"], ["b"]),
               N("Where", ["cond", "a", "b"], ["y"])],
              [1, 4], None, {"w": W(4, 4), "s": ints(1, 4, 1),
                             "cond": RNG.random((1, 4)) > 0.5})


@var_case
def tile_and_expand(mk):
    return mk([N("Tile", ["x", "r"], ["t"]), N("Expand", ["t", "s"], ["y"])], [1, 1, 2, 3],
              None, {"r": ints(1, 2, 1, 2), "s": ints(3, 2, 1, 1)})


@var_case
def tile_batch_axis(mk):
    return mk([N("Tile", ["x", "r"], ["y"])], [1, 2, 3], None, {"r": ints(2, 1, 3)})


@var_case
def neg_and_reductions_axes_input_opset13(mk):
    return mk([N("Neg", ["x"], ["n"]), N("ReduceSum", ["n", "ax"], ["y"], keepdims=0)],
              [1, 3, 4], None, {"ax": ints(-1)})


@var_case
def reduce_mean_axes_input_opset18(mk):
    return mk([N("ReduceMean", ["x", "ax"], ["a"]), N("ReduceSum", ["a", "none"], ["y"],
                                                    noop_with_empty_axes=1)],
              [1, 2, 3, 4], None, {"ax": ints(1, 3), "none": np.zeros(0, I64)}, opset=18)


@var_case
def split_num_outputs_opset18(mk):
    return mk([N("Split", ["x"], ["a", "b", "c"], axis=2, num_outputs=3),
               N("Concat", ["c", "a", "b"], ["y"], axis=2)], [1, 2, 7], None, opset=18)


@var_case
def split_input_squeeze_unsqueeze_axes_inputs(mk):
    return mk([N("Split", ["x", "sp"], ["a", "b"], axis=1),
               N("Unsqueeze", ["b", "ax"], ["u"]), N("Squeeze", ["u", "ax"], ["s"]),
               N("Sub", ["s", "a"], ["y"])], [1, 4, 3], None,
              {"sp": ints(2, 2), "ax": ints(0, -1)})


@var_case
def vit_shape_path_reshape(mk):
    # what PyTorch exports of ViTs do: the target shape is computed from Shape(x)
    return mk([N("Shape", ["x"], ["shp"]),
               N("Gather", ["shp", "i0"], ["d0"], axis=0),
               N("Gather", ["shp", "i1"], ["d1"], axis=0),
               N("Unsqueeze", ["d0", "ax0"], ["u0"]), N("Unsqueeze", ["d1", "ax0"], ["u1"]),
               N("Concat", ["u0", "u1", "m1"], ["target"], axis=0),
               N("Reshape", ["x", "target"], ["r"]),
               N("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
               N("MatMul", ["t", "w"], ["y"])],
              [1, 3, 4, 4], None, {"i0": ints(0).reshape(()), "i1": ints(1).reshape(()),
                                   "ax0": ints(0), "m1": ints(-1), "w": W(3, 2)})


@pytest.mark.parametrize("name", sorted(VAR_CASES))
def test_var_ops_match_onnxruntime(name, ox, tmp_path):
    ox.compare(ox.save(VAR_CASES[name](ox.make), tmp_path, f"{name}.onnx"))


def test_max_is_one_relu(ox, tmp_path):
    g = load_onnx(ox.save(VAR_CASES["max_min_var_var"](ox.make), tmp_path), simplify=False)
    assert sum(isinstance(n, ir.Relu) for n in g.nodes) == 2  # one per Max/Min


def test_clip_without_bounds_is_identity(ox, tmp_path):
    m = ox.make([N("Clip", ["x"], ["y"])], [1, 3], None)
    assert not any(isinstance(n, ir.Relu) for n in load_onnx(ox.save(m, tmp_path)).nodes)


def test_where_with_input_dependent_condition(ox, tmp_path):
    m = ox.make([N("Greater", ["x", "z"], ["c"]), N("Where", ["c", "x", "z"], ["y"])],
                [1, 3], None, {"z": np.float32(0)})
    with pytest.raises(UnsupportedError, match="Greater on an input-dependent tensor"):
        load_onnx(ox.save(m, tmp_path))


@pytest.mark.parametrize("op,extra", [("ArgMax", {}), ("ReduceMax", {"keepdims": 0}),
                                      ("NonZero", {})])
def test_constant_only_ops_on_the_input_named(op, extra, ox, tmp_path):
    m = ox.make([N(op, ["x"], ["y"], name="n1", **extra)], [1, 3], None)
    with pytest.raises(UnsupportedError) as info:
        load_onnx(ox.save(m, tmp_path))
    msg = str(info.value)
    assert f"{op} on an input-dependent tensor" in msg and "'n1'" in msg and "\n" not in msg


# --------------------------------------------------------------------------- constant paths

# Each case: (nodes computing constant "c", K = c.size, initializers). The test adds
# Cast(c) -> Reshape to (1, K) -> Add with the input, so onnxruntime sees every value of c.
CONST_CASES = {
    "shape_gather_cast": ([N("Shape", ["w"], ["s"]), N("Gather", ["s", "i"], ["c"])], 2,
                          {"w": W(2, 3, 4), "i": ints(-1, 0)}),
    "range_float": ([N("Range", ["a", "b", "d"], ["c"])], 4,
                    {"a": np.float32(0.5), "b": np.float32(6.0), "d": np.float32(1.5)}),
    "constant_of_shape_expand": ([N("ConstantOfShape", ["s"], ["k"],
                                    value=helper.make_tensor("v", 1, [1], [2.5])),
                                  N("Expand", ["k", "e"], ["c"])], 12,
                                 {"s": ints(1, 3), "e": ints(4, 1)}),
    "equal_where_not": ([N("Equal", ["a", "b"], ["q"]), N("Not", ["q"], ["nq"]),
                         N("Where", ["nq", "a", "b2"], ["c"])], 6,
                        {"a": ints(1, 2, 3, 4, 5, 6).reshape(2, 3),
                         "b": ints(1, 0, 3), "b2": ints(-7)}),
    "scatter_nd": ([N("ScatterND", ["d", "i", "u"], ["c"])], 6,
                   {"d": W(2, 3), "i": ints(1, 2, 0, 0).reshape(2, 2), "u": W(2)}),
    "scatter_nd_rows_add": ([N("ScatterND", ["d", "i", "u"], ["c"], reduction="add")], 6,
                            {"d": W(2, 3), "i": ints(1, 1, -2).reshape(3, 1), "u": W(3, 3)}),
    "scatter_gather_elements": ([N("ScatterElements", ["d", "i", "u"], ["s"], axis=1),
                                 N("GatherElements", ["s", "j"], ["c"], axis=0)], 6,
                                {"d": W(2, 3), "i": ints(2, 0, 1, -1).reshape(2, 2),
                                 "u": W(2, 2), "j": ints(1, 0, 1, 0, 0, 1).reshape(2, 3)}),
    "scatter_elements_add": ([N("ScatterElements", ["d", "i", "u"], ["c"], axis=0,
                                reduction="add")], 6,
                             {"d": W(2, 3), "i": ints(1, 1, 0, 1, 1, 1).reshape(2, 3),
                              "u": W(2, 3)}),
    "argmax_argmin": ([N("ArgMax", ["a"], ["m"], axis=1, keepdims=0),
                       N("ArgMin", ["a"], ["n"], axis=-1, select_last_index=1),
                       N("Flatten", ["n"], ["nf"], axis=0), N("Flatten", ["m"], ["mf"], axis=0),
                       N("Concat", ["mf", "nf"], ["c"], axis=1)], 6,
                      {"a": np.asarray([[1, 3, 3, 0], [2, 2, 0, 0], [5, 1, 5, 1]], F32)}),
    "reduce_max_min_prod": ([N("ReduceMax", ["a", "ax"], ["p"], keepdims=0),
                             N("ReduceMin", ["a", "z"], ["q"], keepdims=0),
                             N("ReduceProd", ["a"], ["r"], keepdims=0),
                             N("Unsqueeze", ["r", "z"], ["r1"]),
                             N("Concat", ["p", "q", "r1"], ["c"], axis=0)], 7,
                            {"a": W(3, 3), "ax": ints(1), "z": ints(0)}),
    "min_max_sum_clip": ([N("Min", ["a", "b"], ["p"]), N("Max", ["p", "k"], ["q"]),
                          N("Sum", ["q", "a", "b"], ["s"]), N("Clip", ["s", "lo"], ["c"])], 6,
                         {"a": W(2, 3), "b": W(3), "k": np.float32(-0.5),
                          "lo": np.float32(-1.0)}),
    "comparisons_logic": ([N("Less", ["a", "b"], ["l"]), N("GreaterOrEqual", ["a", "k"], ["g"]),
                           N("LessOrEqual", ["b", "k"], ["le"]), N("Greater", ["a", "b"], ["gr"]),
                           N("And", ["l", "g"], ["an"]), N("Or", ["le", "gr"], ["o"]),
                           N("Xor", ["an", "o"], ["c"])], 6,
                          {"a": W(2, 3), "b": W(3), "k": np.float32(0)}),
    "tile_mod": ([N("Tile", ["a", "r"], ["t"]), N("Mod", ["t", "m"], ["c"])], 8,
                 {"a": ints(-5, 7), "r": ints(4), "m": ints(3)}),
    "fmod_float": ([N("Mod", ["a", "m"], ["c"], fmod=1)], 4,
                   {"a": np.asarray([-5.5, 7.25, 3, -1], F32), "m": np.float32(2.0)}),
    "floor_ceil_round_abs": ([N("Floor", ["a"], ["f"]), N("Ceil", ["a"], ["e"]),
                              N("Round", ["a"], ["r"]), N("Abs", ["a"], ["b"]),
                              N("Concat", ["f", "e", "r", "b"], ["c"], axis=0)], 24,
                             {"a": np.asarray([-2.5, -1.5, -0.5, 0.5, 1.5, 2.7], F32)}),
    "nonzero": ([N("NonZero", ["a"], ["c"])], 8,
                {"a": np.asarray([[0, 1, 0, 2], [3, 0, 0, 4]], F32)}),
    "concat_slice_negative_step": ([N("Concat", ["a", "b"], ["k"], axis=1),
                                    N("Slice", ["k", "st", "en", "ax", "sp"], ["c"])], 3,
                                   {"a": W(2, 2), "b": W(2, 3), "st": ints(-1, 4),
                                    "en": ints(-100, 0), "ax": ints(1, 0), "sp": ints(-2, -3)}),
    "cast_float_to_int_truncates": ([N("Cast", ["a"], ["c"], to=TensorProto.INT64)], 4,
                                    {"a": np.asarray([-1.7, -0.2, 0.9, 2.5], F32)}),
    "split_squeeze_unsqueeze": ([N("Split", ["a"], ["p", "q"], axis=1, num_outputs=2),
                                 N("Unsqueeze", ["q", "z"], ["u"]),
                                 N("Squeeze", ["u", "z"], ["s"]),
                                 N("Concat", ["s", "p"], ["c"], axis=1)], 6,
                                {"a": W(2, 3), "z": ints(0)}),
    "trilu_cumsum": ([N("Trilu", ["a", "k"], ["t"], upper=0),
                      N("CumSum", ["t", "ax"], ["c"], exclusive=1, reverse=1)], 9,
                     {"a": W(3, 3), "k": ints(-1).reshape(()), "ax": ints(1).reshape(())}),
}
_CONST_OPSET = {"split_squeeze_unsqueeze": 18, "scatter_nd_rows_add": 16,
                "scatter_elements_add": 16,
                "reduce_max_min_prod": 18}


@pytest.mark.parametrize("name", sorted(CONST_CASES))
def test_constant_paths_fold(name, ox, tmp_path):
    nodes, k, inits = CONST_CASES[name]
    nodes = nodes + [N("Cast", ["c"], ["cf"], to=TensorProto.FLOAT),
                     N("Reshape", ["cf", "shape_1k"], ["cr"]),
                     N("Add", ["x", "cr"], ["y"])]
    m = ox.make(nodes, [1, k], None, {**inits, "shape_1k": ints(1, -1)},
                opset=_CONST_OPSET.get(name, 14))
    g = ox.compare(ox.save(m, tmp_path, f"{name}.onnx"))[False]
    assert [type(n) for n in g.nodes] == [ir.ElementwiseAffine]  # everything else folded
