"""Linear relaxations of the nonlinear node kinds, and how CROWN pushes ``Λ`` through them.

Each relaxation is built from pre-activation bounds ``l <= x <= u`` (``(B, *shape)``) and stored
with a row dimension inserted, ``(B, 1, *shape)``, so that it broadcasts against coefficient
tensors ``Λ`` of shape ``(Bλ, K, *shape)``. The backward rules compute, for a *lower* bound of
``Λ·y``: positive coefficients take the lower relaxation, negative ones the upper relaxation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from planecut.verifier.graph.ir import MaxPool

Tensor = torch.Tensor


def _sum_rows(t: Tensor) -> Tensor:
    """Sum ``(Bλ, K, ...)`` over the per-example dimensions: ``(Bλ, K)``."""
    return t.flatten(2).sum(-1) if t.dim() > 2 else t


# --------------------------------------------------------------------------- ReLU


@dataclass
class ReluRelaxation:
    """ReLU ``y = max(0, z)`` on ``[l, u]`` (dense fields ``(B, 1, *shape)``).

    * stable active (``l >= 0``): ``y = z``; stable inactive (``u <= 0``): ``y = 0``;
    * unstable (``l < 0 < u``): lower ``y >= α·z`` for any ``α ∈ [0, 1]``; upper the chord
      ``y <= s·(z − l)`` with ``s = u/(u − l)``.

    ``default_alpha`` is the adaptive choice: 1 where ``u > −l`` else 0. ``index`` lists the
    flat positions unstable in some domain; the ``*_u`` fields are the dense fields gathered
    there, ``(B, 1, m)``, so that the backward rule touches only those positions beyond one
    dense product.
    """

    active: Tensor  # 1.0 where l >= 0
    unstable: Tensor  # 1.0 where l < 0 < u
    default_alpha: Tensor
    upper_slope: Tensor
    upper_intercept: Tensor
    index: Tensor  # (m,) int64
    active_u: Tensor
    unstable_u: Tensor
    upper_slope_u: Tensor
    upper_intercept_u: Tensor
    default_gap_u: Tensor  # default lower slope minus upper slope, at index
    lower: Tensor | None = None  # (B, 1, *shape) the bounds it was built from (GCP-CROWN's
    upper: Tensor | None = None  # indicator terms need them)

    def lower_slope(self, alpha: Tensor | None = None) -> Tensor:
        a = self.default_alpha if alpha is None else alpha
        return self.active + self.unstable * a


def relu_relaxation(lower: Tensor, upper: Tensor) -> ReluRelaxation:
    """Triangle relaxation of ReLU from bounds ``(B, *shape)`` (differentiable in the bounds)."""
    active = lower >= 0
    inactive = (upper <= 0) & ~active
    unstable = ~active & ~inactive
    denom = torch.where(unstable, upper - lower, torch.ones_like(upper))
    slope = upper / denom
    upper_slope = torch.where(unstable, slope, active.to(upper.dtype)).unsqueeze(1)
    upper_intercept = torch.where(unstable, -slope * lower, torch.zeros_like(upper)).unsqueeze(1)
    default_alpha = (upper > -lower).to(upper.dtype).unsqueeze(1)
    active_f = active.to(upper.dtype).unsqueeze(1)
    unstable_f = unstable.to(upper.dtype).unsqueeze(1)
    index = unstable.reshape(unstable.shape[0], -1).any(dim=0).nonzero().squeeze(1)

    def gather(t: Tensor) -> Tensor:
        return t.flatten(2).index_select(2, index)

    active_u, unstable_u = gather(active_f), gather(unstable_f)
    upper_slope_u = gather(upper_slope)
    return ReluRelaxation(
        active=active_f, unstable=unstable_f, default_alpha=default_alpha,
        upper_slope=upper_slope, upper_intercept=upper_intercept, index=index,
        active_u=active_u, unstable_u=unstable_u, upper_slope_u=upper_slope_u,
        upper_intercept_u=gather(upper_intercept),
        default_gap_u=active_u + unstable_u * gather(default_alpha) - upper_slope_u,
        lower=lower.unsqueeze(1), upper=upper.unsqueeze(1),
    )


def relu_backward(lam: Tensor, relax: ReluRelaxation, alpha: Tensor | None = None
                  ) -> tuple[Tensor, Tensor]:
    """``Λ·y >= (Λ⁺·a_low + Λ⁻·s)·z + Λ⁻·(−s·l)`` with ``a_low`` the lower slope (α where
    unstable, 1/0 where stable). Returns (coefficients on ``z``, constant ``(Bλ', K)``).

    Computed as ``Λ·s + Λ⁺·(a_low − s)``: the second term and the constant are nonzero only at
    unstable positions, so they are evaluated on the gathered unstable coordinates.
    """
    lam_in = (lam * relax.upper_slope).contiguous()
    idx = relax.index
    if idx.numel() == 0:
        return lam_in, lam.new_zeros((1, lam.shape[1]))
    lam_u = lam.flatten(2).index_select(2, idx)
    pos_u = lam_u.clamp(min=0)
    neg_u = lam_u - pos_u
    if alpha is None:
        gap = relax.default_gap_u
    else:
        alpha_u = alpha.flatten(2).index_select(2, idx)
        gap = relax.active_u + relax.unstable_u * alpha_u - relax.upper_slope_u
    flat = lam_in.view(*lam_in.shape[:2], -1)
    flat.index_add_(2, idx, (pos_u * gap).expand(flat.shape[0], -1, -1))
    return lam_in, (neg_u * relax.upper_intercept_u).sum(-1)


# --------------------------------------------------------------------------- S-shaped


@dataclass(frozen=True)
class SShape:
    """A smooth nondecreasing function convex on ``(−∞, 0]`` and concave on ``[0, ∞)``.

    ``critical_points(a)`` returns the two points where ``f'(x) = a`` (for ``0 < a <= f'(0)``;
    other ``a`` are clamped into that range), the only interior extrema of ``f(x) − a·x``.
    """

    f: Callable[[Tensor], Tensor]
    df: Callable[[Tensor], Tensor]
    critical_points: Callable[[Tensor], tuple[Tensor, Tensor]]


def _sigmoid_df(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _sigmoid_critical(a: Tensor) -> tuple[Tensor, Tensor]:
    """``σ'(x) = σ(1 − σ) = a``: ``σ = (1 ± √(1 − 4a))/2``, ``x = ±log((1 + d)²/(4a))``."""
    tiny = torch.finfo(a.dtype).tiny
    a = a.clamp(min=tiny, max=0.25)
    d = (1 - 4 * a).clamp(min=0).sqrt()
    x = 2 * torch.log1p(d) - torch.log(4 * a)
    return -x, x


def _tanh_df(x: Tensor) -> Tensor:
    t = torch.tanh(x)
    return 1 - t * t


def _tanh_critical(a: Tensor) -> tuple[Tensor, Tensor]:
    """``tanh'(x) = 1 − t² = a``: ``t = ±v``, ``v = √(1 − a)``, ``x = ±(log(1 + v) − ½ log a)``."""
    tiny = torch.finfo(a.dtype).tiny
    a = a.clamp(min=tiny, max=1.0)
    v = (1 - a).clamp(min=0).sqrt()
    x = torch.log1p(v) - 0.5 * torch.log(a)
    return -x, x


SIGMOID = SShape(torch.sigmoid, _sigmoid_df, _sigmoid_critical)
TANH = SShape(torch.tanh, _tanh_df, _tanh_critical)


@dataclass
class LineRelaxation:
    """``a_l·x + b_l <= f(x) <= a_u·x + b_u`` on ``[l, u]`` (fields ``(B, 1, *shape)``).

    For S-shaped functions ``fn`` and the bounds are kept: any slopes give sound lines once the
    intercepts are the exact extremes of ``f(x) − a·x`` on ``[l, u]``, so alpha-CROWN may
    optimise the slopes (:func:`line_backward_optimised`). It moves tangent points, not slopes:
    ``lower_point``/``upper_point`` ``θ ∈ [0, 1]`` give the slope ``f'(p)`` at the point
    ``p = l + (θ·(1 + 2s) − s)·(u − l)`` with ``s =`` :data:`POINT_SPAN`, i.e. ``p`` ranges
    over ``[l − s·w, u + s·w]``. A slope lives on a scale of ``f'`` (0.25 at most for sigmoid,
    often 0.01) that a learning rate made for ReLU slopes in [0, 1] overshoots at the first
    step; a point relative to the interval has the same scale as a ReLU slope. Points outside
    ``[l, u]`` reach the flatter slopes no tangent inside has (see :data:`POINT_SPAN`)."""

    lower_slope: Tensor
    lower_intercept: Tensor
    upper_slope: Tensor
    upper_intercept: Tensor
    lower: Tensor | None = None
    upper: Tensor | None = None
    fn: SShape | None = None
    lower_point: Tensor | None = None
    upper_point: Tensor | None = None


#: How far outside ``[l, u]`` (in widths) an optimised tangent point may go. With points only
#: inside (span 0), slopes below ``min(f'(l), f'(u))`` — nearly flat lines, close to the
#: interval bound — are out of reach; deep sigmoid nets need them: on ERAN's 6x200 sigmoid
#: net (mnist idx 6553, eps 0.012) 50 layerwise iterations end at margin −45 with span 0 and
#: prove it (+3.4) with span 1, whose sixth-layer widths are 3x narrower.
POINT_SPAN = 1.0


def _point_to_theta(offset: Tensor, width: Tensor) -> Tensor:
    """The parameter ``θ ∈ [0, 1]`` of the point ``l + offset`` (``offset ∈ [0, w]``)."""
    return (offset / width + POINT_SPAN) / (1 + 2 * POINT_SPAN)


def theta_to_point(theta: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """The tangent point of parameter ``θ`` on ``[l, u]`` (inverse of :func:`_point_to_theta`)."""
    return lower + (theta * (1 + 2 * POINT_SPAN) - POINT_SPAN) * (upper - lower)


def _tangent_point(fn: SShape, anchor: Tensor, lo: Tensor, hi: Tensor, iters: int = 30
                   ) -> tuple[Tensor, Tensor]:
    """Bisection for ``d ∈ [lo, hi]`` with ``φ(d) = f(d) + f'(d)(anchor − d) − f(anchor) = 0``,
    for ``φ`` increasing on the interval; returns the bracket ``(d_lo, d_hi)`` with
    ``φ(d_lo) <= 0 <= φ(d_hi)`` (where the bracket was valid)."""
    f_anchor = fn.f(anchor)
    for _ in range(iters):
        mid = (lo + hi) / 2
        phi = fn.f(mid) + fn.df(mid) * (anchor - mid) - f_anchor
        up = phi >= 0
        hi = torch.where(up, mid, hi)
        lo = torch.where(up, lo, mid)
    return lo, hi


def _offset_extreme(fn: SShape, slope: Tensor, lower: Tensor, upper: Tensor,
                    maximise: bool) -> Tensor:
    """``max`` (or ``min``) over ``x ∈ [l, u]`` of ``f(x) − slope·x``: attained at ``l``, ``u``
    or an interior critical point ``f'(x) = slope``, so the extreme over those candidates
    (critical points clamped into ``[l, u]``, which keeps every candidate feasible) is exact."""
    # the critical points carry no gradient: by the envelope theorem the extreme's derivative in
    # the slope is -x* anyway, and their formulas have infinite derivatives at the ends
    c1, c2 = fn.critical_points(slope.detach())
    cands = [lower, upper, torch.minimum(torch.maximum(c1, lower), upper),
             torch.minimum(torch.maximum(c2, lower), upper)]
    vals = torch.stack([fn.f(c) - slope * c for c in cands])
    return vals.amax(0) if maximise else vals.amin(0)


def _slope_point(fn: SShape, slope: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """``x − l`` for a point ``x ∈ [l, u]`` with ``f'(x) = slope`` (clamped into the interval
    when there is none: the slope then comes out slightly different, which is still sound)."""
    c_neg, c_pos = fn.critical_points(slope)
    inside = (c_pos >= lower) & (c_pos <= upper)
    point = torch.where(inside, c_pos, c_neg)
    return (torch.minimum(torch.maximum(point, lower), upper) - lower).clamp(min=0)


def s_shaped_relaxation(fn: SShape, lower: Tensor, upper: Tensor) -> LineRelaxation:
    """Sound lines for an S-shaped ``f`` on ``[l, u]``, chosen by curvature region.

    Slopes: ``u <= 0`` (convex): upper = chord, lower = tangent at the midpoint; ``l >= 0``
    (concave): lower = chord, upper = tangent at the midpoint; ``l < 0 < u``: upper = chord if
    ``f'(u) >=`` chord slope, else the tangent at ``d ∈ [0, u]`` that passes through
    ``(l, f(l))``; lower symmetrically (chord if ``f'(l) >=`` chord slope, else the tangent at
    ``d ∈ [l, 0]`` through ``(u, f(u))``). Intercepts are then the exact ``max``/``min`` of
    ``f(x) − a·x`` over ``[l, u]`` (see :func:`_offset_extreme`), so the lines are sound
    whatever the slopes, plus a few ulps of margin for rounding.
    """
    bounds = (lower.unsqueeze(1), upper.unsqueeze(1))  # kept differentiable (optimised slopes)
    lower = lower.detach()
    upper = upper.detach()
    eps = torch.finfo(lower.dtype).eps
    mid = (lower + upper) / 2
    width = upper - lower
    thin = width <= eps ** 0.5 * (1 + mid.abs())
    f_l, f_u = fn.f(lower), fn.f(upper)
    chord = torch.where(thin, fn.df(mid), (f_u - f_l) / torch.where(thin, 1.0, width))
    tangent_mid = fn.df(mid)
    zero = torch.zeros_like(lower)

    _, d_up = _tangent_point(fn, lower, zero, upper.clamp(min=0))
    mixed_upper = torch.where(fn.df(upper) >= chord, chord, fn.df(d_up))
    d_low, _ = _tangent_point(fn, upper, lower.clamp(max=0), zero)
    mixed_lower = torch.where(fn.df(lower) >= chord, chord, fn.df(d_low))

    upper_slope = torch.where(upper <= 0, chord, torch.where(lower >= 0, tangent_mid, mixed_upper))
    lower_slope = torch.where(lower >= 0, chord, torch.where(upper <= 0, tangent_mid, mixed_lower))
    upper_slope = torch.where(thin, tangent_mid, upper_slope)
    lower_slope = torch.where(thin, tangent_mid, lower_slope)

    # the same slopes as tangent points (what alpha-CROWN optimises)
    safe_width = torch.where(thin, 1.0, width)
    up_theta = torch.where(thin, 0.5, _point_to_theta(_slope_point(fn, upper_slope, lower, upper),
                                                      safe_width))
    low_theta = torch.where(thin, 0.5, _point_to_theta(_slope_point(fn, lower_slope, lower, upper),
                                                       safe_width))

    margin = 4 * eps * (1 + torch.maximum(lower.abs(), upper.abs()) * 2)
    upper_b = _offset_extreme(fn, upper_slope, lower, upper, maximise=True) + margin
    lower_b = _offset_extreme(fn, lower_slope, lower, upper, maximise=False) - margin
    return LineRelaxation(lower_slope.unsqueeze(1), lower_b.unsqueeze(1),
                          upper_slope.unsqueeze(1), upper_b.unsqueeze(1), *bounds, fn,
                          low_theta.unsqueeze(1), up_theta.unsqueeze(1))


def _rounding_margin(lower: Tensor, upper: Tensor) -> Tensor:
    eps = torch.finfo(lower.dtype).eps
    return 4 * eps * (1 + torch.maximum(lower.abs(), upper.abs()) * 2)


def line_backward_optimised(lam: Tensor, relax: LineRelaxation, lower_point: Tensor,
                            upper_point: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`line_backward` with tangent points ``θ`` ``(B, K, *shape)`` chosen by the
    optimiser (slope ``f'`` at :func:`theta_to_point`); the intercepts are recomputed as the
    exact extremes of ``f(x) − a·x`` over ``[l, u]`` (sound for every slope; differentiable in
    the slope: ``d/da max_x (f(x) − a·x) = −x*``).

    The slopes see ``l``, ``u`` detached: through them, the final bound's gradient on an
    intermediate bound says how a wider interval would move the tangent point, not how it
    loosens the line, and it pushed joint optimisation towards looser intermediate bounds
    (ERAN 6x200 sigmoid idx 7167, 20 joint iterations at lr 0.02: margin −16.1 instead of
    −19.5). The intercepts keep the gradient: tighter intervals give tighter lines."""
    l, u, fn = relax.lower, relax.upper, relax.fn
    ld, ud = l.detach(), u.detach()
    lower_slope = fn.df(theta_to_point(lower_point, ld, ud))
    upper_slope = fn.df(theta_to_point(upper_point, ld, ud))
    margin = _rounding_margin(l, u)
    b_lo = _offset_extreme(fn, lower_slope, l, u, maximise=False) - margin
    b_hi = _offset_extreme(fn, upper_slope, l, u, maximise=True) + margin
    pos = lam.clamp(min=0)
    neg = lam.clamp(max=0)
    return pos * lower_slope + neg * upper_slope, _sum_rows(pos * b_lo + neg * b_hi)


def sigmoid_relaxation(lower: Tensor, upper: Tensor) -> LineRelaxation:
    return s_shaped_relaxation(SIGMOID, lower, upper)


def tanh_relaxation(lower: Tensor, upper: Tensor) -> LineRelaxation:
    return s_shaped_relaxation(TANH, lower, upper)


def line_backward(lam: Tensor, relax: LineRelaxation) -> tuple[Tensor, Tensor]:
    """``Λ·y >= (Λ⁺·a_l + Λ⁻·a_u)·x + Λ⁺·b_l + Λ⁻·b_u``."""
    pos = lam.clamp(min=0)
    neg = lam.clamp(max=0)
    lam_in = pos * relax.lower_slope + neg * relax.upper_slope
    const = _sum_rows(pos * relax.lower_intercept + neg * relax.upper_intercept)
    return lam_in, const


# --------------------------------------------------------------------------- MaxPool


def maxpool_windows(node: MaxPool, x: Tensor, fill: float) -> Tensor:
    """The pooling windows of ``x`` ``(B, C, H, W)`` as ``(B, C, kH*kW, Ho*Wo)``.

    Out-of-range positions (padding, and the ragged edge under ``ceil_mode``) hold ``fill``.
    """
    B, C, H, W = x.shape
    Ho, Wo = node.shape[-2], node.shape[-1]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = node.kernel, node.stride, node.padding, node.dilation
    need_h = (Ho - 1) * sh + dh * (kh - 1) + 1
    need_w = (Wo - 1) * sw + dw * (kw - 1) + 1
    padded = F.pad(x, (pw, need_w - W - pw, ph, need_h - H - ph), value=fill)
    cols = F.unfold(padded.reshape(B * C, 1, need_h, need_w), (kh, kw), dilation=(dh, dw),
                    stride=(sh, sw))
    return cols.reshape(B, C, kh * kw, Ho * Wo)


@dataclass
class MaxPoolRelaxation:
    """``y = max_{i ∈ window} x_i`` (fields ``(B, 1, C, Ho*Wo)``).

    Lower: ``y >= x_j`` for ``j`` the window input with the largest lower bound. Upper: if
    ``l_j >= u_i`` for every other ``i`` of the window then ``y = x_j`` exactly, else the
    constant ``y <= max_i u_i``.
    """

    index: Tensor  # int64 flat index (into H*W) of x_j
    exact: Tensor  # 1.0 where y = x_j
    upper_const: Tensor
    in_shape: tuple[int, int, int]


def maxpool_relaxation(node: MaxPool, lower: Tensor, upper: Tensor) -> MaxPoolRelaxation:
    lower = lower.detach()
    upper = upper.detach()
    B, C, H, W = lower.shape
    neg_inf = float("-inf")
    wl = maxpool_windows(node, lower, neg_inf)
    wu = maxpool_windows(node, upper, neg_inf)
    positions = torch.arange(H * W, device=lower.device, dtype=torch.float64).view(1, 1, H, W)
    wi = maxpool_windows(node, positions, -1.0)
    j = wl.argmax(dim=2, keepdim=True)
    l_star = wl.gather(2, j)
    others = wu.scatter(2, j, neg_inf).amax(dim=2, keepdim=True)
    exact = (l_star >= others).to(lower.dtype)
    upper_const = wu.amax(dim=2, keepdim=True)
    index = wi.expand(B, C, -1, -1).gather(2, j).long()
    return MaxPoolRelaxation(index=index.squeeze(2).unsqueeze(1),
                             exact=exact.squeeze(2).unsqueeze(1),
                             upper_const=upper_const.squeeze(2).unsqueeze(1),
                             in_shape=(C, H, W))


def maxpool_backward(lam: Tensor, relax: MaxPoolRelaxation) -> tuple[Tensor, Tensor]:
    """``Λ·y >= Σ (Λ⁺ + Λ⁻·[exact])·x_j + Λ⁻·(1 − [exact])·max u``: coefficients are
    scattered (added, windows may overlap) onto the chosen inputs ``x_j``."""
    bl, k = lam.shape[:2]
    lam = lam.flatten(3)
    pos = lam.clamp(min=0)
    neg = lam.clamp(max=0)
    coeff = pos + neg * relax.exact
    const = _sum_rows(neg * (1 - relax.exact) * relax.upper_const)
    b = max(bl, relax.index.shape[0])
    coeff = coeff.expand(b, k, -1, -1)
    index = relax.index.expand(b, k, -1, -1)
    C, H, W = relax.in_shape
    lam_in = coeff.new_zeros((b, k, C, H * W)).scatter_add(3, index, coeff)
    return lam_in.view(b, k, C, H, W), const
