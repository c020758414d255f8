"""Static facts about a graph that every bound pass needs: ancestry, orders, exactness of IBP.

A :class:`GraphPlan` is built once per :func:`compute_bounds` call; it never holds tensors of
a bound computation, only structure (and caches of structure).
"""

from __future__ import annotations

from functools import cached_property

from planecut.verifier.graph.ir import (
    Conv,
    ConvTranspose,
    Dense,
    ElementwiseAffine,
    AvgPool,
    Graph,
    LinearNode,
    Node,
    Pad,
    Relu,
    Reshape,
    Sigmoid,
    Slice,
    Tanh,
    Transpose,
)

# Linear kinds where every output coordinate is (a multiple of) one input coordinate and no
# two output coordinates read the same input coordinate: composing them with one affine map
# keeps interval arithmetic exact.
_INJECTIVE_COORDINATEWISE = (Reshape, Transpose, Slice, Pad, ElementwiseAffine)
# Linear kinds that mix coordinates (interval arithmetic is exact for one of them on a box).
_MIXING = (Dense, Conv, ConvTranspose, AvgPool)
# Elementwise monotone nonlinear kinds: IBP of their output is exact given their input bounds.
_ELEMENTWISE_MONOTONE = (Relu, Sigmoid, Tanh)


def is_nonlinear(node: Node) -> bool:
    """Every node kind that is not affine (activations, products, elementwise functions)."""
    return not isinstance(node, LinearNode)


class GraphPlan:
    """Ancestry and traversal orders of a :class:`Graph` (structure only, cached)."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes: list[Node] = list(graph.nodes)
        self.position: dict[str, int] = {n.name: i for i, n in enumerate(self.nodes)}
        self.input_name = graph.input_name
        self._ancestors: dict[str, frozenset[str]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i != self.input_name and i not in self.position:
                    raise ValueError(f"node {n.name} reads unknown tensor {i}")
                if i != self.input_name and self.position[i] >= self.position[n.name]:
                    raise ValueError(f"graph not in topological order at node {n.name}")

    def shape_of(self, name: str) -> tuple[int, ...]:
        return self.graph.shape_of(name)

    def size_of(self, name: str) -> int:
        n = 1
        for s in self.shape_of(name):
            n *= s
        return n

    @cached_property
    def nonlinear_nodes(self) -> list[Node]:
        return [n for n in self.nodes if is_nonlinear(n)]

    @cached_property
    def relu_nodes(self) -> list[Relu]:
        return [n for n in self.nodes if isinstance(n, Relu)]

    def ancestors(self, name: str) -> frozenset[str]:
        """Names of the nodes ``name`` depends on, itself included (the graph input excluded)."""
        if name == self.input_name:
            return frozenset()
        hit = self._ancestors.get(name)
        if hit is not None:
            return hit
        out: set[str] = set()
        stack = [name]
        while stack:
            cur = stack.pop()
            if cur == self.input_name or cur in out:
                continue
            cached = self._ancestors.get(cur)
            if cached is not None:
                out |= cached
                continue
            out.add(cur)
            stack.extend(self.graph.node(cur).inputs)
        result = frozenset(out)
        self._ancestors[name] = result
        return result

    def backward_order(self, name: str) -> list[Node]:
        """Ancestors of ``name`` (itself included) in reverse topological order."""
        anc = self.ancestors(name)
        return [n for n in reversed(self.nodes) if n.name in anc]

    def max_size_on_path(self, name: str) -> int:
        """Largest per-example size among ``name``'s ancestors and the input (a chunking cap)."""
        sizes = [self.size_of(a) for a in self.ancestors(name)]
        return max([self.size_of(self.input_name), *sizes])

    def relus_on_path(self, name: str) -> list[Relu]:
        """ReLU nodes a backward pass from tensor ``name`` crosses (``name`` itself included
        when it is a ReLU's output), in topological order."""
        anc = self.ancestors(name)
        return [n for n in self.relu_nodes if n.name in anc]

    def retained_size(self, name: str) -> int:
        """Sum of per-example sizes of ``name``'s ancestors and the input: about what one
        coefficient row of a differentiable backward pass from ``name`` keeps alive."""
        return self.size_of(self.input_name) + sum(self.size_of(a) for a in self.ancestors(name))

    def ibp_is_exact(self, name: str) -> bool:
        """True when interval arithmetic gives the exact range of tensor ``name`` on a box.

        Sufficient condition: ``name`` is the input, or the output of a single-input chain back
        to the input made of injective coordinate-wise maps (reshape, transpose, slice, pad,
        elementwise affine) and at most one coordinate-mixing affine map (dense, conv, ...):
        each coordinate is then an affine function of input coordinates that no other factor
        of the chain couples, and interval arithmetic of an affine map on a box is exact.
        Directly after an elementwise monotone activation the output interval is exact given
        the activation's input bounds, so those count as exact too.
        """
        if name == self.input_name:
            return True
        node = self.graph.node(name)
        if isinstance(node, _ELEMENTWISE_MONOTONE):
            return True
        mixing = 0
        cur: Node | None = node
        while cur is not None:
            if isinstance(cur, _MIXING):
                mixing += 1
                if mixing > 1:
                    return False
            elif not isinstance(cur, _INJECTIVE_COORDINATEWISE):
                return False
            if len(cur.inputs) != 1:
                return False
            src = cur.inputs[0]
            cur = None if src == self.input_name else self.graph.node(src)
        return True
