"""Soundness (dense grids, vertex and uniform samples) and tightness of the relaxations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from planecut.verifier.bounds.crown import make_relaxation, nonlinear_backward
from planecut.verifier.bounds.relaxations import (
    relu_relaxation,
    line_backward_optimised,
    sigmoid_relaxation,
    tanh_relaxation,
    theta_to_point,
)
from planecut.verifier.graph.ir import MaxPool, Relu, Sigmoid, Tanh


def interval_grid(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Intervals in every curvature region: convex, concave, mixed, thin, degenerate, wide."""
    pts = torch.tensor([-30.0, -12.0, -6.0, -3.0, -1.5, -0.7, -0.2, -1e-4, 0.0, 1e-4, 0.2, 0.7,
                        1.5, 3.0, 6.0, 12.0, 30.0], dtype=torch.float64)
    lo, hi = torch.meshgrid(pts, pts, indexing="ij")
    keep = lo <= hi
    lo, hi = lo[keep], hi[keep]
    thin_c = torch.tensor([-5.0, -0.3, 0.0, 0.4, 4.0], dtype=torch.float64)
    lo = torch.cat([lo, thin_c, thin_c - 1e-7])
    hi = torch.cat([hi, thin_c + 1e-6, thin_c + 1e-7])
    return lo.to(dtype), hi.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["sigmoid", "tanh"])
def test_s_shaped_lines_sound_and_tight_on_dense_grid(kind: str, dtype: torch.dtype) -> None:
    fn = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}[kind]
    rule = {"sigmoid": sigmoid_relaxation, "tanh": tanh_relaxation}[kind]
    lo, hi = interval_grid(dtype)
    rel = rule(lo.unsqueeze(0), hi.unsqueeze(0))  # (1, 1, n)
    # evaluate the (dtype) lines against f in float64 on 4001 points of each interval
    t = torch.linspace(0, 1, 4001, dtype=torch.float64).unsqueeze(1)
    lo64, hi64 = lo.double(), hi.double()
    x = lo64 + t * (hi64 - lo64)
    f = fn(x)
    al, bl = rel.lower_slope[0, 0].double(), rel.lower_intercept[0, 0].double()
    au, bu = rel.upper_slope[0, 0].double(), rel.upper_intercept[0, 0].double()
    lower_gap = f - (al * x + bl)
    upper_gap = (au * x + bu) - f
    assert lower_gap.min() >= 0, f"lower line above {kind} by {-lower_gap.min().item():.3g}"
    assert upper_gap.min() >= 0, f"upper line below {kind} by {-upper_gap.min().item():.3g}"
    # tight: each line touches f somewhere on the interval (up to rounding and the grid
    # spacing h: a tangent point between grid points leaves a gap <= max|f''|·h²/2 there)
    tol = 1e3 * torch.finfo(dtype).eps + ((hi64 - lo64) / 4000) ** 2
    assert (lower_gap.min(0).values <= tol).all()
    assert (upper_gap.min(0).values <= tol).all()
    # slopes are within the derivative's range
    assert (rel.lower_slope >= 0).all() and (rel.upper_slope >= 0).all()


def test_s_shaped_mixed_interval_uses_tangent_through_endpoint() -> None:
    """On a wide interval around 0 the upper line goes through (l, σ(l)) and touches σ in
    (0, u]: steeper than the chord, which would cut below the curve near u."""
    lo = torch.tensor([[-4.0]], dtype=torch.float64)
    hi = torch.tensor([[6.0]], dtype=torch.float64)
    rel = sigmoid_relaxation(lo, hi)
    line_at_l = (rel.upper_slope * lo + rel.upper_intercept).item()
    assert abs(line_at_l - torch.sigmoid(lo).item()) < 1e-6
    chord = ((torch.sigmoid(hi) - torch.sigmoid(lo)) / (hi - lo)).item()
    assert rel.upper_slope.item() > chord


