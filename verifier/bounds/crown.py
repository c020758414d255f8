"""CROWN: backward linear bound propagation on the graph DAG.

A lower bound of ``Λ·t`` for a tensor ``t`` is found by walking ``t``'s ancestors in reverse
topological order, turning the coefficients on each tensor into coefficients on its node's
inputs (linear nodes: the transposed map and ``Λ·b``; nonlinear nodes: their relaxation) and
adding them up where a tensor has several consumers (residual connections). At the input box
``Λ·x >= Λ⁺·x_L + Λ⁻·x_U``.

Intermediate bounds (inputs of nonlinear nodes) are computed in topological order, each by a
backward pass from that tensor that uses the relaxations of the nonlinear nodes before it, for
the rows that matter only (unstable ReLU inputs), in memory-bounded chunks, and intersected
with IBP.

Shapes: ``B`` domains; coefficient tensors are ``(Bλ, K, *shape)`` with ``Bλ ∈ {1, B}`` (rows
that are the same for every domain stay un-expanded until a relaxation makes them differ).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Mapping, Union

import torch

from planecut.errors import check_deadline
from planecut.verifier.bounds.beta_crown import add_split_terms, clamp_to_splits
from planecut.verifier.bounds.gcp_crown import (
    PI_SUFFIX,
    CutTerms,
    mu_of,
    relu_backward_gcp,
    rhs_term,
    seed_pending,
)
from planecut.verifier.bounds.elementwise import (
    CurveRelaxation,
    ProductRelaxation,
    curve_backward,
    curve_relaxation,
    product_backward,
    product_relaxation,
)
from planecut.verifier.bounds.ibp import ibp_node
from planecut.verifier.bounds.linear_backward import backward_linear, bias_term
from planecut.verifier.bounds.plan import GraphPlan, is_nonlinear
from planecut.verifier.bounds.relaxations import (
    LineRelaxation,
    MaxPoolRelaxation,
    ReluRelaxation,
    line_backward,
    line_backward_optimised,
    maxpool_backward,
    maxpool_relaxation,
    relu_backward,
    relu_relaxation,
    sigmoid_relaxation,
    tanh_relaxation,
)
from planecut.verifier.graph.ir import LinearNode, MaxPool, Node, Relu, Sigmoid, Tanh
from planecut.verifier.graph.ir_nonlinear import Elementwise, Product

Tensor = torch.Tensor
Interval = tuple[Tensor, Tensor]
Relaxation = Union[ReluRelaxation, LineRelaxation, MaxPoolRelaxation, CurveRelaxation,
                   ProductRelaxation]

DEFAULT_CHUNK_ELEMENTS = 2**26

RELAXATION_RULES: dict[type, Callable[..., Relaxation]] = {
    Relu: lambda node, l, u: relu_relaxation(l, u),
    Sigmoid: lambda node, l, u: sigmoid_relaxation(l, u),
    Tanh: lambda node, l, u: tanh_relaxation(l, u),
    MaxPool: maxpool_relaxation,
    Elementwise: curve_relaxation,
    Product: product_relaxation,
}


def make_relaxation(node: Node, lower: Tensor, upper: Tensor) -> Relaxation:
    """The linear relaxation of nonlinear ``node`` on its input bounds ``(B, *in_shape)``."""
    for kind, rule in RELAXATION_RULES.items():
        if isinstance(node, kind):
            return rule(node, lower, upper)
    raise NotImplementedError(f"CROWN has no relaxation for node kind {type(node).__name__}")


#: suffixes of the keys under which optimised tangent points of S-shaped nodes travel in
#: ``alphas`` (see :class:`LineRelaxation`)
LINE_LOWER, LINE_UPPER = "::lower_point", "::upper_point"
#: ... and the plane weights of products (see :class:`ProductRelaxation`)
PLANE_LOWER, PLANE_UPPER = "::lower_plane", "::upper_plane"


def nonlinear_backward(lam: Tensor, relax: Relaxation, alpha: Tensor | None,
                       line_slopes: tuple[Tensor, Tensor] | None = None
                       ) -> tuple[Tensor, Tensor]:
    """Coefficients on a nonlinear node's input and the constant its relaxation adds."""
    if isinstance(relax, ReluRelaxation):
        return relu_backward(lam, relax, alpha)
    if isinstance(relax, LineRelaxation):
        if line_slopes is not None and relax.fn is not None:
            return line_backward_optimised(lam, relax, *line_slopes)
        return line_backward(lam, relax)
    if isinstance(relax, CurveRelaxation):
        return curve_backward(lam, relax)
    if isinstance(relax, ProductRelaxation):
        return product_backward(lam, relax, line_slopes)
    return maxpool_backward(lam, relax)


