"""Activation-split branch and bound against exhaustive ground truth on tiny networks.

Ground truth: with the root's unstable neurons enumerated (a few), every activation pattern
makes the network affine on the inputs that realise it, so ``min_x max_k (C_k·y − d_k)`` over
the box is one LP per pattern (scipy/HiGHS); a disjunct is violated iff the minimum over
patterns is ``<= 0``. Thresholds sit a small relative gap away from the optimum (both sides)
so the verdict is robust to float rounding, and close enough that the search has to split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from planecut.verifier.bab import activation_split as act
from planecut.verifier.bab.activation_split import activation_split_bab
from planecut.verifier.bounds import compute_bounds
from planecut.verifier.config import BabConfig
from planecut.verifier.graph.ir import Conv, Dense, Graph, LinearNode, Relu, Reshape
from planecut.verifier.spec_tensors import SpecTensors

D = torch.float64


# --------------------------------------------------------------------------- networks


def fc_graph(seed: int, dims: list[int]) -> Graph:
    g = torch.Generator().manual_seed(seed)
    nodes, cur = [], "x"
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        nodes.append(Dense(f"d{i}", (cur,), (b,),
                           weight=torch.randn(b, a, generator=g, dtype=D) * 1.5 / a ** 0.5,
                           bias_=torch.randn(b, generator=g, dtype=D) * 0.3))
        cur = f"d{i}"
        if i < len(dims) - 2:
            nodes.append(Relu(f"r{i}", (cur,), (b,)))
            cur = f"r{i}"
    return Graph("x", (dims[0],), nodes, cur)


def conv_graph(seed: int) -> Graph:
    g = torch.Generator().manual_seed(seed)
    return Graph("x", (1, 4, 4), [
        Conv("c1", ("x",), (2, 2, 2), weight=torch.randn(2, 1, 3, 3, generator=g, dtype=D) * 0.6,
             bias_=torch.randn(2, generator=g, dtype=D) * 0.2, stride=(2, 2), padding=(1, 1)),
        Relu("r1", ("c1",), (2, 2, 2)),
        Reshape("f", ("r1",), (8,)),
        Dense("d1", ("f",), (4,), weight=torch.randn(4, 8, generator=g, dtype=D) * 0.6,
              bias_=torch.randn(4, generator=g, dtype=D) * 0.2),
        Relu("r2", ("d1",), (4,)),
        Dense("o", ("r2",), (3,), weight=torch.randn(3, 4, generator=g, dtype=D) * 0.6,
              bias_=torch.zeros(3, dtype=D)),
    ], "o")


# --------------------------------------------------------------------------- ground truth


def segments(graph: Graph) -> list[tuple[np.ndarray, np.ndarray]]:
    """For a chain ``x -> lin -> relu -> lin -> relu ... -> lin``: the affine map ``(M, c)`` of
    each linear segment (from the previous ReLU output, or the input, to the next ReLU input or
    the output), found by pushing an identity batch through the segment's nodes."""
    out, cur_nodes = [], []
    for node in graph.nodes + [None]:
        if node is None or isinstance(node, Relu):
            first = cur_nodes[0]
            n_in = graph.num_inputs if first.inputs[0] == graph.input_name else \
                graph.node(first.inputs[0]).size
            shape = graph.shape_of(first.inputs[0])
            x = torch.cat([torch.zeros(1, n_in, dtype=D), torch.eye(n_in, dtype=D)])
            v = x.reshape(n_in + 1, *shape)
            for k in cur_nodes:
                assert isinstance(k, LinearNode)
                v = k.linear(v)
                if k.bias is not None:
                    v = v + k.bias * (torch.arange(n_in + 1) == 0).view(-1, *[1] * (v.dim() - 1))
            v = v.reshape(n_in + 1, -1)
            out.append((v[1:].T.numpy(), v[0].numpy()))
            cur_nodes = []
        else:
            cur_nodes.append(node)
    return out


