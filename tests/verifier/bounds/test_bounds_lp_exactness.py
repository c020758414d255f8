"""CROWN and alpha-CROWN against the exact LP over the triangle relaxation (HiGHS).

With the same intermediate bounds, every CROWN bound (any slopes) is a dual-feasible point of
that LP, so CROWN <= alpha-CROWN <= LP, and optimal slopes reach the LP optimum.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from planecut.verifier.bounds import AlphaOptions, compute_bounds, relu_layer_bounds
from planecut.verifier.graph.ir import Dense, Graph, Relu

Tensor = torch.Tensor


def fc_graph(seed: int, dims: list[int]) -> tuple[Graph, list[Tensor], list[Tensor]]:
    g = torch.Generator().manual_seed(seed)
    nodes, ws, bs = [], [], []
    cur = "x"
    for i, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:])):
        w = torch.randn(n_out, n_in, generator=g, dtype=torch.float64) / n_in ** 0.5 * 1.5
        b = torch.randn(n_out, generator=g, dtype=torch.float64) * 0.3
        ws.append(w)
        bs.append(b)
        nodes.append(Dense(f"d{i}", (cur,), (n_out,), weight=w, bias_=b))
        cur = f"d{i}"
        if i < len(dims) - 2:
            nodes.append(Relu(f"r{i}", (cur,), (n_out,)))
            cur = f"r{i}"
    return Graph("x", (dims[0],), nodes, cur), ws, bs


def triangle_lp(ws: list[Tensor], bs: list[Tensor], bounds: list[tuple[np.ndarray, np.ndarray]],
                xl: np.ndarray, xu: np.ndarray, c: np.ndarray) -> float:
    """``min c·y_out`` over the box and the triangle relaxation of every ReLU (no explicit
    pre-activation bounds: unstable triangles imply them, stable neurons are exact)."""
    ws = [w.numpy() for w in ws]
    bs = [b.numpy() for b in bs]
    sizes = [xl.size] + [w.shape[0] for w in ws[:-1]]
    # variable layout: x, then (z_i, y_i) per hidden layer
    offs, pos = [], xl.size
    for n in sizes[1:]:
        offs.append((pos, pos + n))
        pos += 2 * n
    nv = pos
    a_eq, b_eq, a_ub, b_ub = [], [], [], []
    var_bounds: list[tuple[float | None, float | None]] = list(zip(xl, xu))
    var_bounds += [(None, None)] * (nv - xl.size)
    prev = np.arange(xl.size)
    for i, (zo, yo) in enumerate(offs):
        n = sizes[i + 1]
        lo, hi = bounds[i]
        for j in range(n):
            row = np.zeros(nv)
            row[zo + j] = 1.0
            row[prev] -= ws[i][j]
            a_eq.append(row)
            b_eq.append(bs[i][j])
            z, y = zo + j, yo + j
            if hi[j] <= 0:
                var_bounds[y] = (0.0, 0.0)
            elif lo[j] >= 0:
                row = np.zeros(nv)
                row[y], row[z] = 1.0, -1.0
                a_eq.append(row)
                b_eq.append(0.0)
            else:
                var_bounds[y] = (0.0, None)
                s = hi[j] / (hi[j] - lo[j])
                row = np.zeros(nv)
                row[z], row[y] = 1.0, -1.0  # z - y <= 0
                a_ub.append(row)
                b_ub.append(0.0)
                row = np.zeros(nv)
                row[y], row[z] = 1.0, -s  # y - s z <= -s l
                a_ub.append(row)
                b_ub.append(-s * lo[j])
        prev = np.arange(yo, yo + n)
    obj = np.zeros(nv)
    obj[prev] = ws[-1].T @ c
    res = linprog(obj, A_ub=np.array(a_ub) if a_ub else None, b_ub=b_ub or None,
                  A_eq=np.array(a_eq), b_eq=b_eq, bounds=var_bounds, method="highs")
    assert res.status == 0, res.message
    return float(res.fun + c @ bs[-1])


def lp_bounds(ws, bs, graph, inter, xl, xu, C) -> np.ndarray:
    layers = relu_layer_bounds(graph, inter)
    out = np.zeros(C.shape[:2])
    for b in range(C.shape[0]):
        bounds = [(lo[b].numpy(), hi[b].numpy()) for lo, hi in layers]
        for k in range(C.shape[1]):
            out[b, k] = triangle_lp(ws, bs, bounds, xl[b].numpy(), xu[b].numpy(), C[b, k].numpy())
    return out


NETS = [
    (1, [3, 6, 2]),
    (2, [4, 8, 6, 3]),
    (3, [3, 7, 7, 7, 2]),
    (4, [5, 10, 8, 3]),
    (5, [2, 12, 12, 2]),
    (6, [4, 6, 6, 6, 6, 3]),
]


@pytest.mark.parametrize("seed,dims", NETS)
def test_crown_and_alpha_below_triangle_lp(seed: int, dims: list[int]) -> None:
    graph, ws, bs = fc_graph(seed, dims)
    g = torch.Generator().manual_seed(seed + 100)
    batch = 2
    centre = torch.randn(batch, dims[0], generator=g, dtype=torch.float64)
    radius = torch.tensor([0.4, 1.0], dtype=torch.float64).view(-1, 1)
    xl, xu = centre - radius, centre + radius
    C = torch.randn(batch, 3, dims[-1], generator=g, dtype=torch.float64)
    crown = compute_bounds(graph, xl, xu, C, "crown")
    # alpha-CROWN with CROWN's intermediate bounds fixed, so that the LP is the same problem
    alpha = compute_bounds(graph, xl, xu, C, "alpha-crown", intermediate=crown.intermediate,
                           alpha=AlphaOptions(iterations=60, early_stop_patience=60))
    lp = torch.from_numpy(lp_bounds(ws, bs, graph, crown.intermediate, xl, xu, C))
    assert (crown.lower <= lp + 1e-6).all(), (crown.lower, lp)
    assert (alpha.lower <= lp + 1e-6).all(), (alpha.lower, lp)
    assert (alpha.lower >= crown.lower - 1e-9).all()
    gap_crown = (lp - crown.lower).mean().item()
    gap_alpha = (lp - alpha.lower).mean().item()
    assert gap_crown > 1e-2  # the relaxation is not trivially exact
    assert gap_alpha <= 0.25 * gap_crown + 1e-4, (gap_alpha, gap_crown)


def optimal_alpha_one_layer(w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, lo: Tensor,
                            hi: Tensor, xl: Tensor, xu: Tensor, c: Tensor) -> np.ndarray:
    """The slopes maximising CROWN's bound for ``c·(W2 relu(W1 x + b1) + b2)``.

    With ``w = W2ᵀc``, the coefficient on ``z`` is ``λ(α) = λ₀ + Σ_{j unstable, w_j > 0}
    w_j α_j e_j`` (linear in α), and the bound is ``Σ_i min(λᵀW1)_i·{x_L,i, x_U,i} + λ·b1 +
    const`` — concave piecewise linear in α, so its maximum is an LP in ``(α, t)``.
    """
    w = (w2.T @ c).numpy()
    lo, hi = lo.numpy(), hi.numpy()
    w1n, b1n = w1.numpy(), b1.numpy()
    n_hidden, n_in = w1n.shape
    unstable = (lo < 0) & (hi > 0)
    active = lo >= 0
    free = np.where(unstable & (w > 0))[0]
    lam0 = np.where(active, w, 0.0)
    lam0 = np.where(unstable & (w < 0), w * hi / np.where(unstable, hi - lo, 1.0), lam0)
    # variables: alpha (len(free)), t (n_in); maximise sum t + (λ0 + Σ α_j w_j e_j)·b1
    nf = free.size
    obj = np.concatenate([-(w[free] * b1n[free]), -np.ones(n_in)])
    a_ub, b_ub = [], []
    base = lam0 @ w1n
    for i in range(n_in):
        for xb in (xl[i].item(), xu[i].item()):
            row = np.zeros(nf + n_in)
            row[nf + i] = 1.0  # t_i - (base_i + Σ α_j w_j W1[j, i]) x_b <= 0
            row[:nf] = -w[free] * w1n[free, i] * xb
            a_ub.append(row)
            b_ub.append(base[i] * xb)
    res = linprog(obj, A_ub=np.array(a_ub), b_ub=b_ub,
                  bounds=[(0, 1)] * nf + [(None, None)] * n_in, method="highs")
    assert res.status == 0, res.message
    alpha = np.zeros(n_hidden)
    alpha[free] = res.x[:nf]
    return alpha


@pytest.mark.parametrize("seed,dims", [(15, [3, 16, 2]), (12, [4, 12, 3]), (13, [2, 20, 2]),
                                       (14, [6, 10, 4])])
def test_optimal_alpha_equals_lp_one_hidden_layer(seed: int, dims: list[int]) -> None:
    graph, ws, bs = fc_graph(seed, dims)
    g = torch.Generator().manual_seed(seed)
    xl = torch.randn(1, dims[0], generator=g, dtype=torch.float64)
    xu = xl + 3.0
    C = torch.randn(1, 4, dims[-1], generator=g, dtype=torch.float64)
    crown = compute_bounds(graph, xl, xu, C, "crown")
    lo, hi = crown.intermediate["r0"]
    assert ((lo < 0) & (hi > 0)).sum() >= 2
    alphas = torch.stack([
        torch.from_numpy(optimal_alpha_one_layer(ws[0], bs[0], ws[1], bs[1], lo[0], hi[0],
                                                 xl[0], xu[0], C[0, k]))
        for k in range(C.shape[1])]).unsqueeze(0)
    fixed = compute_bounds(graph, xl, xu, C, "alpha-crown", alpha=AlphaOptions(iterations=0),
                           alpha_init={"r0": {"final": alphas}})
    lp = torch.from_numpy(lp_bounds(ws, bs, graph, crown.intermediate, xl, xu, C))
    assert torch.allclose(fixed.lower, lp, atol=1e-7, rtol=1e-7), (fixed.lower, lp)
    # and projected Adam gets there too
    opt = compute_bounds(graph, xl, xu, C, "alpha-crown",
                         alpha=AlphaOptions(iterations=300, early_stop_patience=300))
    gap = (lp - crown.lower).clamp(min=0)
    assert gap.max() > 1e-2  # the relaxation is not trivially exact
    assert ((lp - opt.lower) <= 0.05 * gap + 1e-5).all(), (opt.lower, lp, crown.lower)
