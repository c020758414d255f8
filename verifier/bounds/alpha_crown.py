"""alpha-CROWN: CROWN with the lower ReLU slopes ``α ∈ [0, 1]`` optimised by projected Adam.

Every ``α`` in ``[0, 1]`` gives a sound bound, so the optimisation only has to keep ``α`` in the
box (clamp after each step) and remember the best bound seen per element.

Slopes are separate per bound being computed: the final bound has one ``α`` per (domain,
output row, ReLU neuron); with ``optimise_intermediate`` every intermediate target (the input
of a nonlinear node whose bounds CROWN computed) has its own ``α`` per (domain, row, ReLU
neuron) too, and is recomputed each iteration — unless the estimated memory of doing so
exceeds ``AlphaOptions.intermediate_budget``, in which case only the final bound's slopes are
optimised and the intermediate bounds stay CROWN's. Intermediate slopes move either with the
final bound, for its sake (``intermediate_objective="joint"``), or first, target by target
in topological order, each for its own bounds (``"layerwise"``: :func:`_optimise_layerwise`).
Sigmoid/tanh nodes contribute tangent points ``θ ∈ [0, 1]`` per bound line instead of ReLU
slopes (keys ``name + LINE_LOWER`` / ``LINE_UPPER``, see :class:`LineRelaxation`).

Slope layout (``BoundResult.alphas``, accepted back as ``alpha_init``)::

    {relu_node_name: {"final": Tensor (B, K', *shape),
                      "intermediate": {target_node_name: Tensor (B, 2k, *shape)}}}

``K'`` is ``K`` (rows of ``C``), or ``2K`` with ``need_upper`` (rows of ``C`` then of ``−C``);
an intermediate target's ``2k`` rows are its ``k`` selected neurons' lower-bound rows then
upper-bound rows. Warm-start tensors whose shape does not fit (batch 1 broadcasts) are ignored.

With split constraints (``ctx.split_signs``, see :mod:`.beta_crown`) the final bound also
gets multipliers ``β >= 0`` per (domain, row, split neuron), optimised in the same loop with
their own learning rate (``AlphaOptions.lr_beta``) and projected onto ``β >= 0`` after each
step; intermediate bounds never use them (they are sound without). Like the final slopes, the
best multipliers are kept per (domain, row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from planecut.errors import check_deadline
from planecut.verifier.bounds.crown import (
    BoundContext,
    IntermediateState,
    backward_bound,
    crown_rows,
    make_relaxation,
    select_domains,
    tighten,
)
from planecut.verifier.bounds.beta_crown import initial_betas
from planecut.verifier.bounds.gcp_crown import CUT_KEY, initial_mus, initial_pi_fracs
from planecut.verifier.bounds.crown import LINE_LOWER, LINE_UPPER, PLANE_LOWER, PLANE_UPPER
from planecut.verifier.bounds.elementwise import ProductRelaxation, initial_plane_weight
from planecut.verifier.bounds.relaxations import LineRelaxation, ReluRelaxation
from planecut.verifier.bounds.types import AlphaOptions

Tensor = torch.Tensor
Interval = tuple[Tensor, Tensor]
Slopes = dict[str, Tensor]  # ReLU node name -> alpha of one bound target


@dataclass
class AlphaOutcome:
    lower: Tensor  # (B, K') best lower bound seen per element
    intermediate: dict[str, Interval]  # tightest intermediate bounds seen
    alphas: dict
    betas: dict[str, Tensor] | None = None  # best split multipliers, by ReLU name


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


def _line_nodes_on_path(ctx: BoundContext, relaxations: dict, name: str) -> list[str]:
    """S-shaped nodes (sigmoid, tanh) and products with finite factor bounds a backward pass
    from tensor ``name`` crosses: the nodes with optimisable lines or planes."""
    anc = ctx.plan.ancestors(name)
    out = []
    for n in ctx.plan.nonlinear_nodes:
        r = relaxations.get(n.name)
        if n.name in anc and ((isinstance(r, LineRelaxation) and r.fn is not None) or
                              (isinstance(r, ProductRelaxation) and r.weighted)):
            out.append(n.name)
    return out


def _initial_line_slopes(relax: LineRelaxation | ProductRelaxation, name: str, rows: int,
                         init: dict | None, key: str | None = None) -> Slopes:
    """Optimisable lower/upper slopes ``(B, rows, *shape)`` of an S-shaped node (or plane
    weights of a product): the warm start (``init[name + suffix]["final"]``, or
    ``["intermediate"][key]``) where it fits, else the relaxation's own slopes."""
    out: Slopes = {}
    if isinstance(relax, ProductRelaxation):
        half = initial_plane_weight(relax)
        sides = ((PLANE_LOWER, half), (PLANE_UPPER, half))
    else:
        sides = ((LINE_LOWER, relax.lower_point), (LINE_UPPER, relax.upper_point))
    for suffix, default in sides:
        entry = (init or {}).get(name + suffix, {})
        warm = entry.get("final") if key is None else entry.get("intermediate", {}).get(key)
        shape = (default.shape[0], rows, *default.shape[2:])
        if warm is not None and warm.dim() == len(shape) and tuple(warm.shape[1:]) == \
                shape[1:] and warm.shape[0] in (1, shape[0]):
            start = warm.to(default).expand(shape)
        else:
            start = default.detach().expand(shape)
        out[name + suffix] = start.clamp(0, 1).clone().requires_grad_(True)
    return out


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
        if not plan.relus_on_path(src) and not _line_nodes_on_path(ctx, state.relaxations, src):
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
                          ctx.chunk_elements, ctx.split_signs, ctx.cuts)
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
                start_lower: Tensor, options: AlphaOptions, alpha_init: dict | None = None,
                beta_init: dict | None = None,
                done: Callable[[Tensor], Tensor] | None = None) -> AlphaOutcome:
    """Maximise the lower bounds of ``lam_out · output`` (sum over rows and domains).

    ``start_lower`` ``(B, K')`` is a sound bound already known (CROWN ∩ IBP); the result is
    never looser, element by element. With split signs in ``ctx``, multipliers ``β`` are
    optimised too (warm start ``beta_init``). ``done(best_lower)`` returns a ``(B,)`` bool
    tensor of domains that need no more work (e.g. proven): the optimisation ends once all
    are done, and when only the final bound is optimised, done domains leave the batch once
    they are at least :data:`SHRINK_FRACTION` of it (:func:`_optimise_final`).
    """
    plan = ctx.plan
    init = alpha_init or {}
    rows_out = lam_out.shape[1]
    targets = _intermediate_targets(ctx, state, options)
    layer_slopes: dict[str, Slopes] = {}
    if targets and options.intermediate_objective == "layerwise":
        state, layer_slopes = _optimise_layerwise(ctx, state, targets, options, init)
        ctx.relaxations.update(state.relaxations)
        targets = {}

    final: Slopes = {}
    for relu in plan.relus_on_path(output):
        relax = state.relaxations[relu.name]
        if relax.index.numel() == 0:  # no unstable neuron: slopes would be unused
            continue
        final[relu.name] = _initial_slope(relax, rows_out, init.get(relu.name, {}).get("final"))
    for name in _line_nodes_on_path(ctx, state.relaxations, output):
        final.update(_initial_line_slopes(state.relaxations[name], name, rows_out, init))
    per_target = {name: _target_slopes(ctx, state.relaxations, name, rows, init)
                  for name, rows in targets.items()}

    betas = initial_betas(ctx.split_signs, rows_out, beta_init)
    if ctx.cuts is not None and ctx.cuts.count:
        betas[CUT_KEY] = initial_mus(ctx.cuts, ctx.batch, rows_out,
                                     None if beta_init is None else beta_init.get(CUT_KEY),
                                     start_lower)
        # (option) the upper-side weights of layers with indicator terms move with the slopes
        if options.optimise_cut_relaxation:
            final.update(initial_pi_fracs(ctx.cuts, state.relaxations, rows_out, init))
    keyed = list(final.items()) + [kv for s in per_target.values() for kv in s.items()]
    params = [a for _, a in keyed]
    best_lower = start_lower.detach().clone()
    best_inter = {k: (lo.detach().clone(), hi.detach().clone())
                  for k, (lo, hi) in state.intermediate.items()}
    best_final = {k: a.detach().clone() for k, a in final.items()}
    best_target = {t: {k: a.detach().clone() for k, a in s.items()} for t, s in per_target.items()}
    best_beta = {k: b.detach().clone() for k, b in betas.items()}
    best_domain_total = torch.full((ctx.batch,), -float("inf"), dtype=best_lower.dtype,
                                   device=best_lower.device)
    beta_params = list(betas.values())
    if not params and not beta_params:
        return AlphaOutcome(best_lower, best_inter, _pack(best_final, layer_slopes), best_beta)

    if not targets:
        _optimise_final(ctx, state.relaxations, output, lam_out, final, betas, best_lower,
                        best_final, best_beta, options, done)
        return AlphaOutcome(best_lower, best_inter, _pack(best_final, layer_slopes), best_beta)

    opt, sched = _adam(keyed, beta_params, options)
    best_total = -float("inf")
    stall = 0
    for it in range(options.iterations + 1):
        check_deadline(ctx.deadline)
        stepping = it < options.iterations
        with torch.set_grad_enabled(stepping):
            it_ctx, inter = _rebuild(ctx, state, targets, per_target)
            lower = backward_bound(it_ctx, output, lam_out, final, betas)
        with torch.no_grad():
            per_row = [(final[k], best_final[k]) for k in final] + \
                [(betas[k], best_beta[k]) for k in betas]
            _keep_best(lower, inter, per_row, per_target, best_lower, best_inter, best_target,
                       best_domain_total)
            if done is not None and bool(done(best_lower).all()):
                break
            best_total, stall = _track_stall(float(lower.sum()), best_total, stall)
        if not stepping or stall >= options.early_stop_patience or not lower.requires_grad:
            break
        _ascent_step(opt, sched, lower, params, beta_params)
    return AlphaOutcome(best_lower, best_inter, _pack(best_final, best_target), best_beta)


