"""Projected gradient descent on the spec's violation margin.

The margin (see :mod:`planecut.verifier.spec_tensors`) is ``<= 0`` exactly where the property is
violated: for a disjunct, the max over its rows of ``C·y - d``; for the spec, the min over
disjuncts. Minimising it over each input box is a search for counterexamples.

Every point of the search has a *target*: the whole spec (the min over disjuncts, which follows
whichever disjunct is closest) or one disjunct (its rows only), so that restarts spread over
the disjuncts instead of all chasing the one nearest at the start. The points are
a grid of regions × restarts run as one batch, cut into chunks only when the batch would not
fit in memory (:func:`chunk_points`); chunks run one after the other, the centre starts of
every region first, so an easy counterexample ends the search after the first chunk.

A point whose margin reaches ``<= 0`` is only a *candidate*. With ``confirm`` (onnxruntime on
the original model, :mod:`planecut.verifier.attack.check`) the search stops only once a
candidate is confirmed; a rejected one (rounding differences right at the boundary) keeps the
search going until the margin is clearly negative.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from planecut.errors import check_deadline
from planecut.verifier.graph.ir import Graph
from planecut.verifier.spec_tensors import SpecTensors

Tensor = torch.Tensor
#: ``confirm(x (M, n_in), region (M,))``: a confirmed counterexample among the points, or None
Confirm = Callable[[Tensor, Tensor], Any]

#: elements kept alive per chunk on the CPU (inputs, activations, their gradients, spec rows)
CPU_MAX_ELEMENTS = 1 << 25
#: at most this many candidates of one step go to ``confirm``
CONFIRM_BATCH = 8
#: step schedule: momentum of the signed steps, the final step as a fraction of the first,
#: steps without progress (as a fraction of all steps, at least 3) before a point halves its
#: step and goes back to its best
MOMENTUM = 0.75
DECAY_TO = 0.01
PATIENCE = 0.1


@dataclass
class AttackOutcome:
    """Best points found: ``x`` (N, n_in) flat, their margins (N,), and which spec region each
    belongs to (index into ``Spec.regions``). Sorted by margin, most violating first.
    ``counterexample`` is what ``confirm`` returned for a confirmed point (else None);
    ``rejected`` counts the candidates it turned down; ``points`` how many points ran."""

    x: Tensor
    margin: Tensor
    region: Tensor
    steps: int
    seconds: float
    counterexample: Any = None
    rejected: int = 0
    points: int = 0

    @property
    def best_margin(self) -> float:
        return float(self.margin[0]) if self.margin.numel() else float("inf")


def pgd_attack(graph: Graph, spec: SpecTensors, *, restarts: int, steps: int,
               step_size: float = 0.25, generator: torch.Generator | None = None,
               deadline: float | None = None, stop_on_violation: bool = True,
               extra_starts: Tensor | None = None, top: int = 8,
               confirm: Confirm | None = None, max_elements: int | None = None
               ) -> AttackOutcome:
    """Minimise the violation margin from ``restarts`` starts per region.

    Signed-gradient steps (L-inf geometry, like the boxes) with heavy-ball momentum; the step
    starts at ``step_size`` times the box width, decays geometrically to 1% of it over
    ``steps``, and a point whose target has not improved for a while is sent back to its best
    point with half the step. Starts: the box centre (one per target, the disjuncts closest to
    violation there first, for at most half the restarts), then uniform random points and
    random vertices (one in four). ``extra_starts``
    (M, n_in) may replace starts of region 0 (e.g. bound-minimising inputs).

    Stops once ``confirm`` accepts a candidate, or (without ``confirm``) once some point has
    margin <= 0, if ``stop_on_violation``. ``max_elements`` caps the tensor elements one chunk
    keeps alive (default: from free GPU memory, or :data:`CPU_MAX_ELEMENTS`). The deadline
    is checked before every step. Returns the ``top`` best points overall.
    """
    t0 = time.monotonic()
    search = _Search(graph, spec, restarts, generator, confirm, stop_on_violation, deadline)
    if extra_starts is not None and extra_starts.numel():
        search.extra = extra_starts[:max(0, restarts - 1)].to(spec.lower)
    cap = max_elements if max_elements is not None else _default_max_elements(spec.lower)
    steps = max(1, steps)
    done = 0
    for s0, s1, r0, r1 in chunk_points(restarts, spec.num_regions,
                                       search.elements_per_point(), cap):
        done = max(done, search.run_chunk(s0, s1, r0, r1, steps, step_size))
        if search.finished:
            break
    return search.outcome(top, done, time.monotonic() - t0)


def chunk_points(slots: int, regions: int, per_point: int, max_elements: int
                 ) -> list[tuple[int, int, int, int]]:
    """Rectangles ``(s0, s1, r0, r1)`` of the slots × regions grid that cover it in order,
    each at most ``max_elements // per_point`` points: whole slot ranges of every region where
    one slot of every region fits, else ranges of regions one slot at a time."""
    n = max(1, max_elements // max(1, per_point))
    if n >= regions:
        ns = max(1, n // regions)
        return [(s, min(s + ns, slots), 0, regions) for s in range(0, slots, ns)]
    return [(s, s + 1, r, min(r + n, regions)) for s in range(slots)
            for r in range(0, regions, n)]


def _default_max_elements(like: Tensor) -> int:
    if like.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(like.device)
        # a third of what is free, leaving room for autograd's temporaries
        return max(1 << 20, free // (3 * like.element_size()))
    return CPU_MAX_ELEMENTS


class _Search:
    """State of one attack over all chunks: targets, best points, the confirmation rule."""

    def __init__(self, graph: Graph, spec: SpecTensors, restarts: int,
                 generator: torch.Generator | None, confirm: Confirm | None,
                 stop_on_violation: bool, deadline: float | None) -> None:
        self.graph, self.spec, self.restarts = graph, spec, restarts
        self.gen, self.confirm, self.stop = generator, confirm, stop_on_violation
        self.deadline = deadline
        self.extra: Tensor | None = None
        self.best: list[tuple[Tensor, Tensor, Tensor]] = []  # per chunk: x, margin, region
        self.counterexample = None
        self.rejected = 0
        self.points = 0
        # a candidate must beat this margin (lowered after each rejection)
        self.threshold = 0.0
        self.scale = max(1.0, float(spec.d.abs().max())) if spec.d.numel() else 1.0
        self.found = False  # a candidate, when there is no ``confirm`` to ask
        # (R,) how many of a region's first slots start at its centre
        self.centre_slots = torch.ones(spec.num_regions, dtype=torch.long,
                                       device=spec.lower.device)
        self.targets = self._targets()

    @property
    def finished(self) -> bool:
        return self.counterexample is not None or self.found

    def elements_per_point(self) -> int:
        """Tensor elements one point keeps alive: input copies (point, best, momentum,
        gradient), every node's output and its gradient, and its share of the spec rows."""
        g, st = self.graph, self.spec
        return 4 * g.num_inputs + 2 * sum(n.size for n in g.nodes) + 2 * int(st.C.shape[1])

    # ------------------------------------------------------------------ margins
    def disjunct_values(self, y: Tensor, r0: int, r1: int) -> tuple[Tensor, Tensor]:
        """Per-disjunct margins and losses, each ``(ns, nr, J)``, of outputs ``y``
        ``(ns * nr, n_out)`` of the points of regions ``r0:r1`` (slot-major). Each region's
        rows apply to its own points, without repeating ``C`` per point.

        The margin is the max over the disjunct's rows of ``C·y - d`` (``<= 0``: violated).
        The loss is the sum of the rows' positive parts while some row is positive, the
        margin once none is: it pushes every unsatisfied row at once, where the max moves
        only the worst one and zigzags between rows (the same as the margin for one row).
        """
        st = self.spec
        C, d = st.C[r0:r1], st.d[r0:r1]
        nr = r1 - r0
        ys = y.reshape(-1, nr, C.shape[2])
        rows = torch.einsum("sro,rko->srk", ys, C) - d.unsqueeze(0)
        J = st.num_disjuncts
        index = st.row_disjunct[r0:r1].unsqueeze(0).expand_as(rows)
        shape = (ys.shape[0], nr, J + 1)
        worst = rows.new_full(shape, float("-inf")).scatter_reduce(
            2, index, rows, reduce="amax", include_self=True)[..., :J]
        excess = rows.new_zeros(shape).scatter_reduce(
            2, index, torch.relu(rows), reduce="sum", include_self=True)[..., :J]
        padding = ~st.disjunct_valid[r0:r1].unsqueeze(0)
        loss = excess + torch.clamp(worst, max=0)
        return (worst.masked_fill(padding, float("inf")),
                loss.masked_fill(padding, float("inf")))

    def _targets(self) -> Tensor:
        """``(R, S)`` target of each slot: -1 (the whole spec) or a disjunct, cycling through
        the region's disjuncts from the one closest to violation at the box centre."""
        st = self.spec
        R, S = st.num_regions, self.restarts
        targets = torch.full((R, S), -1, dtype=torch.long, device=st.lower.device)
        if st.num_disjuncts <= 1:
            return targets
        with torch.no_grad():
            vals = self.disjunct_values(self.graph.forward((st.lower + st.upper) / 2),
                                        0, R)[0][0]
        order = torch.argsort(vals.nan_to_num(float("inf")), dim=1)
        valid = st.disjunct_valid.sum(dim=1, keepdim=True)
        cycle = torch.where(valid > 1, valid + 1, torch.ones_like(valid))  # (R, 1)
        pos = torch.arange(S, device=cycle.device).unsqueeze(0) % cycle
        targets = torch.where(pos == 0, targets, order.gather(1, (pos - 1).clamp(min=0)))
        # centre starts for at most half the slots: the rest start at random points
        self.centre_slots = cycle.squeeze(1).clamp(max=max(1, S // 2))
        return targets

    # ------------------------------------------------------------------ one chunk
    def _starts(self, s0: int, s1: int, r0: int, r1: int) -> Tensor:
        st = self.spec
        lo, hi = st.lower[r0:r1].unsqueeze(0), st.upper[r0:r1].unsqueeze(0)
        ns = s1 - s0
        shape = (ns, r1 - r0, lo.shape[-1])
        u = torch.rand(shape, generator=self.gen, dtype=torch.float32).to(lo)
        kind = torch.rand((ns, r1 - r0, 1), generator=self.gen).to(lo.device)
        x = torch.where(kind < 0.25, torch.where(u < 0.5, lo, hi), lo + u * (hi - lo))
        # the first slots of a region start at its centre, one per target
        slot = torch.arange(s0, s1, device=x.device).unsqueeze(1)
        centre = (slot < self.centre_slots[r0:r1].unsqueeze(0)).unsqueeze(-1)
        x = torch.where(centre, ((lo + hi) / 2).expand_as(x), x)
        if self.extra is not None and r0 == 0:
            for i in range(self.extra.shape[0]):
                if s0 <= 1 + i < s1:
                    x[1 + i - s0, 0] = self.extra[i]
            x = torch.maximum(torch.minimum(x, hi), lo)
        return x.reshape(ns * (r1 - r0), -1)

    def run_chunk(self, s0: int, s1: int, r0: int, r1: int, steps: int, step_size: float
                  ) -> int:
        """PGD on the points of slots ``s0:s1`` of regions ``r0:r1``; returns the steps run."""
        st = self.spec
        lo = st.lower[r0:r1].repeat(s1 - s0, 1)
        hi = st.upper[r0:r1].repeat(s1 - s0, 1)
        width = hi - lo
        target = self.targets[r0:r1, s0:s1].t().reshape(-1)
        region = st.region_index[r0:r1].repeat(s1 - s0)
        x = self._starts(s0, s1, r0, r1)
        self.points += x.shape[0]
        N = x.shape[0]
        best_x = x.clone()
        best_m = x.new_full((N,), float("inf"))
        best_loss = x.new_full((N,), float("inf"))
        alpha = x.new_full((N, 1), step_size)
        stall = torch.zeros(N, dtype=torch.long, device=x.device)
        patience = max(3, int(steps * PATIENCE))
        decay = DECAY_TO ** (1.0 / max(1, steps - 1))
        velocity = torch.zeros_like(x)
        done = 0
        for step in range(steps):
            check_deadline(self.deadline)
            x.requires_grad_(True)
            dv, lv = self.disjunct_values(self.graph.forward(x), r0, r1)
            dv, lv = dv.reshape(N, -1), lv.reshape(N, -1)
            margin = dv.min(dim=1).values
            picked = lv.gather(1, target.clamp(min=0).unsqueeze(1)).squeeze(1)
            loss = torch.where(target >= 0, picked, lv.min(dim=1).values)
            done = step + 1
            with torch.no_grad():
                improved = margin < best_m
                best_m = torch.where(improved, margin, best_m)
                best_x[improved] = x[improved].detach()
                better = loss < best_loss - 1e-6 * self.scale
                best_loss = torch.where(better, loss.detach(), best_loss)
                stall = torch.where(better, torch.zeros_like(stall), stall + 1)
            if self._check(best_x, best_m, region) or step == steps - 1:
                break
            finite = torch.isfinite(loss)
            if not bool(finite.any()):
                break
            (grad,) = torch.autograd.grad(loss[finite].sum(), x)
            with torch.no_grad():
                direction = grad.sign()
                flat = (direction == 0).all(dim=1)
                if bool(flat.any()):  # no gradient at all (dead or saturated units): a random step
                    noise = torch.rand(direction[flat].shape, generator=self.gen)
                    direction[flat] = (noise.to(direction) < 0.5).to(direction) * 2 - 1
                velocity = MOMENTUM * velocity + direction
                x = x.detach() - alpha * width * velocity.sign()
                # a point stuck for `patience` steps goes back to its best with half the step
                stuck = stall >= patience
                if bool(stuck.any()):
                    x[stuck] = best_x[stuck]
                    velocity[stuck] = 0
                    alpha[stuck] *= 0.5
                    stall[stuck] = 0
                x = torch.maximum(torch.minimum(x, hi), lo)
                alpha *= decay
        self.best.append((best_x.detach(), best_m.detach(), region))
        return done

    def _check(self, best_x: Tensor, best_m: Tensor, region: Tensor) -> bool:
        """Whether the search is over: a candidate confirmed (or, without ``confirm``, one
        found). Rejected candidates lower the threshold the next ones must beat."""
        mmin = float(best_m.min())
        if not (mmin <= self.threshold):
            return False
        if self.confirm is None:
            self.found = self.stop
            return self.stop
        cand = torch.nonzero(best_m <= self.threshold).flatten()
        cand = cand[torch.argsort(best_m[cand])][:CONFIRM_BATCH]
        cex = self.confirm(best_x[cand].detach(), region[cand])
        if cex is not None:
            self.counterexample = cex
            return True
        self.rejected += int(cand.numel())
        self.threshold = min(2 * mmin, mmin - 1e-6 * self.scale)
        return False

    # ------------------------------------------------------------------ result
    def outcome(self, top: int, steps: int, seconds: float) -> AttackOutcome:
        x = torch.cat([b[0] for b in self.best])
        m = torch.cat([b[1] for b in self.best])
        region = torch.cat([b[2] for b in self.best])
        order = torch.argsort(m)[:top]
        x, m, region = x[order], m[order], region[order]
        if self.confirm is not None and self.counterexample is None and m.numel() \
                and not (float(m[0]) <= 0):
            # the IR and onnxruntime may round differently right at the boundary
            self.counterexample = self.confirm(x[:1], region[:1])
        return AttackOutcome(x=x, margin=m, region=region, steps=steps, seconds=seconds,
                             counterexample=self.counterexample, rejected=self.rejected,
                             points=self.points)

