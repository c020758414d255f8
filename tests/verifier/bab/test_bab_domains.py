"""The activation-split domain store: compact layout round trips, push/pop order, growth and
the warm-start memory budget."""

from __future__ import annotations

import pytest
import torch

from planecut.verifier.bab.domains import DomainBatch, DomainStore, NeuronLayout
from planecut.verifier.graph.ir import Dense, Graph, Relu


def graph() -> Graph:
    return Graph("x", (2,), [
        Dense("d0", ("x",), (4,), weight=torch.randn(4, 2), bias_=torch.zeros(4)),
        Relu("r0", ("d0",), (4,)),
        Dense("d1", ("r0",), (3,), weight=torch.randn(3, 4), bias_=torch.zeros(3)),
        Relu("r1", ("d1",), (3,)),
        Dense("o", ("r1",), (2,), weight=torch.randn(2, 3), bias_=torch.zeros(2)),
    ], "o")


def root_bounds() -> dict:
    # region 0: r0 neurons 0, 2 unstable; region 1: neuron 3 unstable too; r1: neuron 1
    lo0 = torch.tensor([[-1.0, 0.5, -2.0, 1.0], [-1.0, 0.5, -2.0, -1.0]])
    hi0 = torch.tensor([[1.0, 2.0, 3.0, 2.0], [1.0, 2.0, 3.0, 1.0]])
    lo1 = torch.tensor([[-3.0, -1.0, 0.2], [-3.0, -1.0, 0.2]])
    hi1 = torch.tensor([[-1.0, 1.0, 0.75], [-1.0, 2.0, 0.75]])
    return {"r0": (lo0, hi0), "r1": (lo1, hi1)}


def test_layout_keeps_root_unstable_neurons_of_any_region() -> None:
    lay = NeuronLayout.from_root(graph(), root_bounds(), 2)
    assert [i.tolist() for i in lay.index] == [[0, 2, 3], [1]]
    assert lay.offsets == [0, 3, 4] and lay.num_compact == 4
    assert lay.layer_of.tolist() == [0, 0, 0, 1] and lay.flat_of.tolist() == [0, 2, 3, 1]
    lo, hi = lay.root_compact()
    assert lo.tolist() == [[-1.0, -2.0, 1.0, -1.0], [-1.0, -2.0, -1.0, -1.0]]


def test_full_tensors_round_trip() -> None:
    g = graph()
    lay = NeuronLayout.from_root(g, root_bounds(), 2)
    region = torch.tensor([1, 0, 1])
    lo, hi = lay.root_compact()
    lo, hi = lo[region].clone(), hi[region].clone()
    lo[0, 1] = 0.0  # a split neuron, clamped
    full = lay.full_bounds(lo, hi, region)
    assert full["r0"][0].shape == (3, 4)
    assert full["r0"][0][0].tolist() == [-1.0, 0.5, 0.0, -1.0]  # region 1's root elsewhere
    assert full["r1"][1][2].tolist() == [-1.0, 2.0, 0.75]
    splits = torch.zeros(3, 4, dtype=torch.int8)
    splits[0, 1], splits[2, 3] = 1, -1
    per_layer = lay.full_splits(splits)
    assert per_layer[0][0].tolist() == [0, 0, 1, 0] and per_layer[1][2].tolist() == [0, -1, 0]
    rows = torch.arange(3 * 2 * 4, dtype=torch.float32).view(3, 2, 4)
    full_rows = lay.full_rows(rows, torch.zeros(1))
    assert full_rows["r0"].shape == (3, 2, 4) and full_rows["r1"].shape == (3, 2, 3)
    back = lay.compact_rows(full_rows, 3, 2, torch.zeros(1))
    assert torch.equal(back, rows)
    # a missing layer takes the default
    default = torch.full((3, 4), 0.5)
    part = lay.compact_rows({"r0": full_rows["r0"]}, 3, 2, torch.zeros(1), default)
    assert (part[:, :, 3] == 0.5).all() and torch.equal(part[:, :, :3], rows[:, :, :3])