def _target_slopes(ctx: BoundContext, relaxations: dict, name: str, rows: Tensor,
                   init: dict) -> Slopes:
    """Optimisable parameters of the bound on intermediate target ``name`` (its input's
    ``rows``): ReLU slopes and S-shaped tangent points of every node on its path, ``2k`` rows
    each (lower-bound rows, then upper-bound rows), warm-started from ``init`` where they fit."""
    plan = ctx.plan
    src = plan.graph.node(name).inputs[0]
    slopes = {
        relu.name: _initial_slope(relaxations[relu.name], 2 * rows.numel(),
                                  init.get(relu.name, {}).get("intermediate", {}).get(name))
        for relu in plan.relus_on_path(src) if relaxations[relu.name].index.numel() > 0}
    for node_name in _line_nodes_on_path(ctx, relaxations, src):
        slopes.update(_initial_line_slopes(relaxations[node_name], node_name,
                                           2 * rows.numel(), init, key=name))
    return slopes


def _optimise_layerwise(ctx: BoundContext, state: IntermediateState,
                        targets: dict[str, Tensor], options: AlphaOptions, init: dict
                        ) -> tuple[IntermediateState, dict[str, Slopes]]:
    """Each intermediate target in topological order, optimised for its own bounds (the summed
    width of its rows), then frozen and relaxed for the targets after it.

    The joint mode moves intermediate slopes only through their effect on the final bound,
    a weak signal when the bounds are wide: on a 6x200 sigmoid MNIST net it left the
    intermediate bounds as CROWN's, where this mode halved the deeper layers' widths and
    raised the final bound from −30 to −1.5. Costs one optimisation per target."""
    relax = dict(state.relaxations)
    inter = dict(state.intermediate)
    lctx = BoundContext(ctx.plan, ctx.x_lower, ctx.x_upper, relax, ctx.deadline,
                        ctx.chunk_elements, ctx.split_signs)
    kept: dict[str, Slopes] = {}
    for node in ctx.plan.nonlinear_nodes:
        rows = targets.get(node.name)
        if rows is None:
            continue
        slopes = _target_slopes(ctx, relax, node.name, rows, init)
        if not slopes:
            continue
        lo, hi = inter[node.name]
        lo, hi, kept[node.name] = _optimise_target(lctx, node.inputs[0], rows, lo, hi, slopes,
                                                   options)
        inter[node.name] = (lo, hi)
        relax[node.name] = make_relaxation(node, lo, hi)
    return IntermediateState(state.intervals, inter, relax, state.refined), kept


