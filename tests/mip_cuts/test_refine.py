"""MIP bound refinement: refined bounds are sound, never looser, and exact given the time."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from planecut.mip_cuts.refine import RefinedBounds, refine_bounds, refine_order
from planecut.mip_cuts.worker import CutJob, CutWorker

from testnets import encode, exact_min


@pytest.mark.parametrize("backend", ["scip", "highs"])
def test_refined_bounds_are_the_exact_range_given_time(fc_net, backend):
    """With time to finish every solve, a refined bound is the neuron's true extreme over the
    box (enumeration of activation patterns), up to the relative margin; never looser than
    the CROWN bound it started from; and every execution stays inside."""
    net = fc_net((3, 5, 4, 3, 2), seed=7)
    xl, xu = -np.ones(3) * 1.5, np.ones(3) * 1.5
    _, enc = encode(net.path, xl, xu)
    seen: list[RefinedBounds] = []
    new = refine_bounds(enc, 60.0, solve_seconds=10.0, backend=backend, on_layer=seen.append)
    assert [rb.layer for rb in seen] == [k for k in range(1, len(enc.layers))
                                        if enc.layers[k].unstable.any()]
    X = xl + (xu - xl) * np.random.default_rng(0).random((5000, 3))
    zs, _, _ = new.forward(X)
    tightened = 0
    for k, (old, L, z) in enumerate(zip(enc.layers, new.layers, zs)):
        assert np.all(L.lower >= old.lower) and np.all(L.upper <= old.upper)
        assert np.all(z >= L.lower - 1e-9) and np.all(z <= L.upper + 1e-9)
        if k == 0:
            assert np.array_equal(L.lower, old.lower)  # exact already: never solved
            continue
        trunc = dataclasses.replace(net, ws=net.ws[:k + 1], bs=net.bs[:k + 1])
        for j in np.nonzero(old.unstable)[0]:
            e = np.zeros(L.size)
            e[j] = 1.0
            lo, hi = exact_min(trunc, xl, xu, e), -exact_min(trunc, xl, xu, -e)
            tol = 2e-5 * (1 + abs(lo)) + 1e-6
            assert lo - tol <= L.lower[j] <= lo + 1e-7, (k, j, lo, L.lower[j])
            if L.lower[j] < 0:  # the upper side is skipped once the neuron is stable
                assert hi - 1e-7 <= L.upper[j] <= hi + 2e-5 * (1 + abs(hi)) + 1e-6
            tightened += int(L.upper[j] - L.lower[j] < old.upper[j] - old.lower[j] - 1e-6)
    assert tightened > 0  # CROWN is not exact on this net: the MIP must have gained somewhere


def test_refine_respects_its_budget_and_order(fc_net):
    net = fc_net((4, 30, 30, 30, 2), seed=3)
    _, enc = encode(net.path, -np.ones(4) * 2, np.ones(4) * 2)
    L = enc.layers[1]
    order = refine_order(L.lower, L.upper)
    gap = -L.lower[order] * L.upper[order] / (L.upper[order] - L.lower[order])
    assert np.all(np.diff(gap) <= 0) and np.all(L.unstable[order])
    t = time.monotonic()
    refine_bounds(enc, 1.0, solve_seconds=0.3)
    assert time.monotonic() - t < 3.0  # one solve past the budget at most, plus model builds
    stopped = refine_bounds(enc, 30.0, should_stop=lambda: True)
    assert all(np.array_equal(a.lower, b.lower) for a, b in zip(stopped.layers, enc.layers))


def test_worker_streams_refined_bounds_before_cuts(fc_net):
    net = fc_net((3, 8, 8, 8, 2), seed=5)
    xl, xu = -np.ones(3) * 1.5, np.ones(3) * 1.5
    _, enc = encode(net.path, xl, xu)
    job = CutJob(enc, [(np.array([[1.0, -1.0]]), np.array([-50.0]))], time_limit=20.0,
                 samples=300, refine_s=5.0, refine_solve_s=1.0)
    w = CutWorker().start(job)
    try:
        end = time.monotonic() + 30
        while not w.done and w.error is None and time.monotonic() < end:
            w.poll(timeout=0.2)
    finally:
        w.stop()
    assert w.error is None and w.done
    assert w.refined and all(rb.layer >= 1 for rb in w.refined)
    assert w.stats["refined_neurons"] == sum(rb.solved for rb in w.refined)
    X = xl + (xu - xl) * np.random.default_rng(1).random((3000, 3))
    zs, _, _ = enc.forward(X)
    for rb in w.refined:
        z = zs[rb.layer]
        assert np.all(z >= rb.lower - 1e-9) and np.all(z <= rb.upper + 1e-9)


def test_one_scip_model_minimises_objective_after_objective(fc_net):
    """ScipObjectives re-solves one model for new objectives: each bound is the exact
    minimum (enumeration) when the solve has time, whatever objective came before."""
    from planecut.mip_cuts.backends.scip import ScipObjectives
    from planecut.mip_cuts.milp import build_milp, row_objective
    from planecut.mip_cuts.refine import truncated

    net = fc_net((3, 6, 5, 2), seed=11)
    xl, xu = -np.ones(3) * 1.5, np.ones(3) * 1.5
    _, enc = encode(net.path, xl, xu)
    tr = truncated(enc, 1)  # the net up to the second ReLU layer's input
    base = build_milp(tr, np.zeros((1, 5)), np.zeros(1))
    model = ScipObjectives(base)
    trunc = dataclasses.replace(net, ws=net.ws[:2], bs=net.bs[:2])
    rng = np.random.default_rng(2)
    for _ in range(6):
        c = rng.normal(size=5)
        obj, const = row_objective(tr, base.layout, c, 0.0)
        got = model.minimise(np.pad(obj, (0, base.n_vars - obj.size)), const, 10.0)
        want = exact_min(trunc, xl, xu, c)
        assert abs(got - want) <= 1e-5 * (1 + abs(want)), (got, want)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_long_layer_reports_what_it_has_so_far(fc_net, threads):
    """With ``flush_seconds=0`` a layer reports after each neuron that improved: several
    reports per layer, each sound on sampled executions, their counts adding up; the same
    with two solver threads sharing the layer's neurons."""
    net = fc_net((3, 12, 12, 2), seed=4)
    xl, xu = -np.ones(3) * 2, np.ones(3) * 2
    _, enc = encode(net.path, xl, xu)
    seen: list[RefinedBounds] = []
    new = refine_bounds(enc, 30.0, solve_seconds=5.0, flush_seconds=0.0, on_layer=seen.append,
                        threads=threads)
    assert len(seen) > len({rb.layer for rb in seen})  # some layer reported more than once
    assert sum(rb.solved for rb in seen) == sum(
        int(np.count_nonzero(L.unstable)) for L in enc.layers[1:])
    zs, _, _ = enc.forward(xl + (xu - xl) * np.random.default_rng(3).random((4000, 3)))
    for rb in seen:
        assert np.all(zs[rb.layer] >= rb.lower - 1e-9) and np.all(zs[rb.layer] <= rb.upper + 1e-9)
    last = {rb.layer: rb for rb in seen}
    for k, rb in last.items():
        assert np.array_equal(rb.lower, new.layers[k].lower)