def batch(scores: list[float], M: int = 4, K: int = 2, warm: bool = True) -> DomainBatch:
    n = len(scores)
    s = torch.tensor(scores)
    return DomainBatch(
        lower=-torch.ones(n, M) * s[:, None], upper=torch.ones(n, M), splits=torch.zeros(
            n, M, dtype=torch.int8), row_lower=s[:, None].expand(n, K).clone(), score=s,
        region=torch.arange(n) % 2, depth=torch.zeros(n, dtype=torch.int32),
        alpha=torch.rand(n, K, M) if warm else None, beta=torch.rand(n, K, M) if warm else None)


def test_pop_returns_the_worst_first_and_keeps_the_rest() -> None:
    store = DomainStore()
    store.push(batch([0.25, -2.0, 1.0, -0.5]))
    store.push(batch([-1.0, 0.0]))
    assert len(store) == 6
    assert store.worst_score() == -2.0
    out = store.pop(3)
    assert out.score.tolist() == [-2.0, -1.0, -0.5]
    assert out.alpha.dtype == torch.float16 and out.lower.shape == (3, 4)
    assert (out.lower[:, 0] == -out.score).all()  # rows stay together
    assert sorted(store.scores().tolist()) == [0.0, 0.25, 1.0]
    rest = store.pop(10)
    assert rest.score.tolist() == [0.0, 0.25, 1.0]
    assert len(store) == 0 and store.worst_score() == float("inf")


def test_store_grows_by_doubling_and_reports_memory() -> None:
    store = DomainStore()
    for i in range(10):
        store.push(batch([float(j + 10 * i) for j in range(20)]))
    assert len(store) == 200 and store.capacity >= 200
    per = DomainStore.bytes_per_domain(batch([0.0]))
    assert store.memory_bytes() >= 200 * (per - 2 * 2 * 4 * 2)  # warm starts stored as fp16
    out = store.pop(5)
    assert out.score.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_warm_starts_are_dropped_past_the_budget() -> None:
    store = DomainStore(warm_start_budget=10 * DomainStore.bytes_per_domain(batch([0.0])))
    store.push(batch([1.0, 2.0]))
    assert store.keeps_warm_starts and store.pop(1).alpha is not None
    store.push(batch([float(i) for i in range(20)]))
    assert not store.keeps_warm_starts
    out = store.pop(3)
    assert out.alpha is None and out.beta is None
    store.push(batch([5.0]))  # later pushes with warm starts are accepted without them
    assert store.pop(100).alpha is None


def test_batches_concatenate_and_know_their_candidates() -> None:
    a, b = batch([1.0, 2.0]), batch([3.0], warm=False)
    both = DomainBatch.cat([a, b])
    assert len(both) == 3 and both.alpha is None
    both.splits[0, 1] = 1
    cand = both.unsplit_unstable()
    assert not cand[0, 1] and cand[0, 0]


@pytest.mark.parametrize("k", [0, 1, 7])
def test_pop_sizes(k: int) -> None:
    store = DomainStore()
    store.push(batch([0.5, 0.1, 0.3, 0.2]))
    out = store.pop(k)
    assert len(out) == min(k, 4) and len(store) == 4 - min(k, 4)