def exact_minimum(graph: Graph, xl: np.ndarray, xu: np.ndarray, C: np.ndarray,
                  d: np.ndarray) -> tuple[float, np.ndarray]:
    """``min over the box of max_k (C_k·y − d_k)``: a big-M MILP (HiGHS via scipy) over the
    chain network, big-M from sound interval bounds; returns the optimum and a minimiser."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    segs = segments(graph)
    n0 = xl.size
    # interval bounds layer by layer (sound, a little widened)
    lo, hi, layers = xl.copy(), xu.copy(), []
    for M, c in segs[:-1]:
        ctr, rad = (lo + hi) / 2, (hi - lo) / 2
        zl = M @ ctr + c - np.abs(M) @ rad
        zu = M @ ctr + c + np.abs(M) @ rad
        zl, zu = zl - 1e-6 * (1 + np.abs(zl)), zu + 1e-6 * (1 + np.abs(zu))
        layers.append((zl, zu))
        lo, hi = np.maximum(zl, 0), np.maximum(zu, 0)
    # variables: x, then per layer (z, y, a), then t
    offs, pos = [], n0
    for zl, _ in layers:
        n = zl.size
        offs.append((pos, pos + n, pos + 2 * n))
        pos += 3 * n
    nv = pos + 1
    rows, lb, ub = [], [], []

    def add(row, lo_, hi_):
        rows.append(row)
        lb.append(lo_)
        ub.append(hi_)

    vlo = np.concatenate([xl, np.full(nv - n0, -np.inf)])
    vhi = np.concatenate([xu, np.full(nv - n0, np.inf)])
    integ = np.zeros(nv)
    prev = np.arange(n0)
    for (M, c), (zl, zu), (zo, yo, ao) in zip(segs[:-1], layers, offs):
        for j in range(zl.size):
            r = np.zeros(nv)
            r[zo + j] = 1.0
            r[prev] -= M[j]
            add(r, c[j], c[j])  # z = M y_prev + c
            z, y, a = zo + j, yo + j, ao + j
            vlo[a], vhi[a], integ[a] = 0, 1, 1
            vlo[y] = 0.0
            r = np.zeros(nv); r[y], r[z] = 1, -1
            add(r, 0, np.inf)  # y >= z
            r = np.zeros(nv); r[y], r[z], r[a] = 1, -1, -zl[j]
            add(r, -np.inf, -zl[j])  # y <= z - l (1 - a)
            r = np.zeros(nv); r[y], r[a] = 1, -zu[j]
            add(r, -np.inf, 0)  # y <= u a
        prev = np.arange(yo, yo + zl.size)
    M, c = segs[-1]
    G, g0 = C @ M, C @ c - d
    for k in range(G.shape[0]):
        r = np.zeros(nv)
        r[prev] = G[k]
        r[-1] = -1.0
        add(r, -np.inf, -g0[k])  # G y + g0 <= t
    obj = np.zeros(nv)
    obj[-1] = 1.0
    res = milp(obj, constraints=LinearConstraint(np.array(rows), lb, ub), integrality=integ,
               bounds=Bounds(vlo, vhi), options={"mip_rel_gap": 1e-9})
    assert res.status == 0, res.message
    return float(res.fun), res.x[:n0]


# --------------------------------------------------------------------------- search helpers


@dataclass
class Cex:
    x: torch.Tensor
    region: int


def make_spec(xl: torch.Tensor, xu: torch.Tensor, C: torch.Tensor, d: torch.Tensor,
              row_disjunct: torch.Tensor) -> SpecTensors:
    """Regions ``(R, n)``, rows ``C (R, K, n_out)``, ``d (R, K)``, disjunct of each row."""
    R, K = d.shape
    J = int(row_disjunct.max()) + 1
    return SpecTensors(xl, xu, C, d, row_disjunct, torch.ones(R, J, dtype=torch.bool),
                       torch.arange(R))


def checker(graph: Graph, spec: SpecTensors):
    """``confirm`` in float64 on the graph itself (stands in for onnxruntime)."""
    def confirm(x: torch.Tensor, regions: torch.Tensor):
        for i in range(x.shape[0]):
            r = int(regions[i])
            xi = torch.minimum(torch.maximum(x[i:i + 1], spec.lower[r:r + 1]), spec.upper[r:r + 1])
            y = graph.forward(xi)
            if float(spec.take(torch.tensor([r])).margin(y)) <= 0:
                return Cex(xi[0], r)
        return None
    return confirm


def run(graph: Graph, spec: SpecTensors, *, timeout: float = 40.0, **cfg):
    root = compute_bounds(graph, spec.lower, spec.upper, spec.C, "alpha-crown")
    config = BabConfig(**{"batch_size": 16, "iterations": 20, "lr_alpha": 0.1, "lr_beta": 0.2,
                          **cfg})
    return activation_split_bab(graph, spec, root.intermediate, config=config,
                                deadline=time.monotonic() + timeout,
                                confirm=checker(graph, spec), root_alphas=root.alphas)


def single_row_problem(graph: Graph, seed: int, width: float):
    g = torch.Generator().manual_seed(seed)
    n = graph.num_inputs
    xl = torch.rand(1, n, generator=g, dtype=D) - 0.5
    xu = xl + width
    c = torch.randn(1, 1, graph.num_outputs, generator=g, dtype=D)
    m, _ = exact_minimum(graph, xl[0].numpy(), xu[0].numpy(), c[0].numpy(), np.zeros(1))
    return xl, xu, c, m


CASES = [("fc", 1, [3, 8, 8, 2], 1.5), ("fc", 2, [2, 12, 8, 2], 2.0),
         ("fc", 3, [4, 10, 10, 3], 1.0), ("fc", 4, [3, 8, 8, 8, 2], 1.0), ("conv", 5, None, 1.0), ("conv", 6, None, 1.2)]


def build(kind: str, seed: int, dims) -> Graph:
    return fc_graph(seed, dims) if kind == "fc" else conv_graph(seed)


@pytest.mark.parametrize("kind,seed,dims,width", CASES)
@pytest.mark.parametrize("side", ["unsat", "sat"])
def test_verdict_matches_exhaustive_ground_truth(kind, seed, dims, width, side) -> None:
    graph = build(kind, seed, dims)
    xl, xu, c, m = single_row_problem(graph, seed, width)
    gap = 0.02 * max(1.0, abs(m))
    d = torch.tensor([[m - gap if side == "unsat" else m + gap]], dtype=D)
    spec = make_spec(xl, xu, c, d, torch.zeros(1, 1, dtype=torch.long))
    root = compute_bounds(graph, xl, xu, c, "crown")
    assert float(root.lower[0, 0]) < float(d[0, 0]), "trivial instance"
    branching = "fsb" if seed % 2 else "babsr"
    out = run(graph, spec, branching=branching)
    assert out.verdict == side, (out, m)
    if side == "sat":
        y = graph.forward(out.counterexample.x[None])
        assert float(c[0, 0] @ y[0]) <= float(d[0, 0])
        assert (out.counterexample.x >= xl[0]).all() and (out.counterexample.x <= xu[0]).all()


def test_robustness_disjuncts_and_several_regions() -> None:
    """Two regions share the store; each has one disjunct per competing output. unsat needs
    every region proven; one violated region makes it sat."""
    graph = fc_graph(11, [3, 7, 6, 3])
    g = torch.Generator().manual_seed(11)
    xl = torch.rand(2, 3, generator=g, dtype=D) - 0.5
    xu = xl + torch.tensor([[1.2], [0.8]], dtype=D)
    # disjunct j: y_j - y_0 >= 0  i.e.  (y_0 - y_j) <= d  with d chosen from the optimum
    C = torch.zeros(2, 2, 3, dtype=D)
    C[:, 0, 0], C[:, 0, 1], C[:, 1, 0], C[:, 1, 2] = 1, -1, 1, -1
    mins = np.array([[exact_minimum(graph, xl[r].numpy(), xu[r].numpy(),
                                    C[r, k:k + 1].numpy(), np.zeros(1))[0] for k in range(2)]
                     for r in range(2)])
    rd = torch.tensor([[0, 1], [0, 1]])
    gap = 0.03 * np.maximum(1.0, np.abs(mins))
    d_unsat = torch.from_numpy(mins - gap)
    out = run(graph, make_spec(xl, xu, C, d_unsat, rd))
    assert out.verdict == "unsat", out
    d_sat = d_unsat.clone()
    d_sat[1, 1] = float(mins[1, 1] + gap[1, 1])  # region 1, disjunct 1 violated
    out = run(graph, make_spec(xl, xu, C, d_sat, rd))
    assert out.verdict == "sat" and out.counterexample.region == 1, out


def test_rows_of_proven_disjuncts_are_dropped_and_verdicts_kept() -> None:
    """A disjunct with a threshold far below its minimum is proven at the root: its row is no
    longer bounded (``rows_dropped``), and the verdicts on the hard disjuncts stand."""
    graph = fc_graph(11, [3, 7, 6, 3])
    g = torch.Generator().manual_seed(11)
    xl = torch.rand(1, 3, generator=g, dtype=D) - 0.5
    xu = xl + 1.2
    C = torch.zeros(1, 3, 3, dtype=D)
    C[:, 0, 0], C[:, 0, 1], C[:, 1, 0], C[:, 1, 2], C[:, 2, 1], C[:, 2, 2] = 1, -1, 1, -1, 1, -1
    mins = np.array([[exact_minimum(graph, xl[0].numpy(), xu[0].numpy(),
                                    C[0, k:k + 1].numpy(), np.zeros(1))[0] for k in range(3)]])
    rd = torch.tensor([[0, 1, 2]])
    gap = 0.03 * np.maximum(1.0, np.abs(mins))
    d = torch.from_numpy(mins - gap)
    d[0, 2] = float(mins[0, 2] - 100 * max(1.0, abs(mins[0, 2])))  # easy: proven by the root
    out = run(graph, make_spec(xl, xu, C, d, rd))
    assert out.verdict == "unsat" and out.rows_dropped >= 1, out
    d[0, 0] = float(mins[0, 0] + gap[0, 0])  # a hard disjunct violated
    out = run(graph, make_spec(xl, xu, C, d, rd))
    assert out.verdict == "sat" and out.rows_dropped >= 1, out


def test_conjunction_of_rows_in_one_disjunct() -> None:
    """A disjunct with two rows is violated only where both hold: per-row bounds can miss
    that, the fully split exact LP cannot."""
    graph = fc_graph(12, [2, 5, 4, 2])
    g = torch.Generator().manual_seed(12)
    xl = torch.rand(1, 2, generator=g, dtype=D) - 0.5
    xu = xl + 1.5
    C = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=D)
    # thresholds so that each row alone can be violated
    d0 = torch.tensor([[exact_minimum(graph, xl[0].numpy(), xu[0].numpy(), C[0, k:k + 1].numpy(),
                                      np.zeros(1))[0] for k in range(2)]], dtype=D) + 0.2
    m, _ = exact_minimum(graph, xl[0].numpy(), xu[0].numpy(), C[0].numpy(), d0[0].numpy())
    for side, shift in (("unsat", -0.05 - max(m, 0)), ("sat", 0.05 - min(m, 0))):
        d = d0 + shift if side == "sat" else d0 - max(m, 0) - 0.05
        truth, _ = exact_minimum(graph, xl[0].numpy(), xu[0].numpy(), C[0].numpy(), d[0].numpy())
        expect = "sat" if truth <= 0 else "unsat"
        out = run(graph, make_spec(xl, xu, C, d, torch.tensor([[0, 0]])))
        assert out.verdict == expect, (side, out, truth)


def test_deadline_is_respected() -> None:
    graph = fc_graph(13, [20, 200, 200, 200, 4])
    g = torch.Generator().manual_seed(13)
    xl = torch.rand(1, 20, generator=g, dtype=D)
    xu = xl + 2.0
    C = torch.randn(1, 1, 4, generator=g, dtype=D)
    root = compute_bounds(graph, xl, xu, C, "crown")
    x = xl + torch.rand(5000, 20, generator=g, dtype=D) * (xu - xl)
    sampled = (graph.forward(x) @ C[0, 0]).min()
    # far from provable with CROWN (about -700 vs a sampled minimum near -4)
    spec = make_spec(xl, xu, C, (sampled - 1.0).view(1, 1), torch.zeros(1, 1, dtype=torch.long))
    start = time.monotonic()
    out = activation_split_bab(graph, spec, root.intermediate,
                               config=BabConfig(batch_size=64, iterations=5),
                               deadline=start + 1.0, confirm=lambda x, r: None)
    assert out.verdict == "timeout"
    assert time.monotonic() - start < 2.0


def test_pruned_domains_are_proven(monkeypatch) -> None:
    """Every domain the search drops as proven holds no violating point: sampled points that
    violate the property never satisfy all splits of a dropped domain."""
    graph = fc_graph(14, [2, 6, 5, 2])
    g = torch.Generator().manual_seed(14)
    xl = torch.rand(1, 2, generator=g, dtype=D) - 0.5
    xu = xl + 1.5
    c = torch.tensor([[[1.0, -1.0]]], dtype=D)
    m, _ = exact_minimum(graph, xl[0].numpy(), xu[0].numpy(), c[0].numpy(), np.zeros(1))
    d = torch.tensor([[m + 0.3 * max(1.0, abs(m))]], dtype=D)
    spec = make_spec(xl, xu, c, d, torch.zeros(1, 1, dtype=torch.long))
    pruned = []
    real_with_bounds, real_proven = act._with_bounds, act._proven
    last = {}

    def with_bounds(batch, *args, **kwargs):
        out = real_with_bounds(batch, *args, **kwargs)
        last["kids"] = out
        return out

    def proven(spec_, region, row_lower, margin):
        res = real_proven(spec_, region, row_lower, margin)
        kids = last.get("kids")
        if kids is not None and row_lower is kids.row_lower:
            pruned.append(kids.take(res.nonzero().flatten()))
        return res

    monkeypatch.setattr(act, "_with_bounds", with_bounds)
    monkeypatch.setattr(act, "_proven", proven)
    root = compute_bounds(graph, xl, xu, c, "alpha-crown")
    layout = act.NeuronLayout.from_root(graph, root.intermediate, 1)
    out = activation_split_bab(graph, spec, root.intermediate,
                               config=BabConfig(batch_size=8, iterations=5),
                               deadline=time.monotonic() + 10,
                               confirm=lambda x, r: None)  # never confirm: keep searching
    assert out.verdict in ("unsat", "unknown")  # violations exist but are never confirmed
    assert sum(len(p) for p in pruned) > 0
    # violating points
    x = xl + torch.rand(20000, 2, generator=g, dtype=D) * (xu - xl)
    inputs = {r.inputs[0]: r.name for r in graph.relu_nodes}
    y, pre = graph.forward(x, keep=lambda node: node.name in inputs)
    bad = (y @ c[0, 0]) <= d[0, 0]
    assert bad.sum() > 10
    z = torch.cat([pre[r.inputs[0]].reshape(x.shape[0], -1)[:, layout.index[l]]
                   for l, r in enumerate(graph.relu_nodes)], dim=1)[bad]  # (n_bad, M)
    for batch in pruned:
        s = batch.splits.to(D)  # (N, M)
        inside = ((s[:, None] * z[None]) >= 0).all(dim=2)  # (N, n_bad) sign-consistent
        assert not inside.any(), "a pruned domain contains a violating point"


def test_fully_split_domains_go_to_the_exact_lp(monkeypatch) -> None:
    """A network linear on the box (its ReLUs stably active) with a two-row disjunct whose rows
    hold separately but not together: per-row bounds never prove it, the domain is fully split
    from the start, and the exact LP decides it; without the LP the search says unknown
    instead of claiming anything."""
    w1 = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=D)
    graph = Graph("x", (2,), [
        Dense("d0", ("x",), (2,), weight=w1, bias_=torch.full((2,), 5.0, dtype=D)),
        Relu("r0", ("d0",), (2,)),
        Dense("o", ("r0",), (2,), weight=torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=D),
              bias_=torch.tensor([-5.0, 5.0], dtype=D)),
    ], "o")  # y0 = x0 + x1, y1 = -(x0 + x1)
    xl = -torch.ones(1, 2, dtype=D)
    xu = torch.ones(1, 2, dtype=D)
    C = torch.eye(2, dtype=D).unsqueeze(0)
    rd = torch.tensor([[0, 0]])
    unsat = make_spec(xl, xu, C, torch.tensor([[-0.5, -0.5]], dtype=D), rd)  # s <= -.5, s >= .5
    sat = make_spec(xl, xu, C, torch.tensor([[0.5, 0.5]], dtype=D), rd)  # |x0 + x1| <= .5
    assert run(graph, unsat).verdict == "unsat"
    out = run(graph, sat)
    assert out.verdict == "sat" and abs(float(out.counterexample.x.sum())) <= 0.5 + 1e-9

    import builtins
    real_import = builtins.__import__

    def no_exact_lp(name, *args, **kwargs):
        if name.endswith("exact_lp"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_exact_lp)
    out = run(graph, unsat)
    assert out.verdict == "unknown" and "could not be decided" in out.message, out


def test_max_domains_gives_unknown_and_progress_is_reported() -> None:
    graph = fc_graph(16, [10, 60, 60, 2])
    g = torch.Generator().manual_seed(16)
    xl = torch.rand(1, 10, generator=g, dtype=D)
    xu = xl + 1.0
    C = torch.randn(1, 1, 2, generator=g, dtype=D)
    root = compute_bounds(graph, xl, xu, C, "crown")
    spec = make_spec(xl, xu, C, root.lower + 0.5 * (root.lower.abs() + 1),
                     torch.zeros(1, 1, dtype=torch.long))
    seen = []
    out = activation_split_bab(graph, spec, root.intermediate,
                               config=BabConfig(batch_size=32, iterations=2, max_domains=40,
                                                progress_interval=0.0),
                               deadline=time.monotonic() + 20, confirm=lambda x, r: None,
                               progress=seen.append)
    assert out.verdict == "unknown" and "40" in out.message, out
    assert seen and seen[-1].domains_visited > 0


def test_out_of_memory_halves_the_batch(monkeypatch) -> None:
    graph = fc_graph(1, [3, 6, 5, 2])
    xl, xu, c, m = single_row_problem(graph, 1, 1.5)
    d = torch.tensor([[m - 0.02 * max(1.0, abs(m))]], dtype=D)
    spec = make_spec(xl, xu, c, d, torch.zeros(1, 1, dtype=torch.long))
    real = act._round
    calls = {"n": 0}

    def flaky(search, parents, s, store):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(search, parents, s, store)

    monkeypatch.setattr(act, "_round", flaky)
    out = run(graph, spec)
    assert out.verdict == "unsat" and calls["n"] > 1


def test_network_without_relu_is_decided_exactly() -> None:
    graph = Graph("x", (2,), [Dense("o", ("x",), (1,), weight=torch.tensor([[1.0, -2.0]], dtype=D),
                                    bias_=torch.zeros(1, dtype=D))], "o")
    xl, xu = -torch.ones(1, 2, dtype=D), torch.ones(1, 2, dtype=D)
    C = torch.ones(1, 1, 1, dtype=D)  # y = x0 - 2 x1 ranges over [-3, 3]
    rd = torch.zeros(1, 1, dtype=torch.long)
    assert run(graph, make_spec(xl, xu, C, torch.tensor([[-3.5]], dtype=D), rd)).verdict == "unsat"
    out = run(graph, make_spec(xl, xu, C, torch.tensor([[-2.5]], dtype=D), rd))
    assert out.verdict == "sat", out


def test_round_size_adapts_to_the_measured_rate() -> None:
    sizer = act._BatchSizer(1024, round_seconds=2.0)
    assert sizer.size == act.FIRST_BATCH
    sizer.observe(0.1, 64)  # fast rounds: grow, at most twofold per round
    assert sizer.size == 128
    for _ in range(10):
        sizer.observe(0.1, sizer.size)
    assert sizer.size == 1024  # capped by config.batch_size
    sizer.observe(8.0, 1024)  # 128 children/s: 256 fit in 2 s
    assert sizer.size == 256
    assert sizer.halve() and sizer.limit == 128 and sizer.size == 128
    fixed = act._BatchSizer(300, round_seconds=None)
    fixed.observe(100.0, 1)
    assert fixed.size == 300


class _RefinedOnly:
    """The part of a CutSource the search reads between rounds, with refined layers only
    (the worker process that produces them is tested in tests/mip_cuts/test_refine.py)."""

    terms = None

    def __init__(self, refined: list, refining_for: float = 0.0) -> None:
        self.pending = refined
        self.until = time.monotonic() + refining_for

    def refining(self) -> bool:
        return time.monotonic() < self.until

    def layer_finished(self) -> bool:
        return any(rb.final for rb in self.pending)

    def candidates(self) -> list:
        return []

    def proved(self) -> bool:
        return False

    def poll(self) -> bool:
        return False

    def refined(self) -> list:
        out, self.pending = self.pending, []
        return out


@pytest.mark.parametrize("side", ["unsat", "sat"])
def test_search_restarts_from_a_root_with_mip_refined_layers(side) -> None:
    """Refined layers (SCIP, exact given the time) re-bound the root, whose later layers are
    recomputed: the search starts over from it when its bound is better, and the verdict
    still matches the exhaustive ground truth on both sides."""
    from planecut.mip_cuts.encoding import encode_network
    from planecut.mip_cuts.refine import refine_bounds

    graph = fc_graph(21, [3, 12, 12, 12, 2])
    xl, xu, c, m = single_row_problem(graph, 21, 2.0)
    d = m + (-0.05 if side == "unsat" else 0.05) * max(1.0, abs(m))
    spec = make_spec(xl, xu, c, torch.tensor([[d]], dtype=D), torch.zeros(1, 1, dtype=torch.long))
    root = compute_bounds(graph, xl, xu, c, "alpha-crown")
    enc = encode_network(graph, xl[0].numpy(), xu[0].numpy(),
                         {k: (lo.numpy(), hi.numpy()) for k, (lo, hi) in root.intermediate.items()})
    refined: list = []
    refine_bounds(enc, 30.0, solve_seconds=5.0, max_per_layer=64, on_layer=refined.append)
    assert refined and any(rb.improved for rb in refined)
    new = {k: (lo.clone(), hi.clone()) for k, (lo, hi) in root.intermediate.items()}
    for rb in refined:  # the root with the refined layers, later ones recomputed
        lo, hi = new[rb.name]
        new[rb.name] = (torch.maximum(lo, torch.as_tensor(rb.lower).view_as(lo)),
                        torch.minimum(hi, torch.as_tensor(rb.upper).view_as(hi)))
    better = compute_bounds(graph, xl, xu, c, "alpha-crown", intermediate={
        rb.name: new[rb.name] for rb in refined[:1]})
    out = activation_split_bab(graph, spec, root.intermediate,
                               config=BabConfig(batch_size=16, iterations=20),
                               deadline=time.monotonic() + 60, confirm=checker(graph, spec),
                               cut_source=_RefinedOnly(refined))
    assert out.verdict == side
    if side == "unsat" and float(better.lower.min()) > float(root.lower.min()) + 1e-6:
        assert out.reroots >= 1


def test_search_waits_while_the_worker_refines(monkeypatch) -> None:
    """With ``refine_pause_after=0`` no round runs while the source refines: the first one
    starts after the refinement, from the root its layers give."""
    from planecut.mip_cuts.encoding import encode_network
    from planecut.mip_cuts.refine import refine_bounds

    graph = fc_graph(21, [3, 12, 12, 12, 2])
    xl, xu, c, m = single_row_problem(graph, 21, 2.0)
    spec = make_spec(xl, xu, c, torch.tensor([[m - 0.05 * max(1.0, abs(m))]], dtype=D),
                     torch.zeros(1, 1, dtype=torch.long))
    root = compute_bounds(graph, xl, xu, c, "alpha-crown")
    enc = encode_network(graph, xl[0].numpy(), xu[0].numpy(),
                         {k: (lo.numpy(), hi.numpy()) for k, (lo, hi) in root.intermediate.items()})
    refined: list = []
    refine_bounds(enc, 30.0, solve_seconds=5.0, on_layer=refined.append)
    rounds: list[float] = []
    real_round = act._round

    def timed_round(*args, **kwargs):
        rounds.append(time.monotonic())
        return real_round(*args, **kwargs)

    monkeypatch.setattr(act, "_round", timed_round)
    start = time.monotonic()
    out = activation_split_bab(graph, spec, root.intermediate,
                               config=BabConfig(batch_size=16, iterations=20),
                               deadline=start + 60, confirm=checker(graph, spec),
                               cut_source=_RefinedOnly(refined, refining_for=1.0),
                               refine_pause_after=0.0)
    assert out.verdict == "unsat"
    assert not rounds or rounds[0] >= start + 1.0
