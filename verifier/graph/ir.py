"""The graph IR that bound propagation understands.

Every tensor in the IR carries a leading batch dimension ``B`` (domains, attack restarts,
samples); a node's ``shape`` is its *per-example* shape, without that dimension. The graph has
one input (flattened specs index it in row-major order) and one output.

Node kinds split in two families:

* :class:`LinearNode` — affine in its inputs: ``out = linear(*inputs) + bias``. Bound
  propagation needs only ``linear`` (the bias-free part), ``bias`` and, for interval arithmetic,
  ``abs_linear`` (the same map with every coefficient replaced by its absolute value). The
  backward (transposed) map of ``linear`` is what CROWN applies to its coefficient tensors;
  node kinds may implement it directly or rely on autograd's vector-Jacobian product.
* Nonlinear nodes (:class:`Relu`, :class:`Sigmoid`, :class:`Tanh`, :class:`MaxPool`), which
  bound propagation relaxes.

Neuron identity (shared with branch and bound and the MIP cuts): ``(relu_layer, flat_index)``
where ``relu_layer`` counts the :class:`Relu` nodes in topological order
(:attr:`Graph.relu_nodes`) and ``flat_index`` is the row-major index in that node's output.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


@dataclass(eq=False)
class Node:
    """A node computing tensor ``name`` from the tensors named in ``inputs``."""

    name: str
    inputs: tuple[str, ...]
    shape: tuple[int, ...]  # per-example output shape
    onnx_node: str = ""  # originating ONNX node (for messages); empty for synthesised nodes

    kind: ClassVar[str] = "node"

    def forward(self, *xs: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def tensors(self) -> dict[str, Tensor]:
        """Parameter tensors, so that :meth:`Graph.to` can move them."""
        return {}

    def set_tensor(self, attr: str, value: Tensor) -> None:
        setattr(self, attr, value)

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


# --------------------------------------------------------------------------- linear nodes


@dataclass(eq=False)
class LinearNode(Node):
    """``forward(*xs) = linear(*xs) + bias``; ``linear`` is linear (no constant term)."""

    # True when every coefficient of ``linear`` is >= 0, so that ``abs_linear == linear``.
    nonnegative: ClassVar[bool] = False

    def linear(self, *xs: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def abs_linear(self, *xs: Tensor) -> Tensor:
        """The map with absolute coefficients (interval arithmetic on centre/radius)."""
        if self.nonnegative:
            return self.linear(*xs)
        raise NotImplementedError(type(self).__name__)

    @property
    def bias(self) -> Tensor | None:
        """Constant term, broadcastable to ``(B, *shape)``, or None."""
        return None

    def forward(self, *xs: Tensor) -> Tensor:
        out = self.linear(*xs)
        b = self.bias
        return out if b is None else out + b


@dataclass(eq=False)
class Dense(LinearNode):
    """``y = x @ weight.T + bias`` over the last dimension (Gemm, MatMul, merged affine chains)."""

    weight: Tensor = None  # (out_features, in_features)
    bias_: Tensor | None = None  # (out_features,)
    kind: ClassVar[str] = "dense"

    def linear(self, x: Tensor) -> Tensor:
        return x.matmul(self.weight.t())

    def abs_linear(self, x: Tensor) -> Tensor:
        return x.matmul(self.weight.abs().t())

    @property
    def bias(self) -> Tensor | None:
        return self.bias_

    def tensors(self) -> dict[str, Tensor]:
        return {k: v for k, v in (("weight", self.weight), ("bias_", self.bias_)) if v is not None}


@dataclass(eq=False)
class Conv(LinearNode):
    """2-D convolution on ``(B, C, H, W)`` (1-D convolutions are lifted to 2-D by the loader)."""

    weight: Tensor = None  # (C_out, C_in/groups, kH, kW)
    bias_: Tensor | None = None  # (C_out,)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)  # symmetric; asymmetric pads become a Pad node first
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    kind: ClassVar[str] = "conv"

    def linear(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation, self.groups)

    def abs_linear(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight.abs(), None, self.stride, self.padding, self.dilation,
                        self.groups)

    @property
    def bias(self) -> Tensor | None:
        return None if self.bias_ is None else self.bias_.view(-1, 1, 1)

    def tensors(self) -> dict[str, Tensor]:
        return {k: v for k, v in (("weight", self.weight), ("bias_", self.bias_)) if v is not None}


@dataclass(eq=False)
class ConvTranspose(LinearNode):
    """2-D transposed convolution on ``(B, C, H, W)``."""

    weight: Tensor = None  # (C_in, C_out/groups, kH, kW)
    bias_: Tensor | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    output_padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    kind: ClassVar[str] = "conv_transpose"

    def linear(self, x: Tensor) -> Tensor:
        return F.conv_transpose2d(x, self.weight, None, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)

    def abs_linear(self, x: Tensor) -> Tensor:
        return F.conv_transpose2d(x, self.weight.abs(), None, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)

    @property
    def bias(self) -> Tensor | None:
        return None if self.bias_ is None else self.bias_.view(-1, 1, 1)

    def tensors(self) -> dict[str, Tensor]:
        return {k: v for k, v in (("weight", self.weight), ("bias_", self.bias_)) if v is not None}


@dataclass(eq=False)
class ElementwiseAffine(LinearNode):
    """``y = x * scale + shift`` with constants broadcastable to the per-example shape.

    Holds Mul/Div/Add/Sub by constants, unfused BatchNorm and input normalisation.
    """

    scale: Tensor | None = None
    shift: Tensor | None = None
    kind: ClassVar[str] = "elementwise_affine"

    def linear(self, x: Tensor) -> Tensor:
        return x if self.scale is None else x * self.scale

    def abs_linear(self, x: Tensor) -> Tensor:
        return x if self.scale is None else x * self.scale.abs()

    @property
    def bias(self) -> Tensor | None:
        return self.shift

    def tensors(self) -> dict[str, Tensor]:
        return {k: v for k, v in (("scale", self.scale), ("shift", self.shift)) if v is not None}


@dataclass(eq=False)
class Add(LinearNode):
    """Sum of two or more variable tensors (residual connections), with optional signs.

    ``signs[i]`` is +1 or -1 (Sub of two variable tensors). Inputs must share ``shape``
    (the loader inserts explicit broadcasts where ONNX broadcasts).
    """

    signs: tuple[float, ...] = ()
    kind: ClassVar[str] = "add"

    def linear(self, *xs: Tensor) -> Tensor:
        out = xs[0] if not self.signs or self.signs[0] > 0 else -xs[0]
        for i, x in enumerate(xs[1:], start=1):
            out = out + x if not self.signs or self.signs[i] > 0 else out - x
        return out

    def abs_linear(self, *xs: Tensor) -> Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


@dataclass(eq=False)
class Reshape(LinearNode):
    """Per-example reshape (Flatten, Reshape, Squeeze/Unsqueeze) to ``shape``."""

    nonnegative: ClassVar[bool] = True
    kind: ClassVar[str] = "reshape"

    def linear(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.shape)


@dataclass(eq=False)
class Transpose(LinearNode):
    """Per-example permutation of axes; ``perm`` indexes per-example axes (batch stays first)."""

    perm: tuple[int, ...] = ()
    nonnegative: ClassVar[bool] = True
    kind: ClassVar[str] = "transpose"

    def linear(self, x: Tensor) -> Tensor:
        return x.permute(0, *(p + 1 for p in self.perm))


@dataclass(eq=False)
class Pad(LinearNode):
    """Constant padding of per-example axes; ``pads`` as in ``torch.nn.functional.pad``
    (last axis first: ``(left, right, top, bottom, ...)``). A nonzero ``value`` is the bias."""

    pads: tuple[int, ...] = ()
    value: float = 0.0
    nonnegative: ClassVar[bool] = True
    kind: ClassVar[str] = "pad"
    # The bias tensor, built once and listed in tensors() so that Graph.to moves/casts it
    # (built on every access it would stay float32 on the CPU).
    _bias: Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._bias = self._make_bias()

    def linear(self, x: Tensor) -> Tensor:
        return F.pad(x, self.pads, value=0.0)

    def _make_bias(self) -> Tensor | None:
        if self.value == 0.0:
            return None
        # value where padded, 0 inside: pad a zero tensor of the input's shape with `value`
        inner = [s for s in self.shape]
        n = len(self.pads) // 2
        for i in range(n):
            inner[-1 - i] -= self.pads[2 * i] + self.pads[2 * i + 1]
        z = torch.zeros(1, *inner)
        return F.pad(z, self.pads, value=self.value)[0]

    @property
    def bias(self) -> Tensor | None:
        if self.value == 0.0:
            return None
        if self._bias is None:
            self._bias = self._make_bias()
        return self._bias

    def tensors(self) -> dict[str, Tensor]:
        return {} if self._bias is None else {"_bias": self._bias}


@dataclass(eq=False)
class AvgPool(LinearNode):
    """2-D average pooling on ``(B, C, H, W)``."""

    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    count_include_pad: bool = True
    ceil_mode: bool = False
    nonnegative: ClassVar[bool] = True
    kind: ClassVar[str] = "avgpool"

    def linear(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)


@dataclass(eq=False)
class Slice(LinearNode):
    """``x[..., start:stop:step, ...]`` on per-example ``axis`` (Slice, Split outputs)."""

    axis: int = 0
    start: int = 0
    stop: int = 0
    step: int = 1
    nonnegative: ClassVar[bool] = True
    kind: ClassVar[str] = "slice"

    def linear(self, x: Tensor) -> Tensor:
        index = [slice(None)] * x.dim()
        index[self.axis + 1] = slice(self.start, self.stop, self.step)
        return x[tuple(index)]


@dataclass(eq=False)
class Gather(LinearNode):
    """``index_select`` of constant ``indices`` on per-example ``axis``; a scalar index drops
    the axis (``keepdim=False``)."""

    axis: int = 0
    indices: Tensor = None  # 1-D int64
    keepdim: bool = True
    nonnegative: ClassVar[bool] = True
    kind: ClassVar[str] = "gather"

    def linear(self, x: Tensor) -> Tensor:
        out = x.index_select(self.axis + 1, self.indices)
        return out if self.keepdim else out.squeeze(self.axis + 1)

    def tensors(self) -> dict[str, Tensor]:
        return {"indices": self.indices}


@dataclass(eq=False)
class Concat(LinearNode):
    """Concatenation of variable tensors on per-example ``axis``."""

    axis: int = 0
    nonnegative: ClassVar[bool] = True
    kind: ClassVar[str] = "concat"

    def linear(self, *xs: Tensor) -> Tensor:
        return torch.cat(xs, dim=self.axis + 1)


# --------------------------------------------------------------------------- nonlinear nodes


@dataclass(eq=False)
class Relu(Node):
    kind: ClassVar[str] = "relu"

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x)


@dataclass(eq=False)
class Sigmoid(Node):
    kind: ClassVar[str] = "sigmoid"

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)


@dataclass(eq=False)
class Tanh(Node):
    kind: ClassVar[str] = "tanh"

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x)


@dataclass(eq=False)
class MaxPool(Node):
    """2-D max pooling on ``(B, C, H, W)`` (padding pads with -inf, as ONNX does)."""

    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False
    kind: ClassVar[str] = "maxpool"

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel, self.stride, self.padding, self.dilation,
                            self.ceil_mode)


NONLINEAR_KINDS: tuple[type[Node], ...] = (Relu, Sigmoid, Tanh, MaxPool)


# --------------------------------------------------------------------------- graph


@dataclass(eq=False)
class Graph:
    """A single-input, single-output DAG of IR nodes in topological order.

    ``onnx_input_shape`` / ``onnx_input_dtype`` describe the original model's input (batch
    dimension included, as the ONNX file declares it) so a flat counterexample can be fed to
    onnxruntime unchanged.
    """

    input_name: str
    input_shape: tuple[int, ...]  # per-example
    nodes: list[Node]
    output_name: str
    onnx_input_shape: tuple[int, ...] = ()
    onnx_input_dtype: str = "float32"
    onnx_output_name: str = ""
    source: str = ""  # path of the ONNX file it came from
    _by_name: dict[str, Node] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.reindex()

    def reindex(self) -> None:
        """Rebuild the name lookup after passes edit ``nodes``."""
        self._by_name = {n.name: n for n in self.nodes}

    def node(self, name: str) -> Node:
        return self._by_name[name]

    @property
    def output_shape(self) -> tuple[int, ...]:
        if self.output_name == self.input_name:
            return self.input_shape
        return self._by_name[self.output_name].shape

    @property
    def num_inputs(self) -> int:
        n = 1
        for s in self.input_shape:
            n *= s
        return n

    @property
    def num_outputs(self) -> int:
        n = 1
        for s in self.output_shape:
            n *= s
        return n

    @property
    def relu_nodes(self) -> list[Relu]:
        """ReLU nodes in topological order: position = ``relu_layer`` of neuron identity."""
        return [n for n in self.nodes if isinstance(n, Relu)]

    def shape_of(self, name: str) -> tuple[int, ...]:
        return self.input_shape if name == self.input_name else self._by_name[name].shape

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {n.name: [] for n in self.nodes}
        out[self.input_name] = []
        for n in self.nodes:
            for i in n.inputs:
                out[i].append(n)
        return out

    def forward(self, x: Tensor, keep: Callable[[Node], bool] | None = None
                ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Evaluate on a batch. ``x`` is ``(B, *input_shape)`` or flat ``(B, num_inputs)``.

        With ``keep``, also return the values of the nodes it selects (e.g. ReLU inputs).
        """
        x = x.reshape(x.shape[0], *self.input_shape)
        values: dict[str, Tensor] = {self.input_name: x}
        kept: dict[str, Tensor] = {}
        remaining = self._last_use()
        for i, n in enumerate(self.nodes):
            out = n.forward(*(values[name] for name in n.inputs))
            values[n.name] = out
            if keep is not None and keep(n):
                kept[n.name] = out
            for name in n.inputs:  # free intermediate values early (large conv nets)
                if remaining.get(name) == i and name != self.output_name:
                    values.pop(name, None)
        out = values[self.output_name]
        return (out, kept) if keep is not None else out

    def _last_use(self) -> dict[str, int]:
        last: dict[str, int] = {}
        for i, n in enumerate(self.nodes):
            for name in n.inputs:
                last[name] = i
        return last

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
           ) -> "Graph":
        """Move parameters in place (integer index tensors keep their dtype); returns self."""
        for n in self.nodes:
            for attr, t in n.tensors().items():
                if t.is_floating_point():
                    n.set_tensor(attr, t.to(device=device, dtype=dtype))
                else:
                    n.set_tensor(attr, t.to(device=device))
        return self

    def converted(self, device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> "Graph":
        """This graph when its parameters already live on ``device`` (floating ones in
        ``dtype``), else a converted copy (parameters detached; integer index tensors keep
        their dtype). Unlike :meth:`to` it never modifies the graph, which its caller may
        share (a verifier's graph, a search on another device, a worker process's copy)."""
        dev = None if device is None else torch.device(device)

        def fits(t: Tensor) -> bool:
            return (dev is None or t.device == dev) and \
                (dtype is None or not t.is_floating_point() or t.dtype == dtype)

        if all(fits(t) for n in self.nodes for t in n.tensors().values()):
            return self
        nodes = []
        for n in self.nodes:
            n2 = copy.copy(n)
            for attr, t in n.tensors().items():
                n2.set_tensor(attr, t.detach().to(
                    device=t.device if dev is None else dev,
                    dtype=dtype if dtype is not None and t.is_floating_point() else t.dtype))
            nodes.append(n2)
        return dataclasses.replace(self, nodes=nodes, _by_name={})

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.kind] = counts.get(n.kind, 0) + 1
        return ", ".join(f"{k} x{v}" for k, v in counts.items())


def topological_check(nodes: Sequence[Node], input_name: str) -> None:
    """Raise ValueError if a node reads a tensor no earlier node (or the input) produced."""
    seen = {input_name}
    for n in nodes:
        for i in n.inputs:
            if i not in seen:
                raise ValueError(f"node {n.name} reads {i} before it is produced")
        seen.add(n.name)
