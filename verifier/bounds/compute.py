"""The bounds module's entry point: :func:`compute_bounds` (IBP, CROWN, alpha-CROWN)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Mapping

import torch

from planecut.errors import check_deadline
from planecut.verifier.bounds.alpha_crown import alpha_crown
from planecut.verifier.bounds.crown import (
    DEFAULT_CHUNK_ELEMENTS,
    BoundContext,
    backward_bound,
    intermediate_sweep,
)
from planecut.verifier.bounds.ibp import concretize_interval
from planecut.verifier.bounds.plan import GraphPlan
from planecut.verifier.bounds.types import AlphaOptions, BoundResult
from planecut.verifier.graph.ir import Graph

Tensor = torch.Tensor
Interval = tuple[Tensor, Tensor]
METHODS = ("ibp", "crown", "alpha-crown")


def compute_bounds(graph: Graph, x_lower: Tensor, x_upper: Tensor, C: Tensor | None = None,
                   method: str = "crown", *, alpha: AlphaOptions | None = None,
                   intermediate: Mapping[str, Interval] | None = None,
                   deadline: float | None = None, need_upper: bool = False,
                   alpha_init: dict | None = None,
                   chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> BoundResult:
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

    Returns:
        :class:`BoundResult` with ``lower``/``upper`` ``(B, K)`` (the tighter of the method's
        bound and IBP's), ``intermediate`` for every nonlinear node, and ``alphas`` for
        alpha-CROWN.
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
    out_shape = graph.output_shape
    lam_out = rows.view(rows.shape[0], rows.shape[1], *out_shape)

    with torch.no_grad():
        ctx = BoundContext(plan, xl, xu, {}, deadline, chunk_elements)
        state = intermediate_sweep(ctx, given, use_crown=method != "ibp")
        out_lo, out_hi = state.intervals[graph.output_name]
        lower_rows = concretize_interval(rows, out_lo.reshape(batch, -1),
                                         out_hi.reshape(batch, -1))
        if method != "ibp":
            crown = backward_bound(ctx, graph.output_name, lam_out)
            lower_rows = torch.maximum(lower_rows, crown)

    inter = state.intermediate
    alphas = None
    if method == "alpha-crown":
        outcome = alpha_crown(ctx, state, graph.output_name, lam_out, lower_rows,
                              alpha or AlphaOptions(), alpha_init)
        lower_rows, inter, alphas = outcome.lower, outcome.intermediate, outcome.alphas
    upper = -lower_rows[:, k:] if need_upper else None
    return BoundResult(lower=lower_rows[:, :k], upper=upper, intermediate=dict(inter),
                       alphas=alphas)


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
    def fits(t: Tensor) -> bool:
        return t.device == like.device and (not t.is_floating_point() or t.dtype == like.dtype)

    if all(fits(t) for n in graph.nodes for t in n.tensors().values()):
        return graph
    nodes = []
    for n in graph.nodes:
        n2 = copy.copy(n)
        for attr, t in n.tensors().items():
            n2.set_tensor(attr, t.to(device=like.device,
                                     dtype=like.dtype if t.is_floating_point() else t.dtype))
        nodes.append(n2)
    return dataclasses.replace(graph, nodes=nodes, _by_name={})
