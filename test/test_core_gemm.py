"""Narrow-output matrix products: the same values and gradients as the plain products, both layouts."""

from __future__ import annotations

import pytest
import torch

from mbpo_ros.core.gemm import NARROW, linear, matmul

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("n", [1, 6, NARROW - 1, NARROW, 256])
@pytest.mark.parametrize("batched", [False, True])
def test_linear_and_matmul_equal_the_plain_products_with_their_gradients(n, batched):
    g = torch.Generator().manual_seed(n)
    lead = (2,) if batched else ()
    x = torch.randn(*lead, 300, 64, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(*lead, 64, n, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(*((2, 1) if batched else ()), n, generator=g, dtype=torch.float64, requires_grad=True)
    y = linear(x, w, b)
    assert y.shape == (*lead, 300, n)
    torch.testing.assert_close(y, x @ w + b)
    torch.testing.assert_close(matmul(x, w), x @ w)
    # a transposed first operand (the weight-gradient form x^T g) is served too
    torch.testing.assert_close(matmul(x.transpose(-1, -2), x[..., :n]), x.transpose(-1, -2) @ x[..., :n])
    # autograd through the transposed form gives the plain form's gradients
    up = torch.randn(y.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad((linear(x, w, b) * up).sum(), (x, w, b))
    want = torch.autograd.grad(((x @ w + b) * up).sum(), (x, w, b))
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e)

