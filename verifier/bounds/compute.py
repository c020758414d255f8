"""The bounds module's entry point: :func:`compute_bounds` (IBP, CROWN, alpha-CROWN and
beta-CROWN when split constraints are given)."""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import torch

from planecut.errors import check_deadline
from planecut.verifier.bounds.alpha_crown import alpha_crown
from planecut.verifier.bounds.beta_crown import split_signs
from planecut.verifier.bounds.gcp_crown import CutTerms
from planecut.verifier.bounds.crown import (
    DEFAULT_CHUNK_ELEMENTS,
    BackwardRecord,
    BoundContext,
    backward_bound,
    intermediate_sweep,
)
from planecut.verifier.bounds.ibp import concretize_interval
from planecut.verifier.bounds.plan import GraphPlan
from planecut.verifier.bounds.types import AlphaOptions, BoundCoefficients, BoundResult
from planecut.verifier.graph.ir import Graph

Tensor = torch.Tensor
Interval = tuple[Tensor, Tensor]
METHODS = ("ibp", "crown", "alpha-crown")


def compute_bounds(graph: Graph, x_lower: Tensor, x_upper: Tensor, C: Tensor | None = None,
                   method: str = "crown", *, alpha: AlphaOptions | None = None,
                   intermediate: Mapping[str, Interval] | None = None,
                   deadline: float | None = None, need_upper: bool = False,
                   alpha_init: dict | None = None,
                   chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
                   splits: Sequence[Tensor | None] | None = None,
                   beta_init: dict | None = None,
                   return_coeffs: bool = False,
                   done: Callable[[Tensor], Tensor] | None = None,
                   known_bounds: Mapping[str, Interval] | None = None,
                   cuts: "CutTerms | None" = None) -> BoundResult:
    """Bounds on ``C·y``, ``y = graph(x)``, for every input box ``[x_lower[b], x_upper[b]]``.

    Args:
        x_lower, x_upper: ``(B, num_inputs)`` or ``(B, *input_shape)``; their dtype and device
            are used throughout (the graph's parameters are cast on the fly).
        C: ``(B, K, num_outputs)`` or ``(K, num_outputs)`` (shared by all domains); None means
            the identity (bounds on every output).
        method: ``"ibp"``, ``"crown"`` or ``"alpha-crown"``.
        alpha: alpha-CROWN settings (default :class:`AlphaOptions`).
        intermediate: bounds on nonlinear nodes' inputs, by node name, ``(B, *shape)`` (or flat
            ``(B, n)``). A given entry *replaces* the computed one — it is neither recomputed
            nor intersected — so a caller can tighten bounds (branch and bound splits) or
            loosen them; soundness is then the caller's responsibility. Missing entries are
            computed.
        deadline: ``time.monotonic()`` value; :class:`planecut.errors.DeadlineExceeded` is
            raised once it has passed (checked per node, chunk and alpha iteration).
        need_upper: also bound ``C·y`` from above (computed as ``−lower(−C·y)``).
        alpha_init: slopes from an earlier ``BoundResult.alphas`` (alpha-CROWN warm start).
        chunk_elements: memory cap, in tensor elements, for one chunk of intermediate rows.
        splits: beta-CROWN split constraints, one int8 tensor ``(B or 1, n_l)`` per ReLU layer
            in ``graph.relu_nodes`` order (None entries: no split in that layer): ``+1`` asserts
            ``z >= 0``, ``−1`` asserts ``z <= 0``, ``0`` leaves the neuron free. The split
            neurons' bounds are clamped (given ones too; branch and bound passes them clamped
            already) and, with ``"alpha-crown"``, multipliers ``β >= 0`` are optimised with the
            slopes (learning rate ``alpha.lr_beta``). Bounds hold for the inputs of the box
            that satisfy every split. Intermediate bounds never use ``β``.
        beta_init: multipliers from an earlier ``BoundResult.betas`` (warm start; entries for
            neurons not split here are ignored, batch 1 broadcasts).
        return_coeffs: also return the final bound's backward coefficients
            (:class:`BoundCoefficients`: on each ReLU's output and input, and on the input),
            at the cost of one more backward pass (not for ``"ibp"``).
        done: called with the best lower bounds ``(B, K')`` after each alpha/beta iteration;
            returns a ``(B,)`` bool tensor of the domains that need no more optimisation (e.g.
            proven). The optimisation ends when all are done; when only the final bound is
            optimised (all intermediate bounds given), done domains also leave the batch as
            they accumulate, so they stop costing time.
        known_bounds: bounds on nonlinear nodes' inputs (same layout as ``intermediate``) that
            hold anyway — e.g. a parent domain's in branch and bound: the bounds computed for
            nodes not in ``intermediate`` are intersected with them (and CROWN skips the
            neurons they already make stable). Soundness is the caller's responsibility.
        cuts: GCP-CROWN cutting planes (:class:`~planecut.verifier.bounds.gcp_crown.CutTerms`,
            valid on every execution of the network on these boxes). With ``"alpha-crown"``
            the final bound gets one multiplier ``μ >= 0`` per (domain, row, cut), optimised
            with the slopes (learning rate ``alpha.lr_beta``) and returned in ``betas`` under
            :data:`~planecut.verifier.bounds.gcp_crown.CUT_KEY` (accepted back in
            ``beta_init``; fewer cuts than now: the new ones start at zero). Other methods
            ignore cuts.

    When every nonlinear node's bounds are given only the final bound is computed: no
    intermediate CROWN pass, and alpha-/beta-CROWN optimise the final bound's slopes and
    multipliers only (the branch-and-bound fast path). With ``splits`` and ``alpha_init``
    together the plain CROWN bound that alpha-CROWN otherwise starts from is skipped: the warm
    start (a parent domain's optimum) is the starting point, and a pass is saved per call.

    Returns:
        :class:`BoundResult` with ``lower``/``upper`` ``(B, K)`` (the tighter of the method's
        bound and IBP's), ``intermediate`` for every nonlinear node (clamped by ``splits``),
        ``alphas`` for alpha-CROWN, ``betas`` with ``splits`` and ``coeffs`` on request.
    """
    check_deadline(deadline)
    if method not in METHODS:
        raise ValueError(f"unknown bound method {method!r}; expected one of {METHODS}")
    graph = _graph_like(graph, x_lower)
    plan = GraphPlan(graph)
    batch = x_lower.shape[0]
    xl = x_lower.reshape(batch, *graph.input_shape)
    xu = x_upper.reshape(batch, *graph.input_shape).to(xl)
    rows, k = _spec_rows(graph, C, batch, need_upper, xl)
    given = _given_bounds(plan, intermediate or {}, batch, xl)
    known = _given_bounds(plan, known_bounds or {}, batch, xl)
    out_shape = graph.output_shape
    lam_out = rows.view(rows.shape[0], rows.shape[1], *out_shape)
    signs = split_signs(graph, splits, batch, xl) if splits is not None else {}

    with torch.no_grad():
        ctx = BoundContext(plan, xl, xu, {}, deadline, chunk_elements, signs,
                           cuts.to(xl) if cuts is not None and cuts.count else None)
        state = intermediate_sweep(ctx, given, use_crown=method != "ibp", known=known)
        out_lo, out_hi = state.intervals[graph.output_name]
        lower_rows = concretize_interval(rows, out_lo.reshape(batch, -1),
                                         out_hi.reshape(batch, -1))
        # with splits and a warm start (branch and bound) the first alpha/beta iteration
        # starts from the parent's slopes and multipliers; a plain CROWN pass before it would
        # cost one more backward pass per call for a bound that is rarely the better one
        warm_split = method == "alpha-crown" and splits is not None and alpha_init is not None
        if method != "ibp" and not warm_split:
            crown = backward_bound(ctx, graph.output_name, lam_out)
            lower_rows = torch.maximum(lower_rows, crown)

    inter = state.intermediate
    alphas = betas = None
    if method == "alpha-crown":
        outcome = alpha_crown(ctx, state, graph.output_name, lam_out, lower_rows,
                              alpha or AlphaOptions(), alpha_init, beta_init, done)
        lower_rows, inter, alphas = outcome.lower, outcome.intermediate, outcome.alphas
        betas = outcome.betas if signs or ctx.cuts is not None else None
    coeffs = None
    if return_coeffs and method != "ibp":
        lower_rows, coeffs = _final_coefficients(ctx, state, graph, lam_out, lower_rows,
                                                 inter, alphas, betas)
    upper = -lower_rows[:, k:] if need_upper else None
    return BoundResult(lower=lower_rows[:, :k], upper=upper, intermediate=dict(inter),
                       alphas=alphas, betas=betas, coeffs=coeffs)


