"""Projected gradient descent on the spec's violation margin.

The margin (see :mod:`planecut.verifier.spec_tensors`) is ``<= 0`` exactly where the property is
violated, so minimising it over each input box is a search for counterexamples. All regions and
all random restarts run as one batch; every disjunct is attacked at once through the min over
disjuncts. Points whose margin reaches ``<= 0`` are only *candidates*: the caller confirms them
with onnxruntime (:mod:`planecut.verifier.attack.check`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from planecut.errors import check_deadline
from planecut.verifier.graph.ir import Graph
from planecut.verifier.spec_tensors import SpecTensors

Tensor = torch.Tensor


@dataclass
class AttackOutcome:
    """Best points found: ``x`` (N, n_in) flat, their margins (N,), and which spec region each
    belongs to (index into ``Spec.regions``). Sorted by margin, most violating first."""

    x: Tensor
    margin: Tensor
    region: Tensor
    steps: int
    seconds: float

    @property
    def best_margin(self) -> float:
        return float(self.margin[0]) if self.margin.numel() else float("inf")


def pgd_attack(graph: Graph, spec: SpecTensors, *, restarts: int, steps: int,
               step_size: float = 0.25, generator: torch.Generator | None = None,
               deadline: float | None = None, stop_on_violation: bool = True,
               extra_starts: Tensor | None = None, top: int = 8) -> AttackOutcome:
    """Minimise the violation margin from ``restarts`` random points per region.

    Signed-gradient steps (L-inf geometry, like the boxes) with a step that starts at
    ``step_size`` times the box width and decays geometrically to 1% of it, so early steps
    explore and late ones settle on a vertex or a kink. The first restart of each region starts
    at the box centre. ``extra_starts`` (M, n_in) may add starting points for region 0 of
    ``spec`` (e.g. bound-minimising inputs). Stops early once some point has margin <= 0 if
    ``stop_on_violation``. Returns the ``top`` best points overall.
    """
    t0 = time.monotonic()
    R = spec.num_regions
    batch = spec.repeat(restarts)
    lo, hi = batch.lower, batch.upper
    width = hi - lo
    u = torch.rand(lo.shape, generator=generator, dtype=torch.float32).to(lo)
    x = lo + u * width
    x.view(R, restarts, -1)[:, 0] = (spec.lower + spec.upper) / 2
    if extra_starts is not None and extra_starts.numel():
        m = min(extra_starts.shape[0], restarts - 1)
        if m > 0:
            x.view(R, restarts, -1)[0, 1:1 + m] = extra_starts[:m].to(x)
    best_x = x.detach().clone()
    best_m = torch.full((x.shape[0],), float("inf"), dtype=x.dtype, device=x.device)
    decay = (0.01 ** (1.0 / max(1, steps - 1))) if steps > 1 else 1.0
    alpha = step_size
    done = 0
    for step in range(max(1, steps)):
        check_deadline(deadline)
        x.requires_grad_(True)
        margin = batch.margin(graph.forward(x))
        with torch.no_grad():
            improved = margin < best_m
            best_m = torch.where(improved, margin, best_m)
            best_x[improved] = x[improved].detach()
        done = step + 1
        if stop_on_violation and bool((best_m <= 0).any()):
            break
        if step == steps - 1:
            break
        finite = torch.isfinite(margin)
        if not bool(finite.any()):
            break
        (grad,) = torch.autograd.grad(margin[finite].sum(), x)
        with torch.no_grad():
            x = x.detach() - alpha * width * grad.sign()
            x = torch.maximum(torch.minimum(x, hi), lo)
        alpha *= decay
    order = torch.argsort(best_m)[:top]
    return AttackOutcome(x=best_x[order].detach(), margin=best_m[order].detach(),
                         region=batch.region_index[order], steps=done,
                         seconds=time.monotonic() - t0)
