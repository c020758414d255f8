"""The sub-pixel transposed convolution used in CROWN's backward pass through strided
convolutions: same values and same gradients as ``conv_transpose2d``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from planecut.verifier.bounds.linear_backward import _SubpixelConvTranspose

CASES = [(8, 3, 4, 4, 2, 2, 1, 1, 16, 16), (4, 2, 3, 5, 2, 3, 0, 2, 7, 6),
         (5, 3, 5, 3, 3, 2, 2, 1, 6, 9), (3, 2, 2, 2, 2, 2, 0, 0, 5, 5),
         (3, 2, 1, 1, 2, 2, 0, 0, 4, 4), (2, 2, 3, 3, 4, 4, 1, 1, 3, 3)]


@pytest.mark.parametrize("c_out,c_in,kh,kw,sh,sw,ph,pw,h,w", CASES)
def test_subpixel_matches_conv_transpose(c_out, c_in, kh, kw, sh, sw, ph, pw, h, w) -> None:
    g = torch.Generator().manual_seed(c_out * 100 + kh)
    weight = torch.randn(c_out, c_in, kh, kw, generator=g, dtype=torch.float64)
    lam = torch.randn(3, c_out, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    for oph in range(sh):
        for opw in range(sw):
            ref = F.conv_transpose2d(lam, weight, None, (sh, sw), (ph, pw), (oph, opw))
            got = _SubpixelConvTranspose.apply(lam, weight, (sh, sw), (ph, pw),
                                               tuple(ref.shape[-2:]))
            assert got.shape == ref.shape
            assert torch.allclose(got, ref, atol=1e-10)
            up = torch.randn(ref.shape, generator=g, dtype=torch.float64)
            g_ref, = torch.autograd.grad(ref, lam, up)
            g_got, = torch.autograd.grad(got, lam, up)
            assert torch.allclose(g_got, g_ref, atol=1e-10)
