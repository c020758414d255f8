"""The graph IR and its ONNX front end.

``load_onnx`` reads a model into a :class:`Graph` (per-example shapes, leading batch dimension
on every tensor); the module ``simplify`` holds the function-preserving passes it applies
(``simplify_graph`` runs them all; exported under that name so that it does not shadow the
module); ``describe`` summarises a graph in one line for the CLI.
"""

from planecut.verifier.graph.ir import (NONLINEAR_KINDS, Add, AvgPool, Concat, Conv,
                                        ConvTranspose, Dense, ElementwiseAffine, Gather, Graph,
                                        LinearNode, MaxPool, Node, Pad, Relu, Reshape, Sigmoid,
                                        Slice, Tanh, Transpose, topological_check)
from planecut.verifier.graph.onnx_loader import describe, load_onnx
from planecut.verifier.graph.simplify import simplify as simplify_graph

__all__ = [
    "NONLINEAR_KINDS", "Add", "AvgPool", "Concat", "Conv", "ConvTranspose", "Dense",
    "ElementwiseAffine", "Gather", "Graph", "LinearNode", "MaxPool", "Node", "Pad", "Relu",
    "Reshape", "Sigmoid", "Slice", "Tanh", "Transpose", "describe", "load_onnx", "simplify_graph",
    "topological_check",
]
