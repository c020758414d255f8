"""A full MIP solve is exact: its optimum equals enumeration of every activation pattern."""

from __future__ import annotations

import numpy as np
import pytest

from planecut.mip_cuts.backends.highs import solve_highs
from planecut.mip_cuts.backends.scip import solve_scip
from planecut.mip_cuts.milp import build_milp

from testnets import encode, exact_min


@pytest.mark.parametrize("seed", range(6))
def test_mip_optimum_equals_enumeration(fc_net, seed):
    net = fc_net((3, 5, 4, 2), seed=seed)
    rng = np.random.default_rng(100 + seed)
    centre = rng.uniform(-1, 1, 3)
    xl, xu = centre - 0.8, centre + 0.8
    _, enc = encode(net.path, xl, xu)
    c = rng.normal(size=2)
    d = rng.normal(size=1) * 0.1
    truth = exact_min(net, xl, xu, c) - d[0]
    m = build_milp(enc, c[None], d)
    scip = solve_scip(m, time_limit=30)
    highs = solve_highs(m, time_limit=30)
    tol = 1e-5 * (1 + abs(truth))
    assert scip.status == "optimal" and abs(scip.primal - truth) <= tol, (scip, truth)
    assert highs.status == "optimal" and abs(highs.objective - truth) <= tol, (highs, truth)
    # the witness is a real input reaching the optimum
    assert np.all(scip.x >= xl - 1e-9) and np.all(scip.x <= xu + 1e-9)
    assert abs(float((net.forward(scip.x) @ c)[0] - d[0]) - truth) <= 1e-4 * (1 + abs(truth))


def test_multi_row_disjunct_uses_epigraph(fc_net):
    """min max_r (C_r·y - d_r), checked against dense sampling from below and the LP above."""
    net = fc_net((2, 6, 6, 3), seed=11)
    xl, xu = -np.ones(2), np.ones(2)
    _, enc = encode(net.path, xl, xu)
    C = np.array([[1.0, -1.0, 0.0], [1.0, 0.0, -1.0]])
    d = np.array([0.05, -0.02])
    m = build_milp(enc, C, d)
    assert m.n_vars == m.layout.n_cols + 1
    res = solve_scip(m, time_limit=30)
    g = np.stack(np.meshgrid(np.linspace(-1, 1, 201), np.linspace(-1, 1, 201)), -1)
    X = g.reshape(-1, 2)
    sampled = ((net.forward(X) @ C.T) - d).max(1).min()
    assert res.status == "optimal"
    assert res.primal <= sampled + 1e-7
    assert res.primal >= sampled - 0.05  # a fine grid gets close to the optimum
    assert solve_highs(m, relax=True).objective <= res.primal + 1e-7


def test_no_unstable_neuron(fc_net):
    """A box so small that every neuron is stable: no binaries, MIP = LP = the network."""
    net = fc_net((3, 5, 4, 2), seed=3)
    x0 = np.array([0.1, -0.2, 0.3])
    xl, xu = x0 - 1e-6, x0 + 1e-6
    _, enc = encode(net.path, xl, xu)
    assert enc.num_unstable == 0
    m = build_milp(enc, np.array([[1.0, 0.0]]), np.zeros(1))
    assert not m.integer.any()
    res = solve_scip(m, time_limit=10)
    assert res.status == "optimal"
    assert abs(res.primal - net.forward(x0)[0, 0]) < 1e-4


@pytest.mark.parametrize("backend", ["gurobi", "ortools"])
def test_optional_backends_agree_with_enumeration(fc_net, backend):
    """Gurobi and OR-Tools (when installed) solve the same MILP to the same optimum."""
    from planecut.mip_cuts.backends import optional

    pytest.importorskip({"gurobi": "gurobipy", "ortools": "ortools"}[backend])
    net = fc_net((3, 5, 4, 2), seed=2)
    xl, xu = -np.ones(3), np.ones(3)
    _, enc = encode(net.path, xl, xu)
    c = np.array([1.0, -0.5])
    truth = exact_min(net, xl, xu, c)
    m = build_milp(enc, c[None], np.zeros(1))
    solve = optional.solve_gurobi if backend == "gurobi" else optional.solve_ortools
    res = solve(m, time_limit=30)
    assert res.status == "optimal" and abs(res.objective - truth) <= 1e-5 * (1 + abs(truth))
