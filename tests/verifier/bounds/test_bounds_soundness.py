"""Soundness of IBP, CROWN and alpha-CROWN on random IR graphs, checked by sampling.

Every sampled ``C·y`` (uniform samples in each domain's box, plus the corners of low-dimensional
boxes) must lie within the computed bounds, and every sampled input of a nonlinear node within
its intermediate bounds. Batches hold different boxes per domain.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable

import pytest
import torch

from planecut.verifier.bounds import AlphaOptions, compute_bounds
from planecut.verifier.graph.ir import (
    NONLINEAR_KINDS,
    Add,
    AvgPool,
    Concat,
    Conv,
    ConvTranspose,
    Dense,
    ElementwiseAffine,
    Gather,
    Graph,
    MaxPool,
    Node,
    Pad,
    Relu,
    Reshape,
    Sigmoid,
    Slice,
    Tanh,
    Transpose,
)

Tensor = torch.Tensor


# --------------------------------------------------------------------------- builders


class Builder:
    """Appends nodes with random parameters; tracks the current tensor and its shape."""

    def __init__(self, seed: int, input_shape: tuple[int, ...]) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.input_shape = input_shape
        self.nodes: list[Node] = []
        self.shapes: dict[str, tuple[int, ...]] = {"x": input_shape}

    def rand(self, *shape: int, scale: float = 1.0) -> Tensor:
        return torch.randn(*shape, generator=self.g) * scale

    def add(self, node: Node) -> str:
        self.nodes.append(node)
        self.shapes[node.name] = node.shape
        return node.name

    def name(self, prefix: str) -> str:
        return f"{prefix}{len(self.nodes)}"

    def dense(self, src: str, out: int, bias: bool = True) -> str:
        shape = self.shapes[src]
        fan_in = shape[-1]
        w = self.rand(out, fan_in, scale=1.5 / math.sqrt(fan_in))
        b = self.rand(out, scale=0.3) if bias else None
        return self.add(Dense(self.name("dense"), (src,), (*shape[:-1], out), weight=w, bias_=b))

    def conv(self, src: str, cout: int, k: int, s: int = 1, p: int = 0, d: int = 1,
             groups: int = 1) -> str:
        cin, h, w = self.shapes[src]
        wt = self.rand(cout, cin // groups, k, k, scale=1.5 / math.sqrt(cin // groups * k * k))
        ho = (h + 2 * p - d * (k - 1) - 1) // s + 1
        wo = (w + 2 * p - d * (k - 1) - 1) // s + 1
        return self.add(Conv(self.name("conv"), (src,), (cout, ho, wo), weight=wt,
                             bias_=self.rand(cout, scale=0.3), stride=(s, s), padding=(p, p),
                             dilation=(d, d), groups=groups))

    def conv_t(self, src: str, cout: int, k: int, s: int = 1, p: int = 0, op: int = 0) -> str:
        cin, h, w = self.shapes[src]
        wt = self.rand(cin, cout, k, k, scale=1.0 / math.sqrt(cin * k * k))
        ho = (h - 1) * s - 2 * p + (k - 1) + op + 1
        wo = (w - 1) * s - 2 * p + (k - 1) + op + 1
        return self.add(ConvTranspose(self.name("convt"), (src,), (cout, ho, wo), weight=wt,
                                      bias_=self.rand(cout, scale=0.3), stride=(s, s),
                                      padding=(p, p), output_padding=(op, op)))

    def act(self, src: str, kind: type = Relu) -> str:
        return self.add(kind(self.name(kind.kind), (src,), self.shapes[src]))

    def flatten(self, src: str) -> str:
        n = math.prod(self.shapes[src])
        return self.add(Reshape(self.name("flat"), (src,), (n,)))

    def graph(self, out: str) -> Graph:
        return Graph("x", self.input_shape, self.nodes, out)


def fc_net(seed: int, dims: list[int], act: type = Relu) -> Graph:
    b = Builder(seed, (dims[0],))
    cur = "x"
    for i, d in enumerate(dims[1:]):
        cur = b.dense(cur, d)
        if i < len(dims) - 2:
            cur = b.act(cur, act)
    return b.graph(cur)


def conv_net(seed: int) -> Graph:
    b = Builder(seed, (2, 7, 7))
    cur = b.act(b.conv("x", 4, 3, s=1, p=1))
    cur = b.act(b.conv(cur, 5, 3, s=2, p=1))  # 7 -> 4: output_padding needed backwards
    cur = b.act(b.dense(b.flatten(cur), 12))
    return b.graph(b.dense(cur, 4))


def conv_dilated_grouped_net(seed: int) -> Graph:
    b = Builder(seed, (4, 9, 8))
    cur = b.act(b.conv("x", 4, 3, s=2, p=2, d=2, groups=2))
    cur = b.act(b.conv(cur, 3, 2, s=1, p=0))
    return b.graph(b.dense(b.flatten(cur), 3))


def residual_fc_net(seed: int) -> Graph:
    b = Builder(seed, (6,))
    h = b.act(b.dense("x", 10))
    br = b.act(b.dense(h, 10))
    br = b.dense(br, 10)
    s = b.add(Add(b.name("add"), (h, br), (10,)))
    s = b.act(s)
    br2 = b.dense(b.act(b.dense(s, 10)), 10)
    s2 = b.add(Add(b.name("sub"), (s, br2), (10,), signs=(1.0, -1.0)))
    return b.graph(b.dense(b.act(s2), 3))


def residual_conv_net(seed: int) -> Graph:
    b = Builder(seed, (3, 6, 6))
    h = b.act(b.conv("x", 4, 3, p=1))
    br = b.conv(b.act(b.conv(h, 4, 3, p=1)), 4, 3, p=1)
    s = b.act(b.add(Add(b.name("add"), (h, br), (4, 6, 6))))
    down = b.act(b.conv(s, 6, 3, s=2, p=1))
    return b.graph(b.dense(b.flatten(down), 5))


def pool_pad_net(seed: int) -> Graph:
    b = Builder(seed, (2, 6, 6))
    h = b.act(b.conv("x", 3, 3, p=1))
    p = b.add(Pad(b.name("pad"), (h,), (3, 8, 9), pads=(1, 2, 1, 1), value=0.5))
    a = b.add(AvgPool(b.name("avg"), (p,), (3, 4, 5), kernel=(3, 3), stride=(2, 2),
                      padding=(1, 1), count_include_pad=False))
    h = b.act(b.dense(b.flatten(a), 10))
    return b.graph(b.dense(h, 3))


def maxpool_net(seed: int) -> Graph:
    b = Builder(seed, (2, 6, 6))
    h = b.act(b.conv("x", 3, 3, p=1))
    m = b.add(MaxPool(b.name("max"), (h,), (3, 3, 3), kernel=(2, 2), stride=(2, 2)))
    h = b.act(b.dense(b.flatten(m), 8))
    return b.graph(b.dense(h, 3))


def maxpool_overlap_net(seed: int) -> Graph:
    """Overlapping windows, padding and ceil_mode, directly on a pre-activation."""
    b = Builder(seed, (2, 7, 7))
    h = b.conv("x", 3, 3, p=1)
    m = b.add(MaxPool(b.name("max"), (h,), (3, 4, 4), kernel=(3, 3), stride=(2, 2),
                      padding=(1, 1)))
    m2 = b.add(MaxPool(b.name("max"), (m,), (3, 2, 2), kernel=(2, 2), stride=(2, 2),
                       ceil_mode=True))
    h = b.act(b.dense(b.flatten(m2), 6))
    return b.graph(b.dense(h, 3))


def shuffle_net(seed: int) -> Graph:
    """Transpose, Slice, Concat, Gather (with a repeated index and a dropped axis)."""
    b = Builder(seed, (3, 4, 5))
    h = b.act(b.conv("x", 4, 3, p=1))  # (4, 4, 5)
    t = b.add(Transpose(b.name("tr"), (h,), (5, 4, 4), perm=(2, 0, 1)))
    s = b.add(Slice(b.name("sl"), (t,), (5, 2, 4), axis=1, start=0, stop=4, step=2))
    s2 = b.add(Slice(b.name("sl"), (h,), (4, 4, 2), axis=2, start=1, stop=5, step=2))
    s2t = b.add(Transpose(b.name("tr"), (s2,), (2, 4, 4), perm=(2, 0, 1)))
    s2s = b.add(Slice(b.name("sl"), (s2t,), (2, 2, 4), axis=1, start=2, stop=4))
    c = b.add(Concat(b.name("cat"), (s, s2s), (7, 2, 4), axis=0))
    g = b.add(Gather(b.name("ga"), (c,), (7, 3, 4), axis=1,
                     indices=torch.tensor([1, 0, 1])))
    g2 = b.add(Gather(b.name("ga"), (g,), (7, 4), axis=1, indices=torch.tensor([2]),
                      keepdim=False))
    h2 = b.act(b.dense(b.flatten(g2), 9))
    return b.graph(b.dense(h2, 3))


def affine_net(seed: int) -> Graph:
    """Input normalisation and an unfused batch-norm with negative scales."""
    b = Builder(seed, (2, 5, 5))
    n = b.add(ElementwiseAffine(b.name("norm"), ("x",), (2, 5, 5),
                                scale=torch.tensor([2.0, -3.0]).view(2, 1, 1),
                                shift=torch.tensor([0.1, -0.2]).view(2, 1, 1)))
    h = b.conv(n, 3, 3)
    bn = b.add(ElementwiseAffine(b.name("bn"), (h,), (3, 3, 3),
                                 scale=b.rand(3, 1, 1), shift=b.rand(3, 1, 1)))
    h = b.act(bn)
    h = b.dense(b.flatten(h), 8)
    h = b.act(b.add(ElementwiseAffine(b.name("ea"), (h,), (8,), scale=b.rand(8), shift=None)))
    return b.graph(b.dense(h, 3))


def conv_transpose_net(seed: int) -> Graph:
    b = Builder(seed, (3, 4, 4))
    h = b.act(b.conv("x", 4, 3, s=2, p=1))  # (4, 2, 2)
    h = b.act(b.conv_t(h, 3, 3, s=2, p=1, op=1))  # (3, 4, 4)
    return b.graph(b.dense(b.flatten(h), 3))


def s_shaped_net(seed: int, act: type) -> Graph:
    b = Builder(seed, (4,))
    h = b.act(b.dense("x", 8), act)
    h = b.act(b.dense(h, 8), Relu)
    h = b.act(b.dense(h, 6), act)
    return b.graph(b.dense(h, 3))


def s_shaped_conv_net(seed: int) -> Graph:
    b = Builder(seed, (2, 5, 5))
    h = b.act(b.conv("x", 3, 3, p=1), Tanh)
    h = b.act(b.conv(h, 3, 3, s=2), Sigmoid)
    return b.graph(b.dense(b.flatten(h), 3))


def chained_activations_net(seed: int) -> Graph:
    """Relu on the input, Relu -> Sigmoid directly, the output a Relu, a tensor read twice."""
    b = Builder(seed, (5,))
    h = b.act("x")
    h = b.dense(h, 7)
    r = b.act(h)
    s = b.act(r, Sigmoid)
    twice = b.add(Add(b.name("add"), (s, s), (7,)))
    h = b.dense(twice, 6)
    both = b.add(Add(b.name("add"), (h, b.dense(r, 6)), (6,)))
    return b.graph(b.act(b.dense(b.act(both), 4)))


def dense_3d_net(seed: int) -> Graph:
    """Dense over the last axis of a (T, F) tensor (MatMul on sequences)."""
    b = Builder(seed, (3, 4))
    h = b.act(b.dense("x", 5))  # (3, 5)
    h = b.act(b.dense(h, 4))  # (3, 4)
    h = b.add(Transpose(b.name("tr"), (h,), (4, 3), perm=(1, 0)))
    return b.graph(b.dense(b.flatten(h), 3))


NETS: dict[str, Callable[[], Graph]] = {
    "fc_1x8": lambda: fc_net(1, [3, 8, 2]),
    "fc_2x10": lambda: fc_net(2, [4, 10, 10, 3]),
    "fc_4x12": lambda: fc_net(3, [5, 12, 12, 12, 12, 4]),
    "fc_wide": lambda: fc_net(4, [6, 40, 30, 5]),
    "fc_deep": lambda: fc_net(5, [3, 8, 8, 8, 8, 8, 8, 8, 2]),
    "fc_acas": lambda: fc_net(6, [5, 20, 20, 20, 5]),
    "conv": lambda: conv_net(7),
    "conv_dil_grp": lambda: conv_dilated_grouped_net(8),
    "res_fc": lambda: residual_fc_net(9),
    "res_conv": lambda: residual_conv_net(10),
    "pool_pad": lambda: pool_pad_net(11),
    "maxpool": lambda: maxpool_net(12),
    "maxpool_overlap": lambda: maxpool_overlap_net(13),
    "shuffle": lambda: shuffle_net(14),
    "affine": lambda: affine_net(15),
    "conv_t": lambda: conv_transpose_net(16),
    "sigmoid_fc": lambda: s_shaped_net(17, Sigmoid),
    "tanh_fc": lambda: s_shaped_net(18, Tanh),
    "sigmoid_only": lambda: fc_net(19, [3, 10, 10, 2], act=Sigmoid),
    "tanh_only": lambda: fc_net(20, [3, 10, 10, 2], act=Tanh),
    "s_conv": lambda: s_shaped_conv_net(21),
    "chained": lambda: chained_activations_net(22),
    "dense_3d": lambda: dense_3d_net(23),
}

METHOD_OPTIONS = {
    "ibp": None,
    "crown": None,
    "alpha-crown": AlphaOptions(iterations=8, early_stop_patience=4),
}


# --------------------------------------------------------------------------- sampling


def boxes(graph: Graph, batch: int, seed: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Different boxes per domain: random centres, radii from tiny to wide."""
    g = torch.Generator().manual_seed(seed)
    n = graph.num_inputs
    centre = torch.randn(batch, n, generator=g, dtype=dtype)
    radius = torch.rand(batch, n, generator=g, dtype=dtype)
    radius = radius * torch.tensor([0.02, 0.3, 1.0, 2.0][:batch] + [0.5] * max(0, batch - 4),
                                   dtype=dtype).view(-1, 1)
    return centre - radius, centre + radius


