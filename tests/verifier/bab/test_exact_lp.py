"""The exact LP of a fully split domain against dense sampling and brute force.

On a fully split domain the network is affine, so the LP's optimum is the exact minimum of the
spec margin ``max_k (C_k·y - d_k)`` over the domain: never above any sampled point of the
domain, attained by the LP's witness, and — over all phase patterns — equal to the global
minimum over the box.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import torch

from planecut.verifier.bab.exact_lp import (
    LpDecision,
    affine_pieces,
    exact_lp_supported,
    neurons_left,
    solve_fully_split,
)
from planecut.verifier.bounds import compute_bounds
from planecut.verifier.graph.ir import Conv, Dense, Graph, Relu, Reshape, Sigmoid

Tensor = torch.Tensor


# --------------------------------------------------------------------------- small networks


def fc_graph(seed: int, dims: list[int], dtype=torch.float64) -> Graph:
    g = torch.Generator().manual_seed(seed)
    nodes = []
    cur = "x"
    for i, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:])):
        w = torch.randn(n_out, n_in, generator=g, dtype=torch.float64) / n_in ** 0.5 * 1.5
        b = torch.randn(n_out, generator=g, dtype=torch.float64) * 0.3
        nodes.append(Dense(f"d{i}", (cur,), (n_out,), weight=w.to(dtype), bias_=b.to(dtype)))
        cur = f"d{i}"
        if i < len(dims) - 2:
            nodes.append(Relu(f"r{i}", (cur,), (n_out,)))
            cur = f"r{i}"
    return Graph("x", (dims[0],), nodes, cur)


def conv_graph(seed: int, dtype=torch.float64) -> Graph:
    """(1, 4, 4) -> conv 3x3x3 pad 1 -> relu -> conv 2x3x3 stride 2 -> relu -> dense 4 -> relu
    -> dense 3."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, s=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * s).to(dtype)

    nodes = [
        Conv("c0", ("x",), (3, 4, 4), weight=rnd(3, 1, 3, 3, s=0.6), bias_=rnd(3, s=0.2),
             padding=(1, 1)),
        Relu("r0", ("c0",), (3, 4, 4)),
        Conv("c1", ("r0",), (2, 2, 2), weight=rnd(2, 3, 3, 3, s=0.3), bias_=rnd(2, s=0.2),
             stride=(2, 2), padding=(1, 1)),
        Relu("r1", ("c1",), (2, 2, 2)),
        Reshape("f", ("r1",), (8,)),
        Dense("d0", ("f",), (4,), weight=rnd(4, 8, s=0.5), bias_=rnd(4, s=0.2)),
        Relu("r2", ("d0",), (4,)),
        Dense("d1", ("r2",), (3,), weight=rnd(3, 4, s=0.5), bias_=rnd(3, s=0.2)),
    ]
    return Graph("x", (1, 4, 4), nodes, "d1")