def _optimise_target(ctx: BoundContext, src: str, rows: Tensor, lower: Tensor, upper: Tensor,
                     slopes: Slopes, options: AlphaOptions) -> tuple[Tensor, Tensor, Slopes]:
    """Projected Adam on one target's parameters, minimising its rows' summed width; returns
    its bounds intersected with the best seen per element, and the best parameters per row."""
    with torch.no_grad():
        best_lo = lower.reshape(lower.shape[0], -1).index_select(1, rows).clone()
        best_hi = upper.reshape(upper.shape[0], -1).index_select(1, rows).clone()
    best = {name: a.detach().clone() for name, a in slopes.items()}
    opt, sched = _adam(list(slopes.items()), [], options)
    for it in range(options.iterations + 1):
        check_deadline(ctx.deadline)
        stepping = it < options.iterations
        with torch.set_grad_enabled(stepping):
            lo, hi = crown_rows(ctx, src, rows, slopes)
        with torch.no_grad():
            lo_better = lo > best_lo
            hi_better = hi < best_hi
            best_lo.copy_(torch.where(lo_better, lo, best_lo))
            best_hi.copy_(torch.where(hi_better, hi, best_hi))
            row_better = torch.cat([lo_better, hi_better], dim=1)
            for name, a in slopes.items():
                best[name].copy_(_where_better(row_better, a, best[name]))
        # no early stop: Adam's first steps on tangent points oscillate for more than the
        # patience the final bound uses, and stopping there lost most of the gain (measured)
        if not stepping or not lo.requires_grad:
            break
        _ascent_step(opt, sched, lo - hi, list(slopes.values()), [])
    with torch.no_grad():
        lower, upper = tighten(lower, upper, rows, (best_lo, best_hi))
    return lower.detach(), upper.detach(), best


