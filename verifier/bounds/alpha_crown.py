"""alpha-CROWN: CROWN with the lower ReLU slopes ``α ∈ [0, 1]`` optimised by projected Adam.

Every ``α`` in ``[0, 1]`` gives a sound bound, so the optimisation only has to keep ``α`` in the
box (clamp after each step) and remember the best bound seen per element.

Slopes are separate per bound being computed: the final bound has one ``α`` per (domain,
output row, ReLU neuron); with ``optimise_intermediate`` every intermediate target (the input
of a nonlinear node whose bounds CROWN computed) has its own ``α`` per (domain, row, ReLU
neuron) too, and is recomputed each iteration — unless the estimated memory of doing so
exceeds ``AlphaOptions.intermediate_budget``, in which case only the final bound's slopes are
optimised and the intermediate bounds stay CROWN's.

Slope layout (``BoundResult.alphas``, accepted back as ``alpha_init``)::

    {relu_node_name: {"final": Tensor (B, K', *shape),
                      "intermediate": {target_node_name: Tensor (B, 2k, *shape)}}}

``K'`` is ``K`` (rows of ``C``), or ``2K`` with ``need_upper`` (rows of ``C`` then of ``−C``);
an intermediate target's ``2k`` rows are its ``k`` selected neurons' lower-bound rows then
upper-bound rows. Warm-start tensors whose shape does not fit (batch 1 broadcasts) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from planecut.errors import check_deadline
from planecut.verifier.bounds.crown import (
    BoundContext,
    IntermediateState,
    backward_bound,
    crown_rows,
    make_relaxation,
    tighten,
)
from planecut.verifier.bounds.relaxations import ReluRelaxation
from planecut.verifier.bounds.types import AlphaOptions

Tensor = torch.Tensor
Interval = tuple[Tensor, Tensor]
Slopes = dict[str, Tensor]  # ReLU node name -> alpha of one bound target


@dataclass
class AlphaOutcome:
    lower: Tensor  # (B, K') best lower bound seen per element
    intermediate: dict[str, Interval]  # tightest intermediate bounds seen
    alphas: dict


def _initial_slope(relax: ReluRelaxation, rows: int, init: Tensor | None) -> Tensor:
    """``(B, rows, *shape)`` slopes: the warm start if it fits, else the adaptive default."""
    batch = relax.default_alpha.shape[0]
    shape = (batch, rows, *relax.default_alpha.shape[2:])
    if init is not None and init.dim() == len(shape) and tuple(init.shape[1:]) == shape[1:] \
            and init.shape[0] in (1, batch):
        start = init.to(relax.default_alpha).expand(shape)
    else:
        start = relax.default_alpha.expand(shape)
    return start.clamp(0, 1).clone().requires_grad_(True)


def _intermediate_targets(ctx: BoundContext, state: IntermediateState,
                          options: AlphaOptions) -> dict[str, Tensor]:
    """The intermediate targets to re-optimise (name -> rows), or none when over budget."""
    if not options.optimise_intermediate:
        return {}
    plan = ctx.plan
    targets: dict[str, Tensor] = {}
    cost = 0
    for name, rows in state.refined.items():
        src = plan.graph.node(name).inputs[0]
        if not plan.relus_on_path(src):
            continue
        targets[name] = rows
        cost += 2 * rows.numel() * ctx.batch * plan.retained_size(src)
    return targets if cost <= options.intermediate_budget else {}


def _rebuild(ctx: BoundContext, state: IntermediateState, targets: dict[str, Tensor],
             slopes: dict[str, Slopes]) -> tuple[BoundContext, dict[str, Interval]]:
    """Recompute the targets' bounds with their slopes, in topological order, each intersected
    with the CROWN/IBP bounds; the other nonlinear nodes keep their bounds."""
    relax = dict(state.relaxations)
    it_ctx = BoundContext(ctx.plan, ctx.x_lower, ctx.x_upper, relax, ctx.deadline,
                          ctx.chunk_elements)
    inter = dict(state.intermediate)
    for node in ctx.plan.nonlinear_nodes:
        rows = targets.get(node.name)
        if rows is None:
            continue
        lo, hi = state.intermediate[node.name]
        new = crown_rows(it_ctx, node.inputs[0], rows, slopes[node.name])
        lo, hi = tighten(lo, hi, rows, new)
        inter[node.name] = (lo, hi)
        relax[node.name] = make_relaxation(node, lo, hi)
    return it_ctx, inter


def alpha_crown(ctx: BoundContext, state: IntermediateState, output: str, lam_out: Tensor,
                start_lower: Tensor, options: AlphaOptions, alpha_init: dict | None = None
                ) -> AlphaOutcome:
    """Maximise the lower bounds of ``lam_out · output`` (sum over rows and domains).

    ``start_lower`` ``(B, K')`` is a sound bound already known (CROWN ∩ IBP); the result is
    never looser, element by element.
    """
    plan = ctx.plan
    init = alpha_init or {}
    rows_out = lam_out.shape[1]
    targets = _intermediate_targets(ctx, state, options)

    final: Slopes = {}
    for relu in plan.relus_on_path(output):
        relax = state.relaxations[relu.name]
        if relax.index.numel() == 0:  # no unstable neuron: slopes would be unused
            continue
        final[relu.name] = _initial_slope(relax, rows_out, init.get(relu.name, {}).get("final"))
    per_target: dict[str, Slopes] = {}
    for name, rows in targets.items():
        src = plan.graph.node(name).inputs[0]
        per_target[name] = {
            relu.name: _initial_slope(
                state.relaxations[relu.name], 2 * rows.numel(),
                init.get(relu.name, {}).get("intermediate", {}).get(name))
            for relu in plan.relus_on_path(src)
            if state.relaxations[relu.name].index.numel() > 0}

    params = list(final.values()) + [a for s in per_target.values() for a in s.values()]
    best_lower = start_lower.detach().clone()
    best_inter = {k: (lo.detach().clone(), hi.detach().clone())
                  for k, (lo, hi) in state.intermediate.items()}
    best_final = {k: a.detach().clone() for k, a in final.items()}
    best_target = {t: {k: a.detach().clone() for k, a in s.items()} for t, s in per_target.items()}
    best_domain_total = torch.full((ctx.batch,), -float("inf"), dtype=best_lower.dtype,
                                   device=best_lower.device)
    if not params:
        return AlphaOutcome(best_lower, best_inter, _pack(best_final, best_target))

    opt = torch.optim.Adam(params, lr=options.lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, options.lr_decay)
    best_total = -float("inf")
    stall = 0
    for it in range(options.iterations + 1):
        check_deadline(ctx.deadline)
        stepping = it < options.iterations
        with torch.set_grad_enabled(stepping):
            it_ctx, inter = _rebuild(ctx, state, targets, per_target)
            lower = backward_bound(it_ctx, output, lam_out, final)
        with torch.no_grad():
            _keep_best(lower, inter, final, per_target, best_lower, best_inter, best_final,
                       best_target, best_domain_total)
            total = float(lower.sum())
            if total > best_total + 1e-7 * (1.0 + abs(best_total)):
                best_total, stall = total, 0
            else:
                stall += 1
        if not stepping or stall >= options.early_stop_patience or not lower.requires_grad:
            break
        opt.zero_grad(set_to_none=True)
        (-lower.sum()).backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for a in params:
                a.clamp_(0, 1)
    return AlphaOutcome(best_lower, best_inter, _pack(best_final, best_target))


def _keep_best(lower: Tensor, inter: dict[str, Interval], final: Slopes,
               per_target: dict[str, Slopes], best_lower: Tensor,
               best_inter: dict[str, Interval], best_final: Slopes,
               best_target: dict[str, Slopes], best_domain_total: Tensor) -> None:
    """Update, in place, the best bounds seen (per element) and the slopes that gave them
    (final slopes per (domain, row); intermediate slopes per domain, by its summed bound)."""
    lower = lower.detach()
    row_better = lower > best_lower
    best_lower.copy_(torch.where(row_better, lower, best_lower))
    for name, a in final.items():
        mask = row_better.view(*row_better.shape, *([1] * (a.dim() - 2)))
        best_final[name].copy_(torch.where(mask, a.detach(), best_final[name]))
    for name, (lo, hi) in inter.items():
        blo, bhi = best_inter[name]
        best_inter[name] = (torch.maximum(blo, lo.detach()), torch.minimum(bhi, hi.detach()))
    domain_total = lower.sum(dim=1)
    domain_better = domain_total > best_domain_total
    best_domain_total.copy_(torch.where(domain_better, domain_total, best_domain_total))
    for t, slopes in per_target.items():
        for name, a in slopes.items():
            mask = domain_better.view(-1, *([1] * (a.dim() - 1)))
            best_target[t][name].copy_(torch.where(mask, a.detach(), best_target[t][name]))


def _pack(final: Slopes, per_target: dict[str, Slopes]) -> dict:
    out: dict[str, dict] = {}
    for name, a in final.items():
        out.setdefault(name, {"final": None, "intermediate": {}})["final"] = a
    for t, slopes in per_target.items():
        for name, a in slopes.items():
            out.setdefault(name, {"final": None, "intermediate": {}})["intermediate"][t] = a
    return out
