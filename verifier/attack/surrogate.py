"""A search surrogate for networks that end in a softmax.

A softmax output saturates: once one logit leads by a few tens, every output is 0 or 1 to
working precision and the attack's gradient is exactly zero (binarised nets, whose logits are
sums of many ±1 terms, start there). Before its softmax the network orders its outputs the
same way, so comparisons between outputs (the usual robustness rows) hold on the logits
exactly when they hold on the probabilities. The attack may therefore *search* on the logits;
its candidates are still confirmed with onnxruntime on the original model, so the surrogate
can cost time but never a wrong answer.
"""

from __future__ import annotations

import dataclasses

import torch

from planecut.verifier.graph.ir import Dense, Graph, Reshape
from planecut.verifier.graph.ir_nonlinear import Exp, Reciprocal


def _producer(graph: Graph, name: str):
    return None if name == graph.input_name else graph.node(name)


def _skip_reshapes(graph: Graph, node):
    while isinstance(node, Reshape):
        node = _producer(graph, node.inputs[0])
    return node


def softmax_logits(graph: Graph) -> str | None:
    """The logits tensor when the output is the loader's softmax over the last axis
    (``1 / Σ_j exp(x_j − x_i)``, see ``onnx_nonlinear.softmax``), else None."""
    out = _producer(graph, graph.output_name)
    if not isinstance(out, Reciprocal):
        return None
    total = _skip_reshapes(graph, _producer(graph, out.inputs[0]))
    if not isinstance(total, Dense) or total.bias_ is not None or \
            not bool((total.weight == 1).all()) or total.weight.shape[0] != 1:
        return None
    exp = _producer(graph, total.inputs[0])
    if not isinstance(exp, Exp):
        return None
    diffs = _skip_reshapes(graph, _producer(graph, exp.inputs[0]))
    if not isinstance(diffs, Dense) or diffs.bias_ is not None:
        return None
    w = diffs.weight
    n = w.shape[1]
    if w.shape[0] != n * n or graph.shape_of(diffs.inputs[0]) != graph.output_shape:
        return None
    rows = torch.arange(n * n)
    expected = torch.zeros(n * n, n, dtype=w.dtype, device=w.device)
    expected[rows, rows % n] += 1
    expected[rows, rows // n] -= 1
    if not torch.equal(w, expected):
        return None
    return diffs.inputs[0]


def logit_graph(graph: Graph) -> Graph | None:
    """``graph`` ending at its softmax's logits (shared nodes), or None without a softmax."""
    name = softmax_logits(graph)
    if name is None or name == graph.input_name:
        return None
    keep = graph.nodes[: [n.name for n in graph.nodes].index(name) + 1]
    return dataclasses.replace(graph, nodes=keep, output_name=name, _by_name={})
