"""Matrix products arranged so that the CPU BLAS takes its fast path for narrow outputs.

MKL's sgemm (PyTorch's CPU BLAS) is slow when the *output* has few columns: ``[512, 256] @ [256, 6]``
takes 160 us on one core of the CI box, while the same product computed as its transpose,
``([6, 256] @ [256, 512]).T``, takes 40 us; a critic's output layer ``[2, 512, 256] @ [2, 256, 1]``
takes 283 us against 69 us transposed. A few columns and many rows is exactly the shape of a policy's
or a critic's output layer and of their weight gradients, so :func:`linear` and :func:`matmul`
compute any product with fewer than :data:`NARROW` output columns as ``(B^T A^T)^T``: the same
numbers up to float rounding, returned as a transposed view. Wider products go to
``addmm``/``baddbmm``/``mm``/``bmm`` unchanged. Figures: docs/benchmarks.md ("Narrow matrix products").
The same form is used on CUDA, where cuBLAS takes both forms by transpose flags (not measured here).
"""

from __future__ import annotations

import torch

__all__ = ["NARROW", "linear", "matmul"]

NARROW = 32
"""Products with fewer output columns than this are computed transposed."""


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``x @ w + b``. x [M, K], w [K, N], b [N]; or batched x [E, M, K], w [E, K, N], b [E, 1, N].

    Returns [M, N] or [E, M, N] (a transposed view when N < NARROW)."""
    if w.shape[-1] >= NARROW:
        return torch.addmm(b, x, w) if x.dim() == 2 else torch.baddbmm(b, x, w)
    if x.dim() == 2:
        return torch.addmm(b.unsqueeze(-1), w.t(), x.t()).t()
    return torch.baddbmm(b.transpose(1, 2), w.transpose(1, 2), x.transpose(1, 2)).transpose(1, 2)


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for a [M, K], b [K, N] or a [E, M, K], b [E, K, N] (a transposed view when N < NARROW)."""
    if b.shape[-1] >= NARROW:
        return torch.mm(a, b) if a.dim() == 2 else torch.bmm(a, b)
    if a.dim() == 2:
        return torch.mm(b.t(), a.t()).t()
    return torch.bmm(b.transpose(1, 2), a.transpose(1, 2)).transpose(1, 2)
