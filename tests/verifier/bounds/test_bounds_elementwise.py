"""Soundness of the relaxations of the smooth elementwise functions, Sign and products.

Per rule: on random boxes of every regime (positive, negative, across 0, wide, thin, points),
every sampled input's value lies between the two lines and inside the IBP interval. Then
whole graphs (softmax, products, matrix products of two variables, layer-norm style
normalisation, trigonometry) are bounded with IBP, CROWN and alpha-CROWN and checked against
sampled executions, and on a one-layer net CROWN's bound equals the exact LP over the same
relaxation (scipy's HiGHS), which checks the backward rules, not only their soundness.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from planecut.verifier.bounds import compute_bounds
from planecut.verifier.bounds.elementwise import (
    curve_relaxation,
    ibp_elementwise,
    ibp_product,
    product_relaxation,
)
from planecut.verifier.graph.ir import Add, Concat, Dense, Graph, Reshape
from planecut.verifier.graph import ir_nonlinear as nl

Tensor = torch.Tensor

UNARY = [
    ("exp", lambda: nl.Exp("f", ("x",), (0,)), (-6.0, 6.0)),
    ("log", lambda: nl.Log("f", ("x",), (0,)), (1e-3, 8.0)),
    ("sqrt", lambda: nl.Sqrt("f", ("x",), (0,)), (0.0, 9.0)),
    ("reciprocal", lambda: nl.Reciprocal("f", ("x",), (0,)), (-5.0, 5.0)),
    ("pow2", lambda: nl.Pow("f", ("x",), (0,), exponent=2.0), (-4.0, 4.0)),
    ("pow3", lambda: nl.Pow("f", ("x",), (0,), exponent=3.0), (-3.0, 3.0)),
    ("pow-2", lambda: nl.Pow("f", ("x",), (0,), exponent=-2.0), (-4.0, 4.0)),
    ("pow1.5", lambda: nl.Pow("f", ("x",), (0,), exponent=1.5), (0.0, 5.0)),
    ("pow0.3", lambda: nl.Pow("f", ("x",), (0,), exponent=0.3), (0.0, 5.0)),
    ("sin", lambda: nl.Sin("f", ("x",), (0,)), (-9.0, 9.0)),
    ("cos", lambda: nl.Cos("f", ("x",), (0,)), (-9.0, 9.0)),
    ("sign", lambda: nl.Sign("f", ("x",), (0,)), (-2.0, 2.0)),
]


def _boxes(lo: float, hi: float, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Random boxes in ``[lo, hi]``: wide ones, thin ones, points and ones touching 0."""
    g = torch.Generator().manual_seed(seed)
    a = lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
    b = lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
    l, u = torch.minimum(a, b), torch.maximum(a, b)
    k = n // 8
    u[:k] = l[:k] + 1e-9 * torch.rand(k, generator=g, dtype=torch.float64)  # thin
    u[k:2 * k] = l[k:2 * k]  # points
    if lo < 0 < hi:
        u[2 * k:3 * k] = u[2 * k:3 * k].abs()
        l[2 * k:3 * k] = 0.0  # touching 0 from above
        l[3 * k:4 * k] = -l[3 * k:4 * k].abs()
        u[3 * k:4 * k] = 0.0  # and from below
    l, u = l.clamp(lo, hi), u.clamp(lo, hi)
    assert bool((l <= u).all())
    return l, u


