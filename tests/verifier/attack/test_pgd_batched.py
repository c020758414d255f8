"""The batched attack: many output rows, disjunctive specs, chunking, confirmation, deadline."""

import time

import numpy as np
import pytest
import torch

from planecut.errors import DeadlineExceeded
from planecut.verifier.attack.pgd import chunk_points, pgd_attack
from planecut.verifier.graph.ir import Dense, Graph, Relu
from planecut.verifier.spec_tensors import SpecTensors
from planecut.vnnlib.spec import Disjunct, InputRegion, Spec


def _net(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    nodes, prev = [], "x"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = torch.randn(b, a, generator=g) * 1.3 / a ** 0.5
        nodes.append(Dense(f"d{i}", (prev,), (b,), weight=w,
                           bias_=0.3 * torch.randn(b, generator=g)))
        prev = f"d{i}"
        if i < len(sizes) - 2:
            nodes.append(Relu(f"r{i}", (prev,), (b,)))
            prev = f"r{i}"
    return Graph("x", (sizes[0],), nodes, prev)


def _planted(graph, lo, hi, n_disjuncts, rows, slack, seed=0):
    """Disjuncts of ``rows`` rows over random outputs: one holds near a planted input (each
    row within ``slack`` of the planted output), the others can never hold."""
    rng = np.random.default_rng(seed)
    n_out = graph.num_outputs
    x_star = lo + rng.uniform(0.2, 0.8, size=lo.size) * (hi - lo)
    y_star = graph.forward(torch.tensor(x_star[None], dtype=torch.float32))[0].double().numpy()
    sample = lo + np.random.default_rng(seed + 1).uniform(size=(4000, lo.size)) * (hi - lo)
    y_min = graph.forward(torch.tensor(sample, dtype=torch.float32)).min(0).values.double()
    disjuncts, true_j = [], int(rng.integers(n_disjuncts))
    for j in range(n_disjuncts):
        outs = rng.choice(n_out, size=rows, replace=False)
        sign = rng.choice([-1.0, 1.0], size=rows)
        C = np.zeros((rows, n_out))
        C[np.arange(rows), outs] = sign
        if j == true_j:  # sign * y_k <= sign * y*_k + slack
            d = sign * y_star[outs] + slack
        else:  # y_k <= (far below anything reachable)
            C[:, outs] = 0
            C[np.arange(rows), outs] = 1.0
            d = y_min.numpy()[outs] - 1e3
        disjuncts.append(Disjunct(C, d))
    region = InputRegion(lo, hi, tuple(disjuncts))
    return Spec(regions=(region,), num_inputs=lo.size, num_outputs=n_out)


def _violates(spec, graph, x, region):
    reg = spec.regions[int(region)]
    y = graph.forward(x[None].float())[0].double().numpy()
    xs = x.double().numpy()
    inside = np.all(xs >= reg.lower) and np.all(xs <= reg.upper)
    return inside and any(np.all(dj.C @ y <= dj.d) for dj in reg.disjuncts)


def test_planted_counterexample_among_many_rows_and_disjuncts_is_found():
    graph = _net((20, 40, 40, 300))
    lo, hi = -np.ones(20), np.ones(20)
    spec = _planted(graph, lo, hi, n_disjuncts=15, rows=20, slack=0.01)
    st = SpecTensors.from_spec(spec)
    assert st.C.shape[1] == 300  # 15 disjuncts x 20 rows
    # not trivial: random inputs do not violate it
    xs = torch.tensor(lo + np.random.default_rng(5).uniform(size=(2000, 20)) * 2,
                      dtype=torch.float32)
    assert not any(_violates(spec, graph, x, 0) for x in xs[:200])
    out = pgd_attack(graph, st, restarts=40, steps=200,
                     generator=torch.Generator().manual_seed(0))
    assert out.best_margin <= 0
    assert _violates(spec, graph, out.x[0], out.region[0])


def test_small_chunks_still_find_it_and_cover_every_point():
    graph = _net((20, 40, 40, 300))
    lo, hi = -np.ones(20), np.ones(20)
    spec = _planted(graph, lo, hi, n_disjuncts=15, rows=20, slack=0.01)
    st = SpecTensors.from_spec(spec)
    # room for 3 points per chunk: 14 chunks of restarts, found in one of them
    per_point = 4 * 20 + 2 * (40 * 2 + 40 + 300) + 2 * 300
    out = pgd_attack(graph, st, restarts=40, steps=200, max_elements=3 * per_point,
                     generator=torch.Generator().manual_seed(0))
    assert out.best_margin <= 0 and _violates(spec, graph, out.x[0], out.region[0])
    # without stopping every point runs once
    out = pgd_attack(graph, st, restarts=10, steps=3, max_elements=3 * per_point,
                     stop_on_violation=False, top=1000)
    assert out.points == 10 and out.x.shape[0] == 10


@pytest.mark.parametrize("slots,regions,per_point,cap", [
    (50, 1, 10, 100), (50, 3, 10, 100), (7, 40, 10, 100), (5, 4, 10, 1), (1, 1, 10, 10 ** 9)])
def test_chunks_cover_the_grid_once(slots, regions, per_point, cap):
    seen = np.zeros((slots, regions), dtype=int)
    for s0, s1, r0, r1 in chunk_points(slots, regions, per_point, cap):
        assert (s1 - s0) * (r1 - r0) <= max(1, cap // per_point)
        seen[s0:s1, r0:r1] += 1
    assert np.all(seen == 1)


def test_points_never_leave_their_box():
    graph = _net((6, 30, 30, 12), seed=3)
    rng = np.random.default_rng(0)
    regions = []
    for r in range(4):
        lo = rng.uniform(-2, 0, size=6)
        hi = lo + rng.uniform(0, 1.5, size=6)
        hi[r] = lo[r]  # a fixed input
        C = rng.normal(size=(3, 12))
        regions.append(InputRegion(lo, hi, (Disjunct(C, np.full(3, -50.0)),
                                            Disjunct(C[:1], np.array([-60.0])))))
    spec = Spec(regions=tuple(regions), num_inputs=6, num_outputs=12)
    st = SpecTensors.from_spec(spec)
    out = pgd_attack(graph, st, restarts=16, steps=40,
                     step_size=2.0, top=10 ** 6, stop_on_violation=False,
                     generator=torch.Generator().manual_seed(1),
                     extra_starts=torch.full((3, 6), 100.0))
    assert out.x.shape[0] == 4 * 16
    # inside the box as the attack holds it (float32; the onnxruntime check snaps the point
    # into the exact box, see test_onnx_check)
    assert torch.all(out.x >= st.lower[out.region]) and torch.all(out.x <= st.upper[out.region])
    fixed = torch.arange(4)[out.region]
    assert torch.all(out.x[torch.arange(64), fixed] == st.lower[out.region, fixed])


def test_rejected_candidates_keep_the_search_going_until_one_is_confirmed():
    graph = _net((4, 20, 20, 3))
    lo, hi = -np.ones(4), np.ones(4)
    y = graph.forward(torch.rand(5000, 4) * 2 - 1)
    thr = float(torch.quantile(y[:, 0], 0.3))
    spec = Spec(regions=(InputRegion(lo, hi, (Disjunct(np.array([[1.0, 0, 0]]),
                                                       np.array([thr])),)),),
                num_inputs=4, num_outputs=3)
    calls = []

    def confirm(x, region):
        calls.append(x.shape[0])
        return None if len(calls) < 3 else ("cex", x[0])

    out = pgd_attack(graph, SpecTensors.from_spec(spec), restarts=8, steps=100,
                     confirm=confirm, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 3 and out.rejected == calls[0] + calls[1]
    assert out.counterexample[0] == "cex"
    assert float(graph.forward(out.counterexample[1][None])[0, 0]) < thr


def test_nothing_confirmed_returns_no_counterexample():
    graph = _net((4, 20, 20, 3))
    spec = Spec(regions=(InputRegion(-np.ones(4), np.ones(4),
                                     (Disjunct(np.array([[1.0, 0, 0]]), np.array([1e9])),)),),
                num_inputs=4, num_outputs=3)
    out = pgd_attack(graph, SpecTensors.from_spec(spec), restarts=4, steps=10,
                     confirm=lambda x, r: None)
    assert out.counterexample is None and out.best_margin <= 0 and out.rejected > 0


def test_deadline_reached_during_the_search():
    graph = _net((20, 40, 40, 300))
    lo, hi = -np.ones(20), np.ones(20)
    # impossible: the attack would run all its steps
    spec = Spec(regions=(InputRegion(lo, hi, (Disjunct(np.eye(300)[:5], np.full(5, -1e6)),)),),
                num_inputs=20, num_outputs=300)
    with pytest.raises(DeadlineExceeded):
        pgd_attack(graph, SpecTensors.from_spec(spec), restarts=64, steps=10 ** 7,
                   deadline=time.monotonic() + 0.3)


def test_verify_reports_sat_only_with_what_onnxruntime_confirms(tmp_path):
    """A full ``verify`` on a gzipped model with a disjunctive many-row property: the attack's
    counterexample is in the box and violates the property when onnxruntime, run here on the
    original file, evaluates it."""
    import gzip

    import onnxruntime as ort
    from testnets import make_fc

    from planecut.verifier.api import verify
    from planecut.vnnlib.parse import parse_spec

    net = make_fc(tmp_path / "fc.onnx", [24, 40, 40, 60], seed=4)
    model = tmp_path / "fc.onnx.gz"
    model.write_bytes(gzip.compress(net.path.read_bytes()))
    rng = np.random.default_rng(0)
    lo, hi = -np.ones(24), np.ones(24)
    y_star = net.forward(rng.uniform(-0.6, 0.6, size=24))[0]
    y_min = net.forward(rng.uniform(-1, 1, size=(4000, 24))).min(axis=0)
    lines = [f"(declare-const X_{i} Real)" for i in range(24)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(60)]
    for i in range(24):
        lines += [f"(assert (>= X_{i} {lo[i]}))", f"(assert (<= X_{i} {hi[i]}))"]
    disjuncts = []
    for j in range(8):
        outs = rng.choice(60, size=10, replace=False)
        if j == 5:  # holds near the planted point
            rows = [f"(<= Y_{k} {float(y_star[k]) + 0.02!r})" if up
                    else f"(>= Y_{k} {float(y_star[k]) - 0.02!r})"
                    for k, up in zip(outs, rng.integers(0, 2, size=10))]
        else:  # never holds
            rows = [f"(<= Y_{k} {float(y_min[k]) - 100.0!r})" for k in outs]
        disjuncts.append("(and " + " ".join(rows) + ")")
    lines.append("(assert (or " + " ".join(disjuncts) + "))")
    prop = tmp_path / "prop.vnnlib"
    prop.write_text("\n".join(lines) + "\n")

    result = verify(model, prop, timeout=60)
    assert result.verdict == "sat", result.message
    x = result.counterexample.x
    assert np.all(x >= lo) and np.all(x <= hi)
    sess = ort.InferenceSession(str(net.path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"X": x.astype(np.float32).reshape(1, 24)})
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    assert np.array_equal(y, result.counterexample.y)
    assert parse_spec(prop).is_violated_by(x, y)
    assert result.stats["attack_best_margin"] <= 0  # found by the attack
