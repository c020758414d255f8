"""The fast transposed maps of linear nodes against autograd and the adjoint identity."""

from __future__ import annotations

import pytest
import torch

from planecut.verifier.bounds.linear_backward import (
    BACKWARD_RULES,
    backward_linear,
    backward_vjp,
    bias_term,
)
from planecut.verifier.graph.ir import (
    Add,
    AvgPool,
    Concat,
    Conv,
    ConvTranspose,
    Dense,
    ElementwiseAffine,
    Gather,
    LinearNode,
    Pad,
    Reshape,
    Slice,
    Transpose,
)

G = torch.Generator().manual_seed(0)
D = torch.float64


def r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=G, dtype=D)


def case(node: LinearNode, *in_shapes: tuple[int, ...]) -> tuple[LinearNode, list]:
    """The node with its declared output shape checked against its forward map."""
    out = node.linear(*[torch.zeros(1, *s, dtype=D) for s in in_shapes])
    assert tuple(out.shape[1:]) == tuple(node.shape), (node.name, out.shape)
    return node, list(in_shapes)


CASES = [
    case(Dense("d", ("x",), (5,), weight=r(5, 7), bias_=r(5)), (7,)),
    case(Dense("d3", ("x",), (3, 5), weight=r(5, 4), bias_=r(5)), (3, 4)),
    case(Conv("c", ("x",), (4, 4, 4), weight=r(4, 2, 3, 3), bias_=r(4), stride=(2, 2),
              padding=(1, 1)), (2, 7, 8)),
    case(Conv("c_dg", ("x",), (4, 4, 3), weight=r(4, 2, 3, 2), bias_=None, stride=(2, 3),
              padding=(2, 1), dilation=(2, 1), groups=2), (4, 8, 6)),
    case(Conv("c_ragged", ("x",), (3, 2, 3), weight=r(3, 2, 2, 2), bias_=r(3), stride=(3, 3)),
         (2, 7, 8)),
    case(ConvTranspose("ct", ("x",), (3, 8, 8), weight=r(4, 3, 3, 3), bias_=r(3),
                       stride=(2, 2), padding=(1, 1), output_padding=(1, 1)), (4, 4, 4)),
    case(ConvTranspose("ct_g", ("x",), (4, 7, 7), weight=r(4, 2, 3, 3), bias_=None,
                       stride=(2, 2), padding=(1, 1), groups=2), (4, 4, 4)),
    case(ElementwiseAffine("ea", ("x",), (3, 4, 4), scale=r(3, 1, 1), shift=r(3, 1, 1)),
         (3, 4, 4)),
    case(ElementwiseAffine("ea_id", ("x",), (6,), scale=None, shift=r(6)), (6,)),
    case(Add("add", ("a", "b"), (2, 3), signs=(1.0, -1.0)), (2, 3), (2, 3)),
    case(Add("add3", ("a", "b", "c"), (5,)), (5,), (5,), (5,)),
    case(Reshape("rs", ("x",), (24,)), (2, 3, 4)),
    case(Transpose("tr", ("x",), (4, 2, 3), perm=(2, 0, 1)), (2, 3, 4)),
    case(Pad("pad", ("x",), (2, 6, 7), pads=(1, 2, 2, 1), value=0.7), (2, 3, 4)),
    case(Pad("crop", ("x",), (2, 3, 2), pads=(-1, -1, 0, 0)), (2, 3, 4)),
    case(AvgPool("avg", ("x",), (2, 3, 3), kernel=(3, 3), stride=(2, 2), padding=(1, 1),
                 count_include_pad=False), (2, 5, 6)),
    case(Slice("sl", ("x",), (2, 2, 4), axis=1, start=1, stop=5, step=2), (2, 5, 4)),
    case(Slice("sl_neg", ("x",), (2, 2, 4), axis=1, start=-3, stop=-1), (2, 5, 4)),
    case(Gather("ga", ("x",), (3, 4, 2), axis=0, indices=torch.tensor([2, 0, 2])), (3, 4, 2)),
    case(Gather("ga_drop", ("x",), (3, 2), axis=1, indices=torch.tensor([1]), keepdim=False),
         (3, 4, 2)),
    case(Concat("cat", ("a", "b"), (2, 5, 3), axis=1), (2, 2, 3), (2, 3, 3)),
]


@pytest.mark.parametrize("node,in_shapes", CASES, ids=[c[0].name for c in CASES])
def test_backward_matches_autograd_and_adjoint(node: LinearNode, in_shapes: list) -> None:
    bl, k = 2, 3
    lam = r(bl, k, *node.shape)
    fast = backward_linear(node, lam, in_shapes)
    ref = backward_vjp(node, lam.reshape(bl * k, *node.shape), in_shapes)
    assert len(fast) == len(in_shapes)
    for f, g, s in zip(fast, ref, in_shapes):
        assert f.shape == (bl, k, *s)
        torch.testing.assert_close(f.reshape(bl * k, *s), g)
    # adjoint identity <Λ, A x> = Σ <Aᵢᵀ Λ, xᵢ>, and Λ·b against the forward map
    xs = [r(1, *s) for s in in_shapes]
    y = node.linear(*xs)
    lhs = (lam * y.unsqueeze(0)).flatten(2).sum(-1)
    rhs = sum((f * x.unsqueeze(0)).flatten(2).sum(-1) for f, x in zip(fast, xs))
    torch.testing.assert_close(lhs, rhs)
    bt = bias_term(node, lam)
    if node.bias is not None:
        full = node.forward(*[torch.zeros(1, *s, dtype=D) for s in in_shapes])
        torch.testing.assert_close(bt, (lam * full.unsqueeze(0)).flatten(2).sum(-1))
    else:
        assert bt is None


def test_every_linear_kind_has_a_fast_rule_except_avgpool() -> None:
    kinds = {type(n) for n, _ in CASES}
    assert kinds - {AvgPool} <= set(BACKWARD_RULES)