@dataclass
class BoundContext:
    """What the backward passes of one bound computation share (no tensors of a pass)."""

    plan: GraphPlan
    x_lower: Tensor  # (B, *input_shape)
    x_upper: Tensor
    relaxations: dict[str, Relaxation] = field(default_factory=dict)  # by nonlinear node name
    deadline: float | None = None
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS
    # beta-CROWN: split signs (B, 1, *shape) by ReLU node name (see :mod:`.beta_crown`)
    split_signs: dict[str, Tensor] = field(default_factory=dict)
    # GCP-CROWN: cutting planes, used by passes given multipliers (see :mod:`.gcp_crown`)
    cuts: CutTerms | None = None

    @property
    def batch(self) -> int:
        return self.x_lower.shape[0]


@dataclass
class BackwardRecord:
    """Coefficients a backward pass met on the way (what branching heuristics and
    falsification need), filled by :func:`backward_bound` when given.

    ``relu_output[name]``: coefficient on the ReLU's output ``y`` before relaxation;
    ``relu_input[name]``: coefficient on its input ``z`` after relaxation (and split terms);
    ``input``: coefficient on the network input before concretisation. All ``(Bλ, K, *shape)``
    with ``Bλ ∈ {1, B}``; a tensor the pass never reached is absent (None for the input).
    """

    relu_output: dict[str, Tensor] = field(default_factory=dict)
    relu_input: dict[str, Tensor] = field(default_factory=dict)
    input: Tensor | None = None


def select_domains(ctx: BoundContext, keep: Tensor) -> BoundContext:
    """``ctx`` restricted to the domains ``keep`` (rows of every per-domain tensor: the input
    box, the relaxations' fields with a batch dimension, the split signs). Index tensors of the
    relaxations (unstable positions over the old batch) stay: a superset is still valid."""
    batch = ctx.batch

    def cut(t):
        if torch.is_tensor(t) and t.dim() >= 2 and t.shape[0] == batch and batch > 1:
            return t[keep]
        return t

    relaxations = {}
    for name, relax in ctx.relaxations.items():
        relaxations[name] = dataclasses.replace(
            relax, **{f.name: cut(getattr(relax, f.name)) for f in dataclasses.fields(relax)})
    return BoundContext(ctx.plan, ctx.x_lower[keep], ctx.x_upper[keep], relaxations,
                        ctx.deadline, ctx.chunk_elements,
                        {k: cut(v) for k, v in ctx.split_signs.items()}, ctx.cuts)


def concretize_input(lam: Tensor, x_lower: Tensor, x_upper: Tensor) -> Tensor:
    """``min over x ∈ [x_L, x_U]`` of ``Λ·x`` = ``Λ⁺·x_L + Λ⁻·x_U``: ``(B, K)``."""
    bl, k = lam.shape[:2]
    flat = lam.reshape(bl, k, -1)
    lo = x_lower.reshape(x_lower.shape[0], -1, 1)
    hi = x_upper.reshape(x_upper.shape[0], -1, 1)
    return (flat.clamp(min=0).matmul(lo) + flat.clamp(max=0).matmul(hi)).squeeze(-1)