def test_relu_relaxation_sound_for_any_alpha() -> None:
    lo, hi = interval_grid(torch.float64)
    rel = relu_relaxation(lo.unsqueeze(0), hi.unsqueeze(0))
    t = torch.linspace(0, 1, 501, dtype=torch.float64).unsqueeze(1)
    x = lo + t * (hi - lo)
    y = torch.relu(x)
    upper = rel.upper_slope[0, 0] * x + rel.upper_intercept[0, 0]
    assert (upper - y).min() >= -1e-12
    for a in (0.0, 0.3, 1.0):
        lower = rel.lower_slope(torch.full_like(rel.default_alpha, a))[0, 0] * x
        assert (y - lower).min() >= -1e-12


def sample_box(lo: torch.Tensor, hi: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``(S, B, ...)``: half random vertices of the box, half uniform points."""
    g = torch.Generator().manual_seed(seed)
    shape = (count, *lo.shape)
    vert = (torch.rand(shape, generator=g, dtype=lo.dtype) < 0.5).to(lo.dtype)
    uni = torch.rand(shape, generator=g, dtype=lo.dtype)
    t = torch.cat([vert[: count // 2], uni[count // 2:]])
    return lo + t * (hi - lo)


def maxpool_node(shape_in: tuple[int, int, int], **kw) -> MaxPool:
    probe = F.max_pool2d(torch.zeros(1, *shape_in), kw.get("kernel", (1, 1)),
                         kw.get("stride", (1, 1)), kw.get("padding", (0, 0)),
                         kw.get("dilation", (1, 1)), kw.get("ceil_mode", False))
    return MaxPool("mp", ("x",), tuple(probe.shape[1:]), **kw)


NONLINEAR_CASES = {
    "relu": (Relu("r", ("x",), (4, 5)), (4, 5)),
    "sigmoid": (Sigmoid("s", ("x",), (4, 5)), (4, 5)),
    "tanh": (Tanh("t", ("x",), (4, 5)), (4, 5)),
    "maxpool_2x2": (maxpool_node((2, 6, 6), kernel=(2, 2), stride=(2, 2)), (2, 6, 6)),
    "maxpool_overlap": (maxpool_node((2, 7, 7), kernel=(3, 3), stride=(2, 2), padding=(1, 1)),
                        (2, 7, 7)),
    "maxpool_ceil_dil": (maxpool_node((1, 7, 8), kernel=(2, 3), stride=(2, 2), dilation=(2, 1),
                                      ceil_mode=True), (1, 7, 8)),
}


@pytest.mark.parametrize("case", list(NONLINEAR_CASES))
def test_backward_rule_is_a_valid_lower_bound(case: str) -> None:
    """``Λ·f(x) >= Λ_in·x + c`` for every sampled ``x`` of the box, ``Λ`` of either sign."""
    node, in_shape = NONLINEAR_CASES[case]
    g = torch.Generator().manual_seed(len(case))
    B, K = 3, 6
    centre = torch.randn(B, *in_shape, generator=g, dtype=torch.float64) * 2
    width = torch.rand(B, *in_shape, generator=g, dtype=torch.float64) * \
        torch.tensor([0.1, 1.0, 4.0], dtype=torch.float64).view(-1, *[1] * len(in_shape))
    lo, hi = centre - width, centre + width
    relax = make_relaxation(node, lo, hi)
    lam = torch.randn(1, K, *node.shape, generator=g, dtype=torch.float64)
    alpha = None
    if isinstance(node, Relu):
        alpha = torch.rand(B, K, *node.shape, generator=g, dtype=torch.float64)
    lam_in, const = nonlinear_backward(lam, relax, alpha)
    assert lam_in.shape == (B, K, *in_shape) and const.shape[-1] == K
    x = sample_box(lo, hi, 3000, seed=1)  # (S, B, *in_shape)
    y = node.forward(x.reshape(-1, *in_shape)).reshape(x.shape[0], B, *node.shape)
    lhs = torch.einsum("bkn,sbn->sbk", lam.expand(B, -1, *node.shape).flatten(2), y.flatten(2))
    rhs = torch.einsum("bkn,sbn->sbk", lam_in.flatten(2), x.flatten(2)) + const
    assert (lhs - rhs).min() >= -1e-9, (lhs - rhs).min()


def test_maxpool_dominated_windows_are_exact() -> None:
    node = maxpool_node((1, 4, 4), kernel=(2, 2), stride=(2, 2))
    lo = torch.zeros(1, 1, 4, 4)
    hi = lo + 0.5
    lo[0, 0, 0, 1], hi[0, 0, 0, 1] = 2.0, 3.0  # dominates the first window
    relax = make_relaxation(node, lo, hi)
    assert relax.exact[0, 0, 0, 0] == 1 and relax.index[0, 0, 0, 0] == 1
    assert relax.exact[0, 0, 0, 1:].sum() == 0


@pytest.mark.parametrize("kind", ["sigmoid", "tanh"])
def test_s_shaped_tangent_points_reproduce_default_slopes(kind: str) -> None:
    """alpha-CROWN starts from the tangent points: ``f'(l + θ(u − l))`` must be the default
    slope, also where the default is a chord on an interval crossing 0 (its tangent point is
    then on the other side of 0 than the line's own)."""
    rule = {"sigmoid": sigmoid_relaxation, "tanh": tanh_relaxation}[kind]
    lo, hi = interval_grid(torch.float64)
    rel = rule(lo.unsqueeze(0), hi.unsqueeze(0))
    assert ((rel.lower_point >= 0) & (rel.lower_point <= 1)).all()
    assert ((rel.upper_point >= 0) & (rel.upper_point <= 1)).all()
    width = hi - lo
    for point, slope in ((rel.lower_point, rel.lower_slope), (rel.upper_point, rel.upper_slope)):
        again = rel.fn.df(theta_to_point(point[0, 0], lo, hi))
        wide = width > 1e-3  # thin intervals use the midpoint tangent: same slope to ~1e-7
        assert torch.allclose(again[wide], slope[0, 0][wide], rtol=1e-6, atol=1e-9)
        assert torch.allclose(again, slope[0, 0], rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("kind", ["sigmoid", "tanh"])
def test_s_shaped_lines_sound_for_every_tangent_point(kind: str) -> None:
    """alpha-CROWN may put a tangent point anywhere in its range, outside ``[l, u]`` too (the
    flat lines): every such line, with its recomputed intercept, must bound ``f`` on the whole
    interval. Checked on a grid of intervals with θ at the ends and at random."""
    rule = {"sigmoid": sigmoid_relaxation, "tanh": tanh_relaxation}[kind]
    lo, hi = interval_grid(torch.float64)
    lo, hi = lo.flatten().unsqueeze(0), hi.flatten().unsqueeze(0)
    rel = rule(lo, hi)
    g = torch.Generator().manual_seed(0)
    n = lo.shape[1]
    thetas = [torch.zeros(1, 1, n), torch.ones(1, 1, n), torch.full((1, 1, n), 0.5),
              torch.rand(1, 1, n, generator=g)]
    eye = torch.eye(n, dtype=torch.float64).unsqueeze(0)  # one row per neuron
    xs = lo + (hi - lo) * torch.linspace(0, 1, 41, dtype=torch.float64).view(-1, 1)
    fx = rel.fn.f(xs)
    for theta in thetas:
        theta = theta.to(torch.float64).expand(1, n, n)
        for sign in (1.0, -1.0):  # +: lower line of each neuron, −: upper line
            coeff, const = line_backward_optimised(sign * eye, rel, theta, theta)
            slope = torch.diagonal(coeff[0]) * sign
            icpt = const[0] * sign
            line = slope * xs + icpt
            if sign > 0:
                assert (line <= fx + 1e-12).all()
            else:
                assert (line >= fx - 1e-12).all()