def _final_coefficients(ctx: BoundContext, state, graph: Graph, lam_out: Tensor,
                        lower_rows: Tensor, inter: Mapping[str, Interval], alphas: dict | None,
                        betas: dict | None) -> tuple[Tensor, BoundCoefficients]:
    """One more backward pass of the final bound, with the returned intermediate bounds,
    slopes and multipliers, recording its coefficients. Its (sound) bound is folded into
    ``lower_rows``."""
    from planecut.verifier.bounds.crown import make_relaxation

    relax = dict(state.relaxations)
    for name, (lo, hi) in inter.items():
        if name in relax and inter is not state.intermediate:
            relax[name] = make_relaxation(graph.node(name), lo, hi)
    pass_ctx = dataclasses.replace(ctx, relaxations=relax)
    final = {name: a["final"] for name, a in (alphas or {}).items()
             if a.get("final") is not None}
    record = BackwardRecord()
    with torch.no_grad():
        lower = backward_bound(pass_ctx, graph.output_name, lam_out, final or None, betas,
                               record)
    batch = ctx.batch

    def flat(t: Tensor) -> Tensor:
        return t.expand(batch, *t.shape[1:]).reshape(batch, t.shape[1], -1)

    coeffs = BoundCoefficients(
        relu_output={k: flat(v) for k, v in record.relu_output.items()},
        relu_input={k: flat(v) for k, v in record.relu_input.items()},
        input=None if record.input is None else flat(record.input))
    return torch.maximum(lower_rows, lower), coeffs


