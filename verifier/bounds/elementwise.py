"""Relaxations, IBP and backward rules of the smooth elementwise functions, the step (Sign) and
the product of two variable tensors (nodes of ``verifier/graph/ir_nonlinear.py``).

Lines for a function ``f`` on ``[l, u]`` come from its curvature there:

* convex on ``[l, u]`` (exp; even powers; ``1/x`` for ``x > 0``...): the chord is an upper
  line and the tangent at the midpoint a lower line, both exact (no slack beyond rounding);
* concave (log, sqrt, ``1/x`` for ``x < 0``...): the same, swapped;
* neither (sin/cos over an inflection, odd powers across 0): both lines get the chord's slope
  and intercepts from a grid: between grid points ``h`` apart, ``f(x) − a·x`` leaves the
  chord of its grid values by at most ``M·h²/8`` (``M >= sup |f''|`` on ``[l, u]``), so the
  grid's extreme widened by that is a sound extreme over the whole interval.

Where a slope or intercept is not finite (overflow of exp, ``1/x`` across 0), the line falls
back to the constant interval bound, which may itself be infinite: infinite intercepts never
meet a zero coefficient here (no ``0·∞ = NaN``), so a bound that cannot be made finite comes
out as ``−∞`` and proves nothing, instead of poisoning the pass.

A product ``a·b`` (``Product``) is relaxed by the average of the two McCormick planes on each
side: ``a·b >= m_b·a + m_a·b − (l_a·l_b + u_a·u_b)/2`` and ``a·b <= m_b·a + m_a·b −
(l_a·u_b + u_a·l_b)/2`` (``m`` the midpoints). Each plane is valid on the box, so each average
is; its worst gap is half of either plane's, and both sides share slopes, so the backward
rule is one product per factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from planecut.verifier.bounds.relaxations import _sum_rows
from planecut.verifier.graph.ir_nonlinear import (Cos, Elementwise, Exp, Log, Pow, Product,
                                                  Reciprocal, Sign, Sin, Sqrt)

Tensor = torch.Tensor
Interval = tuple[Tensor, Tensor]

#: grid points per element for functions of mixed curvature
GRID_POINTS = 17


@dataclass
class CurveRelaxation:
    """``a_l·x + b_l <= f(x) <= a_u·x + b_u`` on ``[l, u]`` (fields ``(B, 1, *shape)``);
    slopes are finite, intercepts may be infinite."""

    lower_slope: Tensor
    lower_intercept: Tensor
    upper_slope: Tensor
    upper_intercept: Tensor


@dataclass
class ProductRelaxation:
    """Averaged McCormick planes of ``a·b`` (fields ``(B, 1, *shape)``, see the module doc).

    With finite factor bounds (``la``...``ub`` kept), alpha-CROWN may move each side's plane
    between its two McCormick planes: a weight ``w ∈ [0, 1]`` per element and row gives the
    lower plane ``w·P1 + (1 − w)·P2`` (any convex combination of valid planes is valid), and
    ``v`` the upper one; 0.5 is the average used without optimisation."""

    slope_a: Tensor  # midpoint of b
    slope_b: Tensor  # midpoint of a
    lower_intercept: Tensor
    upper_intercept: Tensor
    la: Tensor | None = None  # None when some factor bound is infinite: no plane weights
    ua: Tensor | None = None
    lb: Tensor | None = None
    ub: Tensor | None = None

    @property
    def weighted(self) -> bool:
        return self.la is not None


def _times(coeff: Tensor, value: Tensor) -> Tensor:
    """``coeff·value`` with ``0·±∞ = 0`` (an unused infinite intercept costs nothing)."""
    return torch.where(coeff == 0, torch.zeros_like(coeff), coeff * value)


# --------------------------------------------------------------------------- functions


def _contains_point(l: Tensor, u: Tensor, offset: float, period: float) -> Tensor:
    """Whether some ``offset + k·period`` lies in ``[l, u]``."""
    first = torch.ceil((l - offset) / period) * period + offset
    return first <= u


def _sin_range(l: Tensor, u: Tensor, shift: float) -> Interval:
    """Exact range of ``sin(x + shift)`` on ``[l, u]``."""
    a, b = l + shift, u + shift
    fa, fb = torch.sin(a), torch.sin(b)
    hi = torch.where(_contains_point(a, b, math.pi / 2, 2 * math.pi), torch.ones_like(a),
                     torch.maximum(fa, fb))
    lo = torch.where(_contains_point(a, b, -math.pi / 2, 2 * math.pi), -torch.ones_like(a),
                     torch.minimum(fa, fb))
    return lo, hi


def _domain(node: Elementwise, l: Tensor, u: Tensor) -> Interval:
    """Restrict to where ``f`` is real (sqrt, log, fractional powers: ``x >= 0``); inputs
    outside give NaN outputs, which never satisfy a property's output constraints."""
    if isinstance(node, (Sqrt, Log)) or (isinstance(node, Pow) and not node.integer):
        return l.clamp(min=0), u.clamp(min=0)
    return l, u


