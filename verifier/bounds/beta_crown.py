"""beta-CROWN: ReLU split constraints as Lagrange multipliers in the backward pass.

Branch and bound fixes the sign of some pre-activations: a split ``s_j = +1`` asserts
``z_j >= 0`` (active), ``s_j = −1`` asserts ``z_j <= 0`` (inactive). Two things use a split:

1. **Clamping.** The neuron's bounds become ``l_j := max(l_j, 0)`` (active) or
   ``u_j := min(u_j, 0)`` (inactive), so its ReLU is stable and relaxed exactly.
   :func:`clamp_to_splits` does this; it is idempotent, so callers may pass bounds already
   clamped (branch and bound inherits them from the parent).
2. **The multiplier.** Clamping alone forgets that the constraint couples ``z_j`` to the
   *earlier* layers: a bound that only sees ``y_j = z_j`` (or ``y_j = 0``) still ranges over
   inputs where ``z_j`` has the other sign. Writing the constraint as ``g_j(z) = −s_j·z_j <= 0``,
   weak duality gives, for any ``β_j >= 0``,

       min { Λ·y : split constraints }  >=  min { Λ·y + Σ_j β_j·(−s_j·z_j) }

   so when the backward pass reaches the split layer's pre-activation, the coefficient on
   ``z_j`` is shifted by ``−β_j·s_j`` (:func:`add_split_terms`). There is no constant term.
   Every ``β >= 0`` is sound; the bound is concave in ``β`` (for fixed slopes) and optimised
   jointly with the alpha slopes by projected Adam (:mod:`.alpha_crown`). With optimal
   ``α`` and ``β`` the bound equals the LP over the triangle relaxation plus the split
   constraints (strong duality).

Layout: splits arrive as one int8 tensor ``(B, n_l)`` per ReLU layer (``Graph.relu_nodes``
order) and are kept as float signs ``(B, 1, *shape)`` by node name so that they broadcast
against coefficient tensors ``(B, K, *shape)``. Multipliers (``BoundResult.betas``, accepted
back as ``beta_init``) are ``{relu_node_name: Tensor (B, K', *shape)}``: one ``β`` per domain,
spec row and neuron (rows are separate objectives, so separate multipliers are never worse),
zero wherever the neuron is not split.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from planecut.verifier.graph.ir import Graph

Tensor = torch.Tensor
Interval = tuple[Tensor, Tensor]


def split_signs(graph: Graph, splits: Sequence[Tensor], batch: int, like: Tensor
                ) -> dict[str, Tensor]:
    """``{relu name: float signs (B, 1, *shape)}`` for the ReLU layers with any split.

    ``splits[i]`` is ``(B or 1, n_i)`` (or ``(B, *shape)``) with values in ``{−1, 0, +1}``.
    """
    relus = graph.relu_nodes
    if len(splits) != len(relus):
        raise ValueError(f"splits: expected {len(relus)} tensors (one per ReLU layer), "
                         f"got {len(splits)}")
    out: dict[str, Tensor] = {}
    for relu, s in zip(relus, splits):
        if s is None:
            continue
        s = s.to(device=like.device)
        if s.numel() == 0 or not bool((s != 0).any()):
            continue
        sign = s.to(like.dtype).reshape(-1, *relu.shape)
        if sign.shape[0] not in (1, batch):
            raise ValueError(f"splits for {relu.name}: batch {sign.shape[0]}, expected {batch}")
        out[relu.name] = sign.expand(batch, *relu.shape).unsqueeze(1)
    return out


def clamp_to_splits(lower: Tensor, upper: Tensor, sign: Tensor | None) -> Interval:
    """Bounds ``(B, *shape)`` restricted by the split signs ``(B, 1, *shape)``:
    active ``l := max(l, 0)``, inactive ``u := min(u, 0)``."""
    if sign is None:
        return lower, upper
    s = sign.squeeze(1)
    lower = torch.where(s > 0, lower.clamp(min=0), lower)
    upper = torch.where(s < 0, upper.clamp(max=0), upper)
    return lower, upper


def add_split_terms(coeff: Tensor, beta: Tensor, sign: Tensor) -> Tensor:
    """Coefficients on a split layer's pre-activation plus the Lagrangian term: ``Λ − β·s``."""
    return coeff - beta * sign


def initial_betas(signs: Mapping[str, Tensor], rows: int, init: Mapping[str, Tensor] | None
                  ) -> dict[str, Tensor]:
    """Multipliers ``(B, rows, *shape)`` that require grad: the warm start where it fits
    (batch 1 broadcasts; negative entries are projected to 0), else zeros; always zero where
    the neuron is not split (a warm start from a parent has no multiplier for its new split)."""
    out: dict[str, Tensor] = {}
    for name, sign in signs.items():
        shape = (sign.shape[0], rows, *sign.shape[2:])
        start = None
        if init is not None:
            b = init.get(name)
            if b is not None and b.dim() == len(shape) and tuple(b.shape[1:]) == shape[1:] \
                    and b.shape[0] in (1, shape[0]):
                start = b.to(sign).expand(shape).clamp(min=0)
        if start is None:
            start = sign.new_zeros(shape)
        out[name] = (start * (sign != 0)).clone().requires_grad_(True)
    return out