def _track_stall(total: float, best_total: float, stall: int) -> tuple[float, int]:
    """Early-stop bookkeeping: the best summed bound so far and the iterations since it rose
    by more than a relative 1e-7."""
    if best_total == -float("inf") or total > best_total + 1e-7 * (1.0 + abs(best_total)):
        return total, 0
    return best_total, stall + 1


def _ascent_step(opt: torch.optim.Optimizer, sched, lower: Tensor, alphas, betas) -> None:
    """One projected Adam step raising the summed lower bound: slopes back into [0, 1],
    multipliers back to >= 0 (any such values keep the bound sound)."""
    opt.zero_grad(set_to_none=True)
    (-lower.sum()).backward()
    opt.step()
    sched.step()
    with torch.no_grad():
        for a in alphas:
            a.clamp_(0, 1)
        for b in betas:
            b.clamp_(min=0)


def _is_line_key(key: str) -> bool:
    return key.endswith(LINE_LOWER) or key.endswith(LINE_UPPER)


def _adam(alphas: list[tuple[str, Tensor]], betas: list[Tensor], options: AlphaOptions,
          lrs: dict[str, float] | None = None):
    """Adam with one group per role, each with its learning rate, and their decay: ReLU slopes
    (``options.lr``), S-shaped tangent points (``options.lr_line``; keyed by
    :data:`LINE_LOWER`/:data:`LINE_UPPER`) and multipliers (``options.lr_beta``). ``lrs``
    (by role) overrides them, e.g. to continue a decayed schedule."""
    rates = {"alpha": options.lr, "line": options.lr_line, "beta": options.lr_beta}
    rates.update(lrs or {})
    members = {"alpha": [a for k, a in alphas if not _is_line_key(k)],
               "line": [a for k, a in alphas if _is_line_key(k)],
               "beta": list(betas)}
    groups = [{"params": p, "lr": rates[role], "role": role} for role, p in members.items() if p]
    try:  # the fused kernel is several times faster on CPUs and GPUs alike
        opt = torch.optim.Adam(groups, fused=True)
    except (RuntimeError, ValueError, TypeError):  # device or dtype without a fused kernel
        opt = torch.optim.Adam(groups)
    return opt, torch.optim.lr_scheduler.ExponentialLR(opt, options.lr_decay)


# once at least this fraction of the active domains is done, they leave the batch
SHRINK_FRACTION = 0.2


