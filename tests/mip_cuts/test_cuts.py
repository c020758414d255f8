"""Cuts harvested from SCIP are valid for the network and tighten the LP relaxation.

Validity is checked on executions the validator never saw (a fresh seed): every emitted cut
must hold, within its published tolerance, at thousands of real executions.
"""

from __future__ import annotations

import numpy as np
import pytest

from planecut.mip_cuts.backends.highs import solve_highs
from planecut.mip_cuts.backends.scip import solve_scip
from planecut.mip_cuts.cutset import CutSet
from planecut.mip_cuts.milp import build_milp
from planecut.mip_cuts.validate import cuts_from_rows, sample_inputs, validate

from testnets import encode


def _harvest(enc, C, d, seconds):
    m = build_milp(enc, C, d)
    raw = []
    res = solve_scip(m, time_limit=seconds, on_cuts=raw.extend)
    cs = cuts_from_rows(m.layout, [(c.cols, c.vals, c.rhs) for c in raw])
    return m, cs, res


def _check_fresh(enc, cuts: CutSet, n: int = 5000) -> None:
    X = sample_inputs(enc, n, np.random.default_rng(12345))
    lhs = cuts.lhs_on_executions(enc, X)
    excess = lhs.max(1) - cuts.rhs
    assert np.all(excess <= 0), f"{int((excess > 0).sum())} cuts violated, worst {excess.max()}"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cuts_valid_and_tighten_lp_on_small_nets(fc_net, seed):
    net = fc_net((4, 12, 12, 3), seed=seed)
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-1, 1, 4)
    xl, xu = centre - 1.0, centre + 1.0
    _, enc = encode(net.path, xl, xu)
    C, d = np.array([[1.0, -1.0, 0.0]]), np.zeros(1)
    m, raw, res = _harvest(enc, C, d, 10)
    good, rep = validate(raw, enc, sample_inputs(enc, 2000, np.random.default_rng(0)))
    assert rep.rejected == 0
    _check_fresh(enc, good)
    if len(good):
        lp0 = solve_highs(m, relax=True).objective
        lp1 = solve_highs(m.with_rows(good.coeffs, np.full(len(good), -np.inf), good.rhs),
                          relax=True).objective
        assert lp1 >= lp0 - 1e-7
        assert lp1 <= res.primal + 1e-5  # never above the true optimum


def test_validation_rejects_a_wrong_cut(fc_net):
    net = fc_net((3, 6, 2), seed=4)
    xl, xu = -np.ones(3), np.ones(3)
    _, enc = encode(net.path, xl, xu)
    m = build_milp(enc, np.array([[1.0, -1.0]]), np.zeros(1))
    lay = m.layout
    # "y_0[0] <= 0" is false wherever neuron 0 is active; "x_0 <= 1" is true
    bogus = cuts_from_rows(lay, [(np.array([lay.offset("y", 0)]), np.array([1.0]), 0.0),
                                 (np.array([0]), np.array([1.0]), 1.0)])
    X = sample_inputs(enc, 500, np.random.default_rng(0))
    if not (enc.forward(X)[0][0][:, 0] > 1e-3).any():
        pytest.skip("neuron 0 never active in this box")
    good, rep = validate(bogus, enc, X)
    assert rep.rejected == 1 and len(good) == 1 and rep.worst_violation > 0


def test_cutset_npz_round_trip(tmp_path, fc_net):
    net = fc_net((3, 8, 8, 2), seed=5)
    _, enc = encode(net.path, -np.ones(3), np.ones(3))
    _, cs, _ = _harvest(enc, np.array([[1.0, -1.0]]), np.zeros(1), 5)
    cs = CutSet(cs.layout, cs.coeffs, cs.rhs, ("a", "b"), ((8,), (8,)))
    cs.save_npz(tmp_path / "c.npz")
    back = CutSet.load_npz(tmp_path / "c.npz")
    assert back.layout == cs.layout and back.layer_names == ("a", "b")
    assert back.layer_shapes == ((8,), (8,))
    assert np.allclose(back.coeffs.toarray(), cs.coeffs.toarray())
    assert np.allclose(back.rhs, cs.rhs)
    with np.load(tmp_path / "c.npz") as f:
        assert {"rhs", "x", "z_0", "y_0", "a_0", "z_1", "y_1", "a_1", "layer_names",
                "layer_shapes"} <= set(f.files)
        assert f["x"].shape == (len(cs), 3) and f["z_1"].shape == (len(cs), 8)


@pytest.mark.benchmarks
def test_acasxu_subbox_cuts_valid_and_raise_lp(bench_root):
    from planecut.vnnlib.parse import parse_spec

    bench = bench_root / "vnncomp2021" / "acasxu"
    spec = parse_spec(bench / "prop_2.vnnlib")
    r = spec.regions[0]
    mid, half = (r.lower + r.upper) / 2, (r.upper - r.lower) / 2
    xl, xu = mid - half / 4, mid + half / 4  # a sub-box, as BaB would see it
    _, enc = encode(bench / "ACASXU_run2a_1_2_batch_2000.onnx", xl, xu, method="crown")
    # a single spec row (output 0 minus output 1): objective in the MILP itself
    C = np.zeros((1, 5))
    C[0, 0], C[0, 1] = 1.0, -1.0
    m, raw, res = _harvest(enc, C, np.zeros(1), 6)
    assert len(raw) > 10
    good, rep = validate(raw, enc, sample_inputs(enc, 2000, np.random.default_rng(0)))
    _check_fresh(enc, good)
    assert rep.rejected <= len(raw) // 100  # SCIP's cuts are almost always right
    lp0 = solve_highs(m, relax=True).objective
    lp1 = solve_highs(m.with_rows(good.coeffs, np.full(len(good), -np.inf), good.rhs),
                      relax=True).objective
    assert lp1 > lp0 + 1e-3 * (1 + abs(lp0))
    if res.x is not None:  # never above a feasible (real) objective value
        assert lp1 <= res.primal + 1e-6 * (1 + abs(res.primal))