def backward_bound(ctx: BoundContext, target: str, lam: Tensor,
                   alphas: Mapping[str, Tensor] | None = None,
                   betas: Mapping[str, Tensor] | None = None,
                   record: BackwardRecord | None = None) -> Tensor:
    """Lower bound ``(B, K)`` of ``Λ·t`` over the input box, ``Λ`` ``(Bλ, K, *t.shape)``.

    Every nonlinear ancestor of ``t`` must have a relaxation in ``ctx``; ``alphas`` (by ReLU
    node name, ``(B, K, *shape)``) replace the default lower slopes of unstable ReLUs;
    ``betas`` (same layout, ``>= 0``) are split multipliers: at a split ReLU's input the
    coefficient becomes ``Λ − β·s`` with ``s = ctx.split_signs`` (:mod:`.beta_crown`).
    ``record`` collects the coefficients met on the way. With cuts in ``ctx`` and their
    multipliers ``betas[CUT_KEY]`` ``(B, K, m)``, the GCP-CROWN terms join the pass
    (:mod:`.gcp_crown`; only for the network output as target).
    """
    plan = ctx.plan
    pending: dict[str, Tensor] = {target: lam}
    const: Tensor | None = None
    mu = mu_of(betas) if ctx.cuts is not None else None
    if mu is not None:
        for name, t in seed_pending(ctx.cuts, mu, plan.input_name).items():
            pending[name] = t if name not in pending else pending[name] + t
        const = rhs_term(ctx.cuts, mu)

    def accumulate(name: str, coeff: Tensor) -> None:
        prev = pending.get(name)
        pending[name] = coeff if prev is None else prev + coeff

    def add_const(c: Tensor | None) -> None:
        nonlocal const
        if c is not None:
            const = c if const is None else const + c

    for node in plan.backward_order(target):
        check_deadline(ctx.deadline)
        coeff = pending.pop(node.name, None)
        if coeff is None:
            continue
        if isinstance(node, LinearNode):
            add_const(bias_term(node, coeff))
            in_shapes = [plan.shape_of(i) for i in node.inputs]
            for name, c in zip(node.inputs, backward_linear(node, coeff, in_shapes)):
                accumulate(name, c)
        else:
            alpha = None if alphas is None else alphas.get(node.name)
            qa = None if mu is None else ctx.cuts.qa.get(node.name)
            if qa is not None:
                c, b = relu_backward_gcp(
                    coeff, ctx.relaxations[node.name], alpha, qa.weigh(mu),
                    None if alphas is None else alphas.get(node.name + PI_SUFFIX))
            else:
                slopes = None
                if alphas is not None and node.name + LINE_LOWER in alphas:
                    slopes = (alphas[node.name + LINE_LOWER], alphas[node.name + LINE_UPPER])
                elif alphas is not None and node.name + PLANE_LOWER in alphas:
                    slopes = (alphas[node.name + PLANE_LOWER], alphas[node.name + PLANE_UPPER])
                c, b = nonlinear_backward(coeff, ctx.relaxations[node.name], alpha, slopes)
            beta = None if betas is None else betas.get(node.name)
            if beta is not None:
                c = add_split_terms(c, beta, ctx.split_signs[node.name])
            if record is not None and isinstance(node, Relu):
                record.relu_output[node.name] = coeff
                record.relu_input[node.name] = c
            add_const(b)
            accumulate(node.inputs[0], c)
    coeff = pending.pop(plan.input_name, None)
    if record is not None:
        record.input = coeff
    if coeff is not None:
        add_const(concretize_input(coeff, ctx.x_lower, ctx.x_upper))
    if const is None:
        const = lam.new_zeros((1, lam.shape[1]))
    return const.expand(ctx.batch, -1)


def select_rows(node: Node, lower: Tensor, upper: Tensor) -> Tensor:
    """Flat indices of ``node``'s input whose bounds CROWN should tighten.

    ReLU: the neurons unstable (``l < 0 < u``) in some domain of the batch; the others are
    exact already. Other kinds: every neuron.
    """
    flat_l = lower.reshape(lower.shape[0], -1)
    if isinstance(node, Relu):
        flat_u = upper.reshape(upper.shape[0], -1)
        mask = ((flat_l < 0) & (flat_u > 0)).any(dim=0)
        return mask.nonzero().squeeze(1)
    return torch.arange(flat_l.shape[1], device=lower.device)


