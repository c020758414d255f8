"""compute_bounds' contract: shapes, dtypes, devices, deadlines, given bounds, warm starts."""

from __future__ import annotations

import time

import pytest
import torch

from planecut.errors import DeadlineExceeded
from planecut.verifier.bounds import AlphaOptions, compute_bounds, relu_layer_bounds
from planecut.verifier.graph.ir import Conv, Dense, Graph, Relu, Reshape

METHODS = ["ibp", "crown", "alpha-crown"]


def fc(seed: int, dims: list[int], dtype: torch.dtype = torch.float32) -> Graph:
    g = torch.Generator().manual_seed(seed)
    nodes, cur = [], "x"
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        w = torch.randn(b, a, generator=g, dtype=dtype) * 1.5 / a ** 0.5
        nodes.append(Dense(f"d{i}", (cur,), (b,), weight=w,
                           bias_=torch.randn(b, generator=g, dtype=dtype) * 0.3))
        cur = f"d{i}"
        if i < len(dims) - 2:
            nodes.append(Relu(f"r{i}", (cur,), (b,)))
            cur = f"r{i}"
    return Graph("x", (dims[0],), nodes, cur)


def small_conv(seed: int) -> Graph:
    g = torch.Generator().manual_seed(seed)
    return Graph("x", (3, 8, 8), [
        Conv("c1", ("x",), (4, 4, 4), weight=torch.randn(4, 3, 4, 4, generator=g) * 0.3,
             bias_=torch.randn(4, generator=g) * 0.1, stride=(2, 2), padding=(1, 1)),
        Relu("r1", ("c1",), (4, 4, 4)),
        Conv("c2", ("r1",), (8, 2, 2), weight=torch.randn(8, 4, 4, 4, generator=g) * 0.3,
             bias_=torch.randn(8, generator=g) * 0.1, stride=(2, 2), padding=(1, 1)),
        Relu("r2", ("c2",), (8, 2, 2)),
        Reshape("f", ("r2",), (32,)),
        Dense("d", ("f",), (10,), weight=torch.randn(10, 32, generator=g) * 0.3,
              bias_=torch.zeros(10)),
        Relu("r3", ("d",), (10,)),
        Dense("o", ("r3",), (3,), weight=torch.randn(3, 10, generator=g) * 0.3, bias_=None),
    ], "o")


