"""Nonlinear IR node kinds beyond the activations: smooth elementwise functions, a step, and
the product of two variable tensors.

These are what transformer, power-flow and binarised-net exports need (VNN-COMP 2023+): the
loader rewrites Softmax, LayerNorm-style normalisation, Div/Mul/MatMul of two input-dependent
tensors and Pow into them (see ``onnx_nonlinear``). Each is a single-input node, so bound
propagation handles it like any activation: bounds on its input, a linear relaxation, a
backward rule (``verifier/bounds/elementwise.py``).

Why :class:`Product` takes one *stacked* input ``(2, *shape)`` instead of two tensors: every
bound pass (intermediate bounds, alpha-CROWN's re-optimised targets, warm starts) is keyed by
"the input of a nonlinear node"; with one input tensor holding both factors, a product is just
another node whose input bounds get computed, and the relaxation sees both factors' bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from planecut.verifier.graph.ir import Node

Tensor = torch.Tensor


@dataclass(eq=False)
class Elementwise(Node):
    """A nonlinear elementwise function ``y = f(x)`` (output shape = input shape)."""

    kind: ClassVar[str] = "elementwise"
    #: True when ``f`` is nondecreasing everywhere (IBP is then ``[f(l), f(u)]``)
    monotone: ClassVar[bool] = False

    def fn(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def _function(name: str, kind: str, fn, monotone: bool, doc: str) -> type[Elementwise]:
    """An :class:`Elementwise` kind computing the torch function ``fn``."""
    body = {"kind": kind, "monotone": monotone, "fn": lambda self, x: fn(x), "__doc__": doc,
            "__module__": __name__, "__qualname__": name}
    return dataclass(eq=False)(type(name, (Elementwise,), body))


Exp = _function("Exp", "exp", torch.exp, True, "``e**x``.")
Log = _function("Log", "log", torch.log, True, "Natural logarithm (``x > 0``).")
Sqrt = _function("Sqrt", "sqrt", torch.sqrt, True, "Square root (``x >= 0``).")
Reciprocal = _function("Reciprocal", "reciprocal", torch.reciprocal, False,
                       "``1/x``; unbounded where the input interval contains 0 (bounds are "
                       "then infinite).")
Sin = _function("Sin", "sin", torch.sin, False, "Sine.")
Cos = _function("Cos", "cos", torch.cos, False, "Cosine.")


@dataclass(eq=False)
class Pow(Elementwise):
    """``x ** exponent`` for a constant exponent (ONNX Pow with a scalar constant exponent).

    A non-integer exponent is defined for ``x >= 0`` only (NaN below, as in ONNX)."""

    exponent: float = 2.0
    kind: ClassVar[str] = "pow"

    def fn(self, x: Tensor) -> Tensor:
        if self.exponent == 2.0:
            return x * x
        return torch.pow(x, self.exponent)

    @property
    def integer(self) -> bool:
        return float(self.exponent).is_integer()


class _SignSTE(torch.autograd.Function):
    """ONNX Sign forward (``sign(0) = 0``) with a straight-through gradient (the identity's):
    a step has zero gradient almost everywhere, which would stall every gradient-based attack
    on a binarised net. Not the usual ``|x| <= 1`` window: the pre-activations of binarised
    layers are sums of many ±1 terms, nearly all outside it, so that window passed almost no
    gradient either. Bounds never differentiate through this."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return grad


@dataclass(eq=False)
class Sign(Elementwise):
    """ONNX Sign: ``-1, 0, 1``; a step, relaxed by lines through its jumps."""

    kind: ClassVar[str] = "sign"
    monotone: ClassVar[bool] = True

    def fn(self, x: Tensor) -> Tensor:
        if x.requires_grad:
            return _SignSTE.apply(x)
        return torch.sign(x)


@dataclass(eq=False)
class Product(Node):
    """``y = x[:, 0] * x[:, 1]``: the elementwise product of two variable tensors, stacked on
    a new leading per-example axis ``(2, *shape)`` by the loader (see the module docstring).
    MatMul of two variable tensors is a broadcast Product followed by a ReduceSum."""

    kind: ClassVar[str] = "product"

    def forward(self, x: Tensor) -> Tensor:
        return x[:, 0] * x[:, 1]


#: ONNX operator name -> node class, for the unary functions the loader maps one to one
UNARY_OPS: dict[str, type[Elementwise]] = {
    "Exp": Exp, "Log": Log, "Sqrt": Sqrt, "Reciprocal": Reciprocal, "Sin": Sin, "Cos": Cos,
    "Sign": Sign,
}

