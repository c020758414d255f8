"""Simplification passes keep the function and shrink the graphs where expected."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from planecut.verifier.graph import (Add, Conv, Dense, ElementwiseAffine, Graph, Pad, Relu,
                                     Reshape, Transpose, load_onnx, simplify_graph,
                                     topological_check)
from planecut.verifier.graph import simplify as simplify_mod

N = helper.make_node
RNG = np.random.default_rng(7)


def W(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def kinds(g: Graph) -> list[str]:
    return [n.kind for n in g.nodes]


def same_function(a: Graph, b: Graph, low: float = -1, high: float = 1, tol: float = 1e-5):
    x = torch.empty(16, *a.input_shape).uniform_(low, high)
    ya, yb = a.forward(x.double() if False else x), b.forward(x)
    scale = max(1.0, float(ya.abs().max()))
    assert ya.shape == yb.shape
    assert float((ya - yb).abs().max()) <= tol * scale


def both(ox, tmp_path, model):
    p = ox.save(model, tmp_path)
    raw, simp = load_onnx(p, simplify=False), load_onnx(p)
    same_function(raw, simp)
    topological_check(simp.nodes, simp.input_name)
    return raw, simp


# --------------------------------------------------------------------------- benchmarks


def test_acasxu_is_seven_dense_six_relu(bench_root):
    path = next(bench_root.rglob("ACASXU_run2a_1_1_batch_2000.onnx"), None)
    if path is None:
        pytest.skip("ACAS Xu not present")
    raw, g = load_onnx(path, simplify=False), load_onnx(path)
    assert any(isinstance(n, ElementwiseAffine) for n in raw.nodes)  # the input Sub
    dense = [n for n in g.nodes if isinstance(n, Dense)]
    assert len(dense) == 7 and len(g.relu_nodes) == 6
    assert not any(isinstance(n, (ElementwiseAffine, Add)) for n in g.nodes)
    assert set(kinds(g)) == {"reshape", "dense", "relu"}
    same_function(raw, g, -0.5, 0.5)


@pytest.mark.parametrize("name, expected", [
    ("mnist_relu_9_200.onnx", ["reshape"] + ["dense", "relu"] * 9),
    ("ffnnSIGMOID__Point_6x200.onnx", ["reshape"] + ["dense", "sigmoid"] * 6 + ["dense"])])
def test_eran_normalisation_folded_into_first_dense(bench_root, name, expected):
    path = next(bench_root.rglob(name), None)
    if path is None:
        pytest.skip(f"eran {name} not present")
    raw, g = load_onnx(path, simplify=False), load_onnx(path)
    if "SIGMOID" in name:  # Sub 0.1307, Div 0.3081 (mnist_relu_9_200 has Sub 0, Div 1, which
        # the loader drops as identities straight away)
        assert kinds(raw)[:2] == ["elementwise_affine", "elementwise_affine"]
    assert kinds(g) == expected
    same_function(raw, g, 0, 1)


def test_marabou_nhwc_transpose_folded_into_dense(bench_root):
    path = next(bench_root.rglob("cifar10_small.onnx"), None)
    if path is None:
        pytest.skip("marabou cifar10 not present")
    raw, g = load_onnx(path, simplify=False), load_onnx(path)
    assert sum(isinstance(n, Transpose) for n in raw.nodes) == 2
    assert sum(isinstance(n, Transpose) for n in g.nodes) == 1  # the input NHWC -> NCHW
    same_function(raw, g, 0, 1)


# --------------------------------------------------------------------------- synthetic


def test_matmul_add_becomes_one_dense(ox, tmp_path):
    m = ox.make([N("MatMul", ["x", "w"], ["m"]), N("Add", ["m", "b"], ["a"]),
                 N("Relu", ["a"], ["y"])], [1, 5], None, {"w": W(5, 3), "b": W(3)})
    raw, g = both(ox, tmp_path, m)
    assert kinds(raw) == ["dense", "elementwise_affine", "relu"]
    assert kinds(g) == ["dense", "relu"]
    assert g.output_name == "y"


def test_conv_bn_folds_into_conv(ox, tmp_path):
    m = ox.make([N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                 N("BatchNormalization", ["c", "g", "b", "mu", "v"], ["y"])],
                [1, 2, 5, 5], None, {"w": W(3, 2, 3, 3), "g": W(3), "b": W(3), "mu": W(3),
                                     "v": np.abs(W(3)) + 0.1})
    raw, g = both(ox, tmp_path, m)
    assert kinds(raw) == ["conv", "elementwise_affine"]
    assert kinds(g) == ["conv"]


def test_bn_after_dense(ox, tmp_path):
    m = ox.make([N("Gemm", ["x", "w"], ["d"], transB=1),
                 N("BatchNormalization", ["d", "g", "b", "mu", "v"], ["y"])],
                [1, 4], None, {"w": W(3, 4), "g": W(3), "b": W(3), "mu": W(3),
                               "v": np.abs(W(3)) + 0.1})
    _, g = both(ox, tmp_path, m)
    assert kinds(g) == ["dense"]


def test_normalisation_folds_into_unpadded_conv_only(ox, tmp_path):
    def model(pads):
        return ox.make([N("Sub", ["x", "m"], ["a"]), N("Div", ["a", "s"], ["n"]),
                        N("Conv", ["n", "w", "b"], ["y"], pads=pads)], [1, 3, 6, 6], None,
                       {"m": W(1, 3, 1, 1), "s": np.abs(W(1, 3, 1, 1)) + 0.5,
                        "w": W(2, 3, 3, 3), "b": W(2)})
    _, g = both(ox, tmp_path, model([0, 0, 0, 0]))
    assert kinds(g) == ["conv"]
    _, g = both(ox, tmp_path, model([1, 1, 1, 1]))
    assert kinds(g) == ["elementwise_affine", "conv"]  # a shift cannot cross zero padding


def test_pure_scale_folds_into_padded_conv(ox, tmp_path):
    m = ox.make([N("Mul", ["x", "s"], ["n"]), N("Conv", ["n", "w"], ["y"], pads=[1, 1, 1, 1])],
                [1, 3, 6, 6], None, {"s": W(1, 3, 1, 1), "w": W(2, 3, 3, 3)})
    _, g = both(ox, tmp_path, m)
    assert kinds(g) == ["conv"]


def test_spatially_varying_shift_kept(ox, tmp_path):
    m = ox.make([N("Add", ["x", "t"], ["n"]), N("Conv", ["n", "w"], ["y"])],
                [1, 2, 5, 5], None, {"t": W(1, 2, 5, 5), "w": W(2, 2, 3, 3)})
    _, g = both(ox, tmp_path, m)
    assert kinds(g) == ["elementwise_affine", "conv"]


def test_dense_chain_merged_unless_bottleneck(ox, tmp_path):
    m = ox.make([N("MatMul", ["x", "w1"], ["a"]), N("MatMul", ["a", "w2"], ["b"]),
                 N("Add", ["b", "c"], ["y"])], [1, 6], None,
                {"w1": W(6, 5), "w2": W(5, 4), "c": W(4)})
    _, g = both(ox, tmp_path, m)
    assert kinds(g) == ["dense"]
    m = ox.make([N("MatMul", ["x", "w1"], ["a"]), N("MatMul", ["a", "w2"], ["y"])], [1, 50],
                None, {"w1": W(50, 2), "w2": W(2, 50)})
    _, g = both(ox, tmp_path, m)
    assert kinds(g) == ["dense", "dense"]  # 50x50 merged > 2 * 100 kept


def test_residual_not_merged_across_branches(ox, tmp_path):
    m = ox.make([N("MatMul", ["x", "w"], ["a"]), N("Relu", ["a"], ["r"]),
                 N("MatMul", ["r", "w2"], ["b"]), N("Add", ["b", "a"], ["y"])], [1, 4], None,
                {"w": W(4, 4), "w2": W(4, 4)})
    _, g = both(ox, tmp_path, m)
    assert kinds(g) == ["dense", "relu", "dense", "add"]


def test_identity_like_nodes_dropped(ox, tmp_path):
    m = ox.make([N("Reshape", ["x", "same"], ["r"]), N("Dropout", ["r"], ["d"]),
                 N("Identity", ["d"], ["i"]), N("Flatten", ["i"], ["f"]),
                 N("Reshape", ["f", "back"], ["b"]), N("Relu", ["b"], ["y"])],
                [1, 2, 3], None, {"same": np.asarray([1, 2, 3], np.int64),
                                  "back": np.asarray([1, 2, 3], np.int64)})
    _, g = both(ox, tmp_path, m)
    assert kinds(g) == ["relu"]


def test_prune_removes_dead_nodes():
    x = "x"
    live = Dense(name="d", inputs=(x,), shape=(2,), weight=torch.randn(2, 3))
    dead = Relu(name="r", inputs=("d",), shape=(2,))
    g = Graph(input_name=x, input_shape=(3,), nodes=[live, dead], output_name="d")
    assert simplify_mod.prune(g)
    assert [n.name for n in g.nodes] == ["d"]
    assert not simplify_mod.prune(g)


def test_individual_passes_preserve_function():
    """Hand-built graph exercising every pass; each pass alone keeps the function."""
    def build() -> Graph:
        nodes = [
            ElementwiseAffine(name="norm", inputs=("x",), shape=(2, 4, 4),
                              scale=torch.rand(2, 1, 1) + 0.5, shift=torch.randn(2, 1, 1)),
            Conv(name="c1", inputs=("norm",), shape=(3, 2, 2), weight=torch.randn(3, 2, 3, 3),
                 bias_=torch.randn(3)),
            ElementwiseAffine(name="bn", inputs=("c1",), shape=(3, 2, 2),
                              scale=torch.randn(3, 1, 1), shift=torch.randn(3, 1, 1)),
            Relu(name="r1", inputs=("bn",), shape=(3, 2, 2)),
            Pad(name="p0", inputs=("r1",), shape=(3, 2, 2), pads=(0, 0)),
            Transpose(name="t", inputs=("p0",), shape=(2, 2, 3), perm=(1, 2, 0)),
            Reshape(name="f", inputs=("t",), shape=(12,)),
            Dense(name="d1", inputs=("f",), shape=(6,), weight=torch.randn(6, 12),
                  bias_=torch.randn(6)),
            Dense(name="d2", inputs=("d1",), shape=(4,), weight=torch.randn(4, 6),
                  bias_=torch.randn(4)),
            ElementwiseAffine(name="out", inputs=("d2",), shape=(4,),
                              scale=torch.randn(4), shift=None),
        ]
        return Graph(input_name="x", input_shape=(2, 4, 4), nodes=nodes, output_name="out")

    torch.manual_seed(0)
    ref = build()
    x = torch.randn(5, 2, 4, 4)
    y = ref.forward(x)
    for p in simplify_mod.PASSES:
        torch.manual_seed(0)
        g = build()
        p(g)
        topological_check(g.nodes, g.input_name)
        assert torch.allclose(g.forward(x), y, atol=1e-4), p.__name__
    torch.manual_seed(0)
    g = simplify_graph(build())
    assert torch.allclose(g.forward(x), y, atol=1e-4)
    assert kinds(g) == ["conv", "relu", "reshape", "dense"]
    assert g.output_name == "out"