def _derivative(node: Elementwise, x: Tensor) -> Tensor:
    if isinstance(node, Exp):
        return torch.exp(x)
    if isinstance(node, Log):
        return 1 / x
    if isinstance(node, Sqrt):
        return 0.5 / torch.sqrt(x)
    if isinstance(node, Reciprocal):
        return -1 / (x * x)
    if isinstance(node, Pow):
        return node.exponent * torch.pow(x, node.exponent - 1)
    if isinstance(node, Sin):
        return torch.cos(x)
    if isinstance(node, Cos):
        return -torch.sin(x)
    raise NotImplementedError(type(node).__name__)


def _pole(node: Elementwise, l: Tensor, u: Tensor) -> Tensor:
    """Where ``f`` is unbounded on ``[l, u]`` (a pole at 0 inside or at an end)."""
    neg_power = isinstance(node, Reciprocal) or (isinstance(node, Pow) and node.exponent < 0)
    if neg_power:
        return (l <= 0) & (u >= 0)
    if isinstance(node, Log):
        return l <= 0
    return torch.zeros_like(l, dtype=torch.bool)


def ibp_elementwise(node: Elementwise, bounds: Interval) -> Interval:
    """Range of ``f`` over ``[l, u]``: exact for every kind here."""
    l, u = _domain(node, *bounds)
    if isinstance(node, Sin):
        return _sin_range(l, u, 0.0)
    if isinstance(node, Cos):
        return _sin_range(l, u, math.pi / 2)
    fl, fu = node.fn(l), node.fn(u)
    if node.monotone:
        lo, hi = fl, fu
    else:
        lo, hi = torch.minimum(fl, fu), torch.maximum(fl, fu)
        if isinstance(node, Pow) and node.exponent > 0:  # x**p has its extreme 0 at x = 0
            inside = (l < 0) & (u > 0)
            lo = torch.where(inside, torch.minimum(lo, torch.zeros_like(lo)), lo)
            hi = torch.where(inside, torch.maximum(hi, torch.zeros_like(hi)), hi)
    pole = _pole(node, l, u)
    if pole.any():
        lo = torch.where(pole, torch.full_like(lo, -math.inf), lo)
        hi = torch.where(pole, torch.full_like(hi, math.inf), hi)
        if isinstance(node, Log):  # log is bounded above by log(u) even with l <= 0
            hi = torch.where(pole, fu, hi)
    return lo, hi