def forward_pre(graph: Graph, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Outputs (N, n_out) and flat pre-activations per ReLU layer, float64."""
    dt = next(iter(graph.nodes[0].tensors().values())).dtype
    relu_inputs = {r.inputs[0] for r in graph.relu_nodes}
    with torch.no_grad():
        y, kept = graph.forward(torch.as_tensor(x, dtype=dt),
                                keep=lambda n: n.name in relu_inputs)
    pre = [kept[r.inputs[0]].reshape(x.shape[0], -1).double().numpy() for r in graph.relu_nodes]
    return y.reshape(x.shape[0], -1).double().numpy(), pre


def crown_bounds(graph: Graph, xl: np.ndarray, xu: np.ndarray) -> dict[str, tuple[Tensor, Tensor]]:
    dt = next(iter(graph.nodes[0].tensors().values())).dtype
    res = compute_bounds(graph, torch.as_tensor(xl, dtype=dt)[None],
                         torch.as_tensor(xu, dtype=dt)[None], method="crown")
    return {r.name: res.intermediate[r.name] for r in graph.relu_nodes}


def unstable_masks(graph: Graph, inter) -> list[np.ndarray]:
    out = []
    for r in graph.relu_nodes:
        lo, hi = inter[r.name]
        lo, hi = lo.reshape(-1).double().numpy(), hi.reshape(-1).double().numpy()
        out.append((lo < 0) & (hi > 0))
    return out


def margins(y: np.ndarray, C: np.ndarray, d: np.ndarray) -> np.ndarray:
    return (y @ C.T - d).max(axis=1)


def in_domain(pre: list[np.ndarray], splits: list[np.ndarray]) -> np.ndarray:
    ok = np.ones(pre[0].shape[0], dtype=bool)
    for z, s in zip(pre, splits):
        ok &= np.all((s[None] == 0) | ((s[None] > 0) & (z >= 0)) | ((s[None] < 0) & (z <= 0)),
                     axis=1)
    return ok


def check_witness(graph: Graph, dec: LpDecision, xl, xu, splits, C, d, tol=1e-6) -> float:
    """The witness lies in the box, in the domain (up to LP tolerances), and its true margin
    is the LP optimum. Returns its margin."""
    x = dec.x
    assert x is not None and x.shape == (graph.num_inputs,)
    assert np.all(x >= xl) and np.all(x <= xu)
    y, pre = forward_pre(graph, x[None])
    for z, s in zip(pre, splits):
        z = z[0]
        assert np.all(z[s > 0] >= -tol), z[s > 0].min()
        assert np.all(z[s < 0] <= tol), z[s < 0].max()
    m = float(margins(y, C, d)[0]) if C.shape[0] else -np.inf
    if C.shape[0] and dec.margin is not None:
        assert m == pytest.approx(dec.margin, abs=1e-6)
    return m


# --------------------------------------------------------------------------- affine pieces


@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_affine_pieces_match_forward(kind):
    graph = fc_graph(3, [4, 7, 6, 3]) if kind == "fc" else conv_graph(3)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(5, graph.num_inputs))
    y, pre = forward_pre(graph, x)
    for i in range(5):
        phases = [np.where(z[i] >= 0, 1, -1).astype(np.int8) for z in pre]
        pieces = affine_pieces(graph, phases, [np.ones(p.size, bool) for p in phases])
        np.testing.assert_allclose(pieces.A @ x[i] + pieces.c, y[i], atol=1e-10)
        np.testing.assert_allclose(pieces.phase_A @ x[i] + pieces.phase_c,
                                   np.concatenate([z[i] for z in pre]), atol=1e-10)
        assert pieces.phase_id.shape == (sum(p.size for p in phases), 2)


def test_affine_pieces_chunked_equals_unchunked():
    graph = conv_graph(5)
    phases = [np.random.default_rng(1).choice([-1, 1], size=r.size).astype(np.int8)
              for r in graph.relu_nodes]
    full = [np.ones(p.size, bool) for p in phases]
    a = affine_pieces(graph, phases, full)
    b = affine_pieces(graph, phases, full, chunk_elements=50)  # one input column per chunk
    np.testing.assert_allclose(a.A, b.A, atol=1e-14)
    np.testing.assert_allclose(a.phase_A, b.phase_A, atol=1e-14)
    np.testing.assert_allclose(a.c, b.c, atol=1e-14)


# --------------------------------------------------------------------------- LP vs sampling


def _random_spec(rng, n_out: int) -> np.ndarray:
    k = int(rng.integers(1, 3))
    C = np.zeros((k, n_out))
    for r in range(k):
        a, b = rng.choice(n_out, size=2, replace=False)
        C[r, a] = 1.0
        if rng.random() < 0.5:
            C[r, b] = -1.0
        elif rng.random() < 0.5:
            C[r, a] = -1.0
    return C


CASES = [("fc", s) for s in range(8)] + [("conv", s) for s in range(4)]


@pytest.mark.parametrize("kind,seed", CASES)
def test_lp_against_sampling(kind, seed):
    rng = np.random.default_rng(100 + seed)
    graph = fc_graph(seed, [3, 8, 8, 4]) if kind == "fc" else conv_graph(seed)
    n_in = graph.num_inputs
    centre = rng.uniform(-0.5, 0.5, n_in)
    eps = 0.4 if kind == "fc" else 0.15
    xl, xu = centre - eps, centre + eps
    inter = crown_bounds(graph, xl, xu)
    unstable = unstable_masks(graph, inter)
    xs = rng.uniform(xl, xu, size=(20000, n_in))
    y, pre = forward_pre(graph, xs)
    checked = 0
    for trial in range(6):
        x0 = trial % len(xs)
        splits = [np.where(u, np.where(z[x0] >= 0, 1, -1), 0).astype(np.int8)
                  for u, z in zip(unstable, pre)]
        assert neurons_left(splits, inter, graph) == 0
        dom = in_domain(pre, splits)
        assert dom[x0]
        C = _random_spec(rng, graph.num_outputs)
        d0 = np.zeros(C.shape[0])
        s_min = float(margins(y[dom], C, d0).min())
        dec = solve_fully_split(graph, xl, xu, splits, inter, C, d0)
        assert dec.status in ("feasible", "infeasible") and dec.margin is not None
        # the LP optimum is the exact minimum over the domain: below every sample
        assert dec.margin <= s_min + 1e-9
        if dec.status == "feasible":
            m = check_witness(graph, dec, xl, xu, splits, C, d0)
            assert m <= 1e-9
        # a threshold the samples violate: the LP must find a violation
        d_hi = d0 + s_min + 0.01 * (1 + abs(s_min))
        dec_hi = solve_fully_split(graph, xl, xu, splits, inter, C, d_hi)
        assert dec_hi.status == "feasible", (dec_hi, s_min)
        assert check_witness(graph, dec_hi, xl, xu, splits, C, d_hi) <= 1e-9
        # a threshold below the LP optimum: provably no violation (and no sample violates)
        d_lo = d0 + dec.margin - 0.01 * (1 + abs(dec.margin))
        dec_lo = solve_fully_split(graph, xl, xu, splits, inter, C, d_lo)
        assert dec_lo.status == "infeasible", dec_lo
        assert not np.any(margins(y[dom], C, d_lo) <= 0)
        checked += 1
    assert checked == 6


def test_stable_rows_optional_same_answer():
    graph = fc_graph(11, [3, 10, 10, 3])
    xl, xu = -0.3 * np.ones(3), 0.3 * np.ones(3)
    inter = crown_bounds(graph, xl, xu)
    unstable = unstable_masks(graph, inter)
    _, pre = forward_pre(graph, ((xl + xu) / 2)[None])
    splits = [np.where(u, np.where(z[0] >= 0, 1, -1), 0).astype(np.int8)
              for u, z in zip(unstable, pre)]
    C = np.array([[1.0, -1.0, 0.0]])
    for d in (-1.0, 0.0, 1.0):
        a = solve_fully_split(graph, xl, xu, splits, inter, C, [d], stable_rows=True)
        b = solve_fully_split(graph, xl, xu, splits, inter, C, [d], stable_rows=False)
        assert a.status == b.status
        assert a.margin == pytest.approx(b.margin, abs=1e-7)


# --------------------------------------------------------------------------- brute force


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_brute_force_patterns_cover_the_box(seed):
    """Every phase pattern of a tiny net: non-empty exactly for patterns that occur, and the
    minimum over patterns of the LP optimum is the global minimum (dense grid)."""
    graph = fc_graph(20 + seed, [2, 4, 4, 2])
    xl, xu = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    g = np.linspace(-1, 1, 401)
    xs = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    y, pre = forward_pre(graph, xs)
    seen = {tuple(np.concatenate([(z[i] >= 0) for z in pre]).astype(int))
            for i in range(0, len(xs))}
    C = np.array([[1.0, -1.0]])
    d = np.zeros(1)
    grid_min = float(margins(y, C, d).min())
    sizes = [r.size for r in graph.relu_nodes]
    best = np.inf
    nonempty = 0
    empty_C = np.zeros((0, graph.num_outputs))
    for bits in itertools.product([1, -1], repeat=sum(sizes)):
        splits = [np.array(bits[:sizes[0]], np.int8), np.array(bits[sizes[0]:], np.int8)]
        feas = solve_fully_split(graph, xl, xu, splits, {}, empty_C, np.zeros(0))
        assert feas.status in ("feasible", "infeasible")
        key = tuple(int(b > 0) for b in bits)
        if feas.status == "infeasible":
            # no grid point has this pattern (strictly: a grid point on a boundary z = 0 is in
            # both neighbouring patterns, and is only recorded as active)
            assert key not in seen
            continue
        nonempty += 1
        check_witness(graph, feas, xl, xu, splits, empty_C, np.zeros(0))
        dec = solve_fully_split(graph, xl, xu, splits, {}, C, d)
        assert dec.margin is not None
        if dec.x is not None:
            check_witness(graph, dec, xl, xu, splits, C, d)
        else:  # above 0: the threshold that makes it feasible must give a witness
            shifted = d + dec.margin + 1e-3
            dec2 = solve_fully_split(graph, xl, xu, splits, {}, C, shifted)
            assert dec2.status == "feasible"
            check_witness(graph, dec2, xl, xu, splits, C, shifted)
        best = min(best, dec.margin)
    assert nonempty >= len(seen)
    # exact global minimum below the grid's, and close to it (Lipschitz * grid spacing)
    ws = [n.weight.numpy() for n in graph.nodes if isinstance(n, Dense)]
    lip = np.linalg.norm(C @ ws[-1], 2)
    for w in ws[:-1]:
        lip *= np.linalg.norm(w, 2)
    assert best <= grid_min + 1e-9
    assert grid_min - best <= lip * (2 / 400) * np.sqrt(2) / 2 + 1e-9


# --------------------------------------------------------------------------- disjuncts etc.


def test_row_disjunct_layout():
    graph = fc_graph(7, [3, 6, 5, 3])
    xl, xu = -0.5 * np.ones(3), 0.5 * np.ones(3)
    inter = crown_bounds(graph, xl, xu)
    unstable = unstable_masks(graph, inter)
    _, pre = forward_pre(graph, np.zeros((1, 3)))
    splits = [np.where(u, np.where(z[0] >= 0, 1, -1), 0).astype(np.int8)
              for u, z in zip(unstable, pre)]
    C = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 0, 0]])
    base = solve_fully_split(graph, xl, xu, splits, inter, C[:1], [0.0])
    lo0 = base.margin  # min y_0 over the domain
    # disjunct 0: y_0 <= lo0 - 1 (impossible); disjunct 1: y_1 <= big and y_2 <= big;
    # row 3 is padding (index J = 3) and slot 2 is a padding disjunct
    d = np.array([lo0 - 1.0, 100.0, 100.0, 0.0])
    rd = np.array([0, 1, 1, 3])
    dec = solve_fully_split(graph, xl, xu, splits, inter, C, d, row_disjunct=rd,
                            disjunct_valid=[True, True, False])
    assert dec.status == "feasible" and dec.disjunct == 1
    dec = solve_fully_split(graph, xl, xu, splits, inter, C, d, row_disjunct=rd,
                            disjunct_valid=[True, False, False])
    assert dec.status == "infeasible"
    # an empty (valid) disjunct holds everywhere the domain is non-empty
    dec = solve_fully_split(graph, xl, xu, splits, inter, C, d, row_disjunct=rd,
                            disjunct_valid=[True, False, True])
    assert dec.status == "feasible" and dec.disjunct == 2


def test_contradictory_splits_are_infeasible():
    w = torch.tensor([[1.0, 0.5], [-1.0, -0.5]], dtype=torch.float64)
    b = torch.tensor([0.0, -1.0], dtype=torch.float64)  # z1 = -z0 - 1
    graph = Graph("x", (2,), [Dense("d0", ("x",), (2,), weight=w, bias_=b),
                              Relu("r0", ("d0",), (2,)),
                              Dense("d1", ("r0",), (1,),
                                    weight=torch.ones(1, 2, dtype=torch.float64))], "d1")
    xl, xu = -np.ones(2), np.ones(2)
    C, d = np.array([[1.0]]), np.array([100.0])
    dec = solve_fully_split(graph, xl, xu, [np.array([1, 1], np.int8)], {}, C, d)
    assert dec.status == "infeasible"
    dec = solve_fully_split(graph, xl, xu, [np.array([1, -1], np.int8)], {}, C, d)
    assert dec.status == "feasible"


def test_split_contradicting_the_box():
    w = torch.tensor([[1.0]], dtype=torch.float64)
    graph = Graph("x", (1,), [Dense("d0", ("x",), (1,), weight=w,
                                    bias_=torch.tensor([-5.0], dtype=torch.float64)),
                              Relu("r0", ("d0",), (1,)),
                              Dense("d1", ("r0",), (1,), weight=w)], "d1")
    dec = solve_fully_split(graph, [-1.0], [1.0], [np.array([1], np.int8)], {},
                            np.array([[1.0]]), np.array([10.0]))
    assert dec.status == "infeasible"
    dec = solve_fully_split(graph, [-1.0], [1.0], [np.array([-1], np.int8)], {},
                            np.array([[1.0]]), np.array([0.0]))
    assert dec.status == "feasible"


def test_neurons_left_and_phase_from_bounds():
    graph = fc_graph(1, [2, 3, 3, 2])
    inter = {"r0": (torch.tensor([[-1.0, 0.5, -2.0]]), torch.tensor([[1.0, 1.0, -0.1]])),
             "r1": (torch.tensor([-1.0, -1.0, 0.0]), torch.tensor([1.0, 2.0, 3.0]))}
    none = [np.zeros(3, np.int8), np.zeros(3, np.int8)]
    assert neurons_left(none, inter, graph) == 3  # r0[0], r1[0], r1[1]
    assert neurons_left(None, inter, graph) == 3
    s = [np.array([1, 0, 0], np.int8), np.array([-1, 1, 0], np.int8)]
    assert neurons_left(s, inter, graph) == 0
    # splits override bounds; missing bounds leave every unsplit neuron of the layer unstable
    assert neurons_left(s, {"r0": inter["r0"]}, graph) == 1
    assert neurons_left([torch.tensor([1, 1, 1], dtype=torch.int8), np.ones(3, np.int8)], {},
                        graph) == 0
    with pytest.raises(ValueError, match="unstable"):
        solve_fully_split(graph, -np.ones(2), np.ones(2), none, inter, np.eye(2), np.zeros(2))
    with pytest.raises(ValueError):
        neurons_left([np.zeros(3, np.int8)], inter, graph)  # wrong number of layers


def test_unsupported_graph():
    graph = Graph("x", (2,), [Dense("d0", ("x",), (2,), weight=torch.eye(2)),
                              Sigmoid("s", ("d0",), (2,))], "s")
    assert not exact_lp_supported(graph)
    assert exact_lp_supported(fc_graph(0, [2, 3, 2]))
    with pytest.raises(ValueError, match="unsupported"):
        solve_fully_split(graph, -np.ones(2), np.ones(2), [], {}, np.eye(2), np.zeros(2))


def test_float32_graph_and_torch_inputs():
    graph = fc_graph(4, [3, 6, 6, 2], dtype=torch.float32)
    xl = torch.full((1, 3), -0.5)
    xu = torch.full((1, 3), 0.5)
    res = compute_bounds(graph, xl, xu, method="crown")
    inter = {r.name: res.intermediate[r.name] for r in graph.relu_nodes}
    splits = []
    with torch.no_grad():
        _, kept = graph.forward(torch.zeros(1, 3), keep=lambda n: n.kind == "dense")
    for r in graph.relu_nodes:
        lo, hi = inter[r.name]
        z = kept[r.inputs[0]].reshape(-1)
        unst = (lo.reshape(-1) < 0) & (hi.reshape(-1) > 0)
        splits.append(torch.where(unst, torch.where(z >= 0, 1, -1), 0).to(torch.int8))
    C = torch.tensor([[1.0, -1.0]])
    dec = solve_fully_split(graph, xl, xu, splits, inter, C, torch.tensor([1e3]))
    assert dec.status == "feasible" and dec.x.dtype == np.float64
    assert graph.nodes[0].weight.dtype == torch.float32  # caller's graph untouched
    dec = solve_fully_split(graph, xl, xu, splits, inter, C, torch.tensor([-1e3]))
    assert dec.status == "infeasible"


def test_network_without_relu_and_boundary_cases():
    g = Graph("x", (2,), [Dense("d", ("x",), (1,), weight=torch.tensor([[1.0, 2.0]]),
                                bias_=torch.tensor([0.5]))], "d")
    box = ([-1.0, -1.0], [1.0, 1.0])  # y ranges over [-2.5, 3.5]
    assert neurons_left(None, {}, g) == 0
    dec = solve_fully_split(g, *box, [], {}, np.array([[1.0]]), np.array([-2.0]))
    assert dec.status == "feasible" and dec.margin == pytest.approx(-0.5)
    np.testing.assert_allclose(dec.x, [-1.0, -1.0])
    # touching the threshold counts as a violation (C·y <= d)
    assert solve_fully_split(g, *box, None, {}, np.array([[1.0]]),
                             np.array([-2.5])).status == "feasible"
    dec = solve_fully_split(g, *box, None, {}, np.array([[1.0]]), np.array([-2.6]))
    assert dec.status == "infeasible" and dec.margin == pytest.approx(0.1)
    # no rows at all: violated wherever the domain is non-empty
    dec = solve_fully_split(g, *box, None, {}, np.zeros((0, 1)), np.zeros(0))
    assert dec.status == "feasible" and dec.margin == -np.inf
    # an empty box
    assert solve_fully_split(g, [1.0, 0.0], [0.0, 0.0], None, {}, np.array([[1.0]]),
                             np.array([10.0])).status == "infeasible"


def test_time_limit_gives_unknown_not_a_proof():
    graph = fc_graph(2, [3, 6, 6, 2])
    splits = [np.ones(6, np.int8), np.ones(6, np.int8)]
    dec = solve_fully_split(graph, -np.ones(3), np.ones(3), splits, {}, np.eye(2)[:1],
                            np.zeros(1), time_limit=0.0)
    assert dec.status == "unknown"


# --------------------------------------------------------------------------- size / speed


def mnist_conv_graph(seed: int) -> Graph:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, s):
        return torch.randn(*shape, generator=g) * s

    nodes = [
        Conv("c0", ("x",), (8, 14, 14), weight=rnd(8, 1, 4, 4, s=0.25), bias_=rnd(8, s=0.05),
             stride=(2, 2), padding=(1, 1)),
        Relu("r0", ("c0",), (8, 14, 14)),
        Conv("c1", ("r0",), (16, 7, 7), weight=rnd(16, 8, 4, 4, s=0.09), bias_=rnd(16, s=0.05),
             stride=(2, 2), padding=(1, 1)),
        Relu("r1", ("c1",), (16, 7, 7)),
        Reshape("f", ("r1",), (784,)),
        Dense("d0", ("f",), (100,), weight=rnd(100, 784, s=0.036), bias_=rnd(100, s=0.05)),
        Relu("r2", ("d0",), (100,)),
        Dense("d1", ("r2",), (10,), weight=rnd(10, 100, s=0.1), bias_=rnd(10, s=0.05)),
    ]
    return Graph("x", (1, 28, 28), nodes, "d1")


def test_mnist_sized_conv_net_is_fast():
    graph = mnist_conv_graph(0)
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0, 1, 784)
    eps = 0.02
    xl, xu = np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1)
    inter = crown_bounds(graph, xl, xu)
    unstable = unstable_masks(graph, inter)
    with torch.no_grad():
        y0, kept = graph.forward(torch.as_tensor(x0, dtype=torch.float32)[None],
                                 keep=lambda n: n.kind in ("conv", "dense"))
    pre = [kept[r.inputs[0]].reshape(-1).double().numpy() for r in graph.relu_nodes]
    splits = [np.where(u, np.where(z >= 0, 1, -1), 0).astype(np.int8)
              for u, z in zip(unstable, pre)]
    label = int(y0.argmax())
    C = np.zeros((1, 10))
    C[0, label], C[0, (label + 1) % 10] = 1.0, -1.0
    t = time.monotonic()
    dec = solve_fully_split(graph, xl, xu, splits, inter, C, np.zeros(1))
    elapsed = time.monotonic() - t
    assert dec.status in ("feasible", "infeasible")
    # the LP minimum is below the margin at x0, which lies in the domain
    m0 = float(C[0] @ y0[0].double().numpy())
    assert dec.margin <= m0 + 1e-4
    assert elapsed < 30, elapsed
