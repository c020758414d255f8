"""A ReLU network as explicit affine maps between its ReLU layers, for MILP encodings and cuts.

The IR (:mod:`planecut.verifier.graph`) holds a DAG of linear nodes (dense, conv, residual add,
reshape, pad...) and ReLUs. A MILP needs, for every ReLU layer ``k``, its pre-activation as an
affine function of the earlier *sources* — the input ``x`` and the earlier ReLU outputs
``y_j`` — ``z_k = Σ_s M[k, s]·v_s + c_k``, and the same for the network output. We get every
map by evaluating the graph's linear parts on identity batches with each ReLU replaced by a
*source* (its output is fed in, not computed), so every linear node type of the IR is handled
alike and residual connections appear as several non-zero ``M[k, s]``.

The encoding is plain numpy/scipy (picklable, no torch), so the MIP worker process receives it
without the graph, and it doubles as a reference forward pass: :meth:`NetworkEncoding.forward`
computes ``z``, ``y`` and the indicators ``a = [z > 0]`` of real executions, against which cuts
are validated.

Neuron identity ``(relu layer, flat index)``: the layer counts ReLU nodes in topological order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from planecut.errors import UnsupportedError

if TYPE_CHECKING:  # torch and the IR are imported lazily: the worker process needs neither
    import torch

    from planecut.verifier.graph.ir import Graph

#: elements (float64) per chunk of an identity batch (per tensor, about 64 MiB)
CHUNK_ELEMENTS = 2**23


@dataclass
class ReluLayer:
    """One ReLU layer: ``z = Σ_s maps[s]·v_s + bias`` (``s`` = 0 for the input, ``j + 1`` for
    the output of ReLU layer ``j``), bounds ``lower <= z <= upper``."""

    name: str  # IR name of the ReLU node
    pre_name: str  # name of its input tensor (the ONNX pre-activation, when it has one)
    shape: tuple[int, ...]
    lower: np.ndarray  # (n,)
    upper: np.ndarray  # (n,)
    maps: dict[int, sp.csr_matrix]
    bias: np.ndarray  # (n,)

    @property
    def size(self) -> int:
        return int(self.lower.size)

    @property
    def unstable(self) -> np.ndarray:
        return (self.lower < 0) & (self.upper > 0)

    @property
    def active(self) -> np.ndarray:
        return self.lower >= 0

    @property
    def inactive(self) -> np.ndarray:
        return (self.upper <= 0) & (self.lower < 0)


@dataclass
class NetworkEncoding:
    """The network over an input box, as affine maps between ReLU layers (see module doc).

    ``out_maps``/``out_bias`` give the flat output ``out = Σ_s out_maps[s]·v_s + out_bias``.
    """

    x_lower: np.ndarray  # (n_in,)
    x_upper: np.ndarray  # (n_in,)
    layers: list[ReluLayer]
    out_maps: dict[int, sp.csr_matrix]
    out_bias: np.ndarray
    input_name: str = "input"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_in(self) -> int:
        return int(self.x_lower.size)

    @property
    def n_out(self) -> int:
        return int(self.out_bias.size)

    @property
    def num_unstable(self) -> int:
        return int(sum(int(l.unstable.sum()) for l in self.layers))

    def layer_sizes(self) -> list[int]:
        return [l.size for l in self.layers]

    def forward(self, X: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """Real executions: ``(z per layer, y per layer, out)`` for inputs ``X`` ``(S, n_in)``.

        This is the network itself (the maps are exact), used to validate cuts.
        """
        X = np.asarray(X, dtype=np.float64).reshape(-1, self.n_in)
        sources: list[np.ndarray] = [X]
        zs: list[np.ndarray] = []
        for layer in self.layers:
            z = _apply(layer.maps, sources, layer.bias)
            zs.append(z)
            sources.append(np.maximum(z, 0.0))
        out = _apply(self.out_maps, sources, self.out_bias)
        return zs, sources[1:], out


def _apply(maps: Mapping[int, sp.csr_matrix], sources: list[np.ndarray], bias: np.ndarray
           ) -> np.ndarray:
    acc = np.broadcast_to(bias, (sources[0].shape[0], bias.size)).copy()
    for s, M in maps.items():
        acc += np.asarray(M @ sources[s].T).T
    return acc


# --------------------------------------------------------------------------- from the graph


def _check_supported(graph: "Graph") -> None:
    from planecut.verifier.graph.ir import LinearNode, Relu

    for n in graph.nodes:
        if not isinstance(n, (LinearNode, Relu)):
            raise UnsupportedError(
                f"the MILP encoding handles linear layers and ReLU only; node {n.name!r} "
                f"({n.kind}) is neither")


def _source_pass(graph: "Graph", batch: "torch.Tensor", source: int, with_bias: bool
                 ) -> "tuple[list[torch.Tensor | None], torch.Tensor]":
    """Evaluate the linear parts with ReLU outputs fed in: source 0 is the input, source
    ``j + 1`` the output of ReLU layer ``j``; ``batch`` is fed at ``source`` and every other
    source is zero. Returns (flat pre-activation per ReLU layer, flat output); layers at or
    before ``source`` do not depend on it and are None."""
    import torch

    from planecut.verifier.graph.ir import Relu

    B = batch.shape[0]
    dev, dt = batch.device, batch.dtype
    zero_in = source != 0
    values: dict[str, torch.Tensor] = {
        graph.input_name: (torch.zeros(B, *graph.input_shape, dtype=dt, device=dev) if zero_in
                           else batch.reshape(B, *graph.input_shape))}
    pre: list[torch.Tensor | None] = []
    layer = 0
    for n in graph.nodes:
        xs = [values[name] for name in n.inputs]
        if isinstance(n, Relu):
            pre.append(xs[0].reshape(B, -1) if layer + 1 > source else None)
            if layer + 1 == source:
                out = batch.reshape(B, *n.shape)
            else:
                out = torch.zeros(B, *n.shape, dtype=dt, device=dev)
            layer += 1
        else:
            out = n.linear(*xs)
            if with_bias and n.bias is not None:
                out = out + n.bias
        values[n.name] = out
    return pre, values[graph.output_name].reshape(B, -1)


def _flat(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64).reshape(-1)


def encode_network(graph: "Graph", x_lower: Any, x_upper: Any,
                   intermediate: Mapping[str, tuple[Any, Any]],
                   chunk_elements: int = CHUNK_ELEMENTS) -> NetworkEncoding:
    """Affine maps of ``graph`` with the given input box and pre-activation bounds.

    ``intermediate`` maps each ReLU node's name to sound ``(lower, upper)`` bounds on its input
    for this box (one domain: flat or ``(1, *shape)``), as
    :func:`planecut.verifier.bounds.compute_bounds` returns them. Bounds are intersected with
    the interval arithmetic of the maps (never loosened).
    """
    import torch

    _check_supported(graph)
    g = graph.converted("cpu", torch.float64)
    relus = g.relu_nodes
    xl, xu = _flat(x_lower), _flat(x_upper)
    if xl.size != g.num_inputs or xu.size != g.num_inputs:
        raise ValueError(f"input box has {xl.size}/{xu.size} entries, the model "
                         f"{g.num_inputs} inputs")
    if np.any(xl > xu):
        raise ValueError("empty input region: a lower bound exceeds its upper bound")
    sizes = [g.num_inputs] + [r.size for r in relus]
    width = max([g.num_inputs] + [n.size for n in g.nodes])
    layer_maps: list[dict[int, sp.csr_matrix]] = [dict() for _ in relus]
    out_maps: dict[int, sp.csr_matrix] = {}
    with torch.no_grad():
        zero = torch.zeros(1, g.num_inputs, dtype=torch.float64)
        pre_c, out_c = _source_pass(g, zero, 0, True)
        for s, n_s in enumerate(sizes):
            chunk = max(1, min(n_s, chunk_elements // max(1, width)))
            parts_l: list[list[sp.csr_matrix]] = [[] for _ in relus]
            parts_o: list[sp.csr_matrix] = []
            for a in range(0, n_s, chunk):
                b = min(n_s, a + chunk)
                eye = torch.zeros(b - a, n_s, dtype=torch.float64)
                eye[torch.arange(b - a), torch.arange(a, b)] = 1.0
                pre, out = _source_pass(g, eye, s, False)
                for k, p in enumerate(pre):
                    if p is not None:
                        parts_l[k].append(_sparse(p))
                parts_o.append(_sparse(out))
            for k in range(len(relus)):
                if parts_l[k]:
                    M = sp.vstack(parts_l[k]).T.tocsr()
                    if M.nnz:
                        layer_maps[k][s] = M
            M = sp.vstack(parts_o).T.tocsr()
            if M.nnz:
                out_maps[s] = M
    layers: list[ReluLayer] = []
    box_lo, box_hi = [xl], [xu]
    for k, r in enumerate(relus):
        bias = pre_c[k][0].numpy().copy()
        # interval arithmetic of the maps, intersected with the given bounds
        lo, hi = bias.copy(), bias.copy()
        for s, M in layer_maps[k].items():
            Mp, Mn = M.maximum(0), M.minimum(0)
            lo += Mp @ box_lo[s] + Mn @ box_hi[s]
            hi += Mp @ box_hi[s] + Mn @ box_lo[s]
        if r.name in intermediate:
            gl, gu = (_flat(t) for t in intermediate[r.name])
            if gl.size != r.size or gu.size != r.size:
                raise ValueError(f"intermediate bounds of {r.name} have {gl.size}/{gu.size} "
                                 f"entries, expected {r.size} (one domain)")
            lo, hi = np.maximum(lo, gl), np.minimum(hi, gu)
        if np.any(lo > hi + 1e-9 * (1 + np.abs(lo))):
            raise ValueError(f"intermediate bounds of {r.name} are empty (lower > upper)")
        hi = np.maximum(hi, lo)
        layers.append(ReluLayer(r.name, r.inputs[0], tuple(r.shape), lo, hi, layer_maps[k],
                                bias))
        box_lo.append(np.maximum(lo, 0.0))
        box_hi.append(np.maximum(hi, 0.0))
    return NetworkEncoding(xl, xu, layers, out_maps, out_c[0].numpy().copy(),
                           input_name=graph.input_name, meta={"source": graph.source})


def _sparse(t: "torch.Tensor") -> sp.csr_matrix:
    return sp.csr_matrix(t.numpy())  # exact zeros of the conv/dense structure are dropped