def _samples(l: Tensor, u: Tensor, m: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(m, *l.shape, generator=g, dtype=l.dtype)
    t[0], t[1] = 0.0, 1.0  # the ends
    return torch.minimum(torch.maximum(l + t * (u - l), l), u)  # rounding stays inside


@pytest.mark.parametrize("name,make,span", UNARY, ids=[u[0] for u in UNARY])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unary_lines_and_ibp_contain_samples(name, make, span, dtype):
    node = make()
    l, u = _boxes(*span, n=400, seed=1)
    l, u = l.to(dtype).view(4, 100), u.to(dtype).view(4, 100)
    relax = curve_relaxation(node, l, u)
    ibp_lo, ibp_hi = ibp_elementwise(node, (l, u))
    # lines of the dtype under test, evaluated in float64: the check's own rounding is no
    # defect of the relaxation
    xs = _samples(l, u, 200, seed=2).double()
    ys = node.fn(xs)
    ok = torch.isfinite(ys)  # outside the function's domain (NaN) or at a pole: no claim
    tol = 4 * torch.finfo(dtype).eps  # interval ends f(l), f(u) are rounded to nearest
    scale = 1 + ys.abs().nan_to_num(0.0, posinf=0.0, neginf=0.0)
    ibp_lo, ibp_hi = ibp_lo.double(), ibp_hi.double()
    low = relax.lower_slope[:, 0].double() * xs + relax.lower_intercept[:, 0].double()
    up = relax.upper_slope[:, 0].double() * xs + relax.upper_intercept[:, 0].double()
    assert not torch.isnan(relax.lower_intercept).any() and not torch.isnan(
        relax.upper_intercept).any()
    assert bool(((low <= ys + tol * scale) | ~ok).all()), f"{name}: lower line above f"
    assert bool(((up >= ys - tol * scale) | ~ok).all()), f"{name}: upper line below f"
    assert bool(((ibp_lo <= ys + tol * scale) | ~ok).all()), f"{name}: IBP lower above f"
    assert bool(((ibp_hi >= ys - tol * scale) | ~ok).all()), f"{name}: IBP upper below f"


def test_unary_lines_are_tight_where_convex():
    """Convex exp on a narrow box: the gap between the lines is second order in the width."""
    node = nl.Exp("f", ("x",), (0,))
    l = torch.tensor([[0.0]], dtype=torch.float64)
    u = l + 0.01
    r = curve_relaxation(node, l, u)
    xs = torch.linspace(0, 0.01, 11, dtype=torch.float64)
    gap = (r.upper_slope[0, 0] * xs + r.upper_intercept[0, 0]) - \
        (r.lower_slope[0, 0] * xs + r.lower_intercept[0, 0])
    assert float(gap.max()) < 2e-5


def test_reciprocal_across_zero_is_unbounded_not_nan():
    node = nl.Reciprocal("f", ("x",), (0,))
    l, u = torch.tensor([[-1.0]]), torch.tensor([[2.0]])
    r = curve_relaxation(node, l, u)
    assert float(r.lower_intercept) == -math.inf and float(r.upper_intercept) == math.inf
    assert float(r.lower_slope) == 0.0 and float(r.upper_slope) == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_product_planes_and_ibp_contain_samples(dtype):
    g = torch.Generator().manual_seed(3)
    n = 500
    c = torch.randn(2, n, generator=g, dtype=torch.float64) * 3
    w = torch.rand(2, n, generator=g, dtype=torch.float64) * 4
    w[:, : n // 10] = 0.0  # fixed factors
    lower = (c - w).T.reshape(n, 2).to(dtype)  # (B=n, 2) stacked input of shape ()
    upper = (c + w).T.reshape(n, 2).to(dtype)
    node = nl.Product("p", ("s",), ())
    relax = product_relaxation(node, lower, upper)
    lo, hi = ibp_product(node, (lower, upper))
    t = torch.rand(300, n, 2, generator=g, dtype=torch.float64).to(dtype)
    t[0], t[1] = 0.0, 1.0
    x = torch.minimum(torch.maximum(lower + t * (upper - lower), lower), upper).double()
    a, b = x[..., 0], x[..., 1]
    y = a * b
    tol = 4 * torch.finfo(dtype).eps * (1 + y.abs())
    r = {k: getattr(relax, k)[:, 0].double() for k in
         ("slope_a", "slope_b", "lower_intercept", "upper_intercept")}
    lin = r["slope_a"] * a + r["slope_b"] * b
    assert bool((lin + r["lower_intercept"] <= y + tol).all())
    assert bool((lin + r["upper_intercept"] >= y - tol).all())
    assert bool((lo.double() <= y + tol).all()) and bool((hi.double() >= y - tol).all())


# --------------------------------------------------------------------------- whole graphs


def _dense(name: str, src: str, shape_in: tuple, out: int, g: torch.Generator) -> Dense:
    fan = shape_in[-1]
    return Dense(name, (src,), (*shape_in[:-1], out),
                 weight=torch.randn(out, fan, generator=g) / math.sqrt(fan),
                 bias_=torch.randn(out, generator=g) * 0.3)


def _product_of(name: str, a: str, b: str, shape: tuple) -> list:
    """Nodes computing ``a·b`` the way the loader does (stack on a new axis, Product)."""
    return [Reshape(f"{name}/ra", (a,), (1, *shape)), Reshape(f"{name}/rb", (b,), (1, *shape)),
            Concat(f"{name}/s", (f"{name}/ra", f"{name}/rb"), (2, *shape), axis=0),
            nl.Product(name, (f"{name}/s",), shape)]


def _graph_smooth(seed: int) -> Graph:
    """x(4) -> two dense(6) -> exp·sin and cos/(1 + pow2) (products of two variable tensors,
    a reciprocal of a positive tensor) -> their sum -> dense(3)."""
    g = torch.Generator().manual_seed(seed)
    nodes = [_dense("d1", "x", (4,), 6, g), _dense("d2", "x", (4,), 6, g),
             nl.Exp("e", ("d1",), (6,)), nl.Sin("s", ("d2",), (6,)),
             nl.Pow("q", ("d1",), (6,), exponent=2.0), nl.Cos("c", ("d2",), (6,))]
    nodes += _product_of("p", "e", "s", (6,))
    nodes += [Dense("sum", ("q",), (6,), weight=torch.eye(6), bias_=torch.ones(6)),
              nl.Reciprocal("r", ("sum",), (6,))]
    nodes += _product_of("p2", "r", "c", (6,))
    nodes += [Add("both", ("p", "p2"), (6,)),
              Dense("out", ("both",), (3,), weight=torch.randn(3, 6, generator=g), bias_=None)]
    return Graph("x", (4,), nodes, "out")


def _sample_check(graph: Graph, lower: Tensor, upper: Tensor, methods=("ibp", "crown",
                                                                       "alpha-crown")):
    g = torch.Generator().manual_seed(0)
    t = torch.rand(4000, *lower.shape, generator=g, dtype=lower.dtype)
    xs = lower + t * (upper - lower)  # (S, B, n)
    ys = graph.forward(xs.reshape(-1, lower.shape[-1])).reshape(4000, lower.shape[0], -1)
    for method in methods:
        res = compute_bounds(graph, lower, upper, method=method, need_upper=True)
        assert not torch.isnan(res.lower).any(), method
        tol = 1e-4 * (1 + ys.abs())
        assert bool((ys >= res.lower - tol).all()), f"{method}: sample below lower bound"
        assert bool((ys <= res.upper + tol).all()), f"{method}: sample above upper bound"
        yield method, res


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_graph_with_every_new_rule_is_sound(seed):
    graph = _graph_smooth(seed)
    g = torch.Generator().manual_seed(10 + seed)
    centre = torch.randn(3, 4, generator=g)
    radius = torch.rand(3, 4, generator=g) * 0.5
    widths = {}
    for method, res in _sample_check(graph, centre - radius, centre + radius):
        widths[method] = float((res.upper - res.lower).mean())
    assert widths["crown"] <= widths["ibp"] * 1.0001  # CROWN is intersected with IBP


def _loader_graph(path) -> Graph:
    from planecut.verifier.graph import load_onnx

    return load_onnx(path, dtype=torch.float64)


def _onnx_model(tmp_path, build):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    nodes, inits, in_shape, out_shape = build(helper, np)
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [onnx.numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return path


def _attention(helper, np):
    """A one-head self-attention block: softmax(Q K^T / 2) V with Q, K, V linear in x."""
    rng = np.random.default_rng(0)
    inits = {k: rng.normal(size=(4, 4)) * 0.6 for k in ("wq", "wk", "wv")}
    inits["half"] = np.array(0.5)
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"]),
             helper.make_node("MatMul", ["x", "wk"], ["k"]),
             helper.make_node("MatMul", ["x", "wv"], ["v"]),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["s0"]),
             helper.make_node("Mul", ["s0", "half"], ["s"]),
             helper.make_node("Softmax", ["s"], ["a"], axis=-1),
             helper.make_node("MatMul", ["a", "v"], ["y"])]
    return nodes, inits, [1, 3, 4], [1, 3, 4]


def _layernorm(helper, np):
    """(x − mean) / sqrt(var + eps) with Pow, ReduceMean, Sqrt, Div, then Cos and Exp."""
    inits = {"two": np.array(2.0), "eps": np.array(1e-3)}
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1]),
             helper.make_node("Sub", ["x", "m"], ["c"]),
             helper.make_node("Pow", ["c", "two"], ["c2"]),
             helper.make_node("ReduceMean", ["c2"], ["v"], axes=[-1]),
             helper.make_node("Add", ["v", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["sd"]),
             helper.make_node("Div", ["c", "sd"], ["n"]),
             helper.make_node("Cos", ["n"], ["cn"]),
             helper.make_node("Exp", ["cn"], ["y"])]
    return nodes, inits, [1, 5], [1, 5]


