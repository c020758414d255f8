"""beta-CROWN (split constraints in ``compute_bounds``): soundness by sampling, and its place
between CROWN and the exact LP.

With the same (clamped) intermediate bounds, beta-CROWN's bound is a dual-feasible point of
the LP over the triangle relaxation plus the split constraints ``z >= 0`` / ``z <= 0``:
CROWN (beta = 0) <= beta-CROWN <= LP, and optimal slopes and multipliers reach the LP.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from planecut.verifier.bounds import AlphaOptions, compute_bounds, relu_layer_bounds
from planecut.verifier.bounds import crown as crown_module
from planecut.verifier.graph.ir import Conv, Dense, Graph, Relu, Reshape

D = torch.float64


def fc_graph(seed: int, dims: list[int]) -> tuple[Graph, list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    nodes, ws, bs, cur = [], [], [], "x"
    for i, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:])):
        w = torch.randn(n_out, n_in, generator=g, dtype=D) / n_in ** 0.5 * 1.5
        b = torch.randn(n_out, generator=g, dtype=D) * 0.3
        ws.append(w)
        bs.append(b)
        nodes.append(Dense(f"d{i}", (cur,), (n_out,), weight=w, bias_=b))
        cur = f"d{i}"
        if i < len(dims) - 2:
            nodes.append(Relu(f"r{i}", (cur,), (n_out,)))
            cur = f"r{i}"
    return Graph("x", (dims[0],), nodes, cur), ws, bs


def conv_graph(seed: int) -> Graph:
    g = torch.Generator().manual_seed(seed)
    return Graph("x", (2, 6, 6), [
        Conv("c1", ("x",), (3, 3, 3), weight=torch.randn(3, 2, 3, 3, generator=g, dtype=D) * 0.5,
             bias_=torch.randn(3, generator=g, dtype=D) * 0.2, stride=(2, 2), padding=(1, 1)),
        Relu("r1", ("c1",), (3, 3, 3)),
        Reshape("f", ("r1",), (27,)),
        Dense("d1", ("f",), (8,), weight=torch.randn(8, 27, generator=g, dtype=D) * 0.4,
              bias_=torch.randn(8, generator=g, dtype=D) * 0.2),
        Relu("r2", ("d1",), (8,)),
        Dense("o", ("r2",), (3,), weight=torch.randn(3, 8, generator=g, dtype=D) * 0.5,
              bias_=torch.zeros(3, dtype=D)),
    ], "o")


def random_splits(graph: Graph, inter: dict, g: torch.Generator, p: float = 0.3
                  ) -> list[torch.Tensor]:
    """Random signs on a fraction ``p`` of the unstable neurons of every layer."""
    out = []
    for lo, hi in relu_layer_bounds(graph, inter):
        unstable = (lo < 0) & (hi > 0)
        pick = torch.rand(lo.shape, generator=g, dtype=D) < p
        sign = torch.where(torch.rand(lo.shape, generator=g, dtype=D) < 0.5, 1, -1)
        out.append((sign * (unstable & pick)).to(torch.int8))
    return out


def clamp(graph: Graph, inter: dict, splits: list[torch.Tensor]) -> dict:
    out = dict(inter)
    for relu, s in zip(graph.relu_nodes, splits):
        lo, hi = inter[relu.name]
        s = s.view(lo.shape)
        out[relu.name] = (torch.where(s > 0, lo.clamp(min=0), lo),
                          torch.where(s < 0, hi.clamp(max=0), hi))
    return out


def sample_satisfying(graph: Graph, xl: torch.Tensor, xu: torch.Tensor,
                      splits: list[torch.Tensor], n: int, g: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Points of each box (``(B, n, n_in)``, outputs ``(B, n, n_out)``) and a mask of those that
    satisfy every split (sign of the pre-activation)."""
    B = xl.shape[0]
    u = torch.rand(B, n, xl.shape[1], generator=g, dtype=D)
    # half the points at box vertices (where bounds are usually tight)
    u[:, : n // 2] = u[:, : n // 2].round()
    x = xl[:, None] + u * (xu - xl)[:, None]
    inputs = {r.inputs[0]: r.name for r in graph.relu_nodes}
    y, pre = graph.forward(x.reshape(B * n, -1), keep=lambda node: node.name in inputs)
    ok = torch.ones(B, n, dtype=torch.bool)
    for relu, s in zip(graph.relu_nodes, splits):
        z = pre[relu.inputs[0]].reshape(B, n, -1)
        s = s.view(B, 1, -1)
        ok &= ~(((s > 0) & (z < 0)) | ((s < 0) & (z > 0))).any(dim=2)
    return y.reshape(B, n, -1), ok


def split_lp(ws, bs, bounds, splits, xl, xu, c) -> float:
    """``min c·y`` over the box, the triangle relaxation with ``bounds`` and the split
    constraints (+inf when infeasible)."""
    ws = [w.numpy() for w in ws]
    bs = [b.numpy() for b in bs]
    sizes = [xl.size] + [w.shape[0] for w in ws[:-1]]
    offs, pos = [], xl.size
    for n in sizes[1:]:
        offs.append((pos, pos + n))
        pos += 2 * n
    nv = pos
    aeq, beq, aub, bub = [], [], [], []
    vb: list = list(zip(xl, xu)) + [(None, None)] * (nv - xl.size)
    prev = np.arange(xl.size)
    for i, (zo, yo) in enumerate(offs):
        lo, hi = bounds[i]
        sp = splits[i]
        for j in range(sizes[i + 1]):
            row = np.zeros(nv)
            row[zo + j] = 1.0
            row[prev] -= ws[i][j]
            aeq.append(row)
            beq.append(bs[i][j])
            z, y = zo + j, yo + j
            if sp[j] != 0:  # z >= 0 (active) or z <= 0 (inactive)
                row = np.zeros(nv)
                row[z] = -1.0 if sp[j] > 0 else 1.0
                aub.append(row)
                bub.append(0.0)
            if hi[j] <= 0:
                vb[y] = (0.0, 0.0)
            elif lo[j] >= 0:
                row = np.zeros(nv)
                row[y], row[z] = 1.0, -1.0
                aeq.append(row)
                beq.append(0.0)
            else:
                vb[y] = (0.0, None)
                s = hi[j] / (hi[j] - lo[j])
                row = np.zeros(nv)
                row[z], row[y] = 1.0, -1.0
                aub.append(row)
                bub.append(0.0)
                row = np.zeros(nv)
                row[y], row[z] = 1.0, -s
                aub.append(row)
                bub.append(-s * lo[j])
        prev = np.arange(yo, yo + sizes[i + 1])
    obj = np.zeros(nv)
    obj[prev] = ws[-1].T @ c
    res = linprog(obj, A_ub=np.array(aub) if aub else None, b_ub=bub or None,
                  A_eq=np.array(aeq), b_eq=beq, bounds=vb, method="highs")
    if res.status == 2:
        return float("inf")
    assert res.status == 0, res.message
    return float(res.fun + c @ bs[-1])


def setup(seed: int, dims: list[int], batch: int = 3, rows: int = 2, p: float = 0.3):
    graph, ws, bs = fc_graph(seed, dims)
    g = torch.Generator().manual_seed(seed + 1000)
    xl = torch.randn(batch, dims[0], generator=g, dtype=D)
    xu = xl + 1.0
    C = torch.randn(batch, rows, dims[-1], generator=g, dtype=D)
    root = compute_bounds(graph, xl, xu, C, "crown")
    splits = random_splits(graph, root.intermediate, g, p)
    return graph, ws, bs, xl, xu, C, clamp(graph, root.intermediate, splits), splits, g


NETS = [(0, [4, 10, 10, 8, 3]), (1, [3, 12, 12, 2]), (2, [5, 8, 8, 8, 2]), (3, [4, 16, 3])]
OPT = AlphaOptions(iterations=300, early_stop_patience=300, lr=0.1, lr_beta=0.1)


@pytest.mark.parametrize("seed,dims", NETS)
def test_beta_crown_sound_on_points_satisfying_the_splits(seed: int, dims: list[int]) -> None:
    graph, _, _, xl, xu, C, inter, splits, g = setup(seed, dims)
    y, ok = sample_satisfying(graph, xl, xu, splits, 4000, g)
    assert ok.sum() > 0
    vals = torch.einsum("bko,bno->bnk", C, y)
    for method, opts in (("crown", None), ("alpha-crown", AlphaOptions(iterations=40,
                                                                        lr_beta=0.2))):
        res = compute_bounds(graph, xl, xu, C, method, alpha=opts, intermediate=inter,
                             splits=splits)
        worst = vals.masked_fill(~ok[..., None], float("inf")).amin(dim=1)
        assert (worst >= res.lower - 1e-9).all(), (method, worst, res.lower)
    # splits without given bounds: computed intermediate bounds get clamped too
    res = compute_bounds(graph, xl, xu, C, "alpha-crown", splits=splits,
                         alpha=AlphaOptions(iterations=20))
    worst = vals.masked_fill(~ok[..., None], float("inf")).amin(dim=1)
    assert (worst >= res.lower - 1e-9).all()
    for relu, s in zip(graph.relu_nodes, splits):
        lo, hi = res.intermediate[relu.name]
        assert (lo[s.view(lo.shape) > 0] >= 0).all() and (hi[s.view(hi.shape) < 0] <= 0).all()


def test_beta_crown_sound_on_a_conv_net() -> None:
    graph = conv_graph(4)
    g = torch.Generator().manual_seed(5)
    xl = torch.rand(2, 72, generator=g, dtype=D) - 0.5
    xu = xl + 0.8
    C = torch.randn(2, 3, 3, generator=g, dtype=D)
    root = compute_bounds(graph, xl, xu, C, "crown")
    splits = random_splits(graph, root.intermediate, g, 0.4)
    assert sum(int((s != 0).sum()) for s in splits) > 0
    inter = clamp(graph, root.intermediate, splits)
    res = compute_bounds(graph, xl, xu, C, "alpha-crown", intermediate=inter, splits=splits,
                         alpha=AlphaOptions(iterations=60, lr_beta=0.2))
    y, ok = sample_satisfying(graph, xl, xu, splits, 6000, g)
    vals = torch.einsum("bko,bno->bnk", C, y).masked_fill(~ok[..., None], float("inf"))
    assert (vals.amin(dim=1) >= res.lower - 1e-9).all()
    crown = compute_bounds(graph, xl, xu, C, "crown", intermediate=inter, splits=splits)
    assert (res.lower >= crown.lower - 1e-9).all()


@pytest.mark.parametrize("seed,dims", NETS)
def test_beta_crown_between_crown_and_split_lp(seed: int, dims: list[int]) -> None:
    graph, ws, bs, xl, xu, C, inter, splits, _ = setup(seed, dims, batch=3, rows=2, p=0.25)
    crown = compute_bounds(graph, xl, xu, C, "crown", intermediate=inter, splits=splits)
    beta = compute_bounds(graph, xl, xu, C, "alpha-crown", intermediate=inter, splits=splits,
                          alpha=OPT)
    layers = relu_layer_bounds(graph, inter)
    lp = np.zeros(tuple(C.shape[:2]))
    for b in range(C.shape[0]):
        bounds = [(lo[b].numpy(), hi[b].numpy()) for lo, hi in layers]
        for k in range(C.shape[1]):
            lp[b, k] = split_lp(ws, bs, bounds, [s[b].numpy() for s in splits],
                                xl[b].numpy(), xu[b].numpy(), C[b, k].numpy())
    lp_t = torch.from_numpy(lp)
    feasible = torch.isfinite(lp_t)
    assert feasible.any()
    assert (beta.lower >= crown.lower - 1e-9).all()
    assert (beta.lower[feasible] <= lp_t[feasible] + 1e-6).all(), (beta.lower, lp_t)
    gap_crown = (lp_t - crown.lower)[feasible]
    gap_beta = (lp_t - beta.lower)[feasible]
    assert gap_beta.mean() <= 0.1 * gap_crown.mean() + 1e-4, (gap_beta, gap_crown)


def test_beta_crown_strictly_tighter_on_average() -> None:
    """Over many random cases the multipliers improve on CROWN with clamped bounds alone."""
    improvements = []
    for seed in range(8):
        graph, _, _, xl, xu, C, inter, splits, _ = setup(100 + seed, [4, 10, 10, 3], p=0.4)
        crown = compute_bounds(graph, xl, xu, C, "crown", intermediate=inter, splits=splits)
        alpha = compute_bounds(graph, xl, xu, C, "alpha-crown", intermediate=inter,
                               alpha=AlphaOptions(iterations=60))
        beta = compute_bounds(graph, xl, xu, C, "alpha-crown", intermediate=inter,
                              splits=splits, alpha=AlphaOptions(iterations=60, lr_beta=0.2))
        assert (beta.lower >= crown.lower - 1e-9).all()
        improvements.append((beta.lower - torch.maximum(alpha.lower, crown.lower)).mean())
    assert torch.stack(improvements).mean() > 1e-2


def test_betas_layout_and_warm_start() -> None:
    graph, _, _, xl, xu, C, inter, splits, _ = setup(7, [4, 10, 10, 3], p=0.4)
    res = compute_bounds(graph, xl, xu, C, "alpha-crown", intermediate=inter, splits=splits,
                         alpha=AlphaOptions(iterations=30, lr_beta=0.2))
    assert res.betas is not None
    for relu, s in zip(graph.relu_nodes, splits):
        if not (s != 0).any():
            continue
        b = res.betas[relu.name]
        assert b.shape == (xl.shape[0], C.shape[1], *relu.shape)
        assert (b >= 0).all()
        assert (b[(s == 0).unsqueeze(1).expand_as(b)] == 0).all()
    assert any((b > 0).any() for b in res.betas.values())
    # a warm start without optimisation reproduces the bound
    again = compute_bounds(graph, xl, xu, C, "alpha-crown", intermediate=inter, splits=splits,
                           alpha=AlphaOptions(iterations=0), alpha_init=res.alphas,
                           beta_init=res.betas)
    assert torch.allclose(again.lower, res.lower, atol=1e-9)
    # no splits: no multipliers
    plain = compute_bounds(graph, xl, xu, C, "alpha-crown", intermediate=inter,
                           alpha=AlphaOptions(iterations=2))
    assert plain.betas is None


def test_coefficients_reproduce_the_bound() -> None:
    """The returned input coefficients give the bound's minimiser over the box: the linear
    bound there equals the bound, and the last ReLU's output coefficient is ``C·W_last``."""
    graph, ws, _, xl, xu, C, inter, splits, _ = setup(8, [4, 10, 10, 3], p=0.3)
    res = compute_bounds(graph, xl, xu, C, "alpha-crown", intermediate=inter, splits=splits,
                         alpha=AlphaOptions(iterations=20), return_coeffs=True)
    co = res.coeffs
    assert co is not None and co.input.shape == (xl.shape[0], C.shape[1], xl.shape[1])
    last = graph.relu_nodes[-1].name
    assert torch.allclose(co.relu_output[last], C @ ws[-1], atol=1e-12)
    for relu in graph.relu_nodes:
        assert co.relu_input[relu.name].shape == (xl.shape[0], C.shape[1], relu.size)
    plain = compute_bounds(graph, xl, xu, C, "alpha-crown", intermediate=inter, splits=splits,
                           alpha=AlphaOptions(iterations=20))
    assert (res.lower >= plain.lower - 1e-9).all()
    # x* minimises lam·x over the box: moving any coordinate to the other end cannot lower it
    lam = co.input
    x_star = torch.where(lam >= 0, xl[:, None], xu[:, None])
    other = torch.where(lam >= 0, xu[:, None], xl[:, None])
    assert ((lam * x_star).sum(-1) <= (lam * other).sum(-1) + 1e-12).all()


def test_only_the_final_bound_is_computed_when_all_bounds_are_given(monkeypatch) -> None:
    graph, _, _, xl, xu, C, inter, splits, _ = setup(9, [4, 10, 10, 3])

    def forbidden(*args, **kwargs):
        raise AssertionError("intermediate CROWN pass on the fast path")

    monkeypatch.setattr(crown_module, "crown_rows", forbidden)
    res = compute_bounds(graph, xl, xu, C, "alpha-crown", intermediate=inter, splits=splits,
                         alpha=AlphaOptions(iterations=3))
    assert res.lower.shape == (xl.shape[0], C.shape[1])


def test_bad_splits_are_rejected() -> None:
    graph, _, _, xl, xu, C, inter, splits, _ = setup(10, [4, 10, 10, 3])
    with pytest.raises(ValueError, match="one per ReLU layer"):
        compute_bounds(graph, xl, xu, C, "crown", intermediate=inter, splits=splits[:1])
