"""Branch and bound on ReLU activations with beta-CROWN bounds.

**Root.** Every region's root (no split) is bounded once more with alpha-CROWN on the root's
intermediate bounds (warm-started from ``root_alphas`` when given) and its box centre is
evaluated; unproven roots enter the domain store (:mod:`.domains`). Several input regions
share one store: each domain carries its region (row of the :class:`SpecTensors` passed in)
and is bounded against that region's box and spec rows, so all regions are searched together,
worst domain first across all of them.

**Rounds** (one batched bound computation per step, no per-domain Python loop in hot paths):

1. **pop** the open domains with the lowest proof margin (:class:`DomainStore`);
2. **look** at them: one pass without optimisation (the stored slopes and multipliers) gives
   the backward coefficients that branching needs and each domain's bound-minimising input —
   the CROWN concretisation point, ``x_U`` where the input coefficient of the binding spec row
   is negative and ``x_L`` elsewhere. Points that violate the spec in our own forward pass go to
   ``confirm`` (onnxruntime on the original model); a confirmed one ends the search with
   ``sat``. Every popped domain is looked at, so every domain is checked unless proven first;
3. **branch**: choose ``s`` neurons per domain (:mod:`.branching`: filtered smart branching or
   BaBSR; ``s > 1`` while the store holds too few domains to fill the batch) and make the
   ``2^s`` children: a split neuron's bounds are clamped (active ``l := max(l, 0)``, inactive
   ``u := min(u, 0)``) and every other bound is inherited from the parent — sound, since a
   child's inputs are a subset of its parent's. With ``refine_intermediate`` the bounds of the
   layers after the shallowest new split are recomputed instead (CROWN with the clamped
   neurons, intersected with the inherited bounds);
4. **bound** all children in one beta-CROWN call (:func:`compute_bounds` with ``splits``):
   slopes and multipliers warm-started from the parent, new multipliers at 0; children proven
   during the optimisation leave its batch, and it stops once all are. A parent's bound holds
   on its children, so a child keeps the larger of the two;
5. **prune** children whose every disjunct is proven (``SpecTensors.proven_disjuncts(lower,
   margin).all()`` for their region) and push the rest.

The number of children per round is ``config.batch_size`` at most, adapted so that a round
takes about ``round_seconds`` (:class:`_BatchSizer`); on out of memory it is halved.

**Fully split domains.** A domain whose unstable neurons are all split cannot be branched
further: the network is linear on it and :func:`planecut.verifier.bab.exact_lp.
solve_fully_split` decides it with one LP per disjunct (a feasible LP point is a counterexample
candidate for ``confirm``). Domains it cannot decide are set aside; the search then ends
``unknown`` instead of ``unsat``.

The search ends ``unsat`` when the store is empty (and nothing was set aside), ``sat`` on a
confirmed counterexample, ``timeout`` at the deadline (checked every round and inside every
bound computation), ``unknown`` past ``config.max_domains`` open domains or when a domain
could not be decided.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Mapping

import torch

from planecut.errors import DeadlineExceeded, check_deadline
from planecut.verifier.bab.branching import (
    babsr_scores,
    choose_neurons,
    preactivation_bias,
)
from planecut.verifier.bab.cut_source import CutSource
from planecut.verifier.bab.domains import DomainBatch, DomainStore, NeuronLayout
from planecut.verifier.bab.types import BabOutcome, BabProgress, Confirm, Progress
from planecut.verifier.bounds import CUT_KEY, AlphaOptions, BoundResult, CutTerms, compute_bounds
from planecut.verifier.config import BabConfig
from planecut.verifier.graph.ir import Graph
from planecut.verifier.spec_tensors import SpecTensors, gather_rows

Tensor = torch.Tensor
Interval = tuple[Tensor, Tensor]
MAX_SPLITS_PER_DOMAIN = 8  # at most 2^8 children of one domain in one round
ROOT_ALPHA_LR = 0.1  # slopes start from the default at the root: use alpha-CROWN's rate
CONFIRM_PER_ROUND = 8  # candidate points sent to onnxruntime per round at most
FIRST_BATCH = 64  # children in the first round; the batch then adapts (see _BatchSizer)
MIN_BATCH = 8


@dataclass
class _BatchSizer:
    """Children per round: at most ``limit`` (``config.batch_size``), and about as many as fit
    in ``round_seconds`` at the rate measured so far.

    On a CPU a round of ``1024`` children of a CIFAR conv net takes tens of seconds: far too
    coarse for the worst-first order (a round works on domains chosen before it), for progress
    and for the deadline. The size starts at :data:`FIRST_BATCH`, grows at most twofold per
    round while rounds are short (on a GPU rounds are short at any size and it soon reaches
    ``limit``), and shrinks to the measured rate when rounds run long. ``None`` disables the
    cap; out of memory halves ``limit``.
    """

    limit: int
    round_seconds: float | None
    size: int = 0

    def __post_init__(self) -> None:
        self.limit = max(2, self.limit)
        self.size = self.limit if self.round_seconds is None else min(self.limit, FIRST_BATCH)

    def observe(self, seconds: float, children: int) -> None:
        if self.round_seconds is None or children <= 0 or seconds <= 0:
            return
        fit = int(children / seconds * self.round_seconds)
        self.size = max(MIN_BATCH, min(self.limit, 2 * self.size, fit))

    def halve(self) -> bool:
        """After out of memory; False when the batch cannot shrink further."""
        if self.limit <= 2:
            return False
        self.limit = max(2, min(self.limit, self.size) // 2)
        self.size = min(self.size, self.limit)
        return True


@dataclass
class _Stats:
    bound_seconds: float = 0.0  # inside compute_bounds
    visited: int = 0  # children bounded
    exact_lp: int = 0  # fully split domains sent to the exact LP
    undecided: int = 0  # fully split domains neither proven nor falsified
    refined_dropped: int = 0  # open domains emptied by the MIP-refined root bounds
    rows_dropped: int = 0  # spec rows no longer bounded (see BabOutcome.rows_dropped)
    reroots: int = 0  # searches started over from a root re-bounded with MIP-refined layers


@dataclass
class _Search:
    """What every step of one search shares (no per-round state)."""

    graph: Graph
    spec: SpecTensors
    layout: NeuronLayout
    config: BabConfig
    margin: float
    deadline: float | None
    confirm: Confirm
    bias: Tensor  # (M,) pre-activation bias per compact neuron
    refine: bool = False  # recompute intermediate bounds of the layers after a new split
    stats: _Stats = field(default_factory=_Stats)
    # GCP-CROWN: the MIP worker's cuts and the root's multipliers (R, K, m), which warm-start
    # domains that have none of their own for this cut set (see DomainBatch.mu)
    cuts: CutTerms | None = None
    mu_root: Tensor | None = None
    root_alphas: dict | None = None  # the root's optimised slopes (warm start of re-bounds)

    @property
    def like(self) -> Tensor:
        return self.spec.lower

    def options(self, iterations: int, lr: float | None = None) -> AlphaOptions:
        cfg = self.config
        return AlphaOptions(iterations=iterations, lr=lr or cfg.lr_alpha, lr_beta=cfg.lr_beta,
                            optimise_intermediate=False,
                            early_stop_patience=max(1, min(10, iterations)))

    def bound(self, batch: DomainBatch, iterations: int, *, coeffs: bool = False,
              stop_when_proven: bool = False, refine_after: int | None = None) -> BoundResult:
        """beta-CROWN on the domains of ``batch`` (full tensors rebuilt from compact ones).

        ``refine_after``: recompute (CROWN, intersected with the domain's bounds) the bounds of
        the ReLU layers after this one; the others are given."""
        lay, st = self.layout, self.spec
        region = batch.region
        inter = lay.full_bounds(batch.lower, batch.upper, region)
        known = None
        if refine_after is not None:
            known = inter
            inter = {name: inter[name] for name in lay.names[:refine_after + 1]}
        splits = lay.full_splits(batch.splits)
        alpha_init = beta_init = None
        if batch.alpha is not None:
            alpha_init = {name: {"final": a}
                          for name, a in lay.full_rows(batch.alpha, self.like).items()}
        if batch.beta is not None:
            beta_init = lay.full_rows(batch.beta, self.like)
        if self.cuts is not None and self.mu_root is not None:
            beta_init = dict(beta_init or {})
            own = batch.mu is not None and batch.mu.shape[-1] == self.mu_root.shape[-1]
            beta_init[CUT_KEY] = batch.mu.to(self.like) if own else \
                self.mu_root.index_select(0, region)
        sub = st.take(region)
        done = None
        if stop_when_proven:
            def done(lower: Tensor) -> Tensor:
                return sub.proven_disjuncts(lower, self.margin).all(dim=1)
        t = time.monotonic()
        try:
            return compute_bounds(self.graph, sub.lower, sub.upper, sub.C, "alpha-crown",
                                  alpha=self.options(iterations), intermediate=inter,
                                  deadline=self.deadline, alpha_init=alpha_init,
                                  splits=splits, beta_init=beta_init, return_coeffs=coeffs,
                                  done=done, known_bounds=known, cuts=self.cuts)
        finally:
            self.stats.bound_seconds += time.monotonic() - t


# --------------------------------------------------------------------------- steps


def _with_bounds(batch: DomainBatch, spec: SpecTensors, res: BoundResult,
                 layout: NeuronLayout, keep_warm: bool) -> DomainBatch:
    """``batch`` with the new row bounds, scores and warm starts of ``res``."""
    sub = spec.take(batch.region)
    row_lower = res.lower.detach()
    alpha = beta = mu = None
    if keep_warm:
        n, k = row_lower.shape
        default = ((batch.upper > -batch.lower)).to(row_lower.dtype)
        finals = {name: a["final"] for name, a in (res.alphas or {}).items()
                  if a.get("final") is not None}
        alpha = layout.compact_rows(finals, n, k, row_lower, default)
        beta = layout.compact_rows(res.betas or {}, n, k, row_lower)
        cut_mu = (res.betas or {}).get(CUT_KEY)
        mu = None if cut_mu is None else cut_mu.detach().expand(n, -1, -1)
    return DomainBatch(batch.lower, batch.upper, batch.splits, row_lower,
                       sub.proof_margin(row_lower), batch.region, batch.depth, alpha, beta, mu)


def _proven(spec: SpecTensors, region: Tensor, row_lower: Tensor, margin: float) -> Tensor:
    return spec.take(region).proven_disjuncts(row_lower, margin).all(dim=1)


def _binding_rows(sub: SpecTensors, row_lower: Tensor) -> Tensor:
    """``(N,)`` per domain the spec row that decides its proof margin: in the disjunct with
    the lowest margin, the row with the highest ``lower − d``."""
    vals = row_lower - sub.d
    worst_dj = sub.disjunct_max(vals).argmin(dim=1, keepdim=True)  # (N, 1)
    in_dj = sub.row_disjunct == worst_dj
    return vals.masked_fill(~in_dj, float("-inf")).argmax(dim=1)


def _concretisation_points(sub: SpecTensors, res: BoundResult) -> Tensor | None:
    """``(N, n_in)``: per domain the input minimising the binding row's linear bound."""
    lam = None if res.coeffs is None else res.coeffs.input
    if lam is None:
        return None
    rows = _binding_rows(sub, res.lower)
    lam = lam[torch.arange(lam.shape[0], device=lam.device), rows]  # (N, n_in)
    return torch.where(lam >= 0, sub.lower, sub.upper)


def _falsify(search: _Search, x: Tensor, region: Tensor):
    """Evaluate points ``x`` (N, n_in) of spec rows ``region``; send the violating ones (in
    our float arithmetic), most violating first, to ``confirm``."""
    spec = search.spec
    with torch.no_grad():
        m = spec.take(region).margin(search.graph.forward(x))
    bad = torch.nonzero(m <= 0).flatten()
    if bad.numel() == 0:
        return None
    bad = bad[torch.argsort(m[bad])][:CONFIRM_PER_ROUND]
    return search.confirm(x[bad], spec.region_index[region[bad]])


def _children(parents: DomainBatch, choice: Tensor) -> DomainBatch:
    """The ``2^s`` children of every parent for the ``(P, s)`` chosen neurons, parent-major:
    child ``p·2^s + c`` takes sign ``+1`` on neuron ``i`` where bit ``i`` of ``c`` is set."""
    P, s = choice.shape
    rep = 1 << s
    kids = parents.take(torch.arange(P, device=choice.device).repeat_interleave(rep))
    kids.lower, kids.upper, kids.splits = kids.lower.clone(), kids.upper.clone(), \
        kids.splits.clone()
    rows = torch.arange(P * rep, device=choice.device)
    pattern = torch.arange(rep, device=choice.device).repeat(P)
    for i in range(s):
        col = choice[:, i].repeat_interleave(rep)
        active = ((pattern >> i) & 1).bool()
        lo, hi = kids.lower[rows, col], kids.upper[rows, col]
        kids.lower[rows, col] = torch.where(active, lo.clamp(min=0), lo)
        kids.upper[rows, col] = torch.where(active, hi, hi.clamp(max=0))
        kids.splits[rows, col] = torch.where(active, 1, -1).to(kids.splits.dtype)
    kids.depth = kids.depth + s
    return kids


def _fsb_evaluate(search: _Search, parents: DomainBatch):
    """The FSB callback: proof margins ``(P, C, 2)`` of both children of ``C`` candidate
    neurons per parent, from one pass without optimisation."""
    def evaluate(cands: Tensor) -> Tensor:
        out = []
        for c in range(cands.shape[1]):  # one batch of 2P children per candidate rank
            kids = _children(parents, cands[:, c:c + 1])  # parent-major: inactive, active
            res = search.bound(kids, iterations=0)
            margin = search.spec.take(kids.region).proof_margin(res.lower)
            proven = _proven(search.spec, kids.region, res.lower, search.margin)
            out.append(margin.masked_fill(proven, float("inf")).view(-1, 2))
        return torch.stack(out, dim=1)
    return evaluate


def _row_weight(spec: SpecTensors, batch: DomainBatch, margin: float) -> Tensor:
    """``(N, K)`` 1.0 for spec rows of disjuncts not proven yet (what branching should help)."""
    sub = spec.take(batch.region)
    open_dj = ~sub.proven_disjuncts(batch.row_lower, margin)  # (N, J)
    padded = torch.cat([open_dj, torch.zeros_like(open_dj[:, :1])], dim=1)
    return padded.gather(1, sub.row_disjunct).to(batch.row_lower.dtype)


def _splits_per_domain(open_domains: int, batch_size: int) -> int:
    """``s`` with about ``open · 2^s <= batch`` children: 1 when the store fills the batch."""
    if 2 * open_domains >= batch_size:
        return 1
    return max(1, min(MAX_SPLITS_PER_DOMAIN,
                      int(math.floor(math.log2(batch_size / max(1, open_domains))))))


def _decide_exactly(search: _Search, batch: DomainBatch):
    """Decide fully split domains with the exact LP; returns a counterexample or None and
    counts the ones it could not decide in ``stats.undecided``."""
    try:
        from planecut.verifier.bab.exact_lp import solve_fully_split
    except ImportError:  # pragma: no cover - the exact LP ships with planecut
        search.stats.undecided += len(batch)
        return None
    lay, st = search.layout, search.spec
    inter = lay.full_bounds(batch.lower, batch.upper, batch.region)
    splits = lay.full_splits(batch.splits)
    for i in range(len(batch)):  # rare, and one LP each: a Python loop is fine here
        check_deadline(search.deadline)
        r = int(batch.region[i])
        limit = None if search.deadline is None else max(0.0, search.deadline - time.monotonic())
        search.stats.exact_lp += 1
        try:
            dec = solve_fully_split(
                search.graph, st.lower[r], st.upper[r], [s[i] for s in splits],
                {k: (lo[i], hi[i]) for k, (lo, hi) in inter.items()}, st.C[r], st.d[r],
                time_limit=limit, row_disjunct=st.row_disjunct[r],
                disjunct_valid=st.disjunct_valid[r])
        except DeadlineExceeded:
            raise
        except Exception:  # solver trouble: the domain stays undecided, nothing is claimed
            search.stats.undecided += 1
            continue
        if dec.status == "infeasible":
            continue
        if dec.x is not None:
            x = torch.as_tensor(dec.x, dtype=st.lower.dtype, device=st.lower.device)
            cex = search.confirm(x.view(1, -1), st.region_index[r:r + 1])
            if cex is not None:
                return cex
        search.stats.undecided += 1
    return None


# --------------------------------------------------------------------------- the search


def _root(search: _Search, root_alphas: dict | None, store: DomainStore, falsify: bool = True):
    """Bound the root of every region, check the box centres (``falsify``), push the
    unproven roots."""
    st, lay = search.spec, search.layout
    R = st.num_regions
    region = torch.arange(R, device=st.lower.device)
    if falsify:
        cex = _falsify(search, (st.lower + st.upper) / 2, region)
        if cex is not None:
            return cex
    lo, hi = lay.root_compact(st.lower)
    inter = lay.full_bounds(lo, hi, region)
    t = time.monotonic()
    opts = search.options(max(search.config.iterations, 20),
                          lr=search.config.lr_alpha if root_alphas else ROOT_ALPHA_LR)
    res = compute_bounds(search.graph, st.lower, st.upper, st.C, "alpha-crown", alpha=opts,
                         intermediate=inter, deadline=search.deadline, alpha_init=root_alphas)
    search.stats.bound_seconds += time.monotonic() - t
    # from here on, only the rows of disjuncts the root left open are bounded
    rows = st.C.shape[1]
    st, order = st.without_proven(st.proven_disjuncts(res.lower, search.margin))
    search.spec = st
    search.stats.rows_dropped += rows - st.C.shape[1]
    res.lower = gather_rows(res.lower, order)
    res.alphas = _select_rows(res.alphas, order)
    search.root_alphas = res.alphas
    roots = DomainBatch(lo, hi, torch.zeros(lo.shape, dtype=torch.int8, device=lo.device),
                        st.d.new_full(st.d.shape, float("-inf")),
                        st.d.new_full((R,), float("-inf")), region,
                        torch.zeros(R, dtype=torch.int32, device=lo.device))
    roots = _with_bounds(roots, st, res, lay, keep_warm=True)
    keep = ~_proven(st, region, roots.row_lower, search.margin)
    store.push(roots.take(keep.nonzero().flatten()))
    return None


def _drop_proven_rows(search: _Search, store: DomainStore) -> None:
    """Between rounds: stop bounding the rows of disjuncts proven in every open domain of
    their region (each later domain lies inside one of them, so they stay proven there).
    Cheap: one reduction over the store's row bounds; changes anything only when a row goes."""
    st = search.spec
    n = len(store)
    if n == 0 or st.C.shape[1] <= 1:
        return
    region = store.regions()
    proven = st.take(region).proven_disjuncts(store.row_lowers(), search.margin)  # (n, J)
    everywhere = torch.ones((st.num_regions, st.num_disjuncts), dtype=torch.int8,
                            device=proven.device)
    everywhere = everywhere.scatter_reduce(0, region.unsqueeze(1).expand_as(proven),
                                           proven.to(torch.int8), reduce="amin").bool()
    newly = everywhere & st.disjunct_valid
    if not bool(newly.any()):
        return
    new, order = st.without_proven(newly)
    if new.C.shape[1] == st.C.shape[1]:
        return  # (the rows went to padding of another region's width: nothing to gain)
    search.spec = new
    store.select_rows(order)
    search.root_alphas = _select_rows(search.root_alphas, order)
    if search.mu_root is not None:
        search.mu_root = gather_rows(search.mu_root, order)
    search.stats.rows_dropped += st.C.shape[1] - new.C.shape[1]


def _select_rows(alphas: dict | None, order: Tensor) -> dict | None:
    """The final slopes of ``alphas`` (``{relu: {"final": (R, K, *shape)}}``) at the rows
    ``order`` ``(R, K')``; intermediate slopes (unused by the search) are dropped."""
    if not alphas:
        return alphas
    out = {}
    for name, entry in alphas.items():
        a = entry.get("final")
        if a is None or a.shape[0] != order.shape[0]:
            continue
        out[name] = {"final": gather_rows(a, order), "intermediate": {}}
    return out


def activation_split_bab(graph: Graph, spec: SpecTensors, root_intermediate: Mapping[str, Interval],
                         *, config: BabConfig, deadline: float | None, confirm: Confirm,
                         progress: Progress | None = None, margin: float = 1e-5,
                         root_alphas: dict | None = None,
                         warm_start_budget: int = 2**31,
                         refine_intermediate: bool = False,
                         round_seconds: float | None = 2.0,
                         cut_source: "CutSource | None" = None,
                         cut_refresh_seconds: float = 2.0,
                         refine_pause_after: float | None = None) -> BabOutcome:
    """Prove or falsify every region of ``spec`` by splitting ReLUs (see the module doc).

    Args:
        graph: a ReLU network (every nonlinear node a :class:`Relu`).
        spec: the regions to search (all share one domain store).
        root_intermediate: pre-activation bounds of every ReLU, ``{name: (lo, hi)}`` with batch
            ``spec.num_regions`` (or 1), e.g. ``BoundResult.intermediate`` of the root.
        config: batch size, branching, alpha/beta iterations and learning rates, limits.
        deadline: ``time.monotonic()`` value; the search returns ``timeout`` past it.
        confirm: checks candidate inputs with onnxruntime (see :data:`Confirm`).
        progress: called every ``config.progress_interval`` seconds.
        margin: proof margin (``SpecTensors.proven_disjuncts``).
        root_alphas: ``BoundResult.alphas`` of the root (warm start of the final slopes).
        warm_start_budget: bytes the store may spend before it drops warm starts.
        refine_intermediate: after a split, recompute the children's pre-activation bounds of
            the layers after the split (CROWN, clamped split neurons, intersected with the
            inherited bounds) instead of only inheriting them: tighter, costlier per domain.
        round_seconds: target duration of one round: the number of children per round adapts
            to it, up to ``config.batch_size`` (see :class:`_BatchSizer`; None: always
            ``config.batch_size``).
        cut_source: the MIP cut worker of this search (one region; see
            :mod:`.cut_source`): between rounds its new cuts re-optimise the root bound with
            GCP-CROWN (at most every ``cut_refresh_seconds``) and then tighten every domain's
            bound; its own verdict (MIP proof, or a violating incumbent once confirmed) ends
            the search.
        refine_pause_after: after this many seconds of search, wait (between rounds) while
            ``cut_source`` refines bounds, and go on from the roots they give; None: never.
    """
    t0 = time.monotonic()
    like = spec.lower
    layout = NeuronLayout.from_root(graph, root_intermediate, spec.num_regions)
    search = _Search(graph, spec, layout, config, margin, deadline, confirm,
                     preactivation_bias(graph, layout, like), refine=refine_intermediate)
    store = DomainStore(warm_start_budget)
    sizer = _BatchSizer(config.batch_size, round_seconds)
    last_report = t0

    def outcome(verdict: str, cex=None, message: str = "") -> BabOutcome:
        rows = store.row_lower_min()
        return BabOutcome(verdict, cex, search.stats.visited, time.monotonic() - t0,
                          search.stats.bound_seconds, store.worst_score(), message,
                          None if rows is None else [float(v) for v in rows],
                          search.stats.rows_dropped, search.stats.reroots)

    try:
        cex = _root(search, root_alphas, store)
        if cex is not None:
            return outcome("sat", cex)
        last_refresh = float("-inf")
        while len(store):
            check_deadline(deadline)
            if cut_source is not None:
                if refine_pause_after is not None and cut_source.refining() \
                        and time.monotonic() - t0 >= refine_pause_after:
                    # the MIP's solver threads get the cores; the search resumes from the
                    # root their layers give once they are done (the reference's
                    # "bab-refine" refines first). Meanwhile it re-roots only when a whole
                    # layer is done (that root may be proven already), not at partial ones
                    cut_source.poll()
                    if cut_source.layer_finished():
                        store = _adopt_refined(search, cut_source, store)
                        if not len(store):
                            break
                    time.sleep(0.1)
                    continue
                store = _adopt_refined(search, cut_source, store)
                if not len(store):
                    break
                verdict, cex = _use_cuts(search, cut_source, time.monotonic() - last_refresh
                                         >= cut_refresh_seconds, store)
                if verdict == "refreshed":
                    last_refresh = time.monotonic()
                elif verdict is not None:
                    return outcome(verdict, cex, message="decided with the MIP worker")
            if len(store) > config.max_domains:
                return outcome("unknown", message=f"more than {config.max_domains} domains")
            _drop_proven_rows(search, store)
            s = _splits_per_domain(len(store), sizer.size)
            parents = store.pop(max(1, sizer.size >> s))
            t_round, visited = time.monotonic(), search.stats.visited
            try:
                cex = _round(search, parents, s, store)
            except RuntimeError as exc:
                if "out of memory" not in str(exc).lower() or not sizer.halve():
                    raise
                store.push(parents)
                _empty_cache()
                continue
            if cex is not None:
                return outcome("sat", cex)
            now = time.monotonic()
            sizer.observe(now - t_round, search.stats.visited - visited)
            if progress is not None and now - last_report >= config.progress_interval:
                last_report = now
                progress(BabProgress(now - t0, len(store), search.stats.visited,
                                     store.worst_score(),
                                     search.stats.visited / max(1e-9, now - t0)))
    except DeadlineExceeded:
        return outcome("timeout")
    if search.stats.undecided:
        return outcome("unknown", message=f"{search.stats.undecided} fully split domain(s) "
                       "could not be decided exactly")
    return outcome("unsat")


def _adopt_refined(search: _Search, source: "CutSource", store: DomainStore) -> DomainStore:
    """Between rounds: the MIP worker's newly refined layers (bounds that hold on the whole
    region). The root is re-bounded with them: the first refined layer and those before it
    fixed, the later ones recomputed by alpha-CROWN and intersected with the old root's and
    the refined ones (which several reports at once need: a later layer's refined neurons
    alone leave the rest of it as loose as before).
    If that root's worst bound beats the worst open domain's, the search starts over from it
    (returns a new store, ``search`` moved to the new root); else the refined layers are
    intersected into every open domain (domains they contradict are dropped).

    Starting over is what makes refinement pay: a tighter early layer tightens every later
    layer's bounds, which splits inherited from the old root never see. On mnist 256x6 prop_3
    (eps 0.05), seven refined neurons of the second ReLU layer took the root from −15.3 to
    −6.1, where the search had reached −11 after 2,000 domains."""
    lay, st = search.layout, search.spec
    new = [rb for rb in source.refined() if rb.name in lay.names]
    if not new or st.num_regions != 1:
        return store
    region = torch.zeros(1, dtype=torch.long, device=st.lower.device)
    lo, hi = lay.root_compact(st.lower)
    root = lay.full_bounds(lo, hi, region)
    for rb in new:
        rlo, rhi = root[rb.name]
        root[rb.name] = (torch.maximum(rlo, torch.as_tensor(rb.lower).to(rlo).reshape(rlo.shape)),
                         torch.minimum(rhi, torch.as_tensor(rb.upper).to(rhi).reshape(rhi.shape)))
    first = min(lay.names.index(rb.name) for rb in new)
    given = {name: root[name] for name in lay.names[:first + 1]}
    known = {name: root[name] for name in lay.names[first + 1:]}
    t = time.monotonic()
    opts = AlphaOptions(iterations=max(search.config.iterations, 30), lr=ROOT_ALPHA_LR,
                        early_stop_patience=10)
    res = compute_bounds(search.graph, st.lower, st.upper, st.C, "alpha-crown", alpha=opts,
                         intermediate=given, known_bounds=known, deadline=search.deadline)
    search.stats.bound_seconds += time.monotonic() - t
    inter = dict(root)
    for name in lay.names[first + 1:]:  # both sound: keep the tighter side of each
        nlo, nhi = res.intermediate[name]
        olo, ohi = root[name]
        inter[name] = (torch.maximum(olo, nlo.reshape(olo.shape)),
                       torch.minimum(ohi, nhi.reshape(ohi.shape)))
    if float(st.proof_margin(res.lower.detach()).min()) <= store.worst_score():
        for rb in new:
            l = lay.names.index(rb.name)
            tlo, thi = lay.tighten_layer(l, torch.as_tensor(rb.lower), torch.as_tensor(rb.upper))
            search.stats.refined_dropped += store.tighten(lay.layer_slice(l), tlo, thi)
        return store
    layout = NeuronLayout.from_root(search.graph, inter, 1)
    search.layout = layout
    search.bias = preactivation_bias(search.graph, layout, search.like)
    search.stats.reroots += 1
    fresh = DomainStore(store.warm_start_budget)
    _root(search, res.alphas, fresh, falsify=False)
    return fresh


def _use_cuts(search: _Search, source: "CutSource", may_refresh: bool, store: DomainStore
              ) -> tuple[str | None, object]:
    """Between rounds: the MIP worker's verdict if it has one (``"unsat"``, or ``"sat"`` with a
    confirmed counterexample); else, with new cuts (and
    ``may_refresh``), re-optimise the root's bound with GCP-CROWN to get multipliers for
    every domain — ``"unsat"`` if the root is then proven, ``"refreshed"`` otherwise; None
    when nothing changed."""
    st = search.spec
    region0 = torch.zeros(1, dtype=torch.long, device=st.lower.device)
    for x in source.candidates():
        xt = torch.as_tensor(x, dtype=st.lower.dtype, device=st.lower.device).reshape(1, -1)
        cex = search.confirm(xt, st.region_index[region0])
        if cex is not None:
            return "sat", cex
    if source.proved():
        return "unsat", None
    changed = source.poll()
    if source.terms is None or not may_refresh or (not changed and search.cuts is source.terms):
        return None, None
    lay = search.layout
    R = st.num_regions
    region = torch.arange(R, device=st.lower.device)
    lo, hi = lay.root_compact(st.lower)
    inter = lay.full_bounds(lo, hi, region)
    beta_init = None if search.mu_root is None else {CUT_KEY: search.mu_root}
    t = time.monotonic()
    res = compute_bounds(search.graph, st.lower, st.upper, st.C, "alpha-crown",
                         alpha=search.options(max(search.config.iterations, 30)),
                         intermediate=inter, deadline=search.deadline, cuts=source.terms,
                         beta_init=beta_init, alpha_init=search.root_alphas)
    search.stats.bound_seconds += time.monotonic() - t
    source.stats.refresh_seconds += time.monotonic() - t
    mu = res.betas[CUT_KEY].detach()
    # cuts whose multipliers the root optimisation left at zero only cost time in every
    # domain's bound: drop them (and keep at most max_cuts, the largest multipliers)
    weight = mu.amax(dim=(0, 1))
    useful = int((weight > 0).sum())
    if useful < source.count or source.count > source.max_cuts:
        keep = torch.argsort(weight, descending=True)[:min(useful, source.max_cuts)]
        keep = keep.sort().values  # keep the cuts' order (append-only warm starts)
        source.keep(keep)
        mu = mu[:, :, keep]
    search.cuts, search.mu_root = source.terms, mu
    store.reset_mu(mu)  # the old multipliers belong to the old cut set
    source.stats.refreshes += 1
    source.stats.root_margin = float(st.disjunct_max(res.lower - st.d).min())
    if bool(_proven(st, region, res.lower, search.margin).all()):
        return "unsat", None
    return "refreshed", None


def _round(search: _Search, parents: DomainBatch, s: int, store: DomainStore):
    """One round on the popped ``parents``; pushes the unproven children. Returns a confirmed
    counterexample or None."""
    spec, lay, cfg = search.spec, search.layout, search.config
    if len(parents) == 0:
        return None
    avail = parents.unsplit_unstable().sum(dim=1)
    full = avail == 0
    if bool(full.any()):
        cex = _decide_exactly(search, parents.take(full.nonzero().flatten()))
        if cex is not None:
            return cex
        parents = parents.take((~full).nonzero().flatten())
        avail = avail[~full]
        if len(parents) == 0:
            return None

    # look: coefficients for branching and bound-minimising inputs
    look = search.bound(parents, iterations=0, coeffs=True)
    sub = spec.take(parents.region)
    x = _concretisation_points(sub, look)
    if x is not None:
        cex = _falsify(search, x, parents.region)
        if cex is not None:
            return cex
    parents.row_lower = torch.maximum(parents.row_lower, look.lower)
    done = _proven(spec, parents.region, parents.row_lower, search.margin)
    if bool(done.any()):
        keep = (~done).nonzero().flatten()
        parents, avail = parents.take(keep), avail[keep]
        look = _take_coeffs(look, keep)
        if len(parents) == 0:
            return None

    # branch
    s = max(1, min(s, int(avail.min())))
    lam_out = lay.compact_flat(look.coeffs.relu_output)
    scores = babsr_scores(parents.lower, parents.upper, parents.unsplit_unstable(), lam_out,
                          search.bias, _row_weight(spec, parents, search.margin))
    evaluate = _fsb_evaluate(search, parents) if cfg.branching == "fsb" else None
    choice = choose_neurons(cfg.branching, scores, s, fsb_candidates=cfg.fsb_candidates,
                            evaluate=evaluate)
    kids = _children(parents, choice)

    # bound, prune, push
    refine_after = None
    if search.refine:
        refine_after = int(lay.layer_of[choice].min())
        if refine_after >= lay.num_layers - 1:
            refine_after = None  # nothing after the last layer to refine
    res = search.bound(kids, iterations=cfg.iterations, stop_when_proven=True,
                       refine_after=refine_after)
    if refine_after is not None:
        kids.lower, kids.upper = _compact_bounds(lay, res.intermediate, kids)
    search.stats.visited += len(kids)
    # a parent's bound holds on its children too: never let a child look worse
    res.lower = torch.maximum(res.lower, kids.row_lower)
    kids = _with_bounds(kids, spec, res, lay, keep_warm=store.keeps_warm_starts)
    open_ = ~_proven(spec, kids.region, kids.row_lower, search.margin)
    store.push(kids.take(open_.nonzero().flatten()))
    return None


def _compact_bounds(layout: NeuronLayout, inter: Mapping[str, Interval], batch: DomainBatch
                    ) -> tuple[Tensor, Tensor]:
    """Recomputed bounds in compact coordinates, intersected with the domains' own (they are
    intersected already; this also guards against rounding in the reshapes)."""
    lo = torch.cat([inter[name][0].reshape(len(batch), -1)[:, layout.index[l]]
                    for l, name in enumerate(layout.names)], dim=1).to(batch.lower.dtype)
    hi = torch.cat([inter[name][1].reshape(len(batch), -1)[:, layout.index[l]]
                    for l, name in enumerate(layout.names)], dim=1).to(batch.upper.dtype)
    return torch.maximum(lo, batch.lower), torch.minimum(hi, batch.upper)


def _take_coeffs(res: BoundResult, keep: Tensor) -> BoundResult:
    """``res`` restricted to the domains ``keep`` (lower bounds and coefficients only)."""
    from dataclasses import replace

    c = res.coeffs
    coeffs = None if c is None else replace(
        c, relu_output={k: v[keep] for k, v in c.relu_output.items()},
        relu_input={k: v[keep] for k, v in c.relu_input.items()},
        input=None if c.input is None else c.input[keep])
    return replace(res, lower=res.lower[keep], coeffs=coeffs)


def _empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
