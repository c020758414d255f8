"""What the automatic preset choice looks at: a few figures of the loaded model and the spec.

:func:`model_features` reads them off the IR graph and the parsed property (never a file's or
a benchmark's name); :func:`planecut.verifier.config.auto_preset` turns them into a preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from planecut.verifier.graph.ir import Graph
    from planecut.vnnlib.spec import Spec

# nonlinear kinds the relaxations and the ReLU machinery treat as piecewise linear; every other
# nonlinear kind (sigmoid, tanh, products of two variables, exp, softmax, sin, ...) is smooth
# for this purpose, and "sign" is a step (piecewise constant: zero gradient almost everywhere)
PIECEWISE_LINEAR_KINDS = frozenset({"relu", "maxpool"})
STEP_KINDS = frozenset({"sign"})
# layers that make a network "convolutional" (spatial layers: smaller BaB batches pay)
SPATIAL_KINDS = frozenset({"conv", "conv_transpose", "avgpool", "maxpool"})


@dataclass(frozen=True)
class ModelFeatures:
    """One (model, spec) pair as the preset choice sees it."""

    num_inputs: int
    num_outputs: int
    # input coordinates the spec leaves free (upper > lower), most over the regions: a spec
    # that fixes all but a few coordinates is low-dimensional whatever the tensor's size
    free_inputs: int
    num_regions: int
    num_disjuncts: int
    # spec rows bounded together for one region (all its disjuncts' rows), most over regions
    max_rows: int
    nonlinear_kinds: frozenset[str]
    relu_neurons: int
    nonlinear_neurons: int  # outputs of every nonlinear node (ReLU included)
    depth: int  # nonlinear nodes on the longest input-to-output path
    max_width: int  # largest nonlinear node (neurons)
    has_conv: bool  # some spatial layer (conv, transposed conv, average or max pooling)
    has_residual: bool  # some sum of two or more variable tensors

    @property
    def piecewise_linear(self) -> bool:
        """Every nonlinearity is ReLU or max pooling (activation split and MIP apply)."""
        return self.nonlinear_kinds <= PIECEWISE_LINEAR_KINDS

    @property
    def piecewise_constant(self) -> bool:
        """Some nonlinearity is a step (sign): its gradient is zero almost everywhere."""
        return bool(self.nonlinear_kinds & STEP_KINDS)

    def summary(self) -> str:
        kinds = "+".join(sorted(self.nonlinear_kinds)) or "linear"
        return (f"{self.num_inputs} inputs ({self.free_inputs} free), {self.num_outputs} "
                f"outputs, {self.num_regions} region(s), {self.num_disjuncts} disjunct(s), "
                f"{self.max_rows} row(s); {kinds}, {self.nonlinear_neurons} neurons, depth "
                f"{self.depth}, width {self.max_width}"
                f"{', conv' if self.has_conv else ''}{', residual' if self.has_residual else ''}")


def model_features(graph: "Graph", spec: "Spec") -> ModelFeatures:
    """The features of ``graph`` (an IR graph, nodes in topological order) under ``spec``."""
    from planecut.verifier.graph.ir import Add, LinearNode

    depth: dict[str, int] = {graph.input_name: 0}
    kinds: set[str] = set()
    relu = neurons = width = 0
    residual = conv = False
    for n in graph.nodes:
        nonlinear = not isinstance(n, LinearNode)
        depth[n.name] = max((depth.get(i, 0) for i in n.inputs), default=0) + int(nonlinear)
        conv = conv or n.kind in SPATIAL_KINDS
        residual = residual or (isinstance(n, Add) and len(n.inputs) > 1)
        if nonlinear:
            kinds.add(n.kind)
            neurons += n.size
            width = max(width, n.size)
            if n.kind == "relu":
                relu += n.size
    regions = spec.regions
    free = max((int(np.count_nonzero(r.upper > r.lower)) for r in regions), default=0)
    rows = max((sum(dj.num_rows for dj in r.disjuncts) for r in regions), default=0)
    return ModelFeatures(
        num_inputs=graph.num_inputs, num_outputs=graph.num_outputs, free_inputs=free,
        num_regions=len(regions), num_disjuncts=spec.num_disjuncts, max_rows=rows,
        nonlinear_kinds=frozenset(kinds), relu_neurons=relu, nonlinear_neurons=neurons,
        depth=depth.get(graph.output_name, 0), max_width=width, has_conv=conv,
        has_residual=residual)
