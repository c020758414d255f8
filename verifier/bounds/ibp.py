"""Interval bound propagation (IBP): one rule per node kind, on ``(lower, upper)`` pairs.

Every tensor is ``(B, *shape)``. The rules are sound in exact arithmetic; they do no outward
rounding (neither does the reference verifier).
"""

from __future__ import annotations

from typing import Callable

import torch

from planecut.verifier.bounds.elementwise import ibp_elementwise, ibp_product
from planecut.verifier.graph.ir import LinearNode, MaxPool, Node, Relu, Sigmoid, Tanh
from planecut.verifier.graph.ir_nonlinear import Elementwise, Product

Tensor = torch.Tensor
Interval = tuple[Tensor, Tensor]


def add_bias(x: Tensor, bias: Tensor | None) -> Tensor:
    return x if bias is None else x + bias.to(dtype=x.dtype, device=x.device)


def ibp_linear(node: LinearNode, *bounds: Interval) -> Interval:
    """Affine ``y = A(x) + b`` on a box, by centre and radius.

    ``c = (l + u)/2``, ``r = (u - l)/2``; ``y ∈ [A(c) + b − |A|(r), A(c) + b + |A|(r)]``, exact
    for one affine map on a box. ``|A|`` is ``abs_linear``.
    """
    centres = [(lo + hi) / 2 for lo, hi in bounds]
    radii = [(hi - lo) / 2 for lo, hi in bounds]
    c = add_bias(node.linear(*centres), node.bias)
    r = node.abs_linear(*radii)
    return c - r, c + r


def ibp_nonnegative_linear(node: LinearNode, *bounds: Interval) -> Interval:
    """Affine map with nonnegative coefficients: monotone, so ``[A(l) + b, A(u) + b]``."""
    lo = add_bias(node.linear(*(b[0] for b in bounds)), node.bias)
    hi = add_bias(node.linear(*(b[1] for b in bounds)), node.bias)
    return lo, hi


def ibp_monotone(fn: Callable[[Tensor], Tensor]) -> Callable[[Node, Interval], Interval]:
    """Nondecreasing elementwise (or max-pool) ``f``: ``[f(l), f(u)]``."""

    def rule(node: Node, bounds: Interval) -> Interval:
        return fn(bounds[0]), fn(bounds[1])

    rule.__doc__ = ibp_monotone.__doc__
    return rule


def ibp_maxpool(node: MaxPool, bounds: Interval) -> Interval:
    """Max pooling is nondecreasing in every input: ``[maxpool(l), maxpool(u)]``."""
    return node.forward(bounds[0]), node.forward(bounds[1])


NONLINEAR_IBP_RULES: dict[type, Callable[..., Interval]] = {
    Relu: ibp_monotone(torch.relu),
    Sigmoid: ibp_monotone(torch.sigmoid),
    Tanh: ibp_monotone(torch.tanh),
    MaxPool: ibp_maxpool,
    Elementwise: ibp_elementwise,
    Product: ibp_product,
}


def ibp_node(node: Node, *bounds: Interval) -> Interval:
    """IBP of one node from the intervals of its inputs."""
    if isinstance(node, LinearNode):
        if node.nonnegative:
            return ibp_nonnegative_linear(node, *bounds)
        return ibp_linear(node, *bounds)
    for kind, rule in NONLINEAR_IBP_RULES.items():
        if isinstance(node, kind):
            return rule(node, *bounds)
    raise NotImplementedError(f"IBP has no rule for node kind {type(node).__name__}")


def concretize_interval(C: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """Lower bound of ``C·y`` for ``y ∈ [l, u]``: ``C⁺·l + C⁻·u``.

    ``C`` is ``(B or 1, K, n)``, ``lower``/``upper`` are ``(B, n)``; result ``(B, K)``.
    """
    lo = lower.unsqueeze(-1)
    hi = upper.unsqueeze(-1)
    return (C.clamp(min=0).matmul(lo) + C.clamp(max=0).matmul(hi)).squeeze(-1)