def _curvature(node: Elementwise, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """``(+1 convex / −1 concave / 0 neither on [l, u], M >= sup |f''| there)`` per element
    (M only matters where neither)."""
    ones = torch.ones_like(l)
    zero = torch.zeros_like(l)
    if isinstance(node, Exp):
        return ones, zero
    if isinstance(node, (Log, Sqrt)):
        return -ones, zero
    if isinstance(node, Reciprocal):
        return torch.where(l > 0, ones, torch.where(u < 0, -ones, zero)), zero
    if isinstance(node, Pow):
        p = node.exponent
        if not node.integer:  # x >= 0 (see _domain)
            return (ones if p > 1 or p < 0 else -ones), zero
        even = int(p) % 2 == 0
        if p > 0:
            if even:
                return ones, zero
            conv = torch.where(l >= 0, ones, torch.where(u <= 0, -ones, zero))
            big = torch.maximum(l.abs(), u.abs())
            return conv, abs(p * (p - 1)) * big ** (p - 2)
        # negative integer powers: convex for x > 0; for x < 0 convex if even, else concave
        return torch.where(l > 0, ones, torch.where(u < 0, ones if even else -ones, zero)), zero
    if isinstance(node, (Sin, Cos)):
        shift = 0.0 if isinstance(node, Sin) else math.pi / 2  # cos(x) = sin(x + pi/2)
        a, b = l + shift, u + shift
        same = torch.floor(a / math.pi) == torch.floor(b / math.pi)
        # sin'' = −sin: concave where sin >= 0 (on [2kπ, (2k+1)π])
        concave = torch.sin((a + b) / 2) >= 0
        conv = torch.where(same, torch.where(concave, -ones, ones), zero)
        return conv, ones
    raise NotImplementedError(type(node).__name__)


def _grid_extremes(node: Elementwise, slope: Tensor, l: Tensor, u: Tensor, m: Tensor
                   ) -> Interval:
    """Sound ``min`` and ``max`` of ``f(x) − slope·x`` over ``[l, u]`` (see the module doc)."""
    t = torch.linspace(0, 1, GRID_POINTS, dtype=l.dtype, device=l.device)
    t = t.view(-1, *([1] * l.dim()))
    xs = l + t * (u - l)
    g = node.fn(xs) - slope * xs
    h = (u - l) / (GRID_POINTS - 1)
    slack = m * h * h / 8
    return g.amin(0) - slack, g.amax(0) + slack


def _sign_lines(l: Tensor, u: Tensor) -> CurveRelaxation:
    """Sign on ``[l, u]``: exact where stable; across 0 (values in [−1, 1]) the lower line
    ``y >= a·x − 1`` is sound for ``a ∈ [0, 2/u]`` and the upper ``y <= a·x + 1`` for
    ``a ∈ [0, −2/l]``; like ReLU's adaptive slope, the steep one where it covers more."""
    pos, neg = l > 0, u < 0
    zero = torch.zeros_like(l)
    ones = torch.ones_like(l)
    cross = ~pos & ~neg
    safe_u = torch.where(u > 0, u, ones)
    safe_l = torch.where(l < 0, l, -ones)
    low_a = torch.where(cross & (u > 0) & (u >= -l), 2 / safe_u, zero)
    up_a = torch.where(cross & (l < 0) & (-l > u), -2 / safe_l, zero)
    point = (l == 0) & (u == 0)
    low_b = torch.where(pos, ones, torch.where(point, zero, -ones))
    up_b = torch.where(neg, -ones, torch.where(point, zero, ones))
    return CurveRelaxation(low_a.unsqueeze(1), low_b.unsqueeze(1), up_a.unsqueeze(1),
                           up_b.unsqueeze(1))


def curve_relaxation(node: Elementwise, lower: Tensor, upper: Tensor) -> CurveRelaxation:
    """Sound lines for ``node``'s function on ``[l, u]`` ``(B, *shape)``: see the module doc."""
    lower, upper = lower.detach(), upper.detach()
    if isinstance(node, Sign):
        return _sign_lines(lower, upper)
    l, u = _domain(node, lower, upper)
    ibp_lo, ibp_hi = ibp_elementwise(node, (l, u))
    eps = torch.finfo(l.dtype).eps
    width = u - l
    mid = (l + u) / 2
    thin = width <= eps ** 0.5 * (1 + mid.abs())
    safe_w = torch.where(thin, torch.ones_like(width), width)
    with torch.no_grad():
        fl, fu, fm = node.fn(l), node.fn(u), node.fn(mid)
        chord = (fu - fl) / safe_w
        tangent = _derivative(node, mid)
        conv, m = _curvature(node, l, u)
        chord_b = fl - chord * l
        tangent_b = fm - tangent * mid
        if bool((conv == 0).any()):  # the grid only serves mixed curvature
            g_lo, g_hi = _grid_extremes(node, chord, l, u, m)
        else:
            g_lo, g_hi = chord_b, chord_b  # never selected
    convex, concave = conv > 0, conv < 0
    low_a = torch.where(convex, tangent, chord)
    up_a = torch.where(concave, tangent, chord)
    low_b = torch.where(convex, tangent_b, torch.where(concave, chord_b, g_lo))
    up_b = torch.where(concave, tangent_b, torch.where(convex, chord_b, g_hi))
    # rounding: a few ulps of the magnitudes involved
    scale = 1 + torch.maximum(fl.abs(), fu.abs()) + (chord.abs() + tangent.abs()) * \
        torch.maximum(l.abs(), u.abs())
    margin = 8 * eps * scale
    low_b, up_b = low_b - margin, up_b + margin
    # fall back to the constant interval bound where a line is not finite or the interval thin
    bad = thin | _pole(node, l, u)
    bad_low = bad | ~torch.isfinite(low_a) | ~torch.isfinite(low_b)
    bad_up = bad | ~torch.isfinite(up_a) | ~torch.isfinite(up_b)
    zero = torch.zeros_like(l)
    low_a = torch.where(bad_low, zero, low_a)
    low_b = torch.where(bad_low, ibp_lo, low_b)
    up_a = torch.where(bad_up, zero, up_a)
    up_b = torch.where(bad_up, ibp_hi, up_b)
    # a NaN range (the whole interval outside the domain) bounds nothing: use ±inf
    low_b = torch.nan_to_num(low_b, nan=-math.inf, posinf=math.inf, neginf=-math.inf)
    up_b = torch.nan_to_num(up_b, nan=math.inf, posinf=math.inf, neginf=-math.inf)
    return CurveRelaxation(low_a.unsqueeze(1), low_b.unsqueeze(1), up_a.unsqueeze(1),
                           up_b.unsqueeze(1))


def curve_backward(lam: Tensor, relax: CurveRelaxation) -> tuple[Tensor, Tensor]:
    """``Λ·y >= (Λ⁺·a_l + Λ⁻·a_u)·x + Λ⁺·b_l + Λ⁻·b_u``."""
    pos = lam.clamp(min=0)
    neg = lam.clamp(max=0)
    lam_in = pos * relax.lower_slope + neg * relax.upper_slope
    const = _sum_rows(_times(pos, relax.lower_intercept) + _times(neg, relax.upper_intercept))
    return lam_in, const


# --------------------------------------------------------------------------- products


def _factors(lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Bounds ``(B, 2, *shape)`` of a stacked product input as ``l_a, u_a, l_b, u_b``."""
    return lower[:, 0], upper[:, 0], lower[:, 1], upper[:, 1]


def ibp_product(node: Product, bounds: Interval) -> Interval:
    la, ua, lb, ub = _factors(*bounds)
    corners = torch.stack([la * lb, la * ub, ua * lb, ua * ub])
    corners = torch.nan_to_num(corners, nan=0.0, posinf=math.inf, neginf=-math.inf)  # 0·∞ = 0
    return corners.amin(0), corners.amax(0)


def product_relaxation(node: Product, lower: Tensor, upper: Tensor) -> ProductRelaxation:
    la, ua, lb, ub = _factors(lower.detach(), upper.detach())
    eps = torch.finfo(la.dtype).eps
    mid_a, mid_b = (la + ua) / 2, (lb + ub) / 2
    low = -(la * lb + ua * ub) / 2
    up = -(la * ub + ua * lb) / 2
    margin = 8 * eps * (1 + torch.maximum(la.abs(), ua.abs()) * torch.maximum(lb.abs(), ub.abs()))
    low, up = low - margin, up + margin
    finite = torch.isfinite(mid_a) & torch.isfinite(mid_b) & torch.isfinite(low) & \
        torch.isfinite(up)
    if not bool(finite.all()):  # an unbounded factor: only the (infinite) interval bound
        lo, hi = ibp_product(node, (lower.detach(), upper.detach()))
        zero = torch.zeros_like(mid_a)
        mid_a, mid_b = torch.where(finite, mid_a, zero), torch.where(finite, mid_b, zero)
        low = torch.where(finite, low, lo)
        up = torch.where(finite, up, hi)
        return ProductRelaxation(mid_b.unsqueeze(1), mid_a.unsqueeze(1), low.unsqueeze(1),
                                 up.unsqueeze(1))
    return ProductRelaxation(mid_b.unsqueeze(1), mid_a.unsqueeze(1), low.unsqueeze(1),
                             up.unsqueeze(1), la.unsqueeze(1), ua.unsqueeze(1),
                             lb.unsqueeze(1), ub.unsqueeze(1))


def initial_plane_weight(relax: ProductRelaxation) -> Tensor:
    """The weight of the averaged plane, ``(B, 1, *shape)``."""
    return torch.full_like(relax.slope_a, 0.5)


def product_backward(lam: Tensor, relax: ProductRelaxation,
                     weights: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Coefficients on the stacked input ``(Bλ', K, 2, *shape)`` and the constant; with
    ``weights`` ``(w, v)`` ``(B, K, *shape)`` in ``[0, 1]``, the planes they select."""
    pos = lam.clamp(min=0)
    neg = lam.clamp(max=0)
    if weights is None or not relax.weighted:
        ca = lam * relax.slope_a
        cb = lam * relax.slope_b
        if ca.shape != cb.shape:
            ca, cb = torch.broadcast_tensors(ca, cb)
        const = _sum_rows(_times(pos, relax.lower_intercept) +
                          _times(neg, relax.upper_intercept))
        return torch.stack([ca, cb], dim=2), const
    w, v = weights
    la, ua, lb, ub = relax.la, relax.ua, relax.lb, relax.ub
    eps = torch.finfo(la.dtype).eps
    margin = 8 * eps * (1 + torch.maximum(la.abs(), ua.abs()) * torch.maximum(lb.abs(), ub.abs()))
    # P1: a·b >= lb·a + la·b − la·lb, P2: a·b >= ub·a + ua·b − ua·ub
    low_a, low_b = w * lb + (1 - w) * ub, w * la + (1 - w) * ua
    low_c = -(w * la * lb + (1 - w) * ua * ub) - margin
    # Q1: a·b <= ub·a + la·b − la·ub, Q2: a·b <= lb·a + ua·b − ua·lb
    up_a, up_b = v * ub + (1 - v) * lb, v * la + (1 - v) * ua
    up_c = -(v * la * ub + (1 - v) * ua * lb) + margin
    ca = pos * low_a + neg * up_a
    cb = pos * low_b + neg * up_b
    const = _sum_rows(pos * low_c + neg * up_c)
    return torch.stack([ca, cb], dim=2), const