def box(n: int, batch: int, eps: float, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(batch, n, generator=g, dtype=dtype)
    return c - eps, c + eps


@pytest.mark.parametrize("method", METHODS)
def test_deadline_in_the_past_raises(method: str) -> None:
    graph = fc(0, [4, 8, 3])
    xl, xu = box(4, 2, 0.5)
    with pytest.raises(DeadlineExceeded):
        compute_bounds(graph, xl, xu, None, method, deadline=time.monotonic() - 1.0)


@pytest.mark.parametrize("method", ["crown", "alpha-crown"])
def test_deadline_honoured_mid_computation(method: str) -> None:
    graph = fc(1, [50, 200, 200, 200, 200, 200, 10])
    xl, xu = box(50, 16, 1.0)
    opts = AlphaOptions(iterations=10_000, early_stop_patience=10_000)
    deadline = time.monotonic() + 0.2
    if method == "crown":  # CROWN alone may finish within 0.2 s: stop it a quarter of the way
        t = time.monotonic()
        compute_bounds(graph, xl, xu, None, method, chunk_elements=2**12)
        deadline = time.monotonic() + (time.monotonic() - t) / 4
    with pytest.raises(DeadlineExceeded):
        compute_bounds(graph, xl, xu, None, method, alpha=opts, deadline=deadline,
                       chunk_elements=2**12)
    # one autograd step of alpha-CROWN on this net takes ~1 s on a 2-core CPU and is not
    # interruptible; the CLI's watchdog is what guarantees the answer by the deadline
    assert time.monotonic() - deadline < 1.5


def test_shapes_and_spec_forms_agree() -> None:
    graph = fc(2, [5, 12, 12, 4])
    xl, xu = box(5, 3, 0.4)
    C = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    r2 = compute_bounds(graph, xl, xu, C, need_upper=True)
    r3 = compute_bounds(graph, xl, xu, C.expand(3, 2, 4), need_upper=True)
    assert r2.lower.shape == r2.upper.shape == (3, 2)
    torch.testing.assert_close(r2.lower, r3.lower)
    torch.testing.assert_close(r2.upper, r3.upper)
    neg = compute_bounds(graph, xl, xu, -C)
    torch.testing.assert_close(r2.upper, -neg.lower)
    ident = compute_bounds(graph, xl, xu, None)
    assert ident.lower.shape == (3, 4) and ident.upper is None
    conv = small_conv(3)
    cl, cu = box(3 * 8 * 8, 2, 0.05)
    flat = compute_bounds(conv, cl, cu, None, "crown")
    shaped = compute_bounds(conv, cl.view(2, 3, 8, 8), cu.view(2, 3, 8, 8), None, "crown")
    torch.testing.assert_close(flat.lower, shaped.lower)
    for name in ("r1", "r2", "r3"):
        assert flat.intermediate[name][0].shape == (2, *conv.node(name).shape)


def test_bad_arguments_raise() -> None:
    graph = fc(2, [5, 6, 4])
    xl, xu = box(5, 2, 0.4)
    with pytest.raises(ValueError):
        compute_bounds(graph, xl, xu, None, "zonotope")
    with pytest.raises(ValueError):
        compute_bounds(graph, xl, xu, torch.ones(2, 3))


def test_float64_inputs_with_float32_graph() -> None:
    graph = fc(4, [4, 10, 10, 3])
    xl, xu = box(4, 2, 0.3, dtype=torch.float64)
    for method in METHODS:
        r = compute_bounds(graph, xl, xu, None, method, need_upper=True)
        assert r.lower.dtype == torch.float64 and r.upper.dtype == torch.float64
        assert all(lo.dtype == torch.float64 for lo, _ in r.intermediate.values())
    assert graph.nodes[0].weight.dtype == torch.float32  # caller's graph untouched
    r32 = compute_bounds(graph, xl.float(), xu.float(), None, "crown")
    r64 = compute_bounds(graph, xl, xu, None, "crown")
    torch.testing.assert_close(r32.lower.double(), r64.lower, atol=1e-4, rtol=1e-4)


def test_first_layer_bounds_are_exact_ibp_and_within_ibp_later() -> None:
    graph = fc(5, [6, 16, 16, 3])
    xl, xu = box(6, 2, 0.5)
    ibp = compute_bounds(graph, xl, xu, None, "ibp")
    crown = compute_bounds(graph, xl, xu, None, "crown")
    torch.testing.assert_close(crown.intermediate["r0"][0], ibp.intermediate["r0"][0])
    torch.testing.assert_close(crown.intermediate["r0"][1], ibp.intermediate["r0"][1])
    lo, hi = crown.intermediate["r1"]
    assert (lo >= ibp.intermediate["r1"][0] - 1e-6).all()
    assert (hi <= ibp.intermediate["r1"][1] + 1e-6).all()
    assert (hi - lo).sum() < (ibp.intermediate["r1"][1] - ibp.intermediate["r1"][0]).sum()


def test_given_intermediate_bounds_replace_computed_ones() -> None:
    graph = fc(6, [4, 10, 10, 2], dtype=torch.float64)
    xl, xu = box(4, 2, 0.6, dtype=torch.float64)
    base = compute_bounds(graph, xl, xu, None, "crown")
    lo, hi = base.intermediate["r1"]
    unstable = ((lo < 0) & (hi > 0))[0].nonzero().squeeze(1)
    assert unstable.numel() > 0
    j = unstable[0]
    # a branch-and-bound split: neuron j of layer 1 inactive in domain 0, active in domain 1
    split_lo, split_hi = lo.clone(), hi.clone()
    split_hi[0, j] = 0.0
    split_lo[1, j] = 0.0
    for method in METHODS:
        r = compute_bounds(graph, xl, xu, None, method, intermediate={"r1": (split_lo, split_hi)})
        assert torch.equal(r.intermediate["r1"][0], split_lo)
        assert torch.equal(r.intermediate["r1"][1], split_hi)
    # looser given bounds are used as given, not intersected
    wide = (lo - 1.0, hi + 1.0)
    r = compute_bounds(graph, xl, xu, None, "crown", intermediate={"r1": wide})
    assert torch.equal(r.intermediate["r1"][0], wide[0])
    assert (r.lower <= base.lower + 1e-9).all()


def test_relu_layer_bounds_follow_relu_order() -> None:
    graph = fc(7, [3, 5, 6, 7, 2])
    xl, xu = box(3, 2, 0.5)
    r = compute_bounds(graph, xl, xu, None, "crown")
    layers = relu_layer_bounds(graph, r.intermediate)
    assert [lo.shape for lo, _ in layers] == [(2, 5), (2, 6), (2, 7)]


def test_chunked_rows_give_the_same_bounds() -> None:
    graph = small_conv(8).to(dtype=torch.float64)
    xl, xu = box(3 * 8 * 8, 2, 0.1, dtype=torch.float64)
    opts = AlphaOptions(iterations=5)
    for method in ("crown", "alpha-crown"):
        big = compute_bounds(graph, xl, xu, None, method, alpha=opts, need_upper=True)
        small = compute_bounds(graph, xl, xu, None, method, alpha=opts, need_upper=True,
                               chunk_elements=4000)
        torch.testing.assert_close(big.lower, small.lower)
        torch.testing.assert_close(big.upper, small.upper)
        for name in big.intermediate:
            torch.testing.assert_close(big.intermediate[name][0], small.intermediate[name][0])


def test_alpha_warm_start_reproduces_the_optimised_bound() -> None:
    graph = fc(9, [4, 12, 12, 12, 3], dtype=torch.float64)
    xl, xu = box(4, 3, 0.5, dtype=torch.float64)
    C = torch.randn(3, 2, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    crown = compute_bounds(graph, xl, xu, C, "crown", need_upper=True)
    fixed = crown.intermediate
    opt = compute_bounds(graph, xl, xu, C, "alpha-crown", intermediate=fixed, need_upper=True,
                         alpha=AlphaOptions(iterations=30))
    assert (opt.lower > crown.lower + 1e-6).any()
    alphas = opt.alphas
    assert set(alphas) == {"r0", "r1", "r2"}
    assert alphas["r2"]["final"].shape == (3, 4, 12)  # K' = 2K rows with need_upper
    again = compute_bounds(graph, xl, xu, C, "alpha-crown", intermediate=fixed, need_upper=True,
                           alpha=AlphaOptions(iterations=0), alpha_init=alphas)
    torch.testing.assert_close(again.lower, opt.lower)
    torch.testing.assert_close(again.upper, opt.upper)
    # mismatched warm starts are ignored (default slopes: the CROWN bound)
    bad = {"r2": {"final": torch.zeros(3, 7, 12, dtype=torch.float64)}}
    cold = compute_bounds(graph, xl, xu, C, "alpha-crown", intermediate=fixed,
                          alpha=AlphaOptions(iterations=0), alpha_init=bad)
    torch.testing.assert_close(cold.lower, crown.lower)


def test_alpha_optimises_intermediate_bounds_within_budget_only() -> None:
    graph = fc(10, [4, 16, 16, 16, 3], dtype=torch.float64)
    xl, xu = box(4, 2, 0.8, dtype=torch.float64)
    crown = compute_bounds(graph, xl, xu, None, "crown")
    on = compute_bounds(graph, xl, xu, None, "alpha-crown", alpha=AlphaOptions(iterations=20))
    off = compute_bounds(graph, xl, xu, None, "alpha-crown",
                         alpha=AlphaOptions(iterations=20, intermediate_budget=0))
    width = {k: (r.intermediate["r2"][1] - r.intermediate["r2"][0]).sum().item()
             for k, r in (("crown", crown), ("on", on), ("off", off))}
    assert width["on"] < width["crown"] - 1e-3
    assert width["off"] == pytest.approx(width["crown"])
    assert "intermediate" in on.alphas["r0"] and on.alphas["r0"]["intermediate"]
    assert not off.alphas["r0"]["intermediate"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    graph = small_conv(11).to(dtype=torch.float64)
    xl, xu = box(3 * 8 * 8, 3, 0.1, dtype=torch.float64)
    opts = AlphaOptions(iterations=5)
    for method in METHODS:
        cpu = compute_bounds(graph, xl, xu, None, method, alpha=opts, need_upper=True)
        gpu = compute_bounds(graph, xl.cuda(), xu.cuda(), None, method, alpha=opts,
                             need_upper=True)
        assert gpu.lower.device.type == "cuda"
        torch.testing.assert_close(gpu.lower.cpu(), cpu.lower, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(gpu.upper.cpu(), cpu.upper, atol=1e-6, rtol=1e-6)
        for name, (lo, hi) in cpu.intermediate.items():
            torch.testing.assert_close(gpu.intermediate[name][0].cpu(), lo, atol=1e-6, rtol=1e-6)