def relu_layer_bounds(graph: Graph, intermediate: Mapping[str, Interval]
                      ) -> list[Interval]:
    """Pre-activation bounds per ReLU layer (neuron identity ``(relu_layer, flat_index)``):
    ``[(lower (B, n), upper (B, n)) for relu in graph.relu_nodes]``."""
    out = []
    for relu in graph.relu_nodes:
        lo, hi = intermediate[relu.name]
        out.append((lo.reshape(lo.shape[0], -1), hi.reshape(hi.shape[0], -1)))
    return out


def _spec_rows(graph: Graph, C: Tensor | None, batch: int, need_upper: bool, like: Tensor
               ) -> tuple[Tensor, int]:
    """``C`` as ``(1 or B, K', num_outputs)`` (with ``−C`` appended for upper bounds), ``K``."""
    n = graph.num_outputs
    if C is None:
        C = torch.eye(n, dtype=like.dtype, device=like.device)
    C = C.to(dtype=like.dtype, device=like.device)
    if C.dim() == 2:
        C = C.unsqueeze(0)
    if C.dim() != 3 or C.shape[-1] != n or C.shape[0] not in (1, batch):
        raise ValueError(f"C must be (K, {n}) or ({batch}, K, {n}); got {tuple(C.shape)}")
    k = C.shape[1]
    if need_upper:
        C = torch.cat([C, -C], dim=1)
    return C, k


def _given_bounds(plan: GraphPlan, given: Mapping[str, Interval], batch: int, like: Tensor
                  ) -> dict[str, Interval]:
    """Caller-given intermediate bounds reshaped to ``(B, *input shape)`` in ``like``'s dtype."""
    out: dict[str, Interval] = {}
    for name, (lo, hi) in given.items():
        node = plan.graph.node(name)
        shape = plan.shape_of(node.inputs[0])
        lo = lo.to(like).reshape(-1, *shape).expand(batch, *shape)
        hi = hi.to(like).reshape(-1, *shape).expand(batch, *shape)
        out[name] = (lo, hi)
    return out


def _graph_like(graph: Graph, like: Tensor) -> Graph:
    """``graph`` itself when its floating parameters have ``like``'s dtype and device, else a
    converted copy (the caller's graph is left untouched)."""
    return graph.converted(like.device, like.dtype)
