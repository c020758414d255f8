"""Branch and bound on the input box, for networks with few inputs (ACAS Xu: 5).

With a handful of input dimensions, halving the box is the most effective split: every
relaxation tightens as the box shrinks, and no ReLU bookkeeping is needed. Each round:

1. take the ``batch`` unproven boxes with the lowest proof margin (worst first, so that a
   counterexample, if any, tends to be met early);
2. halve each box along one dimension and bound all children in one batched call. The
   dimension comes from the box's own bound (``sb``, the default): CROWN's lower bound is
   linear in the input, ``Λ·x``, so halving dimension ``i`` can raise it by up to
   ``|Λ_i|·w_i/2`` — split where ``Σ_rows |Λ_ki|·w_i`` is largest. ``lookahead`` instead
   bounds the children along *every* dimension (``2·n`` per box) and keeps the dimension whose
   worse child is best: better splits for ``n`` times the bounding work;
3. drop proven children (every disjunct of the region has a row whose lower bound beats its
   threshold by the proof margin); evaluate the network at the kept children's centres and
   send points that violate the spec to ``confirm`` (onnxruntime) — a confirmed one is ``sat``;
4. every few rounds, run a short PGD on the worst boxes.

The search ends ``unsat`` when no box is left, ``sat`` on a confirmed counterexample,
``timeout`` at the deadline, ``unknown`` past ``max_domains`` boxes.
"""

from __future__ import annotations

import time

import torch

from planecut.errors import DeadlineExceeded, check_deadline
from planecut.verifier.bab.types import BabOutcome, BabProgress, Confirm, Progress
from planecut.verifier.config import BabConfig
from planecut.verifier.graph.ir import Graph
from planecut.verifier.spec_tensors import SpecTensors

Tensor = torch.Tensor
ATTACK_EVERY = 5  # rounds between PGD runs on the worst boxes


