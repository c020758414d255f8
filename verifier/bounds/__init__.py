"""Bound propagation: IBP, CROWN and alpha-CROWN on the graph IR.

Entry point :func:`compute_bounds`; :func:`relu_layer_bounds` lists pre-activation bounds per
ReLU layer (neuron identity ``(relu_layer, flat_index)``). Modules, one job each:

* :mod:`.ibp` — interval rules per node kind;
* :mod:`.linear_backward` — transposed maps of linear nodes (CROWN through affine ops);
* :mod:`.relaxations` — linear relaxations of ReLU, sigmoid/tanh and max-pool;
* :mod:`.crown` — the backward pass on the DAG and the intermediate-bound sweep;
* :mod:`.alpha_crown` — slope (and split multiplier) optimisation;
* :mod:`.beta_crown` — ReLU split constraints: clamping and Lagrange multipliers;
* :mod:`.gcp_crown` — cutting planes (from the MIP worker) as Lagrange multipliers;
* :mod:`.plan` — static graph facts (ancestry, orders, where IBP is exact);
* :mod:`.compute` — the public API.
"""

from planecut.verifier.bounds.compute import compute_bounds, relu_layer_bounds
from planecut.verifier.bounds.gcp_crown import CUT_KEY, CutTerms, cut_terms
from planecut.verifier.bounds.types import AlphaOptions, BoundCoefficients, BoundResult

__all__ = ["AlphaOptions", "BoundCoefficients", "BoundResult", "CUT_KEY", "CutTerms",
           "compute_bounds", "cut_terms", "relu_layer_bounds"]
