"""The transposed (backward) maps of linear nodes, applied to CROWN coefficient tensors.

For a linear node ``y = A(x₁, …, xₘ) + b`` and coefficients ``Λ`` on ``y`` (one row per
bound being computed), ``Λ·y = Σᵢ (Aᵢᵀ Λ)·xᵢ + Λ·b``. :func:`backward_linear` returns the
``Aᵢᵀ Λ`` and :func:`bias_term` the ``Λ·b``.

Coefficient tensors are ``(N, *out_shape)`` here (batch and row dimensions flattened into
``N``). Each common kind has a fast rule; anything else (and AvgPool) goes through autograd's
vector-Jacobian product of ``linear``, which is exact because ``linear`` is linear.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from planecut.verifier.graph.ir import (
    Add,
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

Tensor = torch.Tensor
Shape = tuple[int, ...]


def backward_vjp(node: LinearNode, lam: Tensor, in_shapes: Sequence[Shape]) -> list[Tensor]:
    """Generic ``Aᵢᵀ Λ`` by autograd: the gradient of ``(A(x)·Λ).sum()`` w.r.t. each ``xᵢ``.

    The ``xᵢ`` are zeros (any point works: the Jacobian of a linear map is constant). The
    result stays differentiable in ``Λ`` when ``Λ`` requires grad (alpha-CROWN).
    """
    n = lam.shape[0]
    with torch.enable_grad():
        xs = [torch.zeros((n, *s), dtype=lam.dtype, device=lam.device, requires_grad=True)
              for s in in_shapes]
        y = node.linear(*xs)
        grads = torch.autograd.grad(y, xs, grad_outputs=lam, create_graph=lam.requires_grad,
                                    allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(xs, grads)]


def backward_dense(node: Dense, lam: Tensor, in_shapes: Sequence[Shape]) -> list[Tensor]:
    """``y = x Wᵀ``: ``Aᵀ Λ = Λ W``."""
    return [lam.matmul(node.weight.to(lam.dtype))]


def backward_conv(node: Conv, lam: Tensor, in_shapes: Sequence[Shape]) -> list[Tensor]:
    """Convolution: the transpose is ``conv_transpose2d`` with the same weight, stride,
    padding, dilation and groups, and the ``output_padding`` that restores the input size
    (the rows/columns the forward convolution's last window did not reach). Strided,
    undilated, ungrouped convolutions use :class:`_SubpixelConvTranspose` (same map, faster
    on CPUs)."""
    (_, h_in, w_in) = in_shapes[0]
    w = node.weight.to(lam.dtype)
    kh, kw = w.shape[-2:]
    out_h, out_w = lam.shape[-2:]
    (sh, sw), (ph, pw), (dh, dw) = node.stride, node.padding, node.dilation
    op_h = h_in - ((out_h - 1) * sh - 2 * ph + dh * (kh - 1) + 1)
    op_w = w_in - ((out_w - 1) * sw - 2 * pw + dw * (kw - 1) + 1)
    if not (0 <= op_h < max(sh, dh) and 0 <= op_w < max(sw, dw)):
        return backward_vjp(node, lam, in_shapes)
    if (sh, sw) != (1, 1) and (dh, dw) == (1, 1) and node.groups == 1:
        return [_SubpixelConvTranspose.apply(lam, w, node.stride, node.padding, (h_in, w_in))]
    out = F.conv_transpose2d(lam, w, None, node.stride, node.padding, (op_h, op_w),
                             node.groups, node.dilation)
    return [out]


def subpixel_conv_transpose(lam: Tensor, w: Tensor, stride: tuple[int, int],
                            padding: tuple[int, int], out_hw: tuple[int, int]) -> Tensor:
    """``conv_transpose2d(Λ, W, stride, padding)`` cropped or zero-extended to ``out_hw``,
    computed as one stride-1 ``conv2d`` and a pixel shuffle.

    With ``y + p = s·t + a`` (``0 <= a < s``), the transposed convolution is
    ``out[y] = Σ_m Λ[t − m]·W[a + s·m]``: for each output phase ``a`` a correlation of ``Λ``
    with the kernel taps ``a, a + s, …`` reversed. All ``s_h·s_w`` phases are the output
    channels of one convolution (kernel ``⌈k/s⌉``, padding ``⌈k/s⌉ − 1``), and
    ``pixel_shuffle`` interleaves them back; ``y = s·t + a − p`` then crops the padding.
    CPU libraries run the strided ``conv_transpose2d`` several times slower than this.
    """
    n, c_out, h, wd = lam.shape
    _, c_in, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    lh, lw = -(-kh // sh), -(-kw // sw)
    wp = F.pad(w, (0, sw * lw - kw, 0, sh * lh - kh))  # (C_out, C_in, s_h·L_h, s_w·L_w)
    # phase kernels W_ab[c_out, c_in, m, n] = W[c_out, c_in, a + s_h·m, b + s_w·n]
    wab = wp.view(c_out, c_in, lh, sh, lw, sw).permute(1, 3, 5, 0, 2, 4)
    kernel = wab.flip(-1, -2).reshape(c_in * sh * sw, c_out, lh, lw)
    if sh == sw:
        full = F.pixel_shuffle(F.conv2d(lam, kernel, None, 1, (lh - 1, lw - 1)), sh)
    else:
        out = F.conv2d(lam, kernel, None, 1, (lh - 1, lw - 1))  # (N, C_in·s_h·s_w, T_h, T_w)
        th, tw = out.shape[-2:]
        full = out.view(n, c_in, sh, sw, th, tw).permute(0, 1, 4, 2, 5, 3).reshape(
            n, c_in, th * sh, tw * sw)
    oh, ow = out_hw
    extra_h, extra_w = ph + oh - full.shape[-2], pw + ow - full.shape[-1]
    if extra_h > 0 or extra_w > 0:
        full = F.pad(full, (0, max(0, extra_w), 0, max(0, extra_h)))
    return full[..., ph:ph + oh, pw:pw + ow]


class _SubpixelConvTranspose(torch.autograd.Function):
    """The transposed convolution by :func:`subpixel_conv_transpose`; its adjoint (for
    alpha/beta gradients) is the convolution itself, which CPUs run fast too."""

    @staticmethod
    def forward(ctx, lam: Tensor, w: Tensor, stride, padding, out_hw) -> Tensor:
        ctx.save_for_backward(w)
        ctx.stride, ctx.padding = stride, padding
        return subpixel_conv_transpose(lam, w, stride, padding, out_hw)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (w,) = ctx.saved_tensors
        return F.conv2d(grad, w, None, ctx.stride, ctx.padding), None, None, None, None


def backward_conv_transpose(node: ConvTranspose, lam: Tensor, in_shapes: Sequence[Shape]
                            ) -> list[Tensor]:
    """Transposed convolution: its transpose is ``conv2d`` with the same weight and geometry
    (``output_padding`` only added rows the forward map never wrote from)."""
    out = F.conv2d(lam, node.weight.to(lam.dtype), None, node.stride, node.padding,
                   node.dilation, node.groups)
    if tuple(out.shape[1:]) != tuple(in_shapes[0]):
        return backward_vjp(node, lam, in_shapes)
    return [out]


def backward_elementwise_affine(node: ElementwiseAffine, lam: Tensor,
                                in_shapes: Sequence[Shape]) -> list[Tensor]:
    """``y = x ⊙ s``: ``Aᵀ Λ = Λ ⊙ s`` (summed over axes ``s`` broadcast the input along)."""
    if node.scale is None:
        out = lam
    else:
        out = lam * node.scale.to(lam.dtype)
    return [_unbroadcast(out, in_shapes[0])]


def backward_add(node: Add, lam: Tensor, in_shapes: Sequence[Shape]) -> list[Tensor]:
    """``y = Σ σᵢ xᵢ``: ``Aᵢᵀ Λ = σᵢ Λ``."""
    out = []
    for i, shape in enumerate(in_shapes):
        g = lam if not node.signs or node.signs[i] > 0 else -lam
        out.append(_unbroadcast(g, shape))
    return out


def backward_reshape(node: Reshape, lam: Tensor, in_shapes: Sequence[Shape]) -> list[Tensor]:
    """A reshape is a permutation matrix in row-major order: reshape ``Λ`` back."""
    return [lam.reshape(lam.shape[0], *in_shapes[0])]


def backward_transpose(node: Transpose, lam: Tensor, in_shapes: Sequence[Shape]
                       ) -> list[Tensor]:
    """Axis permutation ``perm``: apply the inverse permutation to ``Λ``."""
    inverse = [0] * len(node.perm)
    for i, p in enumerate(node.perm):
        inverse[p] = i
    return [lam.permute(0, *(i + 1 for i in inverse))]


def backward_pad(node: Pad, lam: Tensor, in_shapes: Sequence[Shape]) -> list[Tensor]:
    """Zero padding embeds ``x``: its transpose crops ``Λ`` (negated pads; negative pads,
    i.e. cropping, invert to zero padding)."""
    out = F.pad(lam, [-p for p in node.pads])
    if tuple(out.shape[1:]) != tuple(in_shapes[0]):
        return backward_vjp(node, lam, in_shapes)
    return [out]


def backward_slice(node: Slice, lam: Tensor, in_shapes: Sequence[Shape]) -> list[Tensor]:
    """Slicing selects coordinates: scatter ``Λ`` into zeros of the input's shape."""
    if node.step <= 0:
        return backward_vjp(node, lam, in_shapes)
    out = lam.new_zeros((lam.shape[0], *in_shapes[0]))
    index: list[slice] = [slice(None)] * out.dim()
    index[node.axis + 1] = slice(node.start, node.stop, node.step)
    out[tuple(index)] = lam
    return [out]


def backward_gather(node: Gather, lam: Tensor, in_shapes: Sequence[Shape]) -> list[Tensor]:
    """``index_select``: add ``Λ`` back at the gathered positions (repeats accumulate)."""
    axis = node.axis + 1
    if not node.keepdim:
        lam = lam.unsqueeze(axis)
    out = lam.new_zeros((lam.shape[0], *in_shapes[0]))
    return [out.index_add(axis, node.indices.to(lam.device), lam)]


def backward_concat(node: Concat, lam: Tensor, in_shapes: Sequence[Shape]) -> list[Tensor]:
    """Concatenation stacks its inputs: split ``Λ`` back along the axis."""
    sizes = [s[node.axis] for s in in_shapes]
    return list(torch.split(lam, sizes, dim=node.axis + 1))


BACKWARD_RULES: dict[type, Callable[[LinearNode, Tensor, Sequence[Shape]], list[Tensor]]] = {
    Dense: backward_dense,
    Conv: backward_conv,
    ConvTranspose: backward_conv_transpose,
    ElementwiseAffine: backward_elementwise_affine,
    Add: backward_add,
    Reshape: backward_reshape,
    Transpose: backward_transpose,
    Pad: backward_pad,
    Slice: backward_slice,
    Gather: backward_gather,
    Concat: backward_concat,
}


def backward_linear(node: LinearNode, lam: Tensor, in_shapes: Sequence[Shape]) -> list[Tensor]:
    """``[Aᵢᵀ Λ for each input i]`` for ``Λ`` of shape ``(Bλ, K, *out_shape)``."""
    b, k = lam.shape[:2]
    flat = lam.reshape(b * k, *lam.shape[2:])
    rule = BACKWARD_RULES.get(type(node), backward_vjp)
    outs = rule(node, flat, in_shapes)
    return [o.reshape(b, k, *s) for o, s in zip(outs, in_shapes)]


def bias_term(node: LinearNode, lam: Tensor) -> Tensor | None:
    """``Λ·b`` per row: ``(Bλ, K)`` (or ``(B, K)`` when the bias has a batch dimension).

    ``lam`` is ``(Bλ, K, *shape)``; the bias broadcasts to ``(B, *shape)``.
    """
    b = node.bias
    if b is None:
        return None
    b = b.to(dtype=lam.dtype, device=lam.device)
    if isinstance(node, Dense) and b.dim() == 1:
        return _sum_per_row(lam.matmul(b))
    if isinstance(node, (Conv, ConvTranspose)) and node.bias_ is not None:
        return lam.sum(dim=(-2, -1)).matmul(node.bias_.to(lam.dtype))
    per_example = lam.dim() - 2
    if b.dim() > per_example:  # carries a batch dimension
        b = b.unsqueeze(1)
    return _sum_per_row(lam * b)


def _sum_per_row(t: Tensor) -> Tensor:
    """Sum ``(Bλ, K, ...)`` over everything after the row dimension."""
    return t if t.dim() == 2 else t.flatten(2).sum(-1)


def _unbroadcast(g: Tensor, shape: Shape) -> Tensor:
    """Sum ``g`` ``(N, *out)`` down to ``(N, *shape)`` where the input was broadcast."""
    if tuple(g.shape[1:]) == tuple(shape):
        return g
    lead = g.dim() - 1 - len(shape)
    if lead > 0:
        g = g.sum(dim=tuple(range(1, 1 + lead)))
    dims = [i + 1 for i, s in enumerate(shape) if s == 1 and g.shape[i + 1] != 1]
    if dims:
        g = g.sum(dim=dims, keepdim=True)
    return g