def _bound(graph: Graph, st: SpecTensors, method: str, deadline: float | None,
           margin: float, scores: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """(proof margin (N,), proven (N,), split scores (N, n) or None) of the boxes in ``st``."""
    from planecut.verifier.bounds import compute_bounds
    from planecut.verifier.bounds.types import AlphaOptions

    res = compute_bounds(graph, st.lower, st.upper, st.C, method=method,
                         alpha=AlphaOptions(iterations=5, lr=0.05), deadline=deadline,
                         return_coeffs=scores)
    score = None
    if scores:
        lam = res.coeffs.input  # (N, K, n): lower bound = Λ·x concretised over the box
        # padding rows (no disjunct) have zero coefficients and add nothing
        score = lam.abs().sum(dim=1) * (st.upper - st.lower)
    return (st.proof_margin(res.lower), st.proven_disjuncts(res.lower, margin).all(dim=1),
            score)


def _halves(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Children of every box along every dimension, ordered (box, dim, side):
    shapes (N·n·2, n)."""
    N, n = lo.shape
    mid = (lo + hi) / 2
    eye = torch.eye(n, dtype=torch.bool, device=lo.device)  # (dim, coord)
    lo_e = lo[:, None, None, :].expand(N, n, 2, n).clone()
    hi_e = hi[:, None, None, :].expand(N, n, 2, n).clone()
    mid_e = mid[:, None, :].expand(N, n, n)
    # side 0 keeps [lo, mid] on `dim`, side 1 keeps [mid, hi]
    hi_e[:, :, 0] = torch.where(eye, mid_e, hi_e[:, :, 0])
    lo_e[:, :, 1] = torch.where(eye, mid_e, lo_e[:, :, 1])
    return lo_e.reshape(-1, n), hi_e.reshape(-1, n)


def _halves_along(lo: Tensor, hi: Tensor, dim: Tensor) -> tuple[Tensor, Tensor]:
    """The two halves of each box along its own ``dim`` (N,): shapes (N·2, n), in order
    (box 0 lower half, box 0 upper half, box 1 ...)."""
    N, n = lo.shape
    mid = ((lo + hi) / 2).gather(1, dim[:, None])
    c_lo = lo.repeat_interleave(2, dim=0)
    c_hi = hi.repeat_interleave(2, dim=0)
    rows = torch.arange(N, device=lo.device) * 2
    d = dim.to(torch.long)
    c_hi[rows, d] = mid[:, 0]
    c_lo[rows + 1, d] = mid[:, 0]
    return c_lo, c_hi


def input_split_bab(graph: Graph, spec: SpecTensors, *, config: BabConfig,
                    deadline: float | None, confirm: Confirm, progress: Progress | None = None,
                    margin: float = 1e-5) -> BabOutcome:
    """Prove or falsify every region of ``spec`` by splitting input boxes (see module doc)."""
    t0 = time.monotonic()
    n = spec.lower.shape[1]
    method = config.input_split_method
    lookahead = config.input_branching == "lookahead"
    lo, hi = spec.lower.clone(), spec.upper.clone()
    rows = torch.arange(spec.num_regions, device=lo.device)  # which spec row each box is in
    visited, bound_time, rounds = 0, 0.0, 0
    last_report = t0
    per_round = max(1, config.batch_size // (2 * n if lookahead else 2))
    score = torch.full((spec.num_regions,), float("-inf"), dtype=lo.dtype, device=lo.device)
    dim_score = (hi - lo).clone()  # before any bound: split the widest side

    def outcome(verdict: str, cex=None, message: str = "") -> BabOutcome:
        worst = float(score.min()) if score.numel() else float("inf")
        return BabOutcome(verdict, cex, visited, time.monotonic() - t0, bound_time, worst,
                          message)

    try:
        while rows.numel():
            check_deadline(deadline)
            if rows.numel() > config.max_domains:
                return outcome("unknown", message=f"more than {config.max_domains} boxes")
            k = min(per_round, rows.numel())
            pick = torch.topk(score, k, largest=False).indices
            keep = torch.ones(rows.numel(), dtype=torch.bool, device=lo.device)
            keep[pick] = False
            p_lo, p_hi, p_rows, p_dims = lo[pick], hi[pick], rows[pick], dim_score[pick]
            lo, hi, rows, score = lo[keep], hi[keep], rows[keep], score[keep]
            dim_score = dim_score[keep]

            if lookahead:
                c_lo, c_hi = _halves(p_lo, p_hi)
                c_rows = p_rows.repeat_interleave(2 * n)
            else:
                c_lo, c_hi = _halves_along(p_lo, p_hi, torch.argmax(p_dims, dim=1))
                c_rows = p_rows.repeat_interleave(2)
            c_spec = spec.take(c_rows, c_lo, c_hi)
            t = time.monotonic()
            c_margin, c_proven, c_dims = _bound(graph, c_spec, method, deadline, margin,
                                                scores=not lookahead)
            bound_time += time.monotonic() - t
            visited += c_rows.numel()

            if lookahead:
                # per box, the dimension whose worse child is best (proven counts as +inf)
                eff = c_margin.masked_fill(c_proven, float("inf")).view(k, n, 2)
                worse = eff.min(dim=2).values
                # a side already (nearly) a point cannot help; among near-ties (e.g. both
                # children proven, or no dimension changes the bound: float noise must not
                # decide) take the side widest relative to the region's own width
                rel = (p_hi - p_lo) / (spec.upper[p_rows] - spec.lower[p_rows]).clamp(min=1e-30)
                worse = worse.masked_fill(rel <= 1e-6, float("-inf"))
                top = worse.max(dim=1, keepdim=True).values
                tol = torch.where(top.isfinite(), 1e-6 * (1 + top.abs()), torch.zeros_like(top))
                near = (worse >= top - tol) | (worse == top)
                best = torch.argmax(torch.where(near, rel, torch.full_like(rel, -1.0)), dim=1)
                chosen = ((torch.arange(k, device=lo.device) * n + best)[:, None] * 2
                          + torch.arange(2, device=lo.device)[None, :]).reshape(-1)
                c_lo, c_hi, c_rows = c_lo[chosen], c_hi[chosen], c_rows[chosen]
                c_margin, c_proven = c_margin[chosen], c_proven[chosen]
                c_dims = c_hi - c_lo
            alive = ~c_proven
            k_lo, k_hi, k_rows = c_lo[alive], c_hi[alive], c_rows[alive]
            k_margin, k_dims = c_margin[alive], c_dims[alive]

            if k_rows.numel():
                cex = _falsify_centres(graph, spec, k_lo, k_hi, k_rows, confirm)
                if cex is not None:
                    return outcome("sat", cex)
            lo, hi = torch.cat([lo, k_lo]), torch.cat([hi, k_hi])
            rows, score = torch.cat([rows, k_rows]), torch.cat([score, k_margin])
            dim_score = torch.cat([dim_score, k_dims])
            rounds += 1
            if rounds % ATTACK_EVERY == 0 and rows.numel():
                cex = _attack_worst(graph, spec, lo, hi, rows, score, confirm, deadline)
                if cex is not None:
                    return outcome("sat", cex)
            now = time.monotonic()
            if progress is not None and now - last_report >= config.progress_interval:
                last_report = now
                progress(BabProgress(now - t0, int(rows.numel()), visited,
                                     float(score.min()) if score.numel() else float("inf"),
                                     visited / max(1e-9, now - t0)))
    except DeadlineExceeded:
        return outcome("timeout")
    return outcome("unsat")


def _falsify_centres(graph: Graph, spec: SpecTensors, lo: Tensor, hi: Tensor, rows: Tensor,
                     confirm: Confirm):
    """Evaluate the box centres; violating ones (in our float arithmetic) go to onnxruntime."""
    with torch.no_grad():
        x = (lo + hi) / 2
        m = spec.take(rows, lo, hi).margin(graph.forward(x))
    bad = torch.nonzero(m <= 0).flatten()
    if bad.numel():
        bad = bad[torch.argsort(m[bad])][:16]
        return confirm(x[bad], spec.region_index[rows[bad]])
    return None


def _attack_worst(graph: Graph, spec: SpecTensors, lo: Tensor, hi: Tensor, rows: Tensor,
                  score: Tensor, confirm: Confirm, deadline: float | None):
    """A short PGD run on the 32 worst boxes."""
    from planecut.verifier.attack.pgd import pgd_attack

    k = min(32, rows.numel())
    pick = torch.topk(score, k, largest=False).indices
    sub = spec.take(rows[pick], lo[pick], hi[pick])
    out = pgd_attack(graph, sub, restarts=8, steps=20, deadline=deadline)
    bad = out.margin <= 0
    if bool(bad.any()):
        return confirm(out.x[bad], out.region[bad])
    return None