@pytest.mark.parametrize("build", [_attention, _layernorm], ids=["attention", "layernorm"])
def test_loaded_nonlinear_models_match_onnxruntime_and_bounds_are_sound(tmp_path, build):
    ort = pytest.importorskip("onnxruntime")
    path = _onnx_model(tmp_path, build)
    graph = _loader_graph(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    in_shape = sess.get_inputs()[0].shape
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = rng.normal(size=in_shape).astype(np.float32)
        ref = sess.run(None, {name: x})[0].reshape(-1)
        ours = graph.forward(torch.from_numpy(x).double().reshape(1, -1)).reshape(-1)
        assert np.abs(ours.numpy() - ref).max() <= 1e-4
    n = graph.num_inputs
    centre = torch.from_numpy(rng.normal(size=(2, n)))
    radius = torch.full((2, n), 0.05, dtype=torch.float64)
    list(_sample_check(graph, centre - radius, centre + radius))


def test_crown_equals_the_lp_over_the_same_relaxation():
    """One nonlinear layer between two dense ones: CROWN's bound is the LP optimum over its
    own lines (min c·y s.t. lines, x = W·z + b, z in the box), and below every sample."""
    scipy_opt = pytest.importorskip("scipy.optimize")
    from planecut.verifier.bounds.crown import BoundContext, intermediate_sweep
    from planecut.verifier.bounds.plan import GraphPlan

    g = torch.Generator().manual_seed(5)
    w1 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    b1 = torch.randn(5, generator=g, dtype=torch.float64)
    c = torch.randn(1, 5, generator=g, dtype=torch.float64)
    for fn in (nl.Exp, nl.Sin, nl.Sign):
        graph = Graph("x", (3,), [Dense("d", ("x",), (5,), weight=w1, bias_=b1),
                                  fn("f", ("d",), (5,)),
                                  Dense("o", ("f",), (1,), weight=c, bias_=None)], "o")
        lo = -torch.ones(1, 3, dtype=torch.float64) * 0.7
        hi = torch.ones(1, 3, dtype=torch.float64) * 0.4
        crown = float(compute_bounds(graph, lo, hi, method="crown").lower)
        ctx = BoundContext(GraphPlan(graph), lo, hi)
        state = intermediate_sweep(ctx, {}, use_crown=True)
        r = state.relaxations["f"]
        la, lb = r.lower_slope.reshape(5).numpy(), r.lower_intercept.reshape(5).numpy()
        ua, ub = r.upper_slope.reshape(5).numpy(), r.upper_intercept.reshape(5).numpy()
        # variables: z (3), y (5); x = w1 z + b1 substituted into the line constraints
        W, B = w1.numpy(), b1.numpy()
        A, rhs = [], []
        for i in range(5):
            row = np.zeros(8)  # la*(W z + b) + lb - y <= 0
            row[:3], row[3 + i] = la[i] * W[i], -1.0
            A.append(row), rhs.append(-lb[i] - la[i] * B[i])
            row = np.zeros(8)  # y - ua*(W z + b) - ub <= 0
            row[:3], row[3 + i] = -ua[i] * W[i], 1.0
            A.append(row), rhs.append(ub[i] + ua[i] * B[i])
        cost = np.concatenate([np.zeros(3), c.numpy().reshape(-1)])
        bounds = [(-0.7, 0.4)] * 3 + [(None, None)] * 5
        lp = scipy_opt.linprog(cost, A_ub=np.array(A), b_ub=np.array(rhs), bounds=bounds,
                               method="highs")
        assert lp.status == 0
        if fn is nl.Sign:  # the final bound is also intersected with IBP's y in [-1, 1]
            assert crown >= lp.fun - 1e-6
        else:
            assert crown == pytest.approx(lp.fun, abs=1e-6), fn.__name__
        xs = lo + (hi - lo) * torch.rand(20000, 3, generator=g, dtype=torch.float64)
        assert crown <= float(graph.forward(xs).min()) + 1e-9


def test_product_planes_with_any_weights_are_sound():
    """alpha-CROWN moves each side's plane between its two McCormick planes: every weight in
    [0, 1] must keep the bound below (above) every sampled product."""
    from planecut.verifier.bounds.elementwise import product_backward

    g = torch.Generator().manual_seed(7)
    n = 300
    c = torch.randn(n, 2, generator=g, dtype=torch.float64) * 2
    w = torch.rand(n, 2, generator=g, dtype=torch.float64) * 3
    lower, upper = c - w, c + w
    relax = product_relaxation(nl.Product("p", ("s",), ()), lower, upper)
    assert relax.weighted
    weights = torch.rand(n, 2, generator=g, dtype=torch.float64)  # (B, K=2)
    weights[:, 0], weights[:, 1] = 0.0, 1.0  # the McCormick planes themselves too
    lam = torch.tensor([1.0, -1.0], dtype=torch.float64).view(1, 2).expand(n, 2)
    for k in range(3):
        wk = torch.rand(n, 2, generator=g, dtype=torch.float64) if k else weights
        coeff, const = product_backward(lam, relax, (wk, wk.flip(1)))  # (B, 2, 2), (B, 2)
        t = torch.rand(400, n, 2, generator=g, dtype=torch.float64)
        x = lower + t * (upper - lower)
        y = x[..., 0] * x[..., 1]
        bound = (coeff.unsqueeze(0) * x.unsqueeze(2)).sum(-1) + const  # (S, B, K)
        assert bool((bound[..., 0] <= y + 1e-9).all())  # lower bound of +y
        assert bool((bound[..., 1] <= -y + 1e-9).all())  # lower bound of -y