def _optimise_final(ctx: BoundContext, relaxations: dict, output: str, lam_out: Tensor,
                    final: Slopes, betas: Slopes, best_lower: Tensor, best_final: Slopes,
                    best_beta: Slopes, options: AlphaOptions,
                    done: Callable[[Tensor], Tensor] | None) -> None:
    """The optimisation loop when only the final bound's slopes and multipliers move (all
    intermediate bounds fixed: the branch-and-bound case). Updates the ``best_*`` tensors in
    place.

    Domains reported done (e.g. proven) stop costing anything: once they are at least
    :data:`SHRINK_FRACTION` of the active batch, the batch is cut down to the others — their
    context rows, parameters and Adam moments — and the loop goes on with those.
    """
    active = torch.arange(ctx.batch, device=best_lower.device)
    sub = BoundContext(ctx.plan, ctx.x_lower, ctx.x_upper, dict(relaxations), ctx.deadline,
                       ctx.chunk_elements, ctx.split_signs, ctx.cuts)
    lam = lam_out
    opt, sched = _adam(list(final.items()), list(betas.values()), options)
    best_total = -float("inf")
    stall = 0
    for it in range(options.iterations + 1):
        check_deadline(ctx.deadline)
        stepping = it < options.iterations
        with torch.set_grad_enabled(stepping):
            lower = backward_bound(sub, output, lam, final, betas)
        finished = None
        with torch.no_grad():
            pairs = [(final[k], best_final[k]) for k in final] + \
                [(betas[k], best_beta[k]) for k in betas]
            _keep_best_rows(lower, active, pairs, best_lower)
            if done is not None:
                finished = done(best_lower)[active]
                if bool(finished.all()):
                    break
            best_total, stall = _track_stall(float(lower.sum()), best_total, stall)
        if not stepping or stall >= options.early_stop_patience or not lower.requires_grad:
            break
        _ascent_step(opt, sched, lower, final.values(), betas.values())
        if finished is not None and float(finished.float().mean()) >= SHRINK_FRACTION:
            keep = (~finished).nonzero().flatten()
            active = active[keep]
            sub = select_domains(sub, keep)
            lam = lam[keep] if lam.shape[0] > 1 else lam
            final, betas, opt, sched = _select_params(final, betas, opt, keep, options)
            best_total, stall = -float("inf"), 0


def _keep_best_rows(lower: Tensor, active: Tensor, pairs: list[tuple[Tensor, Tensor]],
                    best_lower: Tensor) -> None:
    """Per (domain, row) best bound and parameters, for the ``active`` domains (rows of
    ``lower`` and of the current parameters) of the full ``best_*`` tensors."""
    lower = lower.detach()
    full = lower.shape[0] == best_lower.shape[0]
    old = best_lower if full else best_lower[active]
    better = lower > old
    new = torch.where(better, lower, old)
    if full:
        best_lower.copy_(new)
    else:
        best_lower[active] = new
    for a, best in pairs:
        if full:
            best.copy_(_where_better(better, a, best))
        else:
            best[active] = _where_better(better, a, best[active])


def _where_better(better: Tensor, current: Tensor, best: Tensor) -> Tensor:
    """``current`` (detached) where ``better`` ``(B, K)``, else ``best``: per-(domain, row)
    parameters ``(B, K, ...)`` kept with the bound they gave."""
    mask = better.view(*better.shape, *([1] * (current.dim() - 2)))
    return torch.where(mask, current.detach(), best)


def _select_params(final: Slopes, betas: Slopes, opt: torch.optim.Adam, keep: Tensor,
                   options: AlphaOptions):
    """The parameters' rows ``keep`` as new leaves, with an Adam that continues from the
    kept rows' moments and the current learning rates."""
    lrs = {g["role"]: g["lr"] for g in opt.param_groups}

    def cut(params: Slopes) -> Slopes:
        return {k: p.detach()[keep].clone().requires_grad_(True) for k, p in params.items()}

    new_final, new_betas = cut(final), cut(betas)
    new_opt, sched = _adam(list(new_final.items()), list(new_betas.values()), options, lrs)
    old_params = list(final.values()) + list(betas.values())
    new_params = list(new_final.values()) + list(new_betas.values())
    for p, q in zip(old_params, new_params):
        st = opt.state.get(p)
        if not st:
            continue
        new_opt.state[q] = {k: (v[keep].clone() if torch.is_tensor(v) and v.dim() > 0
                                and v.shape[0] == p.shape[0] else v) for k, v in st.items()}
    return new_final, new_betas, new_opt, sched


def _keep_best(lower: Tensor, inter: dict[str, Interval], per_row: list[tuple[Tensor, Tensor]],
               per_target: dict[str, Slopes], best_lower: Tensor,
               best_inter: dict[str, Interval], best_target: dict[str, Slopes],
               best_domain_total: Tensor) -> None:
    """Update, in place, the best bounds seen (per element) and the parameters that gave them:
    ``per_row`` pairs (current, best) of per-(domain, row) parameters (final slopes, split
    multipliers); intermediate slopes per domain, by its summed bound."""
    lower = lower.detach()
    row_better = lower > best_lower
    best_lower.copy_(torch.where(row_better, lower, best_lower))
    for a, best in per_row:
        best.copy_(_where_better(row_better, a, best))
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