def crown_rows(ctx: BoundContext, tensor: str, rows: Tensor,
               alphas: Mapping[str, Tensor] | None = None) -> Interval:
    """CROWN lower and upper bounds ``(B, k)`` of the coordinates ``rows`` of ``tensor``.

    Each chunk of ``m`` rows is one backward pass with ``2m`` coefficient rows: ``+e_i`` (lower
    bounds) then ``−e_i`` (upper bound = −lower bound of ``−x_i``). ``alphas`` per ReLU are
    ``(B, 2k, *shape)`` laid out the same way (``k`` lower rows, then ``k`` upper rows).
    """
    plan = ctx.plan
    shape = plan.shape_of(tensor)
    n = plan.size_of(tensor)
    k = rows.numel()
    per_row = max(1, ctx.batch * plan.max_size_on_path(tensor))
    chunk = max(1, ctx.chunk_elements // (2 * per_row))
    dtype, device = ctx.x_lower.dtype, ctx.x_lower.device
    lowers, uppers = [], []
    for start in range(0, k, chunk):
        check_deadline(ctx.deadline)
        sel = rows[start:start + chunk]
        m = sel.numel()
        lam = torch.zeros(2 * m, n, dtype=dtype, device=device)
        ar = torch.arange(m, device=device)
        lam[ar, sel] = 1.0
        lam[ar + m, sel] = -1.0
        chunk_alphas = None
        if alphas is not None:
            chunk_alphas = {name: torch.cat([a[:, start:start + m], a[:, k + start:k + start + m]],
                                            dim=1)
                            for name, a in alphas.items()}
        res = backward_bound(ctx, tensor, lam.view(1, 2 * m, *shape), chunk_alphas)
        lowers.append(res[:, :m])
        uppers.append(-res[:, m:])
    return torch.cat(lowers, dim=1), torch.cat(uppers, dim=1)


def tighten(lower: Tensor, upper: Tensor, rows: Tensor, new: Interval) -> Interval:
    """Intersect ``[lower, upper]`` ``(B, *shape)`` with ``new`` on ``rows``.

    The values are the intersection; the gradient is ``new``'s everywhere (straight through).
    With the plain ``max``, a row whose new bound is looser than the old one passes no
    gradient to the slopes that made it, so one bad optimiser step that loosens every row
    would stall intermediate optimisation for good (seen on sigmoid nets)."""
    shape = lower.shape
    fl = lower.reshape(shape[0], -1)
    fu = upper.reshape(shape[0], -1)
    new_l, new_u = new
    best_l = new_l + (torch.maximum(fl.index_select(1, rows), new_l) - new_l).detach()
    best_u = new_u + (torch.minimum(fu.index_select(1, rows), new_u) - new_u).detach()
    fl = fl.index_copy(1, rows, best_l)
    fu = fu.index_copy(1, rows, best_u)
    return fl.reshape(shape), fu.reshape(shape)


@dataclass
class IntermediateState:
    """Result of the forward sweep: bounds of every tensor and of every nonlinear input.

    ``intervals``: IBP bounds (tightened by the pre-activation bounds) of every tensor.
    ``intermediate``: by nonlinear node name, bounds on its input.
    ``refined``: nonlinear node names whose bounds CROWN computed (alpha-CROWN may re-optimise
    them), with the rows it computed.
    """

    intervals: dict[str, Interval]
    intermediate: dict[str, Interval]
    relaxations: dict[str, Relaxation]
    refined: dict[str, Tensor]


def intermediate_sweep(ctx: BoundContext, given: Mapping[str, Interval], use_crown: bool,
                       known: Mapping[str, Interval] | None = None) -> IntermediateState:
    """Bounds of every nonlinear node's input, in topological order.

    A bound given by the caller replaces the computed one (it is used as is, not
    intersected). Otherwise IBP, intersected with the ``known`` bounds of that node if any
    (bounds that hold anyway, e.g. a parent domain's in branch and bound), then (``use_crown``)
    CROWN on the rows that still need it unless IBP is exact there, intersected with that.
    ReLU bounds are clamped by ``ctx.split_signs`` (beta-CROWN splits; a no-op on bounds
    already clamped) before rows are selected, so split neurons are never recomputed. The
    tightened bounds also tighten the IBP interval of that tensor for every later consumer.
    Fills ``ctx.relaxations`` as it goes.
    """
    plan = ctx.plan
    known = known or {}
    intervals: dict[str, Interval] = {plan.input_name: (ctx.x_lower, ctx.x_upper)}
    intermediate: dict[str, Interval] = {}
    refined: dict[str, Tensor] = {}
    done_tensors: dict[str, Interval] = {}
    for node in plan.nodes:
        check_deadline(ctx.deadline)
        if not is_nonlinear(node):
            intervals[node.name] = ibp_node(node, *(intervals[i] for i in node.inputs))
            continue
        src = node.inputs[0]
        signs = ctx.split_signs.get(node.name)
        if node.name in given:
            lo, hi = given[node.name]
        elif src in done_tensors:
            lo, hi = done_tensors[src]
        else:
            lo, hi = intervals[src]
            if node.name in known:
                k_lo, k_hi = known[node.name]
                lo, hi = torch.maximum(lo, k_lo), torch.minimum(hi, k_hi)
            lo, hi = clamp_to_splits(lo, hi, signs)
            if use_crown and not plan.ibp_is_exact(src):
                rows = select_rows(node, lo, hi)
                if rows.numel() > 0:
                    lo, hi = tighten(lo, hi, rows, crown_rows(ctx, src, rows))
                    refined[node.name] = rows
            done_tensors[src] = (lo, hi)
        lo, hi = clamp_to_splits(lo, hi, signs)
        intervals[src] = (lo, hi)
        intermediate[node.name] = (lo, hi)
        ctx.relaxations[node.name] = make_relaxation(node, lo, hi)
        intervals[node.name] = ibp_node(node, (lo, hi))
    return IntermediateState(intervals, intermediate, dict(ctx.relaxations), refined)
