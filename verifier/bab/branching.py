"""Which ReLUs to split: BaBSR scores and filtered smart branching (FSB).

Everything works on the compact neuron coordinates of :mod:`.domains` (the root-unstable
neurons of all layers, concatenated); a neuron is a *candidate* in a domain when it is
unstable there (``l < 0 < u``) and not split yet.

**BaBSR** (Bunel et al., JMLR 2020) estimates from the final bound's backward pass how much
splitting neuron ``j`` would move the bound. Let ``λ`` be the coefficient the bound puts on the
ReLU output ``y_j``, ``b_j`` the bias of the affine node producing ``z_j``, ``s = u/(u − l)`` the
chord slope and ``−s·l`` its intercept. The relaxation pays two terms at ``j``:

* the intercept ``min(λ, 0)·(−s·l) <= 0`` of the upper relaxation, which vanishes in both
  children (``intercept score``);
* the bias passes through the relaxed slope: ``λ·s·b``; in the active child the slope becomes
  1 (change ``λ·b·(1 − s)``), in the inactive one 0 (change ``−λ·s·b``); the estimate keeps the
  larger of ``λ·b·(s − 1)`` and ``λ·b·s``.

The score is ``|bias term + intercept term|``, averaged over the spec rows that still matter
(rows of unproven disjuncts); larger is better.

**FSB** (De Palma et al. 2021) filters: per domain take the top-``k`` neurons by BaBSR score and
the top-``k`` by intercept score, bound both children of each of these ``2k`` candidates with one
cheap pass (intermediate bounds fixed, the parent's slopes and multipliers, no optimisation),
and keep the candidate whose *worse* child has the best proof margin.

**Several splits per domain.** When the store holds too few domains to fill a batch, each
domain is split on ``s`` neurons at once (``2^s`` children): the first ``s`` distinct
candidates in order of FSB value, then BaBSR score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from planecut.verifier.bab.domains import NeuronLayout
from planecut.verifier.graph.ir import Graph, LinearNode

Tensor = torch.Tensor
NEG = float("-inf")
# below this (absolute) BaBSR score a domain's ranking is uninformative: use the intercept
UNINFORMATIVE = 1e-8


@dataclass
class BranchScores:
    """Per-domain scores ``(B, M)``; ``-inf`` where the neuron is not a candidate."""

    babsr: Tensor
    intercept: Tensor  # ``−min(λ,0)·(−s·l)`` averaged over rows: >= 0, larger is better
    candidate: Tensor  # (B, M) bool


def preactivation_bias(graph: Graph, layout: NeuronLayout, like: Tensor) -> Tensor:
    """``(M,)`` the constant term of the affine node producing each compact neuron's input
    (zero when that node is not affine or has no bias)."""
    parts = []
    for l, name in enumerate(layout.names):
        src = graph.node(graph.node(name).inputs[0])
        shape = layout.shapes[l]
        bias = src.bias if isinstance(src, LinearNode) else None
        if bias is None:
            full = like.new_zeros(shape)
        else:
            full = bias.to(like).expand(shape) if bias.dim() <= len(shape) else \
                like.new_zeros(shape)
        parts.append(full.reshape(-1)[layout.index[l]])
    return torch.cat(parts) if parts else like.new_zeros(0)


def babsr_scores(lower: Tensor, upper: Tensor, candidate: Tensor, lam_out: Tensor,
                 bias: Tensor, row_weight: Tensor) -> BranchScores:
    """BaBSR and intercept scores (see the module doc).

    ``lower``/``upper``/``candidate`` ``(B, M)``; ``lam_out`` ``(B, K, M)`` coefficients on the
    ReLU outputs; ``bias`` ``(M,)``; ``row_weight`` ``(B, K)`` (1 for rows that matter).
    """
    lo = lower.clamp(max=0)
    hi = upper.clamp(min=0)
    denom = torch.where(candidate, hi - lo, torch.ones_like(hi))
    slope = (hi / denom).unsqueeze(1)  # (B, 1, M)
    icpt = (-lo * hi / denom).unsqueeze(1)  # −s·l >= 0
    lam = lam_out.to(lower.dtype)
    intercept = lam.clamp(max=0) * icpt  # <= 0
    lb = lam * bias.view(1, 1, -1)
    bias_term = torch.maximum(lb * (slope - 1), lb * slope)
    w = row_weight.to(lower.dtype)
    w = w / w.sum(dim=1, keepdim=True).clamp(min=1)
    score = torch.einsum("bkm,bk->bm", (bias_term + intercept).abs(), w)
    icp = torch.einsum("bkm,bk->bm", -intercept, w)
    return BranchScores(score.masked_fill(~candidate, NEG), icp.masked_fill(~candidate, NEG),
                        candidate)


def _ranking_key(scores: BranchScores) -> Tensor:
    """BaBSR score, or the intercept score for domains where BaBSR is uninformative."""
    best = scores.babsr.amax(dim=1, keepdim=True)
    return torch.where(best > UNINFORMATIVE, scores.babsr, scores.intercept)


def _first_distinct(ids: Tensor, valid: Tensor, s: int) -> Tensor:
    """Per row the first ``s`` valid, distinct entries of ``ids`` ``(B, P)`` (in order).
    Every row must have at least ``s`` of them."""
    P = ids.shape[1]
    same = ids.unsqueeze(2) == ids.unsqueeze(1)  # (B, P, P)
    earlier = torch.ones(P, P, dtype=torch.bool, device=ids.device).tril(-1)
    dup = (same & earlier).any(dim=2)
    ok = valid & ~dup
    pos = torch.arange(P, device=ids.device).expand_as(ids)
    key = torch.where(ok, pos, pos + P)
    order = key.argsort(dim=1)[:, :s]
    return ids.gather(1, order)


def babsr_choice(scores: BranchScores, s: int) -> Tensor:
    """``(B, s)`` neurons with the highest BaBSR score (intercept score as fallback)."""
    return _ranking_key(scores).topk(s, dim=1).indices


Evaluate = Callable[[Tensor], Tensor]


def fsb_choice(scores: BranchScores, s: int, k: int, evaluate: Evaluate) -> Tensor:
    """``(B, s)`` neurons by filtered smart branching.

    ``evaluate(cands)`` takes ``(B, C)`` candidate neurons and returns ``(B, C, 2)`` proof
    margins of the two children of each (``+inf`` for a child proven infeasible). The value of a
    candidate is the margin of its worse child; invalid candidates (not splittable) rank last.
    """
    M = scores.babsr.shape[1]
    k = max(1, min(k, M))
    top_s = scores.babsr.topk(k, dim=1)
    top_i = scores.intercept.topk(k, dim=1)
    cands = torch.cat([top_s.indices, top_i.indices], dim=1)  # (B, 2k)
    valid = torch.cat([top_s.values > NEG, top_i.values > NEG], dim=1)
    margins = evaluate(cands)  # (B, 2k, 2)
    value = margins.amin(dim=2).masked_fill(~valid, NEG)
    value = torch.nan_to_num(value, nan=NEG)
    # ties (e.g. both children proven): prefer the higher BaBSR score
    tie = _ranking_key(scores).gather(1, cands).masked_fill(~valid, NEG)
    order = _lexsort_desc(value, tie)
    ranked = cands.gather(1, order)
    ranked_valid = valid.gather(1, order)
    backup = babsr_choice(scores, min(s, M))
    ids = torch.cat([ranked, backup], dim=1)
    ok = torch.cat([ranked_valid, scores.candidate.gather(1, backup)], dim=1)
    return _first_distinct(ids, ok, s)


def _lexsort_desc(primary: Tensor, secondary: Tensor) -> Tensor:
    """Indices sorting each row by ``primary`` then ``secondary``, both descending."""
    order = torch.argsort(secondary, dim=1, descending=True, stable=True)
    p = primary.gather(1, order)
    order2 = torch.argsort(p, dim=1, descending=True, stable=True)
    return order.gather(1, order2)


def choose_neurons(method: str, scores: BranchScores, s: int, *, fsb_candidates: int = 3,
                   evaluate: Evaluate | None = None) -> Tensor:
    """``(B, s)`` compact neuron ids to split in each domain (``method``: ``fsb`` | ``babsr``).

    Every domain must have at least ``s`` candidates.
    """
    if method == "fsb" and evaluate is not None:
        return fsb_choice(scores, s, fsb_candidates, evaluate)
    if method not in ("fsb", "babsr"):
        raise ValueError(f"unknown branching method {method!r} (fsb, babsr)")
    return babsr_choice(scores, s)