def test_refined_root_bounds_tighten_every_domain_and_drop_contradicted_ones() -> None:
    """Bounds that hold on the whole region (the MIP worker's refinement) are intersected into
    the root and every open domain; a domain whose split contradicts them has no input left
    and leaves the store."""
    g = graph()
    lay = NeuronLayout.from_root(g, root_bounds(), 2)
    lo, hi = lay.root_compact()
    region = torch.tensor([0, 0, 1])
    lo, hi = lo[region].clone(), hi[region].clone()
    splits = torch.zeros(3, 4, dtype=torch.int8)
    lo[1, 0], splits[1, 0] = 0.0, 1  # domain 1: r0 neuron 0 active (z >= 0)
    hi[2, 0], splits[2, 0] = 0.0, -1  # domain 2: r0 neuron 0 inactive (z <= 0)
    store = DomainStore()
    store.push(DomainBatch(lo, hi, splits, torch.zeros(3, 2), torch.tensor([-1.0, -2.0, -3.0]),
                           region, torch.zeros(3, dtype=torch.int32)))
    # refined layer r0: neuron 0 in [0.25, 0.9] (active everywhere), neuron 2 upper 1.5
    c_lo, c_hi = lay.tighten_layer(0, torch.tensor([0.25, 0.0, -5.0, -5.0]),
                                   torch.tensor([0.9, 9.0, 1.5, 9.0]))
    assert lay.root_lower[0][:, 0].tolist() == [0.25, 0.25]
    assert lay.root_lower[0][:, 1].tolist() == [0.5, 0.5]  # never loosened
    assert c_lo.shape == (2, 3) and c_hi[:, 1].tolist() == [1.5, 1.5]
    dropped = store.tighten(lay.layer_slice(0), c_lo, c_hi)
    assert dropped == 1 and len(store) == 2  # the inactive split contradicts z >= 0.25
    left = store.pop(2)
    assert sorted(left.score.tolist()) == [-2.0, -1.0]
    assert (left.lower[:, 0] == 0.25).all() and (left.upper[:, 0] == 0.9).all()
    assert (left.upper[:, 1] == 1.5).all()


def test_cut_multipliers_travel_with_domains_and_reset_with_the_cut_set() -> None:
    store = DomainStore()
    first = batch([-1.0, -2.0])
    store.push(first)  # before any cut: no multipliers held, none needed
    assert store.pop(1).mu is None
    store.push(first.take(torch.tensor([0])))
    mu_root = torch.tensor([[[0.5, 0.25, 0.0]] * 2])  # (R=1, K=2, m=3)
    store.reset_mu(mu_root)  # a new cut set: every open domain starts from the root's
    kids = batch([-3.0, -4.0])
    kids.mu = torch.full((2, 2, 3), 0.75)
    store.push(kids)
    other = batch([-5.0])
    other.mu = torch.ones(1, 2, 4)  # (computed for another cut set: not kept)
    store.push(other)
    got = store.pop(4)
    assert got.mu.dtype == torch.float16 and got.mu.shape == (4, 2, 3)
    by_score = {s: m for s, m in zip(got.score.tolist(), got.mu)}
    assert torch.equal(by_score[-3.0], torch.full((2, 3), 0.75, dtype=torch.float16))
    assert torch.equal(by_score[-1.0], mu_root[0].half())
    assert torch.equal(by_score[-5.0], torch.zeros(2, 3, dtype=torch.float16))


def test_select_rows_keeps_each_regions_rows_in_every_per_row_field() -> None:
    """Dropping spec rows between rounds: every open domain keeps the rows its region's
    ``order`` names, in row bounds and warm starts alike; the rest of a domain is untouched."""
    store = DomainStore()
    b = batch([-1.0, -2.0, -3.0], K=3)
    b.row_lower = torch.arange(9.0).view(3, 3)
    b.mu = torch.arange(18.0).view(3, 3, 2)
    store.push(b)
    order = torch.tensor([[2, 0], [1, 1]])  # region 0 keeps rows 2, 0; region 1 row 1 (+pad)
    store.select_rows(order)
    got = store.pop(3)
    assert got.row_lower.shape == (3, 2) and got.alpha.shape == (3, 2, 4)
    by_score = {float(s): i for i, s in enumerate(got.score)}
    for j, s in enumerate([-1.0, -2.0, -3.0]):  # regions 0, 1, 0
        i = by_score[s]
        rows = order[j % 2]
        assert torch.equal(got.row_lower[i], b.row_lower[j][rows])
        assert torch.equal(got.alpha[i], b.alpha[j][rows].half())
        assert torch.equal(got.mu[i], b.mu[j][rows].half())
        assert torch.equal(got.lower[i], b.lower[j])
    store.push(batch([-4.0], K=2))  # later pushes carry the new width
    assert store.pop(1).row_lower.shape == (1, 2)
