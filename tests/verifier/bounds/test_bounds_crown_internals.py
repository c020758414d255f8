"""White-box checks of the CROWN engine: row layout, chunking, graph plan facts."""

from __future__ import annotations

import torch

from planecut.verifier.bounds.crown import (
    BoundContext,
    backward_bound,
    crown_rows,
    intermediate_sweep,
    select_rows,
    tighten,
)
from planecut.verifier.bounds.alpha_crown import _track_stall
from planecut.verifier.bounds.plan import GraphPlan
from planecut.verifier.graph.ir import (
    Add,
    Dense,
    ElementwiseAffine,
    Graph,
    Relu,
    Reshape,
    Sigmoid,
    Slice,
)

D = torch.float64


def three_layer(seed: int = 0) -> Graph:
    g = torch.Generator().manual_seed(seed)

    def dense(name: str, src: str, n_out: int, n_in: int) -> Dense:
        return Dense(name, (src,), (n_out,), weight=torch.randn(n_out, n_in, generator=g, dtype=D),
                     bias_=torch.randn(n_out, generator=g, dtype=D) * 0.1)

    return Graph("x", (4,), [
        dense("d0", "x", 9, 4), Relu("r0", ("d0",), (9,)),
        dense("d1", "r0", 8, 9), Relu("r1", ("d1",), (8,)),
        dense("d2", "r1", 3, 8),
    ], "d2")


def setup(batch: int = 2, chunk: int = 2**26):
    graph = three_layer()
    g = torch.Generator().manual_seed(1)
    c = torch.randn(batch, 4, generator=g, dtype=D)
    ctx = BoundContext(GraphPlan(graph), c - 0.7, c + 0.7, chunk_elements=chunk)
    state = intermediate_sweep(ctx, {}, use_crown=True)
    return graph, ctx, state


def test_crown_rows_layout_lower_then_upper_rows_with_their_own_slopes() -> None:
    graph, ctx, state = setup()
    lo, hi = state.intermediate["r1"]
    rows = select_rows(graph.node("r1"), lo, hi)
    k = rows.numel()
    assert k > 1
    alpha = torch.zeros(2, 2 * k, 9, dtype=D)
    alpha[:, k:] = 1.0  # upper-bound rows use slope 1, lower-bound rows slope 0
    got_lo, got_hi = crown_rows(ctx, "d1", rows, {"r0": alpha})
    eye = torch.zeros(k, 8, dtype=D)
    eye[torch.arange(k), rows] = 1.0
    ref_lo = backward_bound(ctx, "d1", eye.unsqueeze(0), {"r0": torch.zeros(2, k, 9, dtype=D)})
    ref_hi = -backward_bound(ctx, "d1", -eye.unsqueeze(0), {"r0": torch.ones(2, k, 9, dtype=D)})
    torch.testing.assert_close(got_lo, ref_lo)
    torch.testing.assert_close(got_hi, ref_hi)
    # chunked (one row per chunk) gives the same
    small = BoundContext(ctx.plan, ctx.x_lower, ctx.x_upper, ctx.relaxations, chunk_elements=1)
    ch_lo, ch_hi = crown_rows(small, "d1", rows, {"r0": alpha})
    torch.testing.assert_close(ch_lo, got_lo)
    torch.testing.assert_close(ch_hi, got_hi)


def test_select_rows_is_the_batch_union_of_unstable_relus() -> None:
    node = Relu("r", ("z",), (2, 2))
    lo = torch.tensor([[[-1.0, 0.5], [-2.0, -1.0]], [[1.0, -0.5], [-2.0, 0.0]]])
    hi = torch.tensor([[[1.0, 0.7], [-1.0, 2.0]], [[2.0, 0.5], [-1.0, 1.0]]])
    assert select_rows(node, lo, hi).tolist() == [0, 1, 3]
    assert select_rows(Sigmoid("s", ("z",), (2, 2)), lo, hi).tolist() == [0, 1, 2, 3]


def test_plan_ancestry_and_ibp_exactness() -> None:
    w = torch.eye(3, dtype=D)
    graph = Graph("x", (3,), [
        ElementwiseAffine("n", ("x",), (3,), scale=torch.tensor([2.0, -1.0, 1.0]), shift=None),
        Dense("a", ("n",), (3,), weight=w, bias_=None),
        Slice("s", ("a",), (2,), axis=0, start=0, stop=2),
        Relu("r", ("s",), (2,)),
        Reshape("f", ("r",), (2,)),
        Dense("b", ("f",), (2,), weight=torch.eye(2, dtype=D), bias_=None),
        Dense("c", ("b",), (2,), weight=torch.eye(2, dtype=D), bias_=None),
        Add("sum", ("c", "s"), (2,)),
    ], "sum")
    plan = GraphPlan(graph)
    assert plan.ibp_is_exact("x") and plan.ibp_is_exact("n") and plan.ibp_is_exact("s")
    assert plan.ibp_is_exact("r")  # right after an elementwise monotone activation
    assert not plan.ibp_is_exact("c")  # two mixing maps after a nonlinearity
    assert not plan.ibp_is_exact("sum")
    assert plan.ancestors("b") == {"b", "f", "r", "s", "a", "n"}
    assert [n.name for n in plan.backward_order("sum")] == ["sum", "c", "b", "f", "r", "s", "a",
                                                          "n"]
    assert [r.name for r in plan.relus_on_path("b")] == ["r"]
    assert plan.relus_on_path("s") == []


def test_tighten_keeps_the_tighter_values_but_passes_the_new_gradient() -> None:
    """A new bound looser than the old one must still pass gradient to what produced it:
    otherwise one bad optimiser step stalls intermediate optimisation for good."""
    lo = torch.tensor([[0.0, 1.0]])
    hi = torch.tensor([[5.0, 6.0]])
    new_lo = torch.tensor([-1.0, 2.0], requires_grad=True)
    new_hi = torch.tensor([7.0, 4.0], requires_grad=True)
    out_lo, out_hi = tighten(lo, hi, torch.tensor([0, 1]), (new_lo.view(1, 2), new_hi.view(1, 2)))
    assert out_lo.tolist() == [[0.0, 2.0]] and out_hi.tolist() == [[5.0, 4.0]]
    (out_lo.sum() - out_hi.sum()).backward()
    assert new_lo.grad.tolist() == [1.0, 1.0] and new_hi.grad.tolist() == [-1.0, -1.0]


def test_track_stall_counts_the_first_iteration_as_progress() -> None:
    """From the initial −inf the first total is progress (−inf + inf was NaN, so every
    alpha-CROWN run with intermediate targets used to stop after ``patience`` iterations)."""
    best, stall = _track_stall(-5.0, -float("inf"), 0)
    assert (best, stall) == (-5.0, 0)
    assert _track_stall(-4.0, best, stall) == (-4.0, 0)
    assert _track_stall(-5.0, -4.0, 0) == (-4.0, 1)
