"""Branching heuristics: the BaBSR score by hand, candidates only among unstable unsplit
neurons, filtered smart branching's choice, and several distinct neurons per domain."""

from __future__ import annotations

import pytest
import torch

from planecut.verifier.bab.branching import (
    BranchScores,
    babsr_choice,
    babsr_scores,
    choose_neurons,
    fsb_choice,
    preactivation_bias,
)
from planecut.verifier.bab.domains import NeuronLayout
from planecut.verifier.graph.ir import Conv, Dense, Graph, Relu, Reshape

NEG = float("-inf")


def test_babsr_score_by_hand() -> None:
    # one domain, one row; neuron 0: l=-1, u=3 (s = 3/4, intercept -s*l = 3/4), lambda=-2,
    # bias 0.5: intercept term -2*0.75 = -1.5; bias term max(-1*(-1/4), -1*(3/4)) = 0.25
    lower = torch.tensor([[-1.0, -1.0, 0.5]])
    upper = torch.tensor([[3.0, 1.0, 2.0]])
    cand = torch.tensor([[True, True, False]])
    lam = torch.tensor([[[-2.0, 4.0, 1.0]]])
    bias = torch.tensor([0.5, -1.0, 0.0])
    sc = babsr_scores(lower, upper, cand, lam, bias, torch.ones(1, 1))
    assert sc.babsr[0, 0].item() == pytest.approx(1.25)
    assert sc.intercept[0, 0].item() == pytest.approx(1.5)
    # neuron 1: s = 1/2, lambda > 0: no intercept; bias term max(-4*(-1/2), -4*(1/2)) = 2
    assert sc.babsr[0, 1].item() == pytest.approx(2.0)
    assert sc.intercept[0, 1].item() == pytest.approx(0.0)
    assert sc.babsr[0, 2].item() == NEG and sc.intercept[0, 2].item() == NEG


def test_rows_of_proven_disjuncts_do_not_count() -> None:
    lower = torch.tensor([[-1.0, -1.0]])
    upper = torch.tensor([[1.0, 1.0]])
    cand = torch.ones(1, 2, dtype=torch.bool)
    lam = torch.tensor([[[-1.0, 0.0], [0.0, -5.0]]])  # row 0 likes neuron 0, row 1 neuron 1
    bias = torch.zeros(2)
    both = babsr_scores(lower, upper, cand, lam, bias, torch.ones(1, 2))
    assert babsr_choice(both, 1).item() == 1
    only_row0 = babsr_scores(lower, upper, cand, lam, bias, torch.tensor([[1.0, 0.0]]))
    assert babsr_choice(only_row0, 1).item() == 0


def scores(babsr: list[list[float]], intercept: list[list[float]]) -> BranchScores:
    b = torch.tensor(babsr)
    i = torch.tensor(intercept)
    return BranchScores(b, i, b > NEG)


def test_babsr_choice_falls_back_to_the_intercept_score() -> None:
    sc = scores([[0.0, 0.0, NEG, 0.0], [0.1, 0.3, 0.2, NEG]],
                [[0.1, 0.7, NEG, 0.2], [0.5, 0.0, 0.0, NEG]])
    assert babsr_choice(sc, 1).flatten().tolist() == [1, 1]
    assert babsr_choice(sc, 2).tolist() == [[1, 3], [1, 2]]


def test_fsb_keeps_the_candidate_with_the_best_worse_child() -> None:
    sc = scores([[5.0, 4.0, 3.0, 2.0, 1.0, NEG]], [[0.0, 0.0, 0.0, 0.0, 9.0, NEG]])
    seen = {}

    def evaluate(cands: torch.Tensor) -> torch.Tensor:
        seen["cands"] = cands.clone()
        # child margins per candidate neuron: neuron 2's worse child is best
        table = {0: (-1.0, 5.0), 1: (-2.0, -0.5), 2: (-0.1, 0.2), 3: (-3.0, 1.0),
                 4: (-0.5, -0.4), 5: (9.0, 9.0)}
        return torch.tensor([[table[int(c)] for c in row] for row in cands])

    choice = fsb_choice(sc, 1, 2, evaluate)
    assert seen["cands"][0, :3].tolist() == [0, 1, 4]
    # top-2 BaBSR (0, 1) and top-2 intercept (4, then a tie at 0): neuron 4's worse child
    # (-0.4) beats neuron 0's (-1.0) and 1's (-2.0)
    assert choice.tolist() == [[4]]
    choice3 = fsb_choice(sc, 3, 2, evaluate)
    assert choice3.tolist() == [[4, 0, 1]]  # FSB order, then BaBSR order; distinct


def test_fsb_never_picks_an_invalid_candidate() -> None:
    sc = scores([[1.0, NEG, NEG]], [[0.5, NEG, NEG]])

    def evaluate(cands: torch.Tensor) -> torch.Tensor:  # invalid ones look perfect
        good = torch.where(cands == 0, -1.0, 100.0)
        return torch.stack([good, good], dim=2)

    assert fsb_choice(sc, 1, 3, evaluate).tolist() == [[0]]


def test_choose_neurons_gives_distinct_candidates() -> None:
    g = torch.Generator().manual_seed(0)
    b = torch.rand(6, 20, generator=g)
    b[:, ::3] = NEG  # not candidates
    sc = BranchScores(b, torch.rand(6, 20, generator=g).masked_fill(b == NEG, NEG), b > NEG)

    def evaluate(cands: torch.Tensor) -> torch.Tensor:
        return torch.rand(*cands.shape, 2, generator=g)

    for method in ("fsb", "babsr"):
        ch = choose_neurons(method, sc, 4, fsb_candidates=3, evaluate=evaluate)
        assert ch.shape == (6, 4)
        for row, picks in enumerate(ch.tolist()):
            assert len(set(picks)) == 4 and all(sc.candidate[row, p] for p in picks)
    with pytest.raises(ValueError):
        choose_neurons("random", sc, 1)


def test_preactivation_bias_per_compact_neuron() -> None:
    conv_b = torch.tensor([0.5, -1.0])
    dense_b = torch.tensor([1.0, 2.0, 3.0])
    graph = Graph("x", (1, 2, 2), [
        Conv("c", ("x",), (2, 2, 2), weight=torch.ones(2, 1, 1, 1), bias_=conv_b),
        Relu("r0", ("c",), (2, 2, 2)),
        Reshape("f", ("r0",), (8,)),
        Dense("d", ("f",), (3,), weight=torch.ones(3, 8), bias_=dense_b),
        Relu("r1", ("d",), (3,)),
        Dense("o", ("r1",), (1,), weight=torch.ones(1, 3), bias_=None),
    ], "o")
    lo0 = -torch.ones(1, 8)
    lo0[0, :3] = 1.0  # positions 3..7 unstable: channel 0 at 3, channel 1 at 4..7
    root = {"r0": (lo0, torch.ones(1, 8)), "r1": (torch.tensor([[-1.0, 1.0, -1.0]]),
                                                  torch.ones(1, 3))}
    lay = NeuronLayout.from_root(graph, root, 1)
    bias = preactivation_bias(graph, lay, torch.zeros(1))
    assert bias.tolist() == [0.5, -1.0, -1.0, -1.0, -1.0, 1.0, 3.0]
