import numpy as np
import torch

from planecut.verifier.attack.pgd import pgd_attack
from planecut.verifier.graph.ir import Dense, Graph, Relu
from planecut.verifier.spec_tensors import SpecTensors
from planecut.vnnlib.spec import Disjunct, InputRegion, Spec


def _net(seed=0, sizes=(4, 20, 20, 3)):
    g = torch.Generator().manual_seed(seed)
    nodes, prev = [], "x"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = torch.randn(b, a, generator=g) / a ** 0.5
        nodes.append(Dense(f"d{i}", (prev,), (b,), weight=w, bias_=torch.randn(b, generator=g)))
        prev = f"d{i}"
        if i < len(sizes) - 2:
            nodes.append(Relu(f"r{i}", (prev,), (b,)))
            prev = f"r{i}"
    return Graph("x", (sizes[0],), nodes, prev)


def _spec(C, d, lo, hi):
    return Spec(regions=(InputRegion(lo, hi, (Disjunct(C, d),)),), num_inputs=lo.size,
                num_outputs=C.shape[1])


def test_pgd_finds_a_violation_that_sampling_confirms_exists():
    graph = _net()
    lo, hi = -np.ones(4), np.ones(4)
    xs = torch.rand(20000, 4) * 2 - 1
    y = graph.forward(xs)
    # threshold: the 2nd smallest sampled y0, so a violating region exists but is small
    thr = float(torch.sort(y[:, 0]).values[1])
    spec = _spec(np.array([[1.0, 0, 0]]), np.array([thr]), lo, hi)
    out = pgd_attack(graph, SpecTensors.from_spec(spec), restarts=20, steps=100,
                     generator=torch.Generator().manual_seed(0))
    assert out.best_margin <= 0
    x = out.x[0]
    assert torch.all(x >= -1) and torch.all(x <= 1)
    assert float(graph.forward(x[None])[0, 0]) <= thr


def test_pgd_never_claims_violation_of_impossible_property():
    graph = _net(1)
    lo, hi = -np.ones(4), np.ones(4)
    # y0 <= (a value far below any reachable output) is impossible
    y = graph.forward(torch.rand(5000, 4) * 2 - 1)
    spec = _spec(np.array([[1.0, 0, 0]]), np.array([float(y[:, 0].min()) - 100]), lo, hi)
    out = pgd_attack(graph, SpecTensors.from_spec(spec), restarts=10, steps=30)
    assert out.best_margin > 0


def test_pgd_respects_deadline():
    import time

    import pytest

    from planecut.errors import DeadlineExceeded

    graph = _net()
    spec = _spec(np.array([[1.0, 0, 0]]), np.array([-1e9]), -np.ones(4), np.ones(4))
    with pytest.raises(DeadlineExceeded):
        pgd_attack(graph, SpecTensors.from_spec(spec), restarts=4, steps=1000,
                   deadline=time.monotonic() - 1)