def samples(x_lower: Tensor, x_upper: Tensor, count: int, seed: int) -> Tensor:
    """``(B, S, n)`` points of each box: uniform samples, plus all corners when n <= 8."""
    g = torch.Generator().manual_seed(seed)
    b, n = x_lower.shape
    u = torch.rand(b, count, n, generator=g, dtype=x_lower.dtype)
    pts = [x_lower.unsqueeze(1) + u * (x_upper - x_lower).unsqueeze(1)]
    if n <= 8:
        corners = torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)),
                               dtype=x_lower.dtype)
        pts.append(x_lower.unsqueeze(1) + corners.unsqueeze(0) * (x_upper - x_lower).unsqueeze(1))
    return torch.cat(pts, dim=1)


def evaluate(graph: Graph, pts: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Outputs ``(B, S, n_out)`` and nonlinear inputs by nonlinear node name ``(B, S, *shape)``."""
    b, s, n = pts.shape
    sources = {node.inputs[0] for node in graph.nodes if isinstance(node, NONLINEAR_KINDS)}
    out, kept = graph.forward(pts.reshape(b * s, n), keep=lambda node: node.name in sources)
    kept[graph.input_name] = pts.reshape(b * s, *graph.input_shape)
    inputs = {node.name: kept[node.inputs[0]].reshape(b, s, *graph.shape_of(node.inputs[0]))
              for node in graph.nodes if isinstance(node, NONLINEAR_KINDS)}
    return out.reshape(b, s, -1), inputs


def assert_within(values: Tensor, lower: Tensor, upper: Tensor, tol: float, what: str) -> None:
    """``values`` ``(B, S, ...)`` within ``[lower, upper]`` ``(B, ...)`` up to a relative tol."""
    lo, hi = lower.unsqueeze(1), upper.unsqueeze(1)
    slack = tol * (1 + values.abs())
    below = (lo - values - slack).max().item()
    above = (values - hi - slack).max().item()
    assert below <= 0 and above <= 0, f"{what}: violation below {below:.3g}, above {above:.3g}"


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("net", list(NETS))
def test_sampled_points_within_bounds(net: str) -> None:
    dtype = torch.float64
    graph = NETS[net]().to(dtype=dtype)
    batch = 4
    xl, xu = boxes(graph, batch, seed=list(NETS).index(net), dtype=dtype)
    g = torch.Generator().manual_seed(0)
    C = torch.randn(batch, 3, graph.num_outputs, generator=g, dtype=dtype)
    pts = samples(xl, xu, 1500, seed=1)
    out, pre = evaluate(graph, pts)
    cy = torch.einsum("bkn,bsn->bsk", C, out)
    results = {}
    for method, opts in METHOD_OPTIONS.items():
        r = compute_bounds(graph, xl, xu, C, method, alpha=opts, need_upper=True)
        results[method] = r
        assert r.lower.shape == (batch, 3) and r.upper.shape == (batch, 3)
        assert torch.isfinite(r.lower).all() and torch.isfinite(r.upper).all()
        assert_within(cy, r.lower, r.upper, 1e-9, f"{net}/{method} output")
        assert set(r.intermediate) == set(pre)
        for name, vals in pre.items():
            lo, hi = r.intermediate[name]
            assert lo.shape == hi.shape == (batch, *vals.shape[2:])
            assert_within(vals, lo, hi, 1e-9, f"{net}/{method} intermediate {name}")
    # CROWN's intermediate bounds are IBP's intersected with more: never looser than IBP;
    # alpha-CROWN keeps the best it saw: never looser than CROWN, at the output too.
    for name in pre:
        il, iu = results["ibp"].intermediate[name]
        cl, cu = results["crown"].intermediate[name]
        al, au = results["alpha-crown"].intermediate[name]
        tol = 1e-9 * (1 + il.abs() + iu.abs())
        assert (cl >= il - tol).all() and (cu <= iu + tol).all()
        assert (al >= cl - tol).all() and (au <= cu + tol).all()
    assert (results["alpha-crown"].lower >= results["crown"].lower - 1e-9).all()
    assert (results["alpha-crown"].upper <= results["crown"].upper + 1e-9).all()
    # the output bound is intersected with (tightened) IBP, so never looser than plain IBP
    assert (results["crown"].lower >= results["ibp"].lower - 1e-9).all()
    assert (results["crown"].upper <= results["ibp"].upper + 1e-9).all()


@pytest.mark.parametrize("net", ["fc_2x10", "conv", "res_conv", "maxpool_overlap", "tanh_fc",
                                 "shuffle"])
def test_sampled_points_within_bounds_float32(net: str) -> None:
    graph = NETS[net]()
    batch = 3
    xl, xu = boxes(graph, batch, seed=5, dtype=torch.float32)
    C = torch.randn(2, graph.num_outputs, generator=torch.Generator().manual_seed(3))
    pts = samples(xl, xu, 1000, seed=2)
    out, pre = evaluate(graph, pts)
    cy = torch.einsum("kn,bsn->bsk", C, out)
    for method, opts in METHOD_OPTIONS.items():
        r = compute_bounds(graph, xl, xu, C, method, alpha=opts, need_upper=True)
        assert r.lower.dtype == torch.float32
        assert_within(cy, r.lower, r.upper, 1e-4, f"{net}/{method} output")
        for name, vals in pre.items():
            lo, hi = r.intermediate[name]
            assert_within(vals, lo, hi, 1e-4, f"{net}/{method} intermediate {name}")


@pytest.mark.parametrize("net", ["fc_4x12", "res_fc", "conv"])
def test_crown_tighter_than_ibp_on_relu_nets(net: str) -> None:
    """Not a theorem in general, but on these nets CROWN must beat IBP on average."""
    graph = NETS[net]().to(dtype=torch.float64)
    xl, xu = boxes(graph, 4, seed=7, dtype=torch.float64)
    ibp = compute_bounds(graph, xl, xu, None, "ibp", need_upper=True)
    crown = compute_bounds(graph, xl, xu, None, "crown", need_upper=True)
    assert ((crown.upper - crown.lower).sum() < (ibp.upper - ibp.lower).sum())


@pytest.mark.parametrize("net", ["sigmoid_only", "tanh_only", "sigmoid_fc", "s_conv", "fc_4x12",
                                 "chained"])
def test_layerwise_intermediate_optimisation_sound_and_never_looser(net: str) -> None:
    """``intermediate_objective="layerwise"``: every intermediate bound optimised for itself
    before the final one. Sampled points stay inside, and nothing is looser than CROWN."""
    dtype = torch.float64
    graph = NETS[net]().to(dtype=dtype)
    batch = 3
    xl, xu = boxes(graph, batch, seed=5, dtype=dtype)
    C = torch.randn(batch, 2, graph.num_outputs, generator=torch.Generator().manual_seed(1),
                    dtype=dtype)
    pts = samples(xl, xu, 1500, seed=2)
    out, pre = evaluate(graph, pts)
    cy = torch.einsum("bkn,bsn->bsk", C, out)
    crown = compute_bounds(graph, xl, xu, C, "crown", need_upper=True)
    opts = AlphaOptions(iterations=15, intermediate_objective="layerwise")
    r = compute_bounds(graph, xl, xu, C, "alpha-crown", alpha=opts, need_upper=True)
    assert_within(cy, r.lower, r.upper, 1e-9, f"{net}/layerwise output")
    assert (r.lower >= crown.lower - 1e-9).all() and (r.upper <= crown.upper + 1e-9).all()
    for name, vals in pre.items():
        lo, hi = r.intermediate[name]
        assert_within(vals, lo, hi, 1e-9, f"{net}/layerwise intermediate {name}")
        cl, cu = crown.intermediate[name]
        assert (lo >= cl - 1e-9).all() and (hi <= cu + 1e-9).all()
    # a warm start from the result is accepted (the slopes' layout round-trips)
    again = compute_bounds(graph, xl, xu, C, "alpha-crown", alpha=opts, need_upper=True,
                           alpha_init=r.alphas)
    assert_within(cy, again.lower, again.upper, 1e-9, f"{net}/layerwise warm output")

